package payproxy_test

import (
	"net/http"
	"testing"
)

// Review (hostile): caddyfile.example puts `allow ... /pay/notify/*` in
// authjwt (notifications carry no token) and `reverse_proxy {$BACKEND}`
// after payproxy. payproxy hands every path under its prefix that is no
// endpoint to the next handler, so an anonymous client reaches the backend
// through the token-free notify whitelist: /pay/notify/alipay/x, a
// trailing slash, an encoded slash. Whatever the backend serves there (the
// Java payment service's own notify handler that tollgate replaced, a
// catch-all, a framework that strips the trailing slash) is served without
// a token. Under the notify path, payproxy must answer itself (404).
func TestAnAnonymousRequestUnderTheTokenFreeNotifyPathNeverReachesTheBackend(t *testing.T) {
	e := newEnv(t)
	e.options["poll_interval"] = "1h"
	e.options["operations"] = "create status notify"
	e.site = courierSite("X-User-Id")
	e.start()
	if r := do(t, "GET", e.base+"/courier/orders", nil); r.Status != http.StatusUnauthorized {
		t.Fatalf("the backend without a token: %d %s, want 401 (authjwt in front)", r.Status, r.Raw)
	}
	for _, path := range []string{
		"/pay/notify/alipay/x",
		"/pay/notify/wechat/",
		"/pay/notify/alipay%2Fcourier%2Forders",
		"/pay/notify/x/y/z",
	} {
		for _, method := range []string{"GET", "POST"} {
			r := do(t, method, e.base+path, nil)
			if string(r.Raw) == "upstream" {
				t.Errorf("%s %s without a token reached the backend (%d %s)", method, path, r.Status, r.Raw)
			}
		}
	}
}
