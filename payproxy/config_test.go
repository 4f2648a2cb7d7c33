package payproxy_test

import (
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/paysim"
	"github.com/tollgate/tollgate/internal/testcaddy"
	"github.com/tollgate/tollgate/internal/testredis"
	"github.com/tollgate/tollgate/payproxy"
)

// realKeys are the providers' key files as paysim makes them.
func realKeys(t *testing.T) paysim.Keys {
	t.Helper()
	sim, err := paysim.New(paysim.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	return sim.Keys()
}

// alipayBlock is an alipay block with the given key paths.
func alipayBlock(priv, pub string) string {
	return "alipay {\n app_id 2021000000000001\n private_key " + priv + "\n alipay_public_key " + pub + "\n}\n"
}

// wechatBlock is a wechat block with the given key paths and APIv3 key.
func wechatBlock(priv, pub, apiv3 string) string {
	return "wechat {\n mch_id 1900000001\n app_id wx1\n serial_no S1\n private_key " + priv + "\n apiv3_key " + apiv3 +
		"\n platform_public_key " + pub + "\n platform_public_key_id PUB_KEY_ID_1\n}\n"
}

// validatePayproxy adapts one payproxy block and validates the config
// (every module provisioned, then validated: `caddy validate`).
func validatePayproxy(t *testing.T, body string) error {
	t.Helper()
	return testcaddy.ValidateCaddyfile(t, "http://127.0.0.1:"+strconv.Itoa(testcaddy.FreePort(t))+" {\n payproxy {\n"+body+"\n }\n}\n")
}

// Ops adapt and lint Caddyfiles on machines that hold no provider key.
// payproxy's parser stat'ed every key file, so `adapt` failed on a laptop
// or in CI; now it only records, and the config load (Provision) names
// the missing file with its directive.
func TestPayproxyAdaptsWithoutItsKeyFilesAndTheLoadNamesTheMissingOne(t *testing.T) {
	k := realKeys(t)
	missing := filepath.Join(t.TempDir(), "absent.pem")
	for _, c := range []struct{ name, block, want string }{
		{"alipay private_key", alipayBlock(missing, k.AlipayPublicKeyFile), "alipay private_key " + missing + ": cannot read the file: no such file or directory"},
		{"alipay alipay_public_key", alipayBlock(k.AlipayPrivateKeyFile, missing), "alipay alipay_public_key " + missing + ": cannot read the file: no such file or directory"},
		{"wechat private_key", wechatBlock(missing, k.WechatPlatformPublicKeyFile, k.WechatAPIv3Key), "wechat private_key " + missing + ": cannot read the file: no such file or directory"},
		{"wechat platform_public_key", wechatBlock(k.WechatPrivateKeyFile, missing, k.WechatAPIv3Key), "wechat platform_public_key " + missing + ": cannot read the file: no such file or directory"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cf := "http://127.0.0.1:1 {\n payproxy {\n redis redis://127.0.0.1:1/0\n" + c.block + " }\n}\n"
			if _, _, err := testcaddy.Adapt(cf); err != nil {
				t.Fatalf("adapt without the file: %v", err)
			}
			err := validatePayproxy(t, "redis redis://127.0.0.1:1/0\n"+c.block)
			if err == nil || !strings.Contains(err.Error(), "http.handlers.payproxy: "+c.want) {
				t.Fatalf("validate: %v\nwant %q", err, c.want)
			}
		})
	}
}

// Caddy provisions a module before it validates it. payproxy acquired
// Redis (and started its poller and webhook sender) in Provision, so a
// config Validate then refused had dialed Redis already; now Provision
// runs Validate, and resolves every secret, before it takes anything.
func TestAConfigValidateRefusesNeverConnectsToRedis(t *testing.T) {
	k := realKeys(t)
	srv := testredis.Start(t)
	ok := alipayBlock(k.AlipayPrivateKeyFile, k.AlipayPublicKeyFile)
	for name, c := range map[string]struct{ body, want string }{
		"unknown operation":        {"operations create pay", `operations pay: unknown operation`},
		"short secret":             {"webhook http://127.0.0.1:1/h {\n secret short-secret\n }", "webhook secret: 12 bytes; at least 32"},
		"negative duration":        {"pay_timeout -1s", "pay_timeout -1s: must be positive"},
		"pay_timeout over 15 days": {"pay_timeout 361h", "pay_timeout 361h0m0s: must be at most 360h0m0s (Alipay's longest timeout_express)"},
	} {
		t.Run(name, func(t *testing.T) {
			before := srv.ConnectionsReceived(t)
			err := validatePayproxy(t, "redis "+srv.URL()+"\n"+ok+c.body)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("validate: %v, want %q", err, c.want)
			}
			if n := srv.ConnectionsReceived(t) - before; n != 0 {
				t.Fatalf("the refused config opened %d connections to Redis", n)
			}
		})
	}
}

