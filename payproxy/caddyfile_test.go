package payproxy_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/tollgate/tollgate/internal/testcaddy"
	"github.com/tollgate/tollgate/payproxy"
)

func keyFiles(t *testing.T) (string, string) {
	dir := t.TempDir()
	priv, pub := filepath.Join(dir, "priv.pem"), filepath.Join(dir, "pub.pem")
	for _, p := range []string{priv, pub} {
		if err := os.WriteFile(p, []byte("-----BEGIN X-----\n-----END X-----\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return priv, pub
}

// handlerOf adapts a Caddyfile and returns the payproxy handler's JSON.
func handlerOf(t *testing.T, cf string) map[string]any {
	t.Helper()
	out, _, err := testcaddy.Adapt(cf)
	if err != nil {
		t.Fatal(err)
	}
	hs := testcaddy.Handlers(t, out, "payproxy")
	if len(hs) == 0 {
		t.Fatalf("no payproxy handler in %s", out)
	}
	return hs[0]
}

// TestCaddyfileAdaptsEverySubdirective and the JSON decodes back into the
// same configuration (the Caddyfile → JSON round trip).
func TestCaddyfileAdaptsEverySubdirective(t *testing.T) {
	priv, pub := keyFiles(t)
	cf := `:8080 {
	payproxy {
		redis redis://127.0.0.1:6379/0
		lock_redis redis://10.0.0.1:6379/0 redis://10.0.0.2:6379/0 redis://10.0.0.3:6379/0
		prefix /payments
		alipay {
			app_id 2021000000000001
			private_key ` + priv + `
			alipay_public_key ` + pub + `
			gateway http://sim/gateway.do
			notify_url https://edge/payments/notify/alipay
			refund_gap 5s
		}
		wechat {
			mch_id 1900000001
			app_id wx0000000000000001
			serial_no 5157F09EFDC096DE15EBE81A47057A72
			private_key ` + priv + `
			apiv3_key {env.APIV3}
			platform_public_key ` + pub + `
			platform_public_key_id PUB_KEY_ID_0001
			base_url http://sim
			notify_url https://edge/payments/notify/wechat
		}
		operations status close refund
		order_source http://orders.internal/orders/{order_no}
		order_claims roles tenant
		provider_timeout 3s
		lock_ttl 4s
		poll_interval 2s
		pay_timeout 30m
		qr_lifetime 1h
		refund_checks 15s 2m 10m
		duplicate_refund off
		webhook http://backend/hooks {
			secret {env.WEBHOOK_SECRET}
			max_attempts 7
			backoff 2s
			max_backoff 1m
		}
	}
}`
	h := handlerOf(t, cf)
	raw, _ := json.Marshal(h)
	var got payproxy.PayProxy
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	want := payproxy.PayProxy{
		Redis:     "redis://127.0.0.1:6379/0",
		LockRedis: []string{"redis://10.0.0.1:6379/0", "redis://10.0.0.2:6379/0", "redis://10.0.0.3:6379/0"},
		Prefix:    "/payments",
		Alipay: &payproxy.AlipayConfig{AppID: "2021000000000001", PrivateKey: priv, AlipayPublicKey: pub,
			Gateway: "http://sim/gateway.do", NotifyURL: "https://edge/payments/notify/alipay", RefundGap: caddy.Duration(5 * time.Second)},
		Wechat: &payproxy.WechatConfig{MchID: "1900000001", AppID: "wx0000000000000001", SerialNo: "5157F09EFDC096DE15EBE81A47057A72",
			PrivateKey: priv, APIV3Key: "{env.APIV3}", PlatformPublicKey: pub, PlatformPublicKeyID: "PUB_KEY_ID_0001",
			BaseURL: "http://sim", NotifyURL: "https://edge/payments/notify/wechat"},
		OrderSource:     "http://orders.internal/orders/{order_no}",
		ProviderTimeout: caddy.Duration(3 * time.Second), LockTTL: caddy.Duration(4 * time.Second),
		PollInterval: caddy.Duration(2 * time.Second), PayTimeout: caddy.Duration(30 * time.Minute), QRLifetime: caddy.Duration(time.Hour),
		RefundChecks: []caddy.Duration{caddy.Duration(15 * time.Second), caddy.Duration(2 * time.Minute), caddy.Duration(10 * time.Minute)},
		Webhook: &payproxy.WebhookConfig{URL: "http://backend/hooks", Secret: "{env.WEBHOOK_SECRET}", MaxAttempts: 7,
			Backoff: caddy.Duration(2 * time.Second), MaxBackoff: caddy.Duration(time.Minute)},
		DuplicateRefund: "off",
		Operations:      []string{"status", "close", "refund"},
		OrderClaims:     []string{"roles", "tenant"},
	}
	if !reflect.DeepEqual(got.Alipay, want.Alipay) || !reflect.DeepEqual(got.Wechat, want.Wechat) || !reflect.DeepEqual(got.Webhook, want.Webhook) ||
		got.Redis != want.Redis || !reflect.DeepEqual(got.LockRedis, want.LockRedis) || got.Prefix != want.Prefix || got.OrderSource != want.OrderSource ||
		got.ProviderTimeout != want.ProviderTimeout || got.LockTTL != want.LockTTL || got.PollInterval != want.PollInterval || got.PayTimeout != want.PayTimeout ||
		got.QRLifetime != want.QRLifetime ||
		got.DuplicateRefund != want.DuplicateRefund || !reflect.DeepEqual(got.Operations, want.Operations) ||
		!reflect.DeepEqual(got.RefundChecks, want.RefundChecks) ||
		!reflect.DeepEqual(got.OrderClaims, want.OrderClaims) {
		t.Fatalf("adapted:\n%s", raw)
	}
}

// Syntax errors are the parser's, with their line; every rule on the
// values is Validate's (TestEveryRuleRefusesTheCaddyfileAndTheJSONConfigAlike).
func TestCaddyfileErrorsNameTheLine(t *testing.T) {
	cases := map[string]struct{ body, want string }{
		"UnknownSubdirective": {"redis redis://x:1\n colour blue", `unrecognized payproxy subdirective "colour", at Caddyfile:4`},
		"UnknownAlipayOption": {"alipay {\n app_id 1\n pem x\n}", `unrecognized alipay subdirective "pem", at Caddyfile:5`},
		"MissingArgument":     {"lock_ttl", "wrong argument count or unexpected line ending after 'lock_ttl', at Caddyfile:3"},
		"BadDuration":         {"poll_interval soon", `poll_interval: time: invalid duration "soon", at Caddyfile:3`},
		"ZeroDuration":        {"lock_ttl 0s", "lock_ttl 0s: zero cannot be told from unset in the JSON config; leave lock_ttl out for its default, at Caddyfile:3"},
		"BadMaxAttempts":      {"webhook http://b {\n secret s\n max_attempts many\n}", `max_attempts: strconv.Atoi: parsing "many": invalid syntax, at Caddyfile:5`},
		"WebhookWithoutURL":   {"webhook", "wrong argument count or unexpected line ending after 'webhook', at Caddyfile:3"},
		"LockRedisTwice": {"lock_redis redis://a:1 redis://b:1 redis://c:1\n lock_redis redis://d:1",
			"lock_redis given more than once: list every lock server on one line, at Caddyfile:4"},
		"RedisTwice":        {"redis redis://a:1\n redis redis://b:1", "redis given more than once, at Caddyfile:4"},
		"AlipayOptionTwice": {"alipay {\n app_id 1\n app_id 2\n}", "alipay app_id given more than once, at Caddyfile:5"},
		"BadRefundCheck":    {"refund_checks 10s later", `refund_checks: time: invalid duration "later", at Caddyfile:3`},
		"NoRefundChecks":    {"refund_checks", "wrong argument count or unexpected line ending after 'refund_checks'"},
		"ZeroQRLifetime":    {"qr_lifetime 0s", "qr_lifetime 0s: zero cannot be told from unset"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, _, err := testcaddy.Adapt(":8080 {\n payproxy {\n " + c.body + "\n }\n}")
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want it to contain %q", err, c.want)
			}
		})
	}
}

// TestProvisionFailsOnWrongLengthKeyFromPlaceholder: {env.X} secrets are
// checked when the config loads.
func TestProvisionFailsOnWrongLengthKeyFromPlaceholder(t *testing.T) {
	e := newEnv(t)
	t.Setenv("PAYPROXY_TEST_APIV3", "too-short")
	cf := strings.Replace(e.caddyfile(e.port), e.sim.Keys().WechatAPIv3Key, "{env.PAYPROXY_TEST_APIV3}", 1)
	cfg, _, err := testcaddy.Adapt(testcaddy.Global(testcaddy.FreePort(t), "") + cf)
	if err != nil {
		t.Fatal(err)
	}
	var c caddy.Config
	if err := json.Unmarshal(cfg, &c); err != nil {
		t.Fatal(err)
	}
	err = caddy.Validate(&c)
	if err == nil || !strings.Contains(err.Error(), "wechat apiv3_key: 9 bytes; it must be exactly 32") {
		t.Fatalf("validate: %v", err)
	}
}

// TestEmptyPlaceholderIsNamedInTheLoadError: the case — `validate`
// in a shell that had WECHAT_APIV3_KEY said valid, the server lacked it,
// and the reload said only "apiv3_key must be exactly 32 bytes, got 0".
// The error names the placeholder and where it must be set.
func TestEmptyPlaceholderIsNamedInTheLoadError(t *testing.T) {
	e := newEnv(t)
	t.Setenv("PAYPROXY_TEST_UNSET_APIV3", "")
	cf := strings.Replace(e.caddyfile(e.port), e.sim.Keys().WechatAPIv3Key, "{env.PAYPROXY_TEST_UNSET_APIV3}", 1)
	cfg, _, err := testcaddy.Adapt(testcaddy.Global(testcaddy.FreePort(t), "") + cf)
	if err != nil {
		t.Fatal(err)
	}
	err = testcaddy.Validate(t, cfg)
	if want := "wechat apiv3_key: {env.PAYPROXY_TEST_UNSET_APIV3} is empty or unset"; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("validate: %v, want %q", err, want)
	}
}

