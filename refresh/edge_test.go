package refresh

import (
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/redis/go-redis/v9"

	_ "github.com/tollgate/tollgate/authjwt" // registers authjwt for the edge sites

	"github.com/tollgate/tollgate/internal/revocation"
	"github.com/tollgate/tollgate/internal/testcaddy"
	"github.com/tollgate/tollgate/internal/testkeys"
	"github.com/tollgate/tollgate/internal/testredis"
)

// edgeSite is the standard test site (siteBlock) with authjwt (with
// revocation) between jwt_refresh and the upstream, as a site runs them:
// refreshExtra goes into jwt_refresh, authExtra into authjwt.
func edgeSite(port int, redisURL, backend, refreshExtra, authExtra string) string {
	k := testKeys(nil)
	auth := fmt.Sprintf(`authjwt {
		key %s es1
		issuer https://tollgate.test
		audience api
		user_claim userId
		allow /login
		revocation %s
		%s
	}
	reverse_proxy`, k.es256Pub, redisURL, authExtra)
	return strings.Replace(siteBlock(port, redisURL, backend, refreshExtra), "reverse_proxy", auth, 1)
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
		before := e.rd.Dump()
		r := post(t, e.base+"/logout_all", "", "", "Authorization", "Bearer "+gone.AccessToken)
		expectStatus(t, r, http.StatusUnauthorized, "invalid_token")
		r = post(t, e.base+"/logout_all", "", "", "Refresh-Token", gone.RefreshToken)
		expectStatus(t, r, http.StatusUnauthorized, "invalid_token")
		sameDump(t, before, e.rd.Dump())
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
		if n := rd.Client().Exists(t.Context(), sessionKey(testRealm, claimsOf(t, p.RefreshToken)["sub"].(string), sidOf(t, p.RefreshToken))).Val(); n != 1 {
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
		if _, err := rd.Client().ZScore(t.Context(), "tollgate:revoked", revocation.Member(testRealm, sidOf(t, p.RefreshToken))).Result(); err != nil {
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

// realmSites runs, on one Redis and one signing key (same kid), the two
// sites of caddyfile.example (each its own realm, issuer and audience) and
// two sites that differ by realm alone.
func realmSites(t *testing.T) (customer, courier, a, b, admin string, rd *testredis.Server) {
	t.Helper()
	k := testKeys(t)
	rd = testredis.Start(t)
	backend := startBackend(t).hostPort()
	site := func(port int, realm, issuer, audience string) string {
		ident := ""
		if issuer != "" {
			ident = "issuer " + issuer + "\n\t\taudience " + audience
		}
		return fmt.Sprintf(`http://127.0.0.1:%d {
	jwt_refresh {
		redis %[2]s
		signing_key %[3]s key-1
		realm %[4]s
		%[5]s
		user_claim userId
		login_path /login
		logout_path /logout
		logout_all_path /logout_all
		%[6]s
	}
	authjwt {
		key %[7]s key-1
		%[5]s
		user_claim userId
		allow /login
		revocation %[2]s
	}
	reverse_proxy %[8]s
}
`, port, rd.URL(), k.es256, realm, ident, withTimings(""), k.es256Pub, backend)
	}
	ports := []int{testcaddy.FreePort(t), testcaddy.FreePort(t), testcaddy.FreePort(t), testcaddy.FreePort(t)}
	inst := testcaddy.Start(t, "", site(ports[0], "customer", "https://customer-api.example.com", "customer-api")+
		site(ports[1], "courier", "https://courier-api.example.com", "courier-api")+
		site(ports[2], "a", "", "")+site(ports[3], "b", "", ""))
	base := func(p int) string { return fmt.Sprintf("http://127.0.0.1:%d", p) }
	return base(ports[0]), base(ports[1]), base(ports[2]), base(ports[3]), inst.AdminURL() + "/tollgate/sessions/revoke", rd
}

// Customer 42 and courier 42 are different people: two sites on the same
// Redis, key and kid must never share sessions. A refresh token of one
// site is invalid_grant on the other, an access token of one is 401 on
// the other, and customer 42's logout_all leaves courier 42 logged in.
func TestTwoSitesNeverShareSessions(t *testing.T) {
	customer, courier, a, b, admin, rd := realmSites(t)
	for _, pair := range [][2]string{{customer, courier}, {a, b}} {
		one, other := pair[0], pair[1]
		mine := login(t, one, "42").pair
		theirs := login(t, other, "42").pair
		waitStatus(t, one, mine.AccessToken, http.StatusOK, 5*time.Second)
		waitStatus(t, other, theirs.AccessToken, http.StatusOK, 5*time.Second)

		before := rd.Dump()
		expectStatus(t, refreshWith(t, other, mine.RefreshToken), http.StatusBadRequest, "invalid_grant")
		expectStatus(t, post(t, other+"/logout_all", "", "", "Authorization", "Bearer "+mine.AccessToken), http.StatusUnauthorized, "invalid_token")
		expectStatus(t, post(t, other+"/logout_all", "", "", "Refresh-Token", mine.RefreshToken), http.StatusUnauthorized, "invalid_token")
		expectStatus(t, post(t, other+"/logout", "", "", "Refresh-Token", mine.RefreshToken), http.StatusOK, "") // RFC 7009: unusable here
		sameDump(t, before, rd.Dump())
		if one == customer {
			if got := getWithAccess(t, other, mine.AccessToken); got != http.StatusUnauthorized {
				t.Errorf("the customer's access token at the courier site: %d, want 401", got)
			}
		}

		r := post(t, one+"/logout_all", "", "", "Authorization", "Bearer "+mine.AccessToken)
		expectStatus(t, r, http.StatusOK, "")
		if !strings.Contains(string(r.raw), `"revoked_sessions":1`) {
			t.Errorf("%s logout_all of 42: %s, want one session", one, r.raw)
		}
		waitStatus(t, one, mine.AccessToken, http.StatusUnauthorized, time.Second)
		expectStatus(t, refreshWith(t, other, theirs.RefreshToken), http.StatusOK, "")
		if got := getWithAccess(t, other, theirs.AccessToken); got != http.StatusOK {
			t.Errorf("%s's 42 lost its access after %s's 42 logged out everywhere: %d", other, one, got)
		}
	}

	// The admin API must be told which 42.
	c, d := login(t, customer, "7").pair, login(t, courier, "7").pair
	before := rd.Dump()
	expectStatus(t, post(t, admin, "application/json", `{"user":"7"}`), http.StatusBadRequest, "invalid_request")
	expectStatus(t, post(t, admin, "application/json", `{"user":"7","realm":"nope"}`), http.StatusBadRequest, "invalid_request")
	sameDump(t, before, rd.Dump())
	expectStatus(t, post(t, admin, "application/json", `{"user":"7","realm":"customer"}`), http.StatusOK, "")
	expectStatus(t, refreshWith(t, customer, c.RefreshToken), http.StatusBadRequest, "invalid_grant")
	expectStatus(t, refreshWith(t, courier, d.RefreshToken), http.StatusOK, "")
}

// A session written by the release before realms (keys
// tollgate:{u:<user>}…, refresh token MACed with HKDF(key, info = kid), no
// realm claim) keeps refreshing after the upgrade on a handler in the
// default realm (no realm, no issuer): its layout and MAC are unchanged.
func TestSessionOfThePreviousReleaseRefreshesInTheDefaultRealm(t *testing.T) {
	k := testKeys(t)
	rd := testredis.Start(t)
	port := testcaddy.FreePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	testcaddy.Start(t, "", fmt.Sprintf(`http://127.0.0.1:%d {
	jwt_refresh {
		redis %s
		signing_key %s es1
		user_claim userId
		logout_all_path /logout_all
		%s
	}
	respond 404
}`, port, rd.URL(), k.es256, withTimings("")))

	// What the previous release wrote at login, byte for byte.
	const user, sid = "10138000", "0123456789abcdef0123456789abcdef"
	now := time.Now()
	ms := now.UnixMilli()
	c := rd.Client()
	c.HSet(t.Context(), "tollgate:{u:10138000}:s:"+sid, "gen", 1, "rot", ms, "auth", ms, "end", ms+20000)
	c.PExpire(t.Context(), "tollgate:{u:10138000}:s:"+sid, 10*time.Second)
	c.ZAdd(t.Context(), "tollgate:{u:10138000}:sessions", redis.Z{Score: float64(ms + 10000), Member: sid})
	der, _ := x509.MarshalPKCS8PrivateKey(k.es256Key)
	mac, err := hkdf.Key(sha256.New, der, []byte("tollgate jwt_refresh refresh-token MAC v1"), "es1", 32)
	if err != nil {
		t.Fatal(err)
	}
	old := testkeys.Sign(t, jwt.SigningMethodHS256, mac, "es1", jwt.MapClaims{
		"sub": user, "userId": user, "sid": sid, "gen": 1, "jti": "j1", "typ": "refresh",
		"iat": now.Unix(), "exp": now.Add(10 * time.Second).Unix(), "auth_time": now.Unix()})

	r := refreshWith(t, base, old)
	expectStatus(t, r, http.StatusOK, "")
	if genOf(t, r.pair.RefreshToken) != 2 || c.HGet(t.Context(), "tollgate:{u:10138000}:s:"+sid, "gen").Val() != "2" {
		t.Fatalf("the old session did not rotate in place: %s", r.raw)
	}
	if _, ok := claimsOf(t, r.pair.AccessToken)["realm"]; ok {
		t.Error("the default realm's tokens carry a realm claim")
	}
	expectStatus(t, post(t, base+"/logout_all", "", "", "Refresh-Token", r.pair.RefreshToken), http.StatusOK, "")
	if _, err := c.ZScore(t.Context(), "tollgate:revoked", sid).Result(); err != nil {
		t.Errorf("the default realm's revocation entry is not the bare sid: %v", err)
	}
}
