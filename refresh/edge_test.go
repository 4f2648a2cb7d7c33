package refresh

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
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
	return startEdgeOn(t, edgeOptions{refreshExtra: refreshExtra, authExtra: authExtra})
}

// edgeOptions varies startEdgeOn's site.
type edgeOptions struct {
	refreshExtra, authExtra string
	rd                      *testredis.Server // default: a fresh one
	refreshRedis            string            // jwt_refresh's URL; default: rd's
	logFile                 string            // where Caddy logs; default: stderr
}

func startEdgeOn(t *testing.T, o edgeOptions) *env {
	t.Helper()
	testKeys(t)
	if o.rd == nil {
		o.rd = testredis.Start(t)
	}
	e := &env{t: t, rd: o.rd, backend: startBackend(t)}
	e.port = testcaddy.FreePort(t)
	e.base = fmt.Sprintf("http://127.0.0.1:%d", e.port)
	site := edgeSite(e.port, o.rd.URL(), e.backend.hostPort(), o.refreshExtra, o.authExtra)
	if o.refreshRedis != "" {
		site = strings.Replace(site, "redis "+o.rd.URL(), "redis "+o.refreshRedis, 1)
	}
	global := ""
	if o.logFile != "" {
		global = "\tlog {\n\t\toutput file " + o.logFile + "\n\t\tformat json\n\t}"
	}
	e.caddy = testcaddy.Start(t, global, site)
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

// logout and logout_all take a refresh token only when refresh would: a
// generation-1 token used after a rotation and after the grace window is
// reuse (its session revoked, refresh_reuse logged, invalid_grant), never
// a logout of every device; and logout_all refuses a revoked access token.
func TestSupersededRefreshTokenCannotLogEveryoneOut(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "caddy.log")
	e := startEdgeOn(t, edgeOptions{logFile: logFile})
	superseded := func(user string) (old, current tokenPair) {
		t.Helper()
		old = login(t, e.base, user).pair
		r := refreshWith(t, e.base, old.RefreshToken)
		expectStatus(t, r, http.StatusOK, "")
		time.Sleep(1200 * time.Millisecond) // past reuse_grace (1s)
		return old, r.pair
	}
	reuseLogged := func(sid string) bool {
		b, _ := os.ReadFile(logFile)
		return strings.Contains(string(b), `"msg":"refresh_reuse"`) && strings.Contains(string(b), `"sid":"`+sid+`"`)
	}

	t.Run("LogoutAll", func(t *testing.T) {
		old, current := superseded("victim")
		other := login(t, e.base, "victim").pair
		r := post(t, e.base+"/logout_all", "", "", "Refresh-Token", old.RefreshToken)
		expectStatus(t, r, http.StatusBadRequest, "invalid_grant")
		expectStatus(t, refreshWith(t, e.base, other.RefreshToken), http.StatusOK, "")
		expectStatus(t, refreshWith(t, e.base, current.RefreshToken), http.StatusBadRequest, "invalid_grant")
		waitStatus(t, e.base, current.AccessToken, http.StatusUnauthorized, time.Second)
		if !reuseLogged(sidOf(t, old.RefreshToken)) {
			t.Error("no refresh_reuse warning for the superseded token")
		}
	})
	t.Run("Logout", func(t *testing.T) {
		old, current := superseded("victim2")
		expectStatus(t, post(t, e.base+"/logout", "", "", "Refresh-Token", old.RefreshToken), http.StatusBadRequest, "invalid_grant")
		expectStatus(t, refreshWith(t, e.base, current.RefreshToken), http.StatusBadRequest, "invalid_grant")
		waitStatus(t, e.base, current.AccessToken, http.StatusUnauthorized, time.Second)
		if !reuseLogged(sidOf(t, old.RefreshToken)) {
			t.Error("no refresh_reuse warning for the superseded token")
		}
	})
	t.Run("PreviousGenerationInsideGraceStillLogsOut", func(t *testing.T) {
		p := login(t, e.base, "quick").pair
		expectStatus(t, refreshWith(t, e.base, p.RefreshToken), http.StatusOK, "")
		expectStatus(t, post(t, e.base+"/logout", "", "", "Refresh-Token", p.RefreshToken), http.StatusOK, "")
		expectStatus(t, refreshWith(t, e.base, p.RefreshToken), http.StatusBadRequest, "invalid_grant")
	})
	t.Run("RevokedAccessToken", func(t *testing.T) {
		gone := login(t, e.base, "victim3").pair
		kept := login(t, e.base, "victim3").pair
		expectStatus(t, post(t, e.base+"/logout", "", "", "Refresh-Token", gone.RefreshToken), http.StatusOK, "")
		r := post(t, e.base+"/logout_all", "", "", "Authorization", "Bearer "+gone.AccessToken)
		expectStatus(t, r, http.StatusUnauthorized, "invalid_token")
		expectStatus(t, refreshWith(t, e.base, kept.RefreshToken), http.StatusOK, "")
	})
}

