package refresh

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math/big"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate/tollgate/internal/jwtkey"
)

// Token types, carried in the "typ" claim so that an access token can never
// be used as a refresh token or the reverse.
const (
	typRefresh = "refresh"
	typAccess  = "access"
)

// reservedClaims are set by tollgate itself; login claims from the upstream
// cannot override them.
var reservedClaims = map[string]bool{
	"sub": true, "sid": true, "gen": true, "jti": true, "typ": true, "iat": true,
	"exp": true, "nbf": true, "iss": true, "aud": true, "auth_time": true, "realm": true,
}

// signingKey is one loaded private key with what is needed to sign and to
// publish its public half.
type signingKey struct {
	kid    string
	method jwt.SigningMethod
	priv   crypto.Signer
	// mac signs refresh tokens (HS256). Only jwt_refresh ever reads a
	// refresh token, so it needs no public verification: a MAC makes each
	// refresh cost one public-key signature (the access token) instead of a
	// signature plus an ECDSA or EdDSA verification, which costs more than
	// signing. It is derived from the private key, so every instance that
	// has the key file has the same MAC key, and rotating the signing key
	// rotates it too.
	mac []byte
}

// refreshMACMethod is the only algorithm a refresh token may carry.
var refreshMACMethod = jwt.SigningMethodHS256

// deriveMAC derives the refresh-token MAC key of a private key with HKDF
// (SHA-256), bound to the kid and the realm: two realms sharing a key file
// and kid never accept each other's refresh tokens. The default realm ("")
// derives exactly as releases before realms did (info = kid), so their
// refresh tokens keep verifying.
func deriveMAC(priv crypto.Signer, kid, realm string) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("deriving the refresh token key: %w", err)
	}
	info := kid
	if realm != "" {
		info = kid + "\x00realm\x00" + realm
	}
	return hkdf.Key(sha256.New, der, []byte("tollgate jwt_refresh refresh-token MAC v1"), info, 32)
}

// verifyKey is a public key tokens may be checked against.
type verifyKey struct {
	kid    string
	method jwt.SigningMethod
	pub    crypto.PublicKey
}

// loadSigningKey reads a signing key's PEM file (internal/jwtkey's
// policy: a private key) and picks the JWS algorithm from its type. An
// empty kid becomes the RFC 7638 thumbprint of the public key. Its
// refresh-token MAC key is the realm's. Its errors leave the path to the
// caller, which names it with its subdirective.
func loadSigningKey(path, kid, realm string) (*signingKey, error) {
	priv, err := jwtkey.ReadSigning(path)
	if err != nil {
		return nil, err
	}
	method := methodFor(priv.Public())
	if kid == "" {
		kid = thumbprint(priv.Public())
	}
	mac, err := deriveMAC(priv, kid, realm)
	if err != nil {
		return nil, err
	}
	return &signingKey{kid: kid, method: method, priv: priv, mac: mac}, nil
}

// loadPublicKey reads a legacy_key's PEM file (internal/jwtkey's policy
// for verifying keys: a public key or a certificate, never a private key);
// its errors leave the path to the caller.
func loadPublicKey(path string) (*verifyKey, error) {
	pub, err := jwtkey.ReadVerifying(path)
	if err != nil {
		return nil, err
	}
	return &verifyKey{kid: thumbprint(pub), method: methodFor(pub), pub: pub}, nil
}

// methodFor maps a key jwtkey accepted to the one JWS algorithm tollgate
// uses with it.
func methodFor(pub crypto.PublicKey) jwt.SigningMethod {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return jwt.SigningMethodRS256
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P384() {
			return jwt.SigningMethodES384
		}
		return jwt.SigningMethodES256
	}
	return jwt.SigningMethodEdDSA
}

// sign returns the compact JWT of claims signed with k, with its kid.
func (k *signingKey) sign(claims jwt.MapClaims) (string, error) {
	t := jwt.NewWithClaims(k.method, claims)
	t.Header["kid"] = k.kid
	s, err := t.SignedString(k.priv)
	if err != nil {
		return "", fmt.Errorf("signing token with key %s: %w", k.kid, err)
	}
	return s, nil
}

