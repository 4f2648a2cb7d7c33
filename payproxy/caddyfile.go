package payproxy

import (
	"maps"
	"slices"

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
//	    redis <url> {
//	        password <secret>
//	    }
//	    lock_redis <url> <url> <url>... {
//	        password <secret>
//	    }
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
//	    retention <duration>
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
// Every subdirective may appear once. The parser only records
// (CONTRIBUTING.md): key files are read, {env.*}/{file.*} resolved and
// URLs checked when the config is provisioned, so `caddy adapt` needs none
// of the files and `caddy validate` names a missing one with its
// subdirective; the rules on the values are Validate's, which JSON configs
// reach too.
func (p *PayProxy) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sub := d.Val()
		if seen[sub] {
			return d.Errf("%s given more than once%s", sub, onceHint[sub])
		}
		seen[sub] = true
		if err := p.unmarshalSubdirective(d, sub); err != nil {
			return err
		}
	}
	return nil
}

// onceHint says how to write what people try to give twice.
var onceHint = map[string]string{"lock_redis": ": list every lock server on one line"}

func (p *PayProxy) unmarshalSubdirective(d *caddyfile.Dispenser, sub string) error {
	switch sub {
	case "redis":
		return redisclient.UnmarshalCaddyfile(d, &p.Redis, &p.RedisPassword, nil)
	case "lock_redis":
		return p.unmarshalLockRedis(d)
	case "prefix":
		return cfgargs.One(d, &p.Prefix)
	case "order_source":
		return cfgargs.One(d, &p.OrderSource)
	case "operations":
		return cfgargs.AtLeastOne(d, &p.Operations)
	case "order_claims":
		return cfgargs.AtLeastOne(d, &p.OrderClaims)
	case "provider_timeout":
		return cfgargs.DurationArg(d, &p.ProviderTimeout, false)
	case "lock_ttl":
		return cfgargs.DurationArg(d, &p.LockTTL, false)
	case "poll_interval":
		return cfgargs.DurationArg(d, &p.PollInterval, false)
	case "pay_timeout":
		return cfgargs.DurationArg(d, &p.PayTimeout, false)
	case "qr_lifetime":
		return cfgargs.DurationArg(d, &p.QRLifetime, false)
	case "retention":
		return cfgargs.DurationArg(d, &p.Retention, false)
	case "refund_checks":
		return durations(d, &p.RefundChecks)
	case "duplicate_refund":
		return cfgargs.One(d, &p.DuplicateRefund)
	case "alipay":
		p.Alipay = new(AlipayConfig)
		return p.Alipay.unmarshal(d)
	case "wechat":
		p.Wechat = new(WechatConfig)
		return p.Wechat.unmarshal(d)
	case "webhook":
		p.Webhook = new(WebhookConfig)
		return p.Webhook.unmarshal(d)
	case "reconcile":
		p.Reconcile = new(ReconcileConfig)
		return p.Reconcile.unmarshal(d)
	}
	return cfgargs.Unknown(d, "payproxy subdirective", sub, subdirectives, subdirectiveHints)
}

// subdirectives are the names unmarshalSubdirective knows, for the
// suggestion an unknown one gets.
var subdirectives = []string{"redis", "lock_redis", "prefix", "order_source", "operations", "order_claims",
	"provider_timeout", "lock_ttl", "poll_interval", "pay_timeout", "qr_lifetime", "refund_checks", "retention", "duplicate_refund", "alipay", "wechat",
	"webhook", "reconcile"}

// subdirectiveHints map what people write from memory, from the other
// modules or from the providers' documents to the subdirective meant.
var subdirectiveHints = map[string]string{
	"wechatpay": "wechat", "weixin": "wechat", "wxpay": "wechat", "ali": "alipay", "timeout": "provider_timeout",
	"lock_servers": "lock_redis", "redlock": "lock_redis", "notify": "webhook", "callback": "webhook",
	"reconciliation": "reconcile", "ttl": "retention", "archive_after": "retention", "ops": "operations", "claims": "order_claims", "order_url": "order_source",
}

