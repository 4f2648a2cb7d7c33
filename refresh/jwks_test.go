package refresh

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

func TestJWKSPublishesEveryKeyAndVerifiesIssuedTokens(t *testing.T) {
	e := startEnv(t, "")
	req, _ := http.NewRequest(http.MethodGet, e.base+"/jwks.json", nil)
	r := do(t, req)
	if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/jwk-set+json" {
		t.Fatalf("jwks: %d %v", r.status, r.header)
	}
	var set struct{ Keys []jwk }
	if err := json.Unmarshal(r.raw, &set); err != nil || len(set.Keys) != 2 {
		t.Fatalf("jwks body %s", r.raw)
	}
	if set.Keys[0].Kid != "es1" || set.Keys[0].Alg != "ES256" || set.Keys[1].Kid != "rs1" || set.Keys[1].Alg != "RS256" {
		t.Fatalf("keys %+v", set.Keys)
	}
	if strings.Contains(string(r.raw), `"d"`) || strings.Contains(string(r.raw), `"p"`) {
		t.Fatal("private material in the JWK Set")
	}
	byKid := map[string]any{}
	for _, k := range set.Keys {
		byKid[k.Kid] = publicFromJWK(t, k)
	}
	at := login(t, e.base, "jw").pair.AccessToken
	_, err := jwt.Parse(at, func(tok *jwt.Token) (any, error) { return byKid[tok.Header["kid"].(string)], nil },
		jwt.WithValidMethods([]string{"ES256"}), jwt.WithAudience("api"), jwt.WithIssuer("https://tollgate.test"))
	if err != nil {
		t.Fatalf("access token does not verify with the JWK Set: %v", err)
	}
}

func publicFromJWK(t *testing.T, k jwk) any {
	t.Helper()
	dec := func(s string) *big.Int {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return new(big.Int).SetBytes(b)
	}
	switch k.Kty {
	case "EC":
		return &ecdsa.PublicKey{Curve: elliptic.P256(), X: dec(k.X), Y: dec(k.Y)}
	case "RSA":
		return &rsa.PublicKey{N: dec(k.N), E: int(dec(k.E).Int64())}
	}
	t.Fatalf("kty %s", k.Kty)
	return nil
}
