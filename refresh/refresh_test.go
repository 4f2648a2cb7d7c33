package refresh

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate/tollgate/internal/revocation"
	"github.com/tollgate/tollgate/internal/testkeys"
)

func TestLoginIssuesTokensAndNestsUpstreamAnswer(t *testing.T) {
	e := startEnv(t, "")
	r := login(t, e.base, "1024")
	if r.pair.TokenType != "Bearer" || r.pair.ExpiresIn != 10 || r.pair.RefreshExpiresIn != 10 {
		t.Fatalf("token response %s", r.raw)
	}
	var body struct {
		User struct{ ID, Nickname string } `json:"user"`
	}
	if err := json.Unmarshal(r.raw, &body); err != nil || body.User.ID != "1024" || body.User.Nickname != "n-1024" {
		t.Fatalf("upstream body not under user: %s", r.raw)
	}
	if r.header.Get(headerSubject) != "" || r.header.Get(headerClaims) != "" {
		t.Fatalf("identity headers leaked to the client: %v", r.header)
	}
	if r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("token response cacheable: %v", r.header)
	}
	rc, ac := claimsOf(t, r.pair.RefreshToken), claimsOf(t, r.pair.AccessToken)
	for name, c := range map[string]map[string]any{"refresh": rc, "access": ac} {
		if c["sub"] != "1024" || c["userId"] != "1024" || c["iss"] != "https://tollgate.test" || c["typ"] != name {
			t.Fatalf("%s claims %v", name, c)
		}
		if roles, _ := c["roles"].([]any); len(roles) != 1 || roles[0] != "customer" {
			t.Fatalf("%s lacks the login claims: %v", name, c)
		}
	}
	if rc["sid"] != ac["sid"] || len(rc["sid"].(string)) != 32 || rc["gen"] != 1.0 || rc["jti"] == nil || rc["auth_time"] == nil {
		t.Fatalf("refresh claims %v / access %v", rc, ac)
	}
	if ac["aud"] != "api" {
		t.Fatalf("access aud %v", ac["aud"])
	}
	if got := e.storedGen("1024", rc["sid"].(string)); got != "1" {
		t.Fatalf("stored gen %q", got)
	}
}

func TestLoginWithoutSubjectPassesThroughUntouched(t *testing.T) {
	e := startEnv(t, "")
	before := e.rd.Dump()
	r := post(t, e.base+"/login", "application/json", `{"user":""}`)
	if r.status != http.StatusUnauthorized || string(r.raw) != `{"msg":"wrong code"}` {
		t.Fatalf("got %d %s", r.status, r.raw)
	}
	sameDump(t, before, e.rd.Dump())
	// Other paths are not the module's business.
	r = post(t, e.base+"/orders", "", "")
	if r.status != http.StatusOK || string(r.raw) != "upstream /orders" {
		t.Fatalf("got %d %s", r.status, r.raw)
	}
}

func TestClientCannotInjectIdentityHeaders(t *testing.T) {
	e := startEnv(t, "")
	before := e.rd.Dump()
	// The backend refuses (no user), the client claims to be user 1.
	r := post(t, e.base+"/login", "application/json", `{}`, headerSubject, "1", headerClaims, `{"roles":["admin"]}`)
	if r.status != http.StatusUnauthorized || r.pair.AccessToken != "" {
		t.Fatalf("got %d %s", r.status, r.raw)
	}
	post(t, e.base+"/orders", "", "", headerSubject, "1")
	if e.backend.sawInjected.Load() {
		t.Fatal("the upstream saw a client-sent X-Auth-* header")
	}
	sameDump(t, before, e.rd.Dump())
}