// Every rule on payproxy's values is checked once, in Validate (or where
// Provision resolves a value that may hold a placeholder), so a JSON
// config, which never meets the Caddyfile parser, is refused with the same
// message as the Caddyfile.
func TestEveryRuleRefusesTheCaddyfileAndTheJSONConfigAlike(t *testing.T) {
	k := realKeys(t)
	al := alipayBlock(k.AlipayPrivateKeyFile, k.AlipayPublicKeyFile)
	alJSON := `"alipay":{"app_id":"1","private_key":"` + k.AlipayPrivateKeyFile + `","alipay_public_key":"` + k.AlipayPublicKeyFile + `"}`
	base, baseJSON := "redis redis://127.0.0.1:1/0\n"+al, `"redis":"redis://127.0.0.1:1/0",`+alJSON
	for name, tc := range map[string]struct{ caddyfile, json, msg string }{
		"NoRedis":              {al, alJSON, "redis <url> is required"},
		"NoChannel":            {"redis redis://127.0.0.1:1/0", `"redis":"redis://127.0.0.1:1/0"`, "configure at least one channel (alipay or wechat)"},
		"BadRedisURL":          {"redis mysql://x\n" + al, `"redis":"mysql://x",` + alJSON, "redis: redis URL"},
		"AlipayNoAppID":        {"redis redis://127.0.0.1:1/0\nalipay {\n private_key /k\n alipay_public_key /p\n}", `"redis":"redis://127.0.0.1:1/0","alipay":{"private_key":"/k","alipay_public_key":"/p"}`, "alipay: app_id, private_key and alipay_public_key are required"},
		"WechatNoSerial":       {"redis redis://127.0.0.1:1/0\nwechat {\n mch_id 1\n app_id a\n private_key /k\n apiv3_key x\n platform_public_key /p\n platform_public_key_id P\n}", `"redis":"redis://127.0.0.1:1/0","wechat":{"mch_id":"1","app_id":"a","private_key":"/k","apiv3_key":"x","platform_public_key":"/p","platform_public_key_id":"P"}`, "wechat: mch_id, app_id, serial_no, private_key, apiv3_key, platform_public_key and platform_public_key_id are required"},
		"ShortAPIv3Key":        {"redis redis://127.0.0.1:1/0\n" + wechatBlock(k.WechatPrivateKeyFile, k.WechatPlatformPublicKeyFile, "0123456789abcdef"), `"redis":"redis://127.0.0.1:1/0","wechat":{"mch_id":"1","app_id":"a","serial_no":"s","private_key":"` + k.WechatPrivateKeyFile + `","apiv3_key":"0123456789abcdef","platform_public_key":"` + k.WechatPlatformPublicKeyFile + `","platform_public_key_id":"P"}`, "wechat apiv3_key: 16 bytes; it must be exactly 32"},
		"WebhookNoSecret":      {base + "webhook http://b/h", baseJSON + `,"webhook":{"url":"http://b/h"}`, "webhook: url and secret are required"},
		"ShortSecret":          {base + "webhook http://b/h {\n secret 0123456789\n}", baseJSON + `,"webhook":{"url":"http://b/h","secret":"0123456789"}`, "webhook secret: 10 bytes; at least 32"},
		"OrderSourceNoOrderNo": {base + "order_source http://orders/x", baseJSON + `,"order_source":"http://orders/x"`, `order_source http://orders/x: must contain {order_no}`},
		"TwoLockServers": {base + "lock_redis redis://a:1 redis://b:1", baseJSON + `,"lock_redis":["redis://a:1","redis://b:1"]`,
			"lock_redis needs 3 or more independent servers (3, 5, …), got 2: the lock needs a majority, and with 2 servers one failure leaves none"},
		"SameLockServerTwice": {base + "lock_redis redis://a:1 redis://b:1 redis://a:1", baseJSON + `,"lock_redis":["redis://a:1","redis://b:1","redis://a:1"]`, `lock_redis lists redis://a:1 twice: each server must be a separate one`},
		"BadLockServerURL":    {base + "lock_redis redis://a:1 redis://b:1 mysql://c", baseJSON + `,"lock_redis":["redis://a:1","redis://b:1","mysql://c"]`, "lock_redis: redis URL"},
		"UnknownOperation":    {base + "operations create pay", baseJSON + `,"operations":["create","pay"]`, `operations pay: unknown operation (create status close refund notify)`},
		"BadClaimName":        {base + "order_claims ro:les", baseJSON + `,"order_claims":["ro:les"]`, `order_claims ro:les: not a claim name (letters, digits, _ and -)`},
		"BadDuplicateRefund":  {base + "duplicate_refund sometimes", baseJSON + `,"duplicate_refund":"sometimes"`, `duplicate_refund sometimes: must be auto or off`},
		"NegativeDuration":    {base + "poll_interval -1s", baseJSON + `,"poll_interval":-1000000000`, "poll_interval -1s: must be positive"},
		"NegativeRefundGap": {"redis redis://127.0.0.1:1/0\nalipay {\n app_id 1\n private_key " + k.AlipayPrivateKeyFile + "\n alipay_public_key " + k.AlipayPublicKeyFile + "\n refund_gap -3s\n}",
			`"redis":"redis://127.0.0.1:1/0","alipay":{"app_id":"1","private_key":"` + k.AlipayPrivateKeyFile + `","alipay_public_key":"` + k.AlipayPublicKeyFile + `","refund_gap":-3000000000}`,
			"alipay refund_gap -3s: must be positive"},
		"NegativeRefundCheck":         {base + "refund_checks 10s -1m", baseJSON + `,"refund_checks":[10000000000,-60000000000]`, "refund_checks: -1m0s is not a positive duration"},
		"QRLifetimeOverTheScanWindow": {base + "qr_lifetime 3h", baseJSON + `,"qr_lifetime":10800000000000`, "qr_lifetime 3h0m0s: must be positive and at most the providers' 2h0m0s scan window"},
		"NegativeBackoff":             {base + "webhook http://b/h {\n secret " + strings.Repeat("s", 32) + "\n backoff -2s\n}", baseJSON + `,"webhook":{"url":"http://b/h","secret":"` + strings.Repeat("s", 32) + `","backoff":-2000000000}`, "webhook backoff -2s: must be positive"},
		"NegativeAttempts":            {base + "webhook http://b/h {\n secret " + strings.Repeat("s", 32) + "\n max_attempts -3\n}", baseJSON + `,"webhook":{"url":"http://b/h","secret":"` + strings.Repeat("s", 32) + `","max_attempts":-3}`, "webhook max_attempts -3: must be positive"},
		"RetentionUnderReconcileDays": {base + "retention 48h\nreconcile {\n days 3\n}", baseJSON + `,"retention":172800000000000,"reconcile":{"days":3}`, "retention 48h0m0s: must be at least 120h0m0s with reconcile days 3"},
		"NegativeRetention":           {base + "retention -1h", baseJSON + `,"retention":-3600000000000`, "retention -1h0m0s: must be positive"},
		"ReconcileDays":               {base + "reconcile {\n days 91\n}", baseJSON + `,"reconcile":{"days":91}`, "reconcile days 91: must be 1 to 90"},
		"ReconcileZone":               {base + "reconcile {\n timezone Mars/Olympus\n}", baseJSON + `,"reconcile":{"timezone":"Mars/Olympus"}`, `reconcile timezone Mars/Olympus: unknown time zone (an IANA name such as Asia/Shanghai)`},
	} {
		t.Run(name, func(t *testing.T) {
			errs := map[string]error{"Caddyfile": validatePayproxy(t, tc.caddyfile), "JSON": testcaddy.ValidateHandler(t, "payproxy", tc.json)}
			for form, err := range errs {
				if err == nil || !strings.Contains(err.Error(), "http.handlers.payproxy: "+tc.msg) &&
					!strings.Contains(err.Error(), "http.handlers.payproxy: invalid configuration: "+tc.msg) {
					t.Errorf("%s: validate: %v, want %q right after the module's name", form, err, tc.msg)
				}
			}
		})
	}
}

