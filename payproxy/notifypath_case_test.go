package payproxy_test

import (
	"net/http"
	"strings"
	"testing"
)

// Review (hostile): authjwt's allow is Caddy's path matcher, which
// lowercases the request path (and merges doubled slashes) before it
// compares; payproxy's guard under {prefix}/notify/ (5e18d7d) compares
// r.URL.Path byte for byte. With caddyfile.example's exact allow list
// (/pay/notify/alipay /pay/notify/wechat), a path that differs only in
// case or in a doubled slash passes authjwt without a token and is no
// payproxy path, so it goes on to the backend: the hole 5e18d7d closed,
// open again one letter's case away (backends on case-insensitive routing
// or that merge slashes serve it as their own /pay/notify/...).
func TestAnAnonymousRequestWithTheNotifyPathInAnotherCaseNeverReachesTheBackend(t *testing.T) {
	e := newEnv(t)
	e.options["poll_interval"] = "1h"
	e.options["operations"] = "create status notify"
	e.site = strings.Replace(courierSite("X-User-Id"), "allow /pay/notify/*", "allow /pay/notify/alipay /pay/notify/wechat", 1)
	e.start()
	if r := do(t, "GET", e.base+"/courier/orders", nil); r.Status != http.StatusUnauthorized {
		t.Fatalf("the backend without a token: %d %s, want 401 (authjwt in front)", r.Status, r.Raw)
	}
	for _, path := range []string{
		"/PAY/NOTIFY/ALIPAY",
		"/pay/Notify/wechat",
		"/Pay/notify/alipay",
		"//pay/notify/alipay",
		"/pay//notify/wechat",
	} {
		for _, method := range []string{"GET", "POST"} {
			r := do(t, method, e.base+path, nil)
			if string(r.Raw) == "upstream" {
				t.Errorf("%s %s without a token reached the backend (%d %s)", method, path, r.Status, r.Raw)
			}
		}
	}
}