func TestRefreshRotatesAndReadsEveryTokenSource(t *testing.T) {
	e := startEnv(t, "")
	rt := login(t, e.base, "7").pair.RefreshToken
	sources := []struct {
		name string
		send func(rt string) response
	}{
		{"header", func(rt string) response { return refreshWith(t, e.base, rt) }},
		{"form", func(rt string) response {
			return post(t, e.base+"/auth/refresh", "application/x-www-form-urlencoded",
				"grant_type=refresh_token&refresh_token="+url.QueryEscape(rt))
		}},
		{"json", func(rt string) response {
			return post(t, e.base+"/auth/refresh", "application/json", fmt.Sprintf(`{"refresh_token":%q}`, rt))
		}},
	}
	for i, src := range sources {
		t.Run(src.name, func(t *testing.T) {
			r := src.send(rt)
			expectStatus(t, r, http.StatusOK, "")
			if g := genOf(t, r.pair.RefreshToken); g != int64(i+2) {
				t.Fatalf("gen %d, want %d", g, i+2)
			}
			if claimsOf(t, r.pair.AccessToken)["typ"] != "access" {
				t.Fatal("no access token")
			}
			rt = r.pair.RefreshToken
		})
	}
}

func TestFiftyConcurrentRefreshesOfOneTokenRotateOnce(t *testing.T) {
	e := startEnv(t, "")
	first := login(t, e.base, "42").pair.RefreshToken
	sid := sidOf(t, first)
	results := raceRefresh(t, []string{e.base}, first, 50)
	for i, r := range results {
		if r.status != http.StatusOK {
			t.Fatalf("caller %d: %d %s", i, r.status, r.raw)
		}
		if g := genOf(t, r.pair.RefreshToken); g != 2 {
			t.Fatalf("caller %d got gen %d, want 2", i, g)
		}
		if sidOf(t, r.pair.RefreshToken) != sid {
			t.Fatalf("caller %d got another session", i)
		}
	}
	if got := e.storedGen("42", sid); got != "2" {
		t.Fatalf("stored gen %s: want exactly one rotation", got)
	}
	// Any of the answers is a working token of the current generation.
	r := refreshWith(t, e.base, results[len(results)-1].pair.RefreshToken)
	expectStatus(t, r, http.StatusOK, "")
	if genOf(t, r.pair.RefreshToken) != 3 {
		t.Fatalf("a grace-minted token did not rotate: %s", r.raw)
	}
}

// raceRefresh sends n refreshes of rt at once, spread over the bases.
func raceRefresh(t *testing.T, bases []string, rt string, n int) []response {
	t.Helper()
	results := make([]response, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i] = refreshWith(t, bases[i%len(bases)], rt)
		}()
	}
	close(start)
	wg.Wait()
	return results
}

func TestLostResponseRetriedInsideGraceGetsCurrentGeneration(t *testing.T) {
	e := startEnv(t, "")
	r0 := login(t, e.base, "u1").pair.RefreshToken
	r1 := refreshWith(t, e.base, r0) // the answer "lost" on the way
	expectStatus(t, r1, http.StatusOK, "")
	retry := refreshWith(t, e.base, r0)
	expectStatus(t, retry, http.StatusOK, "")
	if genOf(t, retry.pair.RefreshToken) != 2 || e.storedGen("u1", sidOf(t, r0)) != "2" {
		t.Fatalf("retry got gen %d, stored %s", genOf(t, retry.pair.RefreshToken), e.storedGen("u1", sidOf(t, r0)))
	}
	// The retry's token works and rotates.
	expectStatus(t, refreshWith(t, e.base, retry.pair.RefreshToken), http.StatusOK, "")
}

func TestRetryAfterGraceRevokesTheSession(t *testing.T) {
	e := startEnv(t, "")
	r0 := login(t, e.base, "u2").pair.RefreshToken
	r1 := refreshWith(t, e.base, r0)
	expectStatus(t, r1, http.StatusOK, "")
	time.Sleep(1100 * time.Millisecond) // reuse_grace 1s
	expectStatus(t, refreshWith(t, e.base, r0), http.StatusBadRequest, "invalid_grant")
	// The session is gone: the current token fails too.
	expectStatus(t, refreshWith(t, e.base, r1.pair.RefreshToken), http.StatusBadRequest, "invalid_grant")
	if n := e.rd.Client().Exists(t.Context(), sessionKey(testRealm, "u2", sidOf(t, r0))).Val(); n != 0 {
		t.Fatal("session still in Redis")
	}
	if _, err := e.rd.Client().ZScore(t.Context(), "tollgate:revoked", revocation.Member(testRealm, sidOf(t, r0))).Result(); err != nil {
		t.Fatalf("sid not published as revoked: %v", err)
	}
}

