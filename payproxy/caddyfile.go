package payproxy

import (
	"os"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/tollgate/tollgate/internal/cfgargs"
	"github.com/tollgate/tollgate/internal/redisclient"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("payproxy", parseCaddyfile)
	// Payments answer their own requests: they run after authentication
	// (authjwt, before basic_auth) has set identity headers, and before
	// respond so that a catch-all respond does not hide them.
	httpcaddyfile.RegisterDirectiveOrder("payproxy", httpcaddyfile.Before, "respond")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	p := new(PayProxy)
	err := p.UnmarshalCaddyfile(h.Dispenser)
	return p, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens:
//
//	payproxy [<matcher>] {
//	    redis <url>
//	    lock_redis <url> <url> <url>...
//	    prefix /pay
//	    alipay {
//	        app_id <id>
//	        private_key <pem-file>
//	        alipay_public_key <pem-file>
//	        gateway <url>
//	        notify_url <url>
//	        refund_gap <duration>
//	    }
//	    wechat {
//	        mch_id <id>
//	        app_id <id>
//	        serial_no <merchant-cert-serial>
//	        private_key <pem-file>
//	        apiv3_key <32-byte secret>
//	        platform_public_key <pem-file>
//	        platform_public_key_id <PUB_KEY_ID_…>
//	        base_url <url>
//	        notify_url <url>
//	    }
//	    operations create|status|close|refund|notify...
//	    order_source <url-template>
//	    order_claims <claim>...
//	    provider_timeout <duration>
//	    lock_ttl <duration>
//	    poll_interval <duration>
//	    pay_timeout <duration>
//	    qr_lifetime <duration>
//	    refund_checks <duration>...
//	    duplicate_refund auto|off
//	    webhook <url> {
//	        secret <secret>
//	        max_attempts <n>
//	        backoff <duration>
//	        max_backoff <duration>
//	    }
//	    reconcile {
//	        at <HH:MM>
//	        timezone <IANA zone>
//	        days <n>
//	    }
//	}
//
// Key files are checked here, so a missing file fails at config load with
// its line; values with placeholders ({env.X}, {file.X}) are resolved at
// provision time instead.
func (p *PayProxy) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "redis":
			err = cfgargs.One(d, &p.Redis)
			if err == nil {
				if verr := redisclient.Validate(p.Redis); verr != nil {
					err = d.Errf("redis: %v", verr)
				}
			}
		case "lock_redis":
			if p.LockRedis != nil {
				return d.Err("lock_redis given twice: list every lock server on one line")
			}
			err = cfgargs.AtLeastOne(d, &p.LockRedis)
			if err == nil {
				if cerr := checkLockRedis(p.LockRedis); cerr != nil {
					err = d.Err(cerr.Error())
				}
			}
		case "prefix":
			err = cfgargs.One(d, &p.Prefix)
		case "order_source":
			err = cfgargs.One(d, &p.OrderSource)
			if err == nil && !strings.Contains(p.OrderSource, "{order_no}") {
				err = d.Errf("order_source %q must contain {order_no}", p.OrderSource)
			}
		case "operations":
			err = cfgargs.AtLeastOne(d, &p.Operations)
		case "order_claims":
			err = cfgargs.AtLeastOne(d, &p.OrderClaims)
		case "provider_timeout":
			err = cfgargs.Duration(d, &p.ProviderTimeout, false)
		case "lock_ttl":
			err = cfgargs.Duration(d, &p.LockTTL, false)
		case "poll_interval":
			err = cfgargs.Duration(d, &p.PollInterval, false)
		case "pay_timeout":
			err = cfgargs.Duration(d, &p.PayTimeout, false)
		case "qr_lifetime":
			err = cfgargs.Duration(d, &p.QRLifetime, false)
		case "refund_checks":
			err = durations(d, &p.RefundChecks)
		case "duplicate_refund":
			err = cfgargs.One(d, &p.DuplicateRefund)
		case "alipay":
			p.Alipay = new(AlipayConfig)
			err = p.Alipay.unmarshal(d)
		case "wechat":
			p.Wechat = new(WechatConfig)
			err = p.Wechat.unmarshal(d)
		case "webhook":
			p.Webhook = new(WebhookConfig)
			err = p.Webhook.unmarshal(d)
		case "reconcile":
			p.Reconcile = new(ReconcileConfig)
			err = p.Reconcile.unmarshal(d)
		default:
			return d.Errf("unknown payproxy subdirective %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (c *AlipayConfig) unmarshal(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "app_id":
			err = cfgargs.One(d, &c.AppID)
		case "private_key":
			err = fileArg(d, &c.PrivateKey)
		case "alipay_public_key":
			err = fileArg(d, &c.AlipayPublicKey)
		case "gateway":
			err = cfgargs.One(d, &c.Gateway)
		case "notify_url":
			err = cfgargs.One(d, &c.NotifyURL)
		case "refund_gap":
			err = cfgargs.Duration(d, &c.RefundGap, false)
		default:
			return d.Errf("unknown alipay subdirective %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	if c.AppID == "" || c.PrivateKey == "" || c.AlipayPublicKey == "" {
		return d.Err("alipay needs app_id, private_key and alipay_public_key")
	}
	return nil
}

func (c *WechatConfig) unmarshal(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "mch_id":
			err = cfgargs.One(d, &c.MchID)
		case "app_id":
			err = cfgargs.One(d, &c.AppID)
		case "serial_no":
			err = cfgargs.One(d, &c.SerialNo)
		case "private_key":
			err = fileArg(d, &c.PrivateKey)
		case "apiv3_key":
			err = cfgargs.One(d, &c.APIv3Key)
			if err == nil && !strings.Contains(c.APIv3Key, "{") && len(c.APIv3Key) != 32 {
				err = d.Errf("apiv3_key must be exactly 32 bytes, got %d", len(c.APIv3Key))
			}
		case "platform_public_key":
			err = fileArg(d, &c.PlatformPublicKey)
		case "platform_public_key_id":
			err = cfgargs.One(d, &c.PlatformPublicKeyID)
		case "base_url":
			err = cfgargs.One(d, &c.BaseURL)
		case "notify_url":
			err = cfgargs.One(d, &c.NotifyURL)
		default:
			return d.Errf("unknown wechat subdirective %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	if c.MchID == "" || c.AppID == "" || c.SerialNo == "" || c.PrivateKey == "" || c.APIv3Key == "" ||
		c.PlatformPublicKey == "" || c.PlatformPublicKeyID == "" {
		return d.Err("wechat needs mch_id, app_id, serial_no, private_key, apiv3_key, platform_public_key and platform_public_key_id")
	}
	return nil
}

func (c *WebhookConfig) unmarshal(d *caddyfile.Dispenser) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	c.URL = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "secret":
			err = cfgargs.One(d, &c.Secret)
		case "max_attempts":
			var s string
			if err = cfgargs.One(d, &s); err == nil {
				c.MaxAttempts, err = strconv.Atoi(s)
				if err != nil || c.MaxAttempts < 1 {
					err = d.Errf("max_attempts must be a positive integer, got %q", s)
				}
			}
		case "backoff":
			err = cfgargs.Duration(d, &c.Backoff, false)
		case "max_backoff":
			err = cfgargs.Duration(d, &c.MaxBackoff, false)
		default:
			return d.Errf("unknown webhook subdirective %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	if c.Secret == "" {
		return d.Err("webhook needs a secret")
	}
	return nil
}

// durations reads one or more positive durations.
func durations(d *caddyfile.Dispenser, dst *[]caddy.Duration) error {
	name := d.Val()
	args := d.RemainingArgs()
	if len(args) == 0 {
		return d.ArgErr()
	}
	for _, a := range args {
		v, err := caddy.ParseDuration(a)
		if err != nil || v <= 0 {
			return d.Errf("%s %q: not a positive duration", name, a)
		}
		*dst = append(*dst, caddy.Duration(v))
	}
	return nil
}

// fileArg reads a key file path and checks that the file is readable
// (paths with placeholders are checked at provision time).
func fileArg(d *caddyfile.Dispenser, dst *string) error {
	if err := cfgargs.One(d, dst); err != nil {
		return err
	}
	if strings.Contains(*dst, "{") {
		return nil
	}
	if _, err := os.Stat(*dst); err != nil {
		return d.Errf("%s: %v", d.Val(), err)
	}
	return nil
}

// Interface guards.
var _ caddyfile.Unmarshaler = (*PayProxy)(nil)
