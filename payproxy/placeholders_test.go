package payproxy

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/paysim"
	"github.com/tollgate/tollgate/internal/paysim/paysimtest"
	"github.com/tollgate/tollgate/internal/testcaddy"
	"github.com/tollgate/tollgate/internal/testredis"
)

// provisionedBlock adapts a payproxy block, checks that adapt kept
// placeholder as written, and provisions the handler as a config load
// does.
func provisionedBlock(t *testing.T, block, placeholder string) *PayProxy {
	t.Helper()
	adapted, _, err := testcaddy.Adapt("http://127.0.0.1:1 {\n\tpayproxy {\n" + block + "\n\t}\n}\n")
	if err != nil {
		t.Fatalf("adapt: %v", err)
	}
	if !strings.Contains(string(adapted), placeholder) {
		t.Fatalf("adapt did not keep %s as written: %s", placeholder, adapted)
	}
	hs := testcaddy.Handlers(t, adapted, "payproxy")
	if len(hs) != 1 {
		t.Fatalf("%d payproxy handlers in %s", len(hs), adapted)
	}
	raw, _ := json.Marshal(hs[0])
	var p PayProxy
	if err := json.Unmarshal(raw, &p); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	t.Cleanup(func() { _ = p.Cleanup() })
	if err := p.Provision(ctx); err != nil {
		t.Fatalf("provision: %v", err)
	}
	if err := p.Validate(); err != nil {
		t.Fatalf("validate: %v", err)
	}
	return &p
}

