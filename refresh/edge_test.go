package refresh

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	_ "github.com/tollgate/tollgate/authjwt" // registers authjwt for the edge sites

	"github.com/tollgate/tollgate/internal/testcaddy"
	"github.com/tollgate/tollgate/internal/testredis"
)

// edgeSite is jwt_refresh in front of authjwt (with revocation) and the
// login backend, as a site runs them: refreshExtra goes into jwt_refresh,
// authExtra into authjwt.
func edgeSite(port int, redisURL, backend, refreshExtra, authExtra string) string {
	k := testKeys(nil)
	return fmt.Sprintf(`http://127.0.0.1:%d {
	jwt_refresh {
		redis %[2]s
		signing_key %[3]s es1
		issuer https://tollgate.test
		audience api
		user_claim userId
		login_path /login
		logout_path /logout
		logout_all_path /logout_all
		%[4]s
	}
	authjwt {
		key %[5]s es1
		issuer https://tollgate.test
		audience api
		user_claim userId
		allow /login
		revocation %[2]s
		%[6]s
	}
	reverse_proxy %[7]s
}
`, port, redisURL, k.es256, withTimings(refreshExtra), k.es256Pub, authExtra, backend)
}

// startEdge runs a fresh Redis, the backend and one in-process Caddy with
// edgeSite.
func startEdge(t *testing.T, refreshExtra, authExtra string) *env {
	t.Helper()
	testKeys(t)
	e := &env{t: t, rd: testredis.Start(t), backend: startBackend(t)}
	e.port = testcaddy.FreePort(t)
	e.base = fmt.Sprintf("http://127.0.0.1:%d", e.port)
	e.caddy = testcaddy.Start(t, "", edgeSite(e.port, e.rd.URL(), e.backend.hostPort(), refreshExtra, authExtra))
	return e
}

// An access token of a logged-out session must stay refused until it is
// refused for being expired, however long authjwt's leeway: with
// access_ttl 1s and leeway 30s the revocation entry (access_ttl + 5s) ran
// out while authjwt still accepted the token's exp, and the token worked
// again about 7 s after the logout.
func TestRevokedAccessTokenStaysRefusedThroughoutLeeway(t *testing.T) {
	e := startEdge(t, "access_ttl 1s", "leeway 30s")
	p := login(t, e.base, "leaver").pair
	waitStatus(t, e.base, p.AccessToken, http.StatusOK, 5*time.Second)
	expectStatus(t, post(t, e.base+"/logout", "", "", "Refresh-Token", p.RefreshToken), http.StatusOK, "")
	waitStatus(t, e.base, p.AccessToken, http.StatusUnauthorized, time.Second)
	exp := time.Unix(int64(claimsOf(t, p.AccessToken)["exp"].(float64)), 0)
	start := time.Now()
	for until := exp.Add(32 * time.Second); time.Now().Before(until); time.Sleep(time.Second) {
		if got := getWithAccess(t, e.base, p.AccessToken); got != http.StatusUnauthorized {
			t.Fatalf("%s after the logout (%s before exp + leeway): the revoked access token got %d",
				time.Since(start).Round(time.Second), time.Until(exp.Add(30*time.Second)).Round(time.Second), got)
		}
	}
}
