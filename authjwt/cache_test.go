package authjwt

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
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

// TestCacheKeepsTokensInUse floods a full cache with one-time tokens: a
// token read between the puts keeps its place (CLOCK's second chance).
func TestCacheKeepsTokensInUse(t *testing.T) {
	c := newTokenCache(cacheShards * 8) // 8 slots per shard
	now := time.Now()
	hot := tokenKey{0, 0xff}
	c.put(hot, &identity{userID: "hot", exp: now.Add(time.Hour)}, now)
	for i := 1; i < 1000; i++ {
		c.put(tokenKey{0, byte(i), byte(i >> 8)}, &identity{exp: now.Add(time.Hour)}, now)
		if c.get(hot, now) == nil {
			t.Fatalf("token in use evicted after %d one-time tokens", i)
		}
	}
	if n := c.len(); n != 8 {
		t.Fatalf("cache holds %d entries in one shard, bound is 8", n)
	}
}

// TestCacheEvictsExpiredFirst: an expired entry goes before a fresh one,
// even one that was never read.
func TestCacheEvictsExpiredFirst(t *testing.T) {
	c := newTokenCache(cacheShards * 2)
	now := time.Now()
	fresh, stale, next := tokenKey{0, 1}, tokenKey{0, 2}, tokenKey{0, 3}
	c.put(fresh, &identity{exp: now.Add(time.Hour)}, now)
	c.put(stale, &identity{exp: now.Add(time.Second)}, now)
	c.get(fresh, now)
	later := now.Add(time.Minute)
	c.put(next, &identity{exp: later.Add(time.Hour)}, later)
	if c.get(fresh, later) == nil || c.get(next, later) == nil {
		t.Fatal("a fresh entry was evicted while an expired one stayed")
	}
}

// TestCacheConcurrentUse runs gets and puts on one shard from many
// goroutines (meaningful under -race) and checks the bound afterwards.
func TestCacheConcurrentUse(t *testing.T) {
	c := newTokenCache(cacheShards * 4)
	now := time.Now()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				k := tokenKey{0, byte(g), byte(i), byte(i >> 8)}
				c.put(k, &identity{userID: "u", exp: now.Add(time.Hour)}, now)
				if id := c.get(k, now); id != nil && id.userID != "u" {
					t.Errorf("wrong identity for %x", k)
				}
				c.get(tokenKey{0, byte(g), byte(i - 1)}, now)
			}
		}()
	}
	wg.Wait()
	if n := c.len(); n > 4 {
		t.Fatalf("shard holds %d entries, bound is 4", n)
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

// BenchmarkCachePutFull is the first-seen steady state: every put lands in
// a full cache (the default size) and must evict.
func BenchmarkCachePutFull(b *testing.B) {
	c := newTokenCache(defaultCacheSize)
	now := time.Now()
	id := &identity{exp: now.Add(time.Hour)}
	var k tokenKey
	for i := range defaultCacheSize * 2 {
		k[0], k[1], k[2] = byte(i), byte(i>>8), byte(i>>16)
		c.put(k, id, now)
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := defaultCacheSize * 2
	for b.Loop() {
		i++
		k[0], k[1], k[2], k[3] = byte(i), byte(i>>8), byte(i>>16), byte(i>>24)
		c.put(k, id, now)
	}
}
