package authjwt

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestCacheNeverServesPastExp(t *testing.T) {
	c := newTokenCache(100)
	now := time.Now()
	key := tokenKey{1}
	c.put(key, &identity{userID: "u", exp: now.Add(time.Minute)}, now)
	if c.get(key, now.Add(59*time.Second)) == nil {
		t.Fatal("fresh entry not served")
	}
	if c.get(key, now.Add(time.Minute)) != nil {
		t.Fatal("entry served at its exp")
	}
}

func TestCacheIsBounded(t *testing.T) {
	c := newTokenCache(64)
	now := time.Now()
	for i := 0; i < 1000; i++ {
		c.put(tokenKey{byte(i), byte(i >> 8)}, &identity{exp: now.Add(time.Hour)}, now)
	}
	if n := c.len(); n > 64 {
		t.Fatalf("cache holds %d entries, bound is 64", n)
	}
}

// TestCachedTokenExpiresWithTheClock moves the handler's clock past a
// cached token's exp plus leeway: it must be rejected as expired.
func TestCachedTokenExpiresWithTheClock(t *testing.T) {
	k := keys(t)
	h := provisioned(t, &AuthJWT{Keys: []KeyFile{{File: writePublicPEM(t, t.TempDir(), "k.pem", &k.rsa1.PublicKey)}}})
	start := time.Now()
	clock := start
	h.now = func() time.Time { return clock }
	tok := sign(t, jwt.SigningMethodRS256, k.rsa1, "", claims(func(c jwt.MapClaims) { c["exp"] = start.Add(time.Minute).Unix() }))
	req := func() *http.Request {
		r := httptest.NewRequest(http.MethodGet, "/x", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		return r
	}
	for range 2 { // verify, then from the cache
		if w, next, repl := serve(t, h, req()); !next.called || w.Code != 200 {
			t.Fatalf("fresh token refused: %d %s", w.Code, w.Body)
		} else if id, _ := repl.GetString("http.auth.user.id"); id != "user-42" {
			t.Fatalf("http.auth.user.id = %q", id)
		}
	}
	if h.cache.len() != 1 {
		t.Fatalf("cache has %d entries", h.cache.len())
	}
	clock = start.Add(2 * time.Minute)
	w, next, _ := serve(t, h, req())
	if next.called || w.Code != http.StatusUnauthorized {
		t.Fatalf("expired cached token: %d", w.Code)
	}
	if body := w.Body.String(); !strings.Contains(body, "expired") {
		t.Errorf("body %q does not say expired", body)
	}
}

func TestClaimPlaceholdersAndHeaders(t *testing.T) {
	k := keys(t)
	h := provisioned(t, &AuthJWT{
		Keys:         []KeyFile{{File: writePublicPEM(t, t.TempDir(), "k.pem", k.ed.Public())}},
		ClaimHeaders: []ClaimHeader{{Claim: "tenant", Header: "x-tenant"}},
	})
	tok := sign(t, jwt.SigningMethodEdDSA, k.ed, "", claims(func(c jwt.MapClaims) {
		c["tenant"] = "acme"
		c["n"] = 12345678901234567
	}))
	r := httptest.NewRequest(http.MethodGet, "/x", nil)
	r.Header.Set("Authorization", tok)
	r.Header.Set("X-Tenant", "spoofed")
	_, next, repl := serve(t, h, r)
	if !next.called {
		t.Fatal("refused")
	}
	for ph, want := range map[string]string{
		"http.auth.user.id": "user-42", "http.auth.user.sub": "user-42", "http.auth.user.tenant": "acme",
		"http.auth.user.roles": "courier", "http.auth.user.n": "12345678901234567", "http.auth.user.aud": "gateway",
	} {
		if got, _ := repl.GetString(ph); got != want {
			t.Errorf("{%s} = %q, want %q", ph, got, want)
		}
	}
	if got := next.req.Header.Values("X-Tenant"); len(got) != 1 || got[0] != "acme" {
		t.Errorf("X-Tenant = %v", got)
	}
}