func TestStolenTokenUsedAfterTwoRotationsRevokesTheSession(t *testing.T) {
	e := startEnv(t, "")
	stolen := login(t, e.base, "victim").pair.RefreshToken
	r1 := refreshWith(t, e.base, stolen)
	r2 := refreshWith(t, e.base, r1.pair.RefreshToken)
	expectStatus(t, r2, http.StatusOK, "")
	// Still inside the grace window of the last rotation, but two behind.
	expectStatus(t, refreshWith(t, e.base, stolen), http.StatusBadRequest, "invalid_grant")
	expectStatus(t, refreshWith(t, e.base, r2.pair.RefreshToken), http.StatusBadRequest, "invalid_grant")
}

func TestStrictGraceZeroRevokesOnAnyReuse(t *testing.T) {
	e := startEnv(t, "reuse_grace 0")
	r0 := login(t, e.base, "strict").pair.RefreshToken
	r1 := refreshWith(t, e.base, r0)
	expectStatus(t, r1, http.StatusOK, "")
	expectStatus(t, refreshWith(t, e.base, r0), http.StatusBadRequest, "invalid_grant")
	expectStatus(t, refreshWith(t, e.base, r1.pair.RefreshToken), http.StatusBadRequest, "invalid_grant")
}

func TestTwoLoginsInTheSameSecondAreDistinctSessions(t *testing.T) {
	e := startEnv(t, "")
	a := login(t, e.base, "same").pair
	b := login(t, e.base, "same").pair
	if sidOf(t, a.RefreshToken) == sidOf(t, b.RefreshToken) || a.RefreshToken == b.RefreshToken {
		t.Fatal("two logins share a session")
	}
	if n := e.rd.Client().ZCard(t.Context(), indexKey(testRealm, "same")).Val(); n != 2 {
		t.Fatalf("index has %d sessions", n)
	}
	expectStatus(t, refreshWith(t, e.base, a.RefreshToken), http.StatusOK, "")
	expectStatus(t, refreshWith(t, e.base, b.RefreshToken), http.StatusOK, "")
}

func TestSessionMaxEndsAnActiveSession(t *testing.T) {
	e := startEnv(t, "refresh_ttl 2s\n\t\tsession_max 3s")
	start := time.Now()
	rt := login(t, e.base, "busy").pair.RefreshToken
	for _, at := range []time.Duration{1200 * time.Millisecond, 2400 * time.Millisecond} {
		time.Sleep(time.Until(start.Add(at)))
		r := refreshWith(t, e.base, rt)
		expectStatus(t, r, http.StatusOK, "")
		if r.pair.RefreshExpiresIn > 2 {
			t.Fatalf("refresh_expires_in %d past session_max", r.pair.RefreshExpiresIn)
		}
		rt = r.pair.RefreshToken
	}
	time.Sleep(time.Until(start.Add(3100 * time.Millisecond)))
	expectStatus(t, refreshWith(t, e.base, rt), http.StatusBadRequest, "invalid_grant")
}

func TestIdleSessionExpiresAfterRefreshTTL(t *testing.T) {
	e := startEnv(t, "refresh_ttl 1s\n\t\tsession_max 5s")
	p := login(t, e.base, "idle").pair
	if ttl := e.rd.Client().PTTL(t.Context(), sessionKey(testRealm, "idle", sidOf(t, p.RefreshToken))).Val(); ttl <= 0 || ttl > time.Second {
		t.Fatalf("session TTL %s, want refresh_ttl", ttl)
	}
	time.Sleep(1200 * time.Millisecond)
	expectStatus(t, refreshWith(t, e.base, p.RefreshToken), http.StatusBadRequest, "invalid_grant")
}