// Every payproxy value that is a Redis URL or password, a key path, a
// secret or a URL that may carry credentials takes {env.*} and {file.*}:
// kept as written by adapt, resolved when the config is provisioned, and
// what it resolves to is what is used (that Redis answers with that
// password, that key file is read, that secret signs, that gateway is
// called).
func TestEverySecretPathAndURLTakesEnvAndFilePlaceholders(t *testing.T) {
	sim, simURL := paysimtest.Start(t, paysim.Config{})
	k := sim.Keys()
	const password = "redis-password-7f3e"
	rds := testredis.StartWithPassword(t, password)
	var locks []*testredis.Server
	for range 3 {
		locks = append(locks, testredis.StartWithPassword(t, password))
	}
	withPw := func(s *testredis.Server) string { return "redis://:" + password + "@" + s.Addr() + "/0" }
	lockURLs := func(first string) string {
		return first + " " + withPw(locks[1]) + " " + withPw(locks[2])
	}
	secret := strings.Repeat("w", 40)
	block := map[string]string{
		"redis":     "redis " + withPw(rds),
		"alipay":    fmt.Sprintf("alipay {\napp_id %s\nprivate_key %s\nalipay_public_key %s\ngateway %s\n}", k.AlipayAppID, k.AlipayPrivateKeyFile, k.AlipayPublicKeyFile, simURL+"/gateway.do"),
		"wechat":    fmt.Sprintf("wechat {\nmch_id %s\napp_id %s\nserial_no %s\nprivate_key %s\napiv3_key %s\nplatform_public_key %s\nplatform_public_key_id %s\nbase_url %s\n}", k.WechatMchID, k.WechatAppID, k.WechatSerialNo, k.WechatPrivateKeyFile, k.WechatAPIv3Key, k.WechatPlatformPublicKeyFile, k.WechatPlatformPublicKeyID, simURL),
		"webhook":   "webhook http://hooks.internal/tollgate {\nsecret " + secret + "\n}",
		"order_src": "order_source http://orders.internal/orders/{order_no}",
	}
	// with is the whole block with one setting's line(s) replaced.
	with := func(part, old, new string) string {
		var b strings.Builder
		for _, name := range []string{"redis", "alipay", "wechat", "webhook", "order_src"} {
			v := block[name]
			if name == part {
				if !strings.Contains(v, old) {
					t.Fatalf("%s has no %q", part, old)
				}
				v = strings.Replace(v, old, new, 1)
			}
			b.WriteString(v + "\n")
		}
		return b.String()
	}
	answers := func(t *testing.T, c redis.UniversalClient, what string) {
		t.Helper()
		if err := c.Ping(t.Context()).Err(); err != nil {
			t.Errorf("%s: %v", what, err)
		}
	}
	redisAnswers := func(t *testing.T, p *PayProxy) { answers(t, p.rdb, "redis") }
	locksAnswer := func(t *testing.T, p *PayProxy) {
		if len(p.lockClients) != 3 {
			t.Fatalf("%d lock servers", len(p.lockClients))
		}
		for i, c := range p.lockClients {
			answers(t, c, fmt.Sprintf("lock server %d", i))
		}
	}
	queryOp := map[string]string{"alipay": "alipay.trade.query", "wechat": "wechat.query"}
	called := func(channel string) func(*testing.T, *PayProxy) {
		return func(t *testing.T, p *PayProxy) {
			before := sim.Calls()[queryOp[channel]]
			_, _ = p.providers[channel].Query(t.Context(), "PLACEHOLDER0001")
			if sim.Calls()[queryOp[channel]] == before {
				t.Errorf("the %s adapter did not call the resolved URL", channel)
			}
		}
	}
	cases := []struct {
		name, value, block string
		check              func(*testing.T, *PayProxy)
	}{
		{"redis URL", withPw(rds), with("redis", withPw(rds), "%s"), redisAnswers},
		{"redis password", password, with("redis", withPw(rds), "redis://"+rds.Addr()+"/0 {\npassword %s\n}"), redisAnswers},
		{"lock_redis URL", withPw(locks[0]), with("redis", "", "lock_redis "+lockURLs("%s")+"\n"), locksAnswer},
		{"lock_redis password", password, with("redis", "", fmt.Sprintf("lock_redis redis://%s/0 redis://%s/0 redis://%s/0 {\npassword %%s\n}\n",
			locks[0].Addr(), locks[1].Addr(), locks[2].Addr())), locksAnswer},
		{"alipay private_key path", k.AlipayPrivateKeyFile, with("alipay", k.AlipayPrivateKeyFile, "%s"), called("alipay")},
		{"alipay alipay_public_key path", k.AlipayPublicKeyFile, with("alipay", k.AlipayPublicKeyFile, "%s"), called("alipay")},
		{"alipay gateway", simURL + "/gateway.do", with("alipay", simURL+"/gateway.do", "%s"), called("alipay")},
		{"wechat private_key path", k.WechatPrivateKeyFile, with("wechat", k.WechatPrivateKeyFile, "%s"), called("wechat")},
		{"wechat platform_public_key path", k.WechatPlatformPublicKeyFile, with("wechat", k.WechatPlatformPublicKeyFile, "%s"), called("wechat")},
		{"wechat apiv3_key", k.WechatAPIv3Key, with("wechat", k.WechatAPIv3Key, "%s"), called("wechat")},
		{"wechat base_url", simURL, with("wechat", "base_url "+simURL, "base_url %s"), called("wechat")},
		{"webhook secret", secret, with("webhook", secret, "%s"), func(t *testing.T, p *PayProxy) {
			if p.webhookSecret != secret {
				t.Errorf("the webhook secret is not the placeholder's value")
			}
		}},
		{"webhook URL", "http://u:pw@hooks.internal/tollgate", with("webhook", "http://hooks.internal/tollgate", "%s"), func(t *testing.T, p *PayProxy) {
			if p.webhookURL != "http://u:pw@hooks.internal/tollgate" {
				t.Errorf("webhook URL %q", p.webhookURL)
			}
		}},
		{"order_source", "http://u:pw@orders.internal/orders/{order_no}", with("order_src", "http://orders.internal/orders/{order_no}", "%s"), func(t *testing.T, p *PayProxy) {
			if p.orderSource != "http://u:pw@orders.internal/orders/{order_no}" {
				t.Errorf("order_source %q", p.orderSource)
			}
		}},
	}
	for _, c := range cases {
		testcaddy.EachPlaceholderForm(t, c.name, c.value, func(t *testing.T, ph string) {
			c.check(t, provisionedBlock(t, strings.Replace(c.block, "%s", ph, 1), ph))
		})
	}
}
