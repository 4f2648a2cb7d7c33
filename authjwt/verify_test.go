package authjwt

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate/tollgate/internal/testcaddy"
)

// TestEveryAlgorithmVerifiesAndRefusesForgeries runs each accepted
// algorithm through verifyToken: its own token passes; the same token
// signed by another key, with a changed signature byte, or relabelled
// with a sibling algorithm, is refused as a bad signature.
func TestEveryAlgorithmVerifiesAndRefusesForgeries(t *testing.T) {
	k := keys(t)
	dir := t.TempDir()
	rsaKeys := []KeyFile{{File: writePublicPEM(t, dir, "rsa.pem", &k.rsa1.PublicKey)}}
	secret := "0123456789abcdef0123456789abcdef"
	cases := []struct {
		method     jwt.SigningMethod
		cfg        *AuthJWT
		key, wrong any
		sibling    string // another alg the same key type accepts
	}{
		{jwt.SigningMethodRS256, &AuthJWT{Keys: rsaKeys}, k.rsa1, k.rsa2, "RS384"},
		{jwt.SigningMethodRS384, &AuthJWT{Keys: rsaKeys}, k.rsa1, k.rsa2, "RS512"},
		{jwt.SigningMethodRS512, &AuthJWT{Keys: rsaKeys}, k.rsa1, k.rsa2, "RS256"},
		{jwt.SigningMethodPS256, &AuthJWT{Keys: rsaKeys}, k.rsa1, k.rsa2, "RS256"},
		{jwt.SigningMethodPS384, &AuthJWT{Keys: rsaKeys}, k.rsa1, k.rsa2, "PS256"},
		{jwt.SigningMethodPS512, &AuthJWT{Keys: rsaKeys}, k.rsa1, k.rsa2, "RS512"},
		{jwt.SigningMethodES256, &AuthJWT{Keys: []KeyFile{{File: writePublicPEM(t, dir, "ec.pem", &k.ec256.PublicKey)}}}, k.ec256, mustEC(t), ""},
		{jwt.SigningMethodEdDSA, &AuthJWT{Keys: []KeyFile{{File: writePublicPEM(t, dir, "ed.pem", k.ed.Public())}}}, k.ed, mustEd(t), ""},
		{jwt.SigningMethodHS256, &AuthJWT{HMACSecret: secret}, []byte(secret), []byte(strings.ToUpper(secret)), "HS384"},
		{jwt.SigningMethodHS512, &AuthJWT{HMACSecret: secret}, []byte(secret), []byte(strings.ToUpper(secret)), "HS256"},
	}
	now := time.Now()
	for _, c := range cases {
		t.Run(c.method.Alg(), func(t *testing.T) {
			h := provisioned(t, c.cfg)
			good := sign(t, c.method, c.key, "", claims())
			if id, rej := h.verifyToken(good, now); rej != nil || id.userID != "user-42" {
				t.Fatalf("valid token refused: %+v", rej)
			}
			refused := map[string]string{
				"other key":   sign(t, c.method, c.wrong, "", claims()),
				"changed sig": flipSignatureByte(good),
			}
			if c.sibling != "" {
				refused["relabelled "+c.sibling] = relabel(t, good, c.sibling)
			}
			for name, tok := range refused {
				if _, rej := h.verifyToken(tok, now); rej == nil || rej.reason != reasonSignature {
					t.Errorf("%s: %+v, want a signature rejection", name, rej)
				}
			}
		})
	}
}

// TestEveryCandidateKeyIsTried: keys without kid are all candidates; a
// token of the second one passes, one of an unconfigured key does not.
func TestEveryCandidateKeyIsTried(t *testing.T) {
	k := keys(t)
	dir := t.TempDir()
	h := provisioned(t, &AuthJWT{Keys: []KeyFile{
		{File: writePublicPEM(t, dir, "a.pem", &k.rsa1.PublicKey)},
		{File: writePublicPEM(t, dir, "b.pem", &k.rsa2.PublicKey)},
	}})
	now := time.Now()
	if _, rej := h.verifyToken(sign(t, jwt.SigningMethodRS256, k.rsa2, "", claims()), now); rej != nil {
		t.Fatalf("token of the second key refused: %+v", rej)
	}
	if _, rej := h.verifyToken(sign(t, jwt.SigningMethodRS256, k.rsa3, "", claims()), now); rej == nil || rej.reason != reasonSignature {
		t.Fatalf("token of an unconfigured key: %+v", rej)
	}
}

