package authjwt

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate/tollgate/internal/testcaddy"
	"github.com/tollgate/tollgate/internal/testredis"
)

// revocationStatusSites runs two sites on one revocation Redis: one that
// accepts tokens while the revoked set is unknown (the default), one with
// unavailable reject.
func revocationStatusSites(t *testing.T, redisURL, logFile string) (accept, reject int, inst *testcaddy.Instance, sites func(string) string) {
	k := keys(t)
	pem := writePublicPEM(t, t.TempDir(), "rsa.pem", &k.rsa1.PublicKey)
	accept, reject = testcaddy.FreePort(t), testcaddy.FreePort(t)
	sites = func(body string) string {
		return fmt.Sprintf(`
http://127.0.0.1:%d {
	authjwt {
		key %[3]s
		revocation %[4]s
	}
	respond %[5]q
}
http://127.0.0.1:%[2]d {
	authjwt {
		key %[3]s
		revocation %[4]s {
			unavailable reject
		}
	}
	respond %[5]q
}`, accept, reject, pem, redisURL, body)
	}
	inst = testcaddy.Start(t, "\tmetrics\n\tlog {\n\t\toutput file "+logFile+"\n\t\tformat json\n\t}", sites("ok"))
	return accept, reject, inst, sites
}

func gauge(t *testing.T, admin string) string {
	t.Helper()
	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "tollgate_authjwt_revocation_synced ") {
			return strings.TrimPrefix(line, "tollgate_authjwt_revocation_synced ")
		}
	}
	return "absent"
}

// waitUntil polls cond until it holds, failing with what after limit.
func waitUntil(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(limit); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", limit, what)
		}
	}
}

// An instance started during a Redis outage, or cut off from Redis after
// its first load, does not know which sessions are revoked. By default it
// keeps accepting tokens (as before), but says so: the gauge
// tollgate_authjwt_revocation_synced falls to 0 and a warning is logged.
// With unavailable reject it answers 503 temporarily_unavailable with
// Retry-After instead, until the set is current again.
func TestUnknownRevocationStatusIsVisibleAndRejectedWhenAsked(t *testing.T) {
	rds := testredis.Start(t)
	rds.Stop() // down before the first load
	logFile := filepath.Join(t.TempDir(), "caddy.log")
	accept, reject, inst, sites := revocationStatusSites(t, rds.URL(), logFile)
	k := keys(t)
	tok := sign(t, jwt.SigningMethodRS256, k.rsa1, "", claims(func(c jwt.MapClaims) { c["sid"] = "s-1" }))
	status := func(port int) response { return do(t, port, request{path: "/", headers: bearer(tok)}) }
	warned := func() int {
		b, _ := os.ReadFile(logFile)
		return strings.Count(string(b), `"msg":"revocation status unknown`)
	}

	expectUnknown := func(phase string) {
		t.Helper()
		if r := status(accept); r.status != http.StatusOK {
			t.Errorf("%s: the accepting site answered %d %s", phase, r.status, r.body)
		}
		r := do(t, reject, request{path: "/", headers: bearer(tok)})
		if r.status != http.StatusServiceUnavailable || r.errCode != "temporarily_unavailable" {
			t.Errorf("%s: the rejecting site answered %d %s, want 503 temporarily_unavailable", phase, r.status, r.body)
		}
		if g := gauge(t, inst.AdminURL()); g != "0" {
			t.Errorf("%s: tollgate_authjwt_revocation_synced %s, want 0", phase, g)
		}
	}
	retryAfter := func() string {
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/", reject), nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.Header.Get("Retry-After")
	}

	expectUnknown("redis down from the start")
	if ra := retryAfter(); ra == "" {
		t.Error("503 without Retry-After")
	}
	waitUntil(t, 10*time.Second, "no warning that the revocation status is unknown", func() bool { return warned() >= 1 })

	rds.Restart()
	waitUntil(t, 10*time.Second, "the rejecting site never accepted after Redis came back", func() bool { return status(reject).status == http.StatusOK })
	if g := gauge(t, inst.AdminURL()); g != "1" {
		t.Errorf("synced: gauge %s, want 1", g)
	}

	// A reload keeps the gauge registered once and working.
	inst.Reload(sites("reloaded"))
	http.DefaultClient.CloseIdleConnections()
	waitUntil(t, 10*time.Second, "no answer after the reload", func() bool { return status(reject).body == "reloaded" })
	if g := gauge(t, inst.AdminURL()); g != "1" {
		t.Errorf("after a reload: gauge %s, want 1", g)
	}

	before := warned()
	rds.Stop() // down after the first load
	waitUntil(t, 15*time.Second, "the rejecting site kept accepting with Redis gone", func() bool { return status(reject).status == http.StatusServiceUnavailable })
	expectUnknown("redis down after the first load")
	waitUntil(t, 10*time.Second, "no new warning when the set fell out of date", func() bool { return warned() > before })
}