// When the revocation write fails (here a Redis ACL refuses the revoked
// set to jwt_refresh's user, as a Cluster node down would), logout,
// logout_all, the admin revoke and reuse detection answer 503 having lost
// nothing, and their retry, once the write is allowed again, revokes every
// access token of those sessions. Before, the sessions were deleted first:
// the retry found nothing ({"revoked_sessions":0}) and the access tokens
// kept working until they expired.
func TestRevocationWriteRefusedThenRetriedRevokesEveryAccessToken(t *testing.T) {
	rd := testredis.Start(t)
	acl := func(rules ...string) {
		t.Helper()
		args := append([]any{"ACL", "SETUSER", "tg"}, toAny(rules)...)
		if err := rd.Client().Do(t.Context(), args...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	acl("on", ">tg-password", "~*", "&*", "+@all")
	e := startEdgeOn(t, edgeOptions{rd: rd, refreshRedis: "redis://tg:tg-password@" + rd.Addr() + "/0"})
	admin := e.caddy.AdminURL() + "/tollgate/sessions/revoke"

	out := login(t, e.base, "out").pair
	all1, all2 := login(t, e.base, "all").pair, login(t, e.base, "all").pair
	adm1, adm2 := login(t, e.base, "adm").pair, login(t, e.base, "adm").pair
	one := login(t, e.base, "one").pair
	stolen := login(t, e.base, "stolen").pair
	rotated := refreshWith(t, e.base, stolen.RefreshToken)
	expectStatus(t, rotated, http.StatusOK, "")
	time.Sleep(1200 * time.Millisecond) // past reuse_grace: stolen.RefreshToken is now reuse
	revoked := []tokenPair{out, all1, all2, adm1, adm2, one, rotated.pair}
	for _, p := range revoked {
		waitStatus(t, e.base, p.AccessToken, http.StatusOK, 5*time.Second)
	}
	attempts := []struct {
		name  string
		do    func() response
		retry int
		code  string
	}{
		{"logout", func() response { return post(t, e.base+"/logout", "", "", "Refresh-Token", out.RefreshToken) }, 200, ""},
		{"logout_all", func() response {
			return post(t, e.base+"/logout_all", "", "", "Authorization", "Bearer "+all1.AccessToken)
		}, 200, ""},
		{"admin user", func() response { return post(t, admin, "application/json", `{"user":"adm"}`) }, 200, ""},
		{"admin sid", func() response {
			return post(t, admin, "application/json", `{"user":"one","sid":"`+sidOf(t, one.RefreshToken)+`"}`)
		}, 200, ""},
		{"reuse", func() response { return refreshWith(t, e.base, stolen.RefreshToken) }, 400, "invalid_grant"},
	}

	acl("resetkeys", "~tollgate:*{*") // the session keys, not tollgate:revoked
	for _, a := range attempts {
		r := a.do()
		if r.status != http.StatusServiceUnavailable || r.err.Error != "temporarily_unavailable" || r.header.Get("Retry-After") == "" {
			t.Errorf("%s with the revocation write refused: %d %s, want 503 temporarily_unavailable with Retry-After", a.name, r.status, r.raw)
		}
	}
	for _, p := range []tokenPair{out, all1, all2, adm1, adm2, one} {
		if n := rd.Client().Exists(t.Context(), sessionKey(claimsOf(t, p.RefreshToken)["sub"].(string), sidOf(t, p.RefreshToken))).Val(); n != 1 {
			t.Errorf("a 503 deleted session %s of %s", sidOf(t, p.RefreshToken), claimsOf(t, p.RefreshToken)["sub"])
		}
	}

	acl("~*")
	for _, a := range attempts {
		r := a.do()
		if r.status != a.retry || r.err.Error != a.code {
			t.Errorf("%s retried: %d %s, want %d %s", a.name, r.status, r.raw, a.retry, a.code)
		}
	}
	for _, p := range revoked {
		waitStatus(t, e.base, p.AccessToken, http.StatusUnauthorized, time.Second)
		// In Redis too, not only in this process's memory: a restarted or
		// new instance loads the set.
		if _, err := rd.Client().ZScore(t.Context(), "tollgate:revoked", sidOf(t, p.RefreshToken)).Result(); err != nil {
			t.Errorf("session %s of %s is not in the revoked set: %v", sidOf(t, p.RefreshToken), claimsOf(t, p.RefreshToken)["sub"], err)
		}
	}
}

func toAny(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}