func TestLogoutEndsTheSessionAndAlwaysAnswers200(t *testing.T) {
	e := startEnv(t, "")
	p := login(t, e.base, "out").pair
	other := login(t, e.base, "out").pair
	r := post(t, e.base+"/logout", "application/x-www-form-urlencoded", "token="+url.QueryEscape(p.RefreshToken))
	expectStatus(t, r, http.StatusOK, "")
	expectStatus(t, refreshWith(t, e.base, p.RefreshToken), http.StatusBadRequest, "invalid_grant")
	expectStatus(t, refreshWith(t, e.base, other.RefreshToken), http.StatusOK, "")
	// Again, and with garbage: still 200, Redis untouched.
	before := e.rd.Dump()
	expectStatus(t, post(t, e.base+"/logout", "", "", "Refresh-Token", p.RefreshToken), http.StatusOK, "")
	expectStatus(t, post(t, e.base+"/logout", "", "", "Refresh-Token", "garbage"), http.StatusOK, "")
	delete(before, "tollgate:revoked")
	after := e.rd.Dump()
	delete(after, "tollgate:revoked")
	sameDump(t, before, after)
	expectStatus(t, post(t, e.base+"/logout", "", ""), http.StatusBadRequest, "invalid_request")
}

func TestLogoutAllEndsEverySessionOfThatUserOnly(t *testing.T) {
	e := startEnv(t, "")
	a1 := login(t, e.base, "alice").pair
	a2 := login(t, e.base, "alice").pair
	a3 := login(t, e.base, "alice").pair
	b := login(t, e.base, "bob").pair
	r := post(t, e.base+"/logout_all", "", "", "Authorization", "Bearer "+a1.AccessToken)
	expectStatus(t, r, http.StatusOK, "")
	if !strings.Contains(string(r.raw), `"revoked_sessions":3`) {
		t.Fatalf("answer %s", r.raw)
	}
	for _, p := range []tokenPair{a1, a2, a3} {
		expectStatus(t, refreshWith(t, e.base, p.RefreshToken), http.StatusBadRequest, "invalid_grant")
	}
	expectStatus(t, refreshWith(t, e.base, b.RefreshToken), http.StatusOK, "")
	if n := e.rd.Client().ZCard(t.Context(), "tollgate:revoked").Val(); n != 3 {
		t.Fatalf("%d sids published as revoked, want 3", n)
	}
	// With a refresh token, and refusing a bad one.
	c := login(t, e.base, "carol").pair
	expectStatus(t, post(t, e.base+"/logout_all", "", "", "Refresh-Token", c.RefreshToken), http.StatusOK, "")
	expectStatus(t, refreshWith(t, e.base, c.RefreshToken), http.StatusBadRequest, "invalid_grant")
	expectStatus(t, post(t, e.base+"/logout_all", "", "", "Authorization", "Bearer "+c.RefreshToken), http.StatusUnauthorized, "invalid_token")
}

func TestBadRequestsAreInvalidRequest(t *testing.T) {
	e := startEnv(t, "")
	before := e.rd.Dump()
	cases := []struct {
		name, ctype, body string
		status            int
		code              string
	}{
		{"no token", "", "", 400, "invalid_request"},
		{"empty json", "application/json", `{}`, 400, "invalid_request"},
		{"bad json", "application/json", `{"refresh_token":`, 400, "invalid_request"},
		{"wrong grant", "application/x-www-form-urlencoded", "grant_type=password&refresh_token=x", 400, "invalid_request"},
		{"text body", "text/plain", "abc", 400, "invalid_request"},
		{"huge body", "application/json", `{"refresh_token":"` + strings.Repeat("a", maxBodyBytes) + `"}`, 400, "invalid_request"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			expectStatus(t, post(t, e.base+"/auth/refresh", c.ctype, c.body), c.status, c.code)
		})
	}
	req, _ := http.NewRequest(http.MethodGet, e.base+"/auth/refresh", nil)
	r := do(t, req)
	expectStatus(t, r, http.StatusMethodNotAllowed, "invalid_request")
	sameDump(t, before, e.rd.Dump())
}