// flipSignatureByte changes one byte in the middle of the signature.
func flipSignatureByte(tok string) string {
	i := strings.LastIndexByte(tok, '.') + 1
	b := []byte(tok)
	mid := i + (len(tok)-i)/2
	if b[mid] == 'A' {
		b[mid] = 'B'
	} else {
		b[mid] = 'A'
	}
	return string(b)
}

// relabel rewrites the header's alg, keeping payload and signature.
func relabel(t *testing.T, tok, alg string) string {
	t.Helper()
	parts := strings.SplitN(tok, ".", 3)
	h, err := jwt.NewParser().DecodeSegment(parts[0])
	if err != nil {
		t.Fatal(err)
	}
	header := strings.Replace(string(h), `"alg":"`, `"alg":"`+alg+`","x":"`, 1)
	return b64(header) + "." + parts[1] + "." + parts[2]
}

func mustEC(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustEd(t *testing.T) ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// RFC 7515 §4.1.11: a JWS whose "crit" header names an extension the
// recipient does not understand must be rejected. authjwt understands
// none, so a token that asks for one (here: only valid with some
// "exp-bound" semantics we would ignore) is refused, signature or not.
func TestTokenWithUnknownCriticalHeaderIsRefused(t *testing.T) {
	k := keys(t)
	h := provisioned(t, &AuthJWT{Keys: []KeyFile{{File: writePublicPEM(t, t.TempDir(), "rsa.pem", &k.rsa1.PublicKey)}}})
	for name, hdr := range map[string]map[string]any{
		"unknown extension": {"crit": []string{"exp-bound"}, "exp-bound": true},
		"empty list":        {"crit": []string{}},
		"not a list":        {"crit": "exp-bound"},
	} {
		t.Run(name, func(t *testing.T) {
			tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims())
			for k, v := range hdr {
				tok.Header[k] = v
			}
			raw, err := tok.SignedString(k.rsa1)
			if err != nil {
				t.Fatal(err)
			}
			w, next, _ := serve(t, h, httptestRequest(raw))
			if next.called || w.Code != 401 || !strings.Contains(w.Body.String(), `"critical header parameter not understood"`) {
				t.Fatalf("token with crit %v: %d %s", hdr["crit"], w.Code, w.Body)
			}
		})
	}
}

// A JWK Set URL that passes the https-or-loopback rule must not smuggle
// keys in from elsewhere through a redirect: every hop is checked. The
// loopback set redirects to plain http on 0.0.0.0 (not a loopback address,
// though it reaches this machine): a token signed by the key published
// there is never accepted, whether the load fails or the set stays empty.
func TestJWKSRedirectToPlainHTTPIsNeverFollowed(t *testing.T) {
	k := keys(t)
	smuggled := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(jwksJSON(map[string]*rsa.PublicKey{"evil": &k.rsa2.PublicKey}))
	}))
	t.Cleanup(smuggled.Close)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(smuggled.URL, "http://"))
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://0.0.0.0:"+port+"/jwks.json", http.StatusFound)
	}))
	t.Cleanup(redirector.Close)

	h := &AuthJWT{JWKS: &JWKS{URL: redirector.URL + "/jwks.json"}}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := h.Provision(ctx); err != nil {
		if !strings.Contains(err.Error(), "plain http") {
			t.Errorf("load failed for another reason: %v", err)
		}
		return // refused at load: nothing can be accepted
	}
	t.Cleanup(func() { _ = h.Cleanup() })
	tok := sign(t, jwt.SigningMethodRS256, k.rsa2, "evil", claims())
	if w, next, _ := serve(t, h, httptestRequest(tok)); next.called || w.Code == http.StatusOK {
		t.Fatalf("a key fetched through a redirect to plain http verified a token: %d %s", w.Code, w.Body)
	}
}

