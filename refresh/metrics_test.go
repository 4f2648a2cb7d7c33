package refresh

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/testcaddy"
	"github.com/tollgate/tollgate/internal/testredis"
)

func TestOutcomesAreCountedInCaddyMetrics(t *testing.T) {
	e := startEnv(t, "")
	// The counters are process-wide: other tests of this binary count too.
	before := metricsText(t, e.caddy.AdminURL())
	rt := login(t, e.base, "m").pair.RefreshToken
	refreshWith(t, e.base, rt)
	refreshWith(t, e.base, rt) // replayed inside grace
	refreshWith(t, e.base, "garbage")
	after := metricsText(t, e.caddy.AdminURL())
	for _, outcome := range []string{"login", "rotated", "replayed", "invalid"} {
		series := `tollgate_refresh_outcomes_total{outcome="` + outcome + `"}`
		if d := metricValue(after, series) - metricValue(before, series); d != 1 {
			t.Errorf("%s grew by %v, want 1", series, d)
		}
	}
}

// The tollgate_refresh_* counters are registered once per process and
// keep counting across reloads: a reload with a changed config, then
// `reload --force` of the same config (which gives Caddy a new registry
// too). Before, each config created its own counters: they started from
// zero at every reload, and after the forced one they were not exported
// at all until something counted again.
func TestRefreshCountersKeepCountingAcrossReloads(t *testing.T) {
	testKeys(t)
	rd := testredis.Start(t)
	backend := startBackend(t)
	port := testcaddy.FreePort(t)
	site := func(grace string) string {
		return siteBlock(port, rd.URL(), backend.hostPort(), "reuse_grace "+grace)
	}
	p := testcaddy.StartProcess(t, "", site("1s"))
	base := "http://127.0.0.1:" + itoa(port)
	waitServing(t, base)
	series := []string{`tollgate_refresh_outcomes_total{outcome="login"}`, `tollgate_refresh_outcomes_total{outcome="rotated"}`,
		`tollgate_refresh_outcomes_total{outcome="logout"}`, `tollgate_refresh_sessions_ended_total{cause="logout"}`}
	session := func() {
		t.Helper()
		r := refreshWith(t, base, login(t, base, "counted").pair.RefreshToken)
		expectStatus(t, r, http.StatusOK, "")
		expectStatus(t, post(t, base+"/logout", "application/x-www-form-urlencoded", "token="+r.pair.RefreshToken), http.StatusOK, "")
	}
	expect := func(phase string, want float64) {
		t.Helper()
		body := metricsText(t, p.AdminURL())
		for _, s := range series {
			if got := metricValue(body, s); got != want {
				t.Errorf("%s: %s = %v, want %v", phase, s, got, want)
			}
		}
	}
	session()
	expect("before any reload", 1)
	p.Reload(site("2s"))
	httpClient.CloseIdleConnections()
	testcaddy.Settle(t, base)
	expect("right after a reload", 1)
	session()
	expect("after a reload", 2)
	p.Reload(site("2s"), "--force")
	httpClient.CloseIdleConnections()
	testcaddy.Settle(t, base)
	expect("right after reload --force", 2)
	session()
	expect("after reload --force", 3)
}

// metricValue is the value of one series in a /metrics text, 0 when it
// is absent.
func metricValue(body, series string) float64 {
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f
		}
	}
	return 0
}

// waitServing waits until the site answers.
func waitServing(t *testing.T, base string) {
	t.Helper()
	if err := testcaddy.WaitListening(strings.TrimPrefix(base, "http://"), 30*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestReloadKeepsSessionsAndOldKeysVerify(t *testing.T) {
	e := startEnv(t, "")
	old := login(t, e.base, "rot").pair.RefreshToken
	// Put the RSA key first: it signs from now on, the ES256 key still
	// verifies. The reload must not leak or close the shared Redis client.
	k := testKeys(t)
	swapped := strings.Replace(siteBlock(e.port, e.rd.URL(), e.backend.hostPort(), ""),
		"signing_key "+k.es256+" es1\n\t\tsigning_key "+k.rsa+" rs1",
		"signing_key "+k.rsa+" rs1\n\t\tsigning_key "+k.es256+" es1", 1)
	e.caddy.Reload(swapped)
	httpClient.CloseIdleConnections() // the old server closed them
	testcaddy.Settle(t, e.base)
	r := refreshWith(t, e.base, old)
	expectStatus(t, r, http.StatusOK, "")
	if h := headerOf(t, r.pair.RefreshToken); h["kid"] != "rs1" || h["alg"] != "HS256" {
		t.Fatalf("new refresh tokens not MACed with the first key's derived key: %v", h)
	}
	if h := headerOf(t, r.pair.AccessToken); h["kid"] != "rs1" || h["alg"] != "RS256" {
		t.Fatalf("new access tokens not signed by the first key: %v", h)
	}
	expectStatus(t, refreshWith(t, e.base, r.pair.RefreshToken), http.StatusOK, "")
}

func metricsText(t *testing.T, admin string) string {
	t.Helper()
	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
