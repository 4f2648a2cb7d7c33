package refresh

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestOutcomesAreCountedInCaddyMetrics(t *testing.T) {
	e := startEnv(t, "")
	rt := login(t, e.base, "m").pair.RefreshToken
	refreshWith(t, e.base, rt)
	refreshWith(t, e.base, rt) // replayed inside grace
	refreshWith(t, e.base, "garbage")
	body := metricsText(t, e.caddy.AdminURL())
	for _, want := range []string{
		`tollgate_refresh_outcomes_total{outcome="login"} 1`,
		`tollgate_refresh_outcomes_total{outcome="rotated"} 1`,
		`tollgate_refresh_outcomes_total{outcome="replayed"} 1`,
		`tollgate_refresh_outcomes_total{outcome="invalid"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
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