// A JWK Set URL that does not answer when the config loads (the set of a
// jwt_refresh in the same config, whose listener starts after the load)
// does not fail the load: tokens get 503 with Retry-After, never a 401
// that would make a client drop a good token, until the background fetch
// succeeds.
func TestJWKSUnreachableAtLoadAnswers503UntilItLoads(t *testing.T) {
	saved := jwksFirstRetry
	t.Cleanup(func() { jwksFirstRetry = saved })
	jwksFirstRetry = 50 * time.Millisecond
	k := keys(t)
	addr := fmt.Sprintf("127.0.0.1:%d", testcaddy.FreePort(t))
	h := provisioned(t, &AuthJWT{JWKS: &JWKS{URL: "http://" + addr + "/jwks.json"}})
	tok := sign(t, jwt.SigningMethodRS256, k.rsa1, "k1", claims())

	w, next, _ := serve(t, h, httptestRequest(tok))
	if next.called || w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" ||
		!strings.Contains(w.Body.String(), `"temporarily_unavailable"`) {
		t.Fatalf("before the set loads: %d %v %s", w.Code, w.Header(), w.Body)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(jwksJSON(map[string]*rsa.PublicKey{"k1": &k.rsa1.PublicKey}))
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		w, next, _ := serve(t, h, httptestRequest(tok))
		if next.called {
			break
		}
		if w.Code != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("while the set loads: %d %s", w.Code, w.Body)
		}
	}
}

// An external identity provider and jwt_refresh on one site: issuer takes
// several values and a token of either is accepted; any other iss, or
// none, is refused as before. One issuer still adapts to the JSON string
// of older configs, which keep loading.
func TestTokensOfEitherConfiguredIssuerAreAccepted(t *testing.T) {
	k := keys(t)
	pem := writePublicPEM(t, t.TempDir(), "rsa.pem", &k.rsa1.PublicKey)
	raw := handlerJSON(t, "authjwt {\n\t\tkey "+pem+"\n\t\tissuer https://idp.example https://auth.example\n\t}")
	if !strings.Contains(string(raw), `"issuer":["https://idp.example","https://auth.example"]`) {
		t.Fatalf("adapted: %s", raw)
	}
	var h AuthJWT
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatal(err)
	}
	provisioned(t, &h)
	now := time.Now()
	for iss, ok := range map[string]bool{"https://idp.example": true, "https://auth.example": true, "https://evil.example": false, "": false} {
		tok := sign(t, jwt.SigningMethodRS256, k.rsa1, "", claims(func(c jwt.MapClaims) {
			if iss == "" {
				delete(c, "iss")
			} else {
				c["iss"] = iss
			}
		}))
		_, rej := h.verifyToken(tok, now)
		if ok && rej != nil {
			t.Errorf("iss %q refused: %+v", iss, rej)
		}
		if !ok && (rej == nil || rej.reason != reasonIssuer || rej.desc != "wrong issuer") {
			t.Errorf("iss %q: %+v, want wrong issuer", iss, rej)
		}
	}

	one := handlerJSON(t, "authjwt {\n\t\tkey "+pem+"\n\t\tissuer https://auth.example\n\t}")
	if !strings.Contains(string(one), `"issuer":"https://auth.example"`) {
		t.Errorf("one issuer adapted to %s, want the string form", one)
	}
	var old AuthJWT
	if err := json.Unmarshal([]byte(`{"keys":[{"file":"`+pem+`"}],"issuer":"https://auth.example"}`), &old); err != nil ||
		len(old.Issuer) != 1 || old.Issuer[0] != "https://auth.example" {
		t.Errorf("an older config's issuer: %v %v", old.Issuer, err)
	}
}