// A webhook secret signs every event the backend trusts: one shorter than
// 32 bytes (HMAC-SHA256's key size, as authjwt's hmac_secret) is refused
// when the config loads, also when it comes from a placeholder.
func TestAShortWebhookSecretIsRefusedAtLoadAlsoFromAPlaceholder(t *testing.T) {
	k := realKeys(t)
	al := alipayBlock(k.AlipayPrivateKeyFile, k.AlipayPublicKeyFile)
	const short = "a-31-byte-webhook-secret-abcdef"
	testcaddy.EachPlaceholderForm(t, "short", short, func(t *testing.T, ph string) {
		err := validatePayproxy(t, "redis redis://127.0.0.1:1/0\n"+al+"webhook http://b/h {\n secret "+ph+"\n}")
		if err == nil || !strings.Contains(err.Error(), "webhook secret: 31 bytes; at least 32") || strings.Contains(err.Error(), short) {
			t.Fatalf("validate: %v", err)
		}
	})
	testcaddy.EachPlaceholderForm(t, "long enough", short+"g", func(t *testing.T, ph string) {
		if err := validatePayproxy(t, "redis redis://127.0.0.1:1/0\n"+al+"webhook http://b/h {\n secret "+ph+"\n}"); err != nil {
			t.Fatalf("validate: %v", err)
		}
	})
}

