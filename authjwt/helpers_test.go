package authjwt

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate/tollgate/internal/testcaddy"
	"github.com/tollgate/tollgate/internal/testkeys"
)

// testKeySet holds keys generated once per test binary: 2048-bit RSA is
// slow under -race.
type testKeySet struct {
	rsa1, rsa2, rsa3 *rsa.PrivateKey
	ec256            *ecdsa.PrivateKey
	ed               ed25519.PrivateKey
}

var (
	testKeysOnce sync.Once
	testKeys     testKeySet
)

func keys(t testing.TB) *testKeySet {
	t.Helper()
	testKeysOnce.Do(func() {
		var errs [5]error
		testKeys.rsa1, errs[0] = rsa.GenerateKey(rand.Reader, 2048)
		testKeys.rsa2, errs[1] = rsa.GenerateKey(rand.Reader, 2048)
		testKeys.rsa3, errs[2] = rsa.GenerateKey(rand.Reader, 2048)
		testKeys.ec256, errs[3] = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		_, testKeys.ed, errs[4] = ed25519.GenerateKey(rand.Reader)
		for _, err := range errs {
			if err != nil {
				panic(err)
			}
		}
	})
	return &testKeys
}

// writePublicPEM writes pub as a PKIX PEM file and returns its path.
func writePublicPEM(t testing.TB, dir, name string, pub crypto.PublicKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, publicPEM(der), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func publicPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// writeCertPEM writes a self-signed certificate for key and returns its path.
func writeCertPEM(t testing.TB, dir, name string, key *ecdsa.PrivateKey) string {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// claims returns valid default claims, changed by the given edits.
func claims(edits ...func(jwt.MapClaims)) jwt.MapClaims {
	now := time.Now()
	c := jwt.MapClaims{
		"sub":   "user-42",
		"iss":   "https://auth.example",
		"aud":   "gateway",
		"iat":   now.Unix(),
		"exp":   now.Add(10 * time.Minute).Unix(),
		"roles": []string{"courier"},
	}
	for _, e := range edits {
		e(c)
	}
	return c
}

// sign is testkeys.Sign, under the short name the tests use.
var sign = testkeys.Sign

// unsignedToken builds header.payload. with alg none.
func unsignedToken(c jwt.MapClaims) string {
	h, _ := json.Marshal(map[string]string{"alg": "none", "typ": "JWT"})
	p, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(p) + "."
}

// jwksJSON renders RSA public keys as a JWK Set.
func jwksJSON(keys map[string]*rsa.PublicKey) []byte {
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	for kid, k := range keys {
		set.Keys = append(set.Keys, map[string]string{
			"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
			"n": base64.RawURLEncoding.EncodeToString(k.N.Bytes()),
			"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(k.E)).Bytes()),
		})
	}
	b, _ := json.Marshal(set)
	return b
}

// provisioned returns a handler provisioned in a fresh Caddy context.
func provisioned(t testing.TB, h *AuthJWT) *AuthJWT {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := h.Provision(ctx); err != nil {
		t.Fatalf("provision: %v", err)
	}
	if err := h.Validate(); err != nil {
		t.Fatalf("validate: %v", err)
	}
	t.Cleanup(func() { _ = h.Cleanup() })
	return h
}

// nextRecorder is a next handler that records the request it got.
type nextRecorder struct {
	called bool
	req    *http.Request
}

func (n *nextRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	n.called = true
	n.req = r
	w.WriteHeader(http.StatusOK)
	return nil
}

// serve runs one request through h with a replacer in the context.
func serve(t testing.TB, h *AuthJWT, r *http.Request) (*httptest.ResponseRecorder, *nextRecorder, *caddy.Replacer) {
	t.Helper()
	repl := caddy.NewReplacer()
	r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
	w := httptest.NewRecorder()
	next := &nextRecorder{}
	if err := h.ServeHTTP(w, r, next); err != nil {
		t.Fatalf("ServeHTTP: %v", err)
	}
	return w, next, repl
}

// httptestRequest is a GET /orders carrying tok as a Bearer token.
func httptestRequest(tok string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/orders", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	return r
}

// startAuthSite runs one site in this process: authjwt with rsa1's public
// key plus authBody (subdirectives), then rest (the site's other
// directives). It returns the site's port.
func startAuthSite(t *testing.T, authBody, rest string) int {
	t.Helper()
	pem := writePublicPEM(t, t.TempDir(), "rsa.pem", &keys(t).rsa1.PublicKey)
	port := testcaddy.FreePort(t)
	testcaddy.Start(t, "", fmt.Sprintf("http://127.0.0.1:%d {\n\tauthjwt {\n\t\tkey %s\n\t\t%s\n\t}\n\t%s\n}\n",
		port, pem, authBody, rest))
	return port
}