// TestConfigLoadRefusesUnknownOperationsAndClaimNames: operations,
// order_claims, duplicate_refund and qr_lifetime values are checked when the config
// loads (also when it comes as JSON, which skips the parser).
func TestConfigLoadRefusesUnknownOperationsAndClaimNames(t *testing.T) {
	e := newEnv(t)
	delete(e.options, "operations") // each subdirective is given once
	for _, c := range []struct{ extra, want string }{
		{"operations create pay", `operations pay: unknown operation`},
		{"order_claims ro:les", `order_claims ro:les: not a claim name`},
		{"duplicate_refund sometimes", `duplicate_refund sometimes: must be auto or off`},
		{"qr_lifetime 3h", `qr_lifetime 3h0m0s: must be positive and at most the providers' 2h0m0s scan window`},
	} {
		e.extra = "\t\t" + c.extra + "\n"
		cfg, _, err := testcaddy.Adapt(testcaddy.Global(testcaddy.FreePort(t), "") + e.caddyfile(e.port))
		if err != nil {
			t.Fatal(err)
		}
		var conf caddy.Config
		if err := json.Unmarshal(cfg, &conf); err != nil {
			t.Fatal(err)
		}
		if err := caddy.Validate(&conf); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: validate %v, want %q", c.extra, err, c.want)
		}
	}
}
