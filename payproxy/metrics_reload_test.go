package payproxy_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/testcaddy"
)

// The tollgate_payproxy_* counters are registered once per process and
// keep counting across reloads: a reload with a changed config, then
// `reload --force` of the same config (which gives Caddy a new registry
// too). Before, each config's registry got new counters: they started
// from zero at every reload.
func TestPayproxyCountersKeepCountingAcrossReloads(t *testing.T) {
	e := newEnv(t)
	p := testcaddy.StartProcess(t, "", e.caddyfile(e.port))
	if err := testcaddy.WaitListening(strings.TrimPrefix(e.base, "http://"), 30e9); err != nil {
		t.Fatal(err)
	}
	const series = `tollgate_payproxy_notifications_total{channel="alipay",result="invalid_signature"}`
	forge := func() {
		t.Helper()
		resp, err := http.Post(e.base+"/pay/notify/alipay", "application/x-www-form-urlencoded",
			strings.NewReader("out_trade_no=X1&trade_status=TRADE_SUCCESS&sign=forged&sign_type=RSA2"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Fatalf("a forged notification was answered %d", resp.StatusCode)
		}
	}
	expect := func(phase string, want float64) {
		t.Helper()
		if got := metric(t, p.AdminURL(), series); got != want {
			t.Errorf("%s: %s = %v, want %v", phase, series, got, want)
		}
	}
	forge()
	expect("before any reload", 1)
	e.options["poll_interval"] = "300ms"
	p.Reload(e.caddyfile(e.port))
	http.DefaultClient.CloseIdleConnections()
	testcaddy.Settle(t, e.base)
	expect("right after a reload", 1)
	forge()
	expect("after a reload", 2)
	p.Reload(e.caddyfile(e.port), "--force")
	http.DefaultClient.CloseIdleConnections()
	testcaddy.Settle(t, e.base)
	expect("right after reload --force", 2)
	forge()
	expect("after reload --force", 3)
}