// A misspelt subdirective gets the nearest known one, in every block of
// payproxy, as authjwt and jwt_refresh do.
func TestAnUnknownSubdirectiveSuggestsTheNearest(t *testing.T) {
	for body, want := range map[string]string{
		"redis redis://x:1\n pay_timout 1m":                               `unrecognized payproxy subdirective "pay_timout" — did you mean pay_timeout?, at Caddyfile:4`,
		"lock_redis redis://a:1 redis://b:1 redis://c:1 {\n pasword x\n}": `unrecognized lock_redis option "pasword" — did you mean password?`,
		"redis redis://x:1 {\n passwd x\n}":                               `unrecognized redis option "passwd"`,
		"alipay {\n app_id 1\n privat_key x\n}":                           `unrecognized alipay subdirective "privat_key" — did you mean private_key?`,
		"wechat {\n apiv3key x\n}":                                        `unrecognized wechat subdirective "apiv3key" — did you mean apiv3_key?`,
		"webhook http://b {\n secrets x\n}":                               `unrecognized webhook subdirective "secrets" — did you mean secret?`,
		"reconcile {\n day 3\n}":                                          `unrecognized reconcile subdirective "day" — did you mean days?`,
		"colour blue":                                                     `unrecognized payproxy subdirective "colour", at Caddyfile:3`,
	} {
		_, _, err := testcaddy.Adapt(":8080 {\n payproxy {\n " + body + "\n }\n}")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", body, err, want)
		}
	}
}

// payproxy's JSON names are the snake_case of its Go fields, as Caddy's
// modules do, and configs adapted by earlier releases still load to the
// same handler.
func TestJSONNamesFollowCaddyAndOldConfigsLoad(t *testing.T) {
	testcaddy.CheckJSONNames(t, payproxy.PayProxy{})
	testcaddy.CheckOldConfigsLoad(t, "testdata/compat", "http.handlers.payproxy")
}

// payproxy's 503 redis_unavailable tells clients when to retry, as
// jwt_refresh's temporarily_unavailable does.
func TestRedisUnavailableAnswerCarriesRetryAfter(t *testing.T) {
	e := newEnv(t)
	e.start()
	e.redis.Stop()
	r := e.create("RETRYAFTER0001", "alipay", 100)
	wantStatus(t, r, http.StatusServiceUnavailable, "redis_unavailable")
	if r.Header.Get("Retry-After") == "" {
		t.Fatalf("503 redis_unavailable without Retry-After: %v", r.Header)
	}
}