func TestForgedExpiredWrongTypOrIssuerTokensLeaveRedisUntouched(t *testing.T) {
	e := startEnv(t, "")
	good := login(t, e.base, "target").pair
	k := testKeys(t)
	c := claimsOf(t, good.RefreshToken)
	base := func(changes map[string]any) jwt.MapClaims {
		m := jwt.MapClaims{}
		for k, v := range c {
			m[k] = v
		}
		for k, v := range changes {
			m[k] = v
		}
		return m
	}
	pubDER := []byte(readFile(t, k.es256Pub))
	tampered := good.RefreshToken[:len(good.RefreshToken)-4] + "AAAA"
	mac, err := deriveMAC(k.es256Key, "es1", testRealm)
	if err != nil {
		t.Fatal(err)
	}
	macced := func(kid string, changes map[string]any) string {
		return testkeys.Sign(t, refreshMACMethod, mac, kid, base(changes))
	}
	cases := map[string]string{
		"foreign key":          testkeys.Sign(t, jwt.SigningMethodES256, k.otherEC, "es1", base(nil)),
		"alg none":             testkeys.Sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "es1", base(nil)),
		"hmac with pub key":    testkeys.Sign(t, jwt.SigningMethodHS256, pubDER, "es1", base(nil)),
		"hmac with other key":  testkeys.Sign(t, jwt.SigningMethodHS256, []byte("0123456789abcdef0123456789abcdef"), "es1", base(nil)),
		"signed, not macced":   testkeys.Sign(t, jwt.SigningMethodES256, k.es256Key, "es1", base(nil)),
		"tampered signature":   tampered,
		"expired":              macced("es1", map[string]any{"exp": time.Now().Add(-time.Minute).Unix()}),
		"access as refresh":    good.AccessToken,
		"wrong typ":            macced("es1", map[string]any{"typ": "id"}),
		"wrong issuer":         macced("es1", map[string]any{"iss": "https://evil.test"}),
		"no gen":               macced("es1", map[string]any{"gen": nil}),
		"unknown kid":          testkeys.Sign(t, refreshMACMethod, mac, "nope", base(nil)),
		"not a jwt":            "hello",
		"reused gen, forged":   testkeys.Sign(t, jwt.SigningMethodES256, k.otherEC, "es1", base(map[string]any{"gen": 0})),
		"reused gen, macced 0": macced("es1", map[string]any{"gen": 0}),
	}
	before := e.rd.Dump()
	for name, tok := range cases {
		t.Run(name, func(t *testing.T) {
			expectStatus(t, refreshWith(t, e.base, tok), http.StatusBadRequest, "invalid_grant")
		})
	}
	sameDump(t, before, e.rd.Dump())
	// The real token still works: nothing above touched its session.
	expectStatus(t, refreshWith(t, e.base, good.RefreshToken), http.StatusOK, "")
}

// Near session_max a refresh must not hand out an access token that lives
// access_ttl past the session's end: exp is capped at the end, and
// expires_in says so.
func TestAccessTokenNeverOutlivesItsSession(t *testing.T) {
	e := startEnv(t, "access_ttl 3s\n\t\trefresh_ttl 4s\n\t\tsession_max 4s")
	p := login(t, e.base, "late").pair
	loggedIn := time.Now()
	end := loggedIn.Add(4 * time.Second).Unix() // the session ends before this
	time.Sleep(2200 * time.Millisecond)
	r := refreshWith(t, e.base, p.RefreshToken)
	expectStatus(t, r, http.StatusOK, "")
	exp := int64(claimsOf(t, r.pair.AccessToken)["exp"].(float64))
	if exp > end {
		t.Fatalf("access token exp %d is %ds after the session's end %d", exp, exp-end, end)
	}
	if r.pair.ExpiresIn > 2 {
		t.Fatalf("expires_in %d outlives the session (%s left)", r.pair.ExpiresIn, time.Until(time.Unix(end, 0)))
	}
}