// signRefresh returns the compact JWT of refresh claims, MACed with k's
// derived key, with its kid.
func (k *signingKey) signRefresh(claims jwt.MapClaims) (string, error) {
	t := jwt.NewWithClaims(refreshMACMethod, claims)
	t.Header["kid"] = k.kid
	s, err := t.SignedString(k.mac)
	if err != nil {
		return "", fmt.Errorf("signing refresh token with key %s: %w", k.kid, err)
	}
	return s, nil
}

// keySet is what one handler signs with and verifies against.
type keySet struct {
	signer *signingKey
	byKid  map[string]*verifyKey
	macs   map[string][]byte
	algs   []string
}

func newKeySet(keys []*signingKey) *keySet {
	ks := &keySet{signer: keys[0], byKid: map[string]*verifyKey{}, macs: map[string][]byte{}}
	seen := map[string]bool{}
	for _, k := range keys {
		ks.macs[k.kid] = k.mac
		ks.byKid[k.kid] = &verifyKey{kid: k.kid, method: k.method, pub: k.priv.Public()}
		if !seen[k.method.Alg()] {
			seen[k.method.Alg()] = true
			ks.algs = append(ks.algs, k.method.Alg())
		}
	}
	return ks
}

// keyfunc finds the verification key by kid and refuses any algorithm other
// than the one that key is for (no "none", no HMAC with a public key).
func (ks *keySet) keyfunc(t *jwt.Token) (any, error) {
	kid, _ := t.Header["kid"].(string)
	k, ok := ks.byKid[kid]
	if !ok {
		return nil, fmt.Errorf("unknown kid %q", kid)
	}
	if t.Method.Alg() != k.method.Alg() {
		return nil, fmt.Errorf("algorithm %s does not match key %s", t.Method.Alg(), kid)
	}
	return k.pub, nil
}

// refreshKeyfunc finds the MAC key of a refresh token by kid; the parser
// accepts only HS256 for refresh tokens, so no public key is ever used as an
// HMAC secret.
func (ks *keySet) refreshKeyfunc(t *jwt.Token) (any, error) {
	kid, _ := t.Header["kid"].(string)
	mac, ok := ks.macs[kid]
	if !ok {
		return nil, fmt.Errorf("unknown kid %q", kid)
	}
	if t.Method.Alg() != refreshMACMethod.Alg() {
		return nil, fmt.Errorf("algorithm %s is not a refresh token's", t.Method.Alg())
	}
	return mac, nil
}

// randomID returns n random bytes as hex (sid: 16 bytes = 128 bits).
func randomID(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error()) // never happens on Linux
	}
	return hex.EncodeToString(b)
}

// fingerprint is a short SHA-256 of a token for logs: never log tokens.
func fingerprint(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:6])
}

// thumbprint is the RFC 7638 JWK thumbprint of pub, the default kid.
func thumbprint(pub crypto.PublicKey) string {
	var canon string
	switch k := pub.(type) {
	case *rsa.PublicKey:
		canon = fmt.Sprintf(`{"e":"%s","kty":"RSA","n":"%s"}`, b64(big.NewInt(int64(k.E)).Bytes()), b64(k.N.Bytes()))
	case *ecdsa.PublicKey:
		x, y := ecCoords(k)
		canon = fmt.Sprintf(`{"crv":"%s","kty":"EC","x":"%s","y":"%s"}`, k.Curve.Params().Name, x, y)
	case ed25519.PublicKey:
		canon = fmt.Sprintf(`{"crv":"Ed25519","kty":"OKP","x":"%s"}`, b64(k))
	}
	sum := sha256.Sum256([]byte(canon))
	return b64(sum[:])
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// ecCoords returns the base64url x and y of an ECDSA key, padded to the
// curve size as RFC 7518 §6.2.1.2 requires.
func ecCoords(k *ecdsa.PublicKey) (string, string) {
	size := (k.Curve.Params().BitSize + 7) / 8
	raw, err := k.Bytes() // uncompressed point: 0x04 || X || Y
	if err != nil {
		return "", ""
	}
	return b64(raw[1 : 1+size]), b64(raw[1+size:])
}
