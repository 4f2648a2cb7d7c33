package refresh

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/testcaddy"
	"github.com/tollgate/tollgate/internal/testredis"
)

// twoInstances runs two tollgate processes on one Redis, each with
// jwt_refresh in front of authjwt (revocation on). A's authjwt has the
// public key; B's fetches A's JWK Set, so jwks_path is exercised too.
func twoInstances(t *testing.T) (a, b string, procs []*testcaddy.Process) {
	t.Helper()
	k := testKeys(t)
	rd := testredis.Start(t)
	backend := startBackend(t)
	pa, pb := testcaddy.FreePort(t), testcaddy.FreePort(t)
	site := func(port int, keyLine string) string {
		return fmt.Sprintf(`http://127.0.0.1:%d {
	jwt_refresh {
		redis %[2]s
		signing_key %[3]s es1
		issuer https://tollgate.test
		audience api
		login_path /login
		logout_path /logout
		logout_all_path /logout_all
		jwks_path /jwks.json
		reuse_grace 5s
	}
	authjwt {
		%[4]s
		issuer https://tollgate.test
		audience api
		allow /login
		revocation %[2]s
	}
	reverse_proxy %[5]s
}
`, port, rd.URL(), k.es256, keyLine, backend.hostPort())
	}
	procs = append(procs, testcaddy.StartProcess(t, "", site(pa, "key "+k.es256Pub+" es1")))
	a = fmt.Sprintf("http://127.0.0.1:%d", pa)
	procs = append(procs, testcaddy.StartProcess(t, "", site(pb, fmt.Sprintf("jwks %s/jwks.json", a))))
	b = fmt.Sprintf("http://127.0.0.1:%d", pb)
	for _, base := range []string{a, b} {
		if err := testcaddy.WaitListening(base[len("http://"):], 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	return a, b, procs
}

func getWithAccess(t *testing.T, base, access string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/orders", nil)
	req.Header.Set("Authorization", "Bearer "+access)
	return do(t, req).status
}

// waitStatus polls until the access token gets want, failing after limit.
func waitStatus(t *testing.T, base, access string, want int, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		got := getWithAccess(t, base, access)
		if got == want {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("%s: access token still answered %d after %s, want %d", base, got, limit, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestTwoInstancesOneRedis(t *testing.T) {
	a, b, procs := twoInstances(t)

	t.Run("the same refresh race split across both rotates once", func(t *testing.T) {
		first := login(t, a, "racer").pair.RefreshToken
		results := raceRefresh(t, []string{a, b}, first, 50)
		for i, r := range results {
			if r.status != http.StatusOK || genOf(t, r.pair.RefreshToken) != 2 {
				t.Fatalf("caller %d: %d gen %d %s", i, r.status, genOf(t, r.pair.RefreshToken), r.raw)
			}
		}
		// Exactly one rotation: the next refresh, on either side, makes gen 3.
		r := refreshWith(t, b, results[0].pair.RefreshToken)
		expectStatus(t, r, http.StatusOK, "")
		if genOf(t, r.pair.RefreshToken) != 3 {
			t.Fatalf("gen %d after the race, want 3", genOf(t, r.pair.RefreshToken))
		}
	})

	t.Run("logout on one fails refresh and access tokens on both within 1s", func(t *testing.T) {
		p := login(t, a, "leaver").pair
		for _, base := range []string{a, b} {
			waitStatus(t, base, p.AccessToken, http.StatusOK, 5*time.Second) // B may still be fetching the JWK Set
		}
		expectStatus(t, post(t, b+"/logout", "", "", "Refresh-Token", p.RefreshToken), http.StatusOK, "")
		expectStatus(t, refreshWith(t, a, p.RefreshToken), http.StatusBadRequest, "invalid_grant")
		for _, base := range []string{a, b} {
			took := waitStatus(t, base, p.AccessToken, http.StatusUnauthorized, time.Second)
			t.Logf("%s rejected the access token %s after logout", base, took)
		}
	})

	t.Run("logout_all revokes every session of that user only, everywhere", func(t *testing.T) {
		u1 := login(t, a, "many").pair
		u2 := login(t, b, "many").pair
		other := login(t, a, "someone").pair
		expectStatus(t, post(t, a+"/logout_all", "", "", "Authorization", "Bearer "+u1.AccessToken), http.StatusOK, "")
		for _, base := range []string{a, b} {
			waitStatus(t, base, u2.AccessToken, http.StatusUnauthorized, time.Second)
			waitStatus(t, base, u1.AccessToken, http.StatusUnauthorized, time.Second)
			if s := getWithAccess(t, base, other.AccessToken); s != http.StatusOK {
				t.Fatalf("another user's access token got %d", s)
			}
		}
		expectStatus(t, refreshWith(t, b, u2.RefreshToken), http.StatusBadRequest, "invalid_grant")
		expectStatus(t, refreshWith(t, b, other.RefreshToken), http.StatusOK, "")
	})

	t.Run("reuse detected on one revokes access tokens on the other", func(t *testing.T) {
		p := login(t, a, "stolen").pair
		r1 := refreshWith(t, a, p.RefreshToken)
		r2 := refreshWith(t, a, r1.pair.RefreshToken)
		expectStatus(t, r2, http.StatusOK, "")
		expectStatus(t, refreshWith(t, b, p.RefreshToken), http.StatusBadRequest, "invalid_grant")
		waitStatus(t, a, r2.pair.AccessToken, http.StatusUnauthorized, time.Second)
		log := procs[1].Log()
		if !strings.Contains(log, `"msg":"refresh_reuse"`) || !strings.Contains(log, `"user":"stolen"`) ||
			!strings.Contains(log, `"sid":"`+sidOf(t, p.RefreshToken)+`"`) || !strings.Contains(log, `"client":"127.0.0.1"`) {
			t.Fatalf("no refresh_reuse warning with user, sid and client in B's log:\n%s", log)
		}
		if strings.Contains(log, p.RefreshToken) {
			t.Fatal("a token was logged")
		}
	})
}
