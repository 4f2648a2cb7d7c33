package refresh

import (
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// BenchmarkTwoSignatures is the issue's baseline, the signature-only limit
// of one refresh: two tokens signed with the public-key algorithm, on every
// core (RunParallel), so bench/refresh.sh can compare the endpoint's
// refreshes/s with 1e9/ns_per_op. (A refresh now signs one token and MACs
// the other, see signingKey.mac, so the endpoint can beat this baseline.)
func BenchmarkTwoSignatures(b *testing.B) {
	for _, alg := range []struct{ name, file string }{{"ES256", testKeys(b).es256}, {"RS256", testKeys(b).rsa}} {
		b.Run(alg.name, func(b *testing.B) {
			h := benchHandler(b, alg.file)
			claims := jwt.MapClaims{"sub": "bench", "sid": randomID(16), "exp": time.Now().Add(time.Hour).Unix()}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					for range 2 {
						if _, err := h.keys.signer.sign(claims); err != nil {
							b.Fatal(err)
						}
					}
				}
			})
		})
	}
}

// BenchmarkIssue is what a refresh signs: the access token (signature) and
// the refresh token (MAC).
func BenchmarkIssue(b *testing.B) {
	for _, alg := range []struct{ name, file string }{{"ES256", testKeys(b).es256}, {"RS256", testKeys(b).rsa}} {
		b.Run(alg.name, func(b *testing.B) {
			h := benchHandler(b, alg.file)
			s := session{user: "bench", sid: randomID(16), extra: map[string]any{}}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := h.issue(s, rotation{gen: 2, ttl: time.Hour}); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// BenchmarkRefreshCPU adds the verification of the presented token: the
// whole CPU cost of one refresh without Redis and HTTP.
func BenchmarkRefreshCPU(b *testing.B) {
	for _, alg := range []struct{ name, file string }{{"ES256", testKeys(b).es256}, {"RS256", testKeys(b).rsa}} {
		b.Run(alg.name, func(b *testing.B) {
			h := benchHandler(b, alg.file)
			pair, err := h.issue(session{user: "bench", sid: randomID(16), extra: map[string]any{}}, rotation{gen: 1, ttl: time.Hour})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					s, err := h.verify(pair.RefreshToken, typRefresh)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := h.issue(s, rotation{gen: s.gen + 1, ttl: time.Hour}); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

func benchHandler(b *testing.B, keyFile string) *Handler {
	b.Helper()
	k, err := loadSigningKey(keyFile, "k1", "")
	if err != nil {
		b.Fatal(err)
	}
	h := &Handler{Issuer: "https://tollgate.test", Audience: []string{"api"}, now: time.Now}
	h.applyDefaults()
	h.keys = newKeySet([]*signingKey{k})
	h.buildParsers()
	return h
}
