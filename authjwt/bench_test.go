package authjwt

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/golang-jwt/jwt/v5"
)

func benchHandler(b *testing.B) (*AuthJWT, string) {
	k := keys(b)
	h := provisioned(b, &AuthJWT{
		Keys:   []KeyFile{{File: writePublicPEM(b, b.TempDir(), "k.pem", &k.rsa1.PublicKey), Kid: "k1"}},
		Issuer: StringList{"https://auth.example"}, Audience: []string{"gateway"},
	})
	return h, sign(b, jwt.SigningMethodRS256, k.rsa1, "k1", claims())
}

type nopNext struct{}

func (nopNext) ServeHTTP(http.ResponseWriter, *http.Request) error { return nil }

// BenchmarkServeHTTPCached is the steady state: a token seen before, on
// a request with its own replacer and headers as Caddy gives each request
// (their making is part of the figure).
func BenchmarkServeHTTPCached(b *testing.B) {
	h, tok := benchHandler(b)
	r0 := httptest.NewRequest(http.MethodGet, "/orders", nil)
	r0.Header.Set("Authorization", "Bearer "+tok)
	w := httptest.NewRecorder()
	withReplacer := func() (*http.Request, *caddy.Replacer) {
		repl := caddy.NewReplacer()
		r := r0.WithContext(context.WithValue(r0.Context(), caddy.ReplacerCtxKey, repl))
		r.Header = r0.Header.Clone()
		return r, repl
	}
	r, _ := withReplacer()
	_ = h.ServeHTTP(w, r, nopNext{}) // warm the cache
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		r, repl := withReplacer()
		if err := h.ServeHTTP(w, r, nopNext{}); err != nil {
			b.Fatal(err)
		}
		if id, _ := repl.GetString("http.auth.user.id"); id != "user-42" {
			b.Fatalf("http.auth.user.id = %q", id)
		}
	}
}

// BenchmarkVerifyUncached is a first sighting: RS256 2048-bit signature
// check and claim validation.
func BenchmarkVerifyUncached(b *testing.B) {
	h, tok := benchHandler(b)
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, rej := h.verifyToken(tok, now); rej != nil {
			b.Fatal(rej.desc)
		}
	}
}
