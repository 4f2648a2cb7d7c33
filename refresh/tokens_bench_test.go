package refresh

import (
	"testing"
	"time"
)

// BenchmarkTwoSignatures is the signature-only limit of one refresh: the
// access token and the refresh token signed, as issue does, on every core
// (RunParallel), so bench/refresh.sh can compare the endpoint's
// refreshes/s with 1e9/ns_per_op.
func BenchmarkTwoSignatures(b *testing.B) {
	for _, alg := range []struct{ name, file string }{{"ES256", testKeys(b).es256}, {"RS256", testKeys(b).rsa}} {
		b.Run(alg.name, func(b *testing.B) {
			h := benchHandler(b, alg.file)
			s := session{user: "bench", sid: randomID(16), extra: map[string]any{}}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := h.issue(s, 2, time.Hour); err != nil {
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
			pair, err := h.issue(session{user: "bench", sid: randomID(16), extra: map[string]any{}}, 1, time.Hour)
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
					if _, err := h.issue(s, s.gen+1, time.Hour); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

func benchHandler(b *testing.B, keyFile string) *Handler {
	b.Helper()
	k, err := loadSigningKey(keyFile, "k1")
	if err != nil {
		b.Fatal(err)
	}
	h := &Handler{Issuer: "https://tollgate.test", Audience: []string{"api"}, now: time.Now}
	h.applyDefaults()
	h.keys = newKeySet([]*signingKey{k})
	h.buildParsers()
	return h
}