// unmarshalLockRedis reads `lock_redis <url>... [{ password <secret> }]`:
// one password for every lock server, given apart from the URLs so it
// needs no percent-encoding.
func (p *PayProxy) unmarshalLockRedis(d *caddyfile.Dispenser) error {
	if err := cfgargs.AtLeastOne(d, &p.LockRedis); err != nil {
		return err
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if opt := d.Val(); opt != "password" {
			return cfgargs.Unknown(d, "lock_redis option", opt, []string{"password"}, nil)
		}
		if err := cfgargs.One(d, &p.LockRedisPassword); err != nil {
			return err
		}
	}
	return nil
}

func (c *AlipayConfig) unmarshal(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	opts := stringOptions(map[string]*string{
		"app_id": &c.AppID, "private_key": &c.PrivateKey, "alipay_public_key": &c.AlipayPublicKey,
		"gateway": &c.Gateway, "notify_url": &c.NotifyURL,
	})
	opts["refund_gap"] = func(d *caddyfile.Dispenser) error { return cfgargs.DurationArg(d, &c.RefundGap, false) }
	return unmarshalOptions(d, "alipay", opts, nil)
}

// durations reads one or more durations (their range is Validate's).
func durations(d *caddyfile.Dispenser, dst *[]caddy.Duration) error {
	name := d.Val()
	args := d.RemainingArgs()
	if len(args) == 0 {
		return d.ArgErr()
	}
	for _, a := range args {
		v, err := caddy.ParseDuration(a)
		if err != nil {
			return d.Errf("%s: %v", name, err)
		}
		*dst = append(*dst, caddy.Duration(v))
	}
	return nil
}

func (c *WechatConfig) unmarshal(d *caddyfile.Dispenser) error {
	return unmarshalBlock(d, "wechat", map[string]*string{
		"mch_id": &c.MchID, "app_id": &c.AppID, "serial_no": &c.SerialNo, "private_key": &c.PrivateKey,
		"apiv3_key": &c.APIV3Key, "platform_public_key": &c.PlatformPublicKey,
		"platform_public_key_id": &c.PlatformPublicKeyID, "base_url": &c.BaseURL, "notify_url": &c.NotifyURL,
	}, map[string]string{"apiv3": "apiv3_key", "api_v3_key": "apiv3_key", "key": "private_key", "public_key": "platform_public_key"})
}

func (c *WebhookConfig) unmarshal(d *caddyfile.Dispenser) error {
	if err := cfgargs.One(d, &c.URL); err != nil {
		return err
	}
	return unmarshalOptions(d, "webhook", map[string]func(*caddyfile.Dispenser) error{
		"secret":       func(d *caddyfile.Dispenser) error { return cfgargs.One(d, &c.Secret) },
		"max_attempts": func(d *caddyfile.Dispenser) error { return cfgargs.IntArg(d, &c.MaxAttempts) },
		"backoff":      func(d *caddyfile.Dispenser) error { return cfgargs.DurationArg(d, &c.Backoff, false) },
		"max_backoff":  func(d *caddyfile.Dispenser) error { return cfgargs.DurationArg(d, &c.MaxBackoff, false) },
	}, map[string]string{"hmac_secret": "secret", "attempts": "max_attempts", "retries": "max_attempts"})
}

// unmarshalBlock reads a block without arguments whose options each take
// one string.
func unmarshalBlock(d *caddyfile.Dispenser, block string, fields map[string]*string, hints map[string]string) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	return unmarshalOptions(d, block, stringOptions(fields), hints)
}

// stringOptions reads each of fields as one string.
func stringOptions(fields map[string]*string) map[string]func(*caddyfile.Dispenser) error {
	opts := make(map[string]func(*caddyfile.Dispenser) error, len(fields))
	for name, dst := range fields {
		opts[name] = func(d *caddyfile.Dispenser) error { return cfgargs.One(d, dst) }
	}
	return opts
}

// unmarshalOptions reads the options of a block, each at most once; an
// unknown one is an error that suggests the nearest known one.
func unmarshalOptions(d *caddyfile.Dispenser, block string, opts map[string]func(*caddyfile.Dispenser) error, hints map[string]string) error {
	known := slices.Sorted(maps.Keys(opts))
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		parse, ok := opts[name]
		if !ok {
			return cfgargs.Unknown(d, block+" subdirective", name, known, hints)
		}
		if seen[name] {
			return d.Errf("%s %s given more than once", block, name)
		}
		seen[name] = true
		if err := parse(d); err != nil {
			return err
		}
	}
	return nil
}

// Interface guards.
var _ caddyfile.Unmarshaler = (*PayProxy)(nil)
