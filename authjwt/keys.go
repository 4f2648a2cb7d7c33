package authjwt

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	_ "crypto/sha256" // RS256 in verify
	_ "crypto/sha512" // RS384, RS512
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate/tollgate/internal/rsapub"
)

// verificationKey is one key with the algorithms it may verify.
type verificationKey struct {
	kid  string
	key  crypto.PublicKey // or the HMAC secret ([]byte)
	algs []string
	rsa  *rsapub.Key // an RSA key prepared once: PKCS #1 v1.5 without per-call setup
}

// newVerificationKey binds a public key to the algorithms that fit it and
// prepares RSA keys for verification.
func newVerificationKey(kid string, key crypto.PublicKey) (verificationKey, error) {
	algs, err := algsForKey(key)
	if err != nil {
		return verificationKey{}, err
	}
	vk := verificationKey{kid: kid, key: key, algs: algs}
	if pub, ok := key.(*rsa.PublicKey); ok {
		if vk.rsa, err = rsapub.New(pub); err != nil {
			return verificationKey{}, err
		}
	}
	return vk, nil
}

// pkcs1Hashes are the RS* algorithms rsapub verifies; PS* (RSA-PSS) goes
// through the jwt library and crypto/rsa.
var pkcs1Hashes = map[string]crypto.Hash{"RS256": crypto.SHA256, "RS384": crypto.SHA384, "RS512": crypto.SHA512}

// verify checks sig over signed with this key. The method is the token's,
// already known to be one of k.algs (candidates filtered on it).
func (k *verificationKey) verify(m jwt.SigningMethod, signed string, sig []byte) error {
	if hash, ok := pkcs1Hashes[m.Alg()]; ok && k.rsa != nil {
		h := hash.New()
		h.Write([]byte(signed))
		return k.rsa.VerifyPKCS1v15(hash, h.Sum(nil), sig)
	}
	return m.Verify(signed, sig, k.key)
}

// algsForKey lists the JWS algorithms a public key can verify. Tying each
// key to its own algorithms is what makes algorithm confusion impossible: a
// token's alg header can only ever select a method that fits the key.
func algsForKey(key crypto.PublicKey) ([]string, error) {
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return nil, fmt.Errorf("RSA key of %d bits is too small (minimum 2048)", k.N.BitLen())
		}
		return []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}, nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return []string{"ES256"}, nil
		case elliptic.P384():
			return []string{"ES384"}, nil
		}
		return nil, fmt.Errorf("unsupported ECDSA curve %s (P-256 or P-384)", k.Curve.Params().Name)
	case ed25519.PublicKey:
		return []string{"EdDSA"}, nil
	}
	return nil, fmt.Errorf("unsupported public key type %T", key)
}

// loadKeyFile reads a PEM file holding a public key (PKIX "PUBLIC KEY",
// PKCS#1 "RSA PUBLIC KEY") or an X.509 certificate. Its errors leave the
// path to the caller, which names it with its subdirective.
func loadKeyFile(path, kid string) (verificationKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return verificationKey{}, fmt.Errorf("cannot read the file: %w", err)
	}
	key, err := parsePublicKeyPEM(data)
	if err != nil {
		return verificationKey{}, err
	}
	return newVerificationKey(kid, key)
}

func parsePublicKeyPEM(data []byte) (crypto.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block found")
	}
	switch block.Type {
	case "PUBLIC KEY":
		return x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		return x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		return cert.PublicKey, nil
	case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY":
		// Refuse rather than derive: a gateway that only verifies should
		// never hold signing material.
		return nil, fmt.Errorf("holds a private key (%s); give the public key or certificate", block.Type)
	}
	return nil, fmt.Errorf("unsupported PEM block %q", block.Type)
}

// keySet is an immutable set of verification keys; JWKS refreshes swap in
// a new one atomically.
type keySet struct {
	keys []verificationKey
}

// candidates returns the keys that may verify a token with this kid and
// alg. A token with a kid matches keys with that kid and keys configured
// without one; a token without a kid matches every key.
func (s *keySet) candidates(kid, alg string, out []*verificationKey) []*verificationKey {
	if s == nil {
		return out
	}
	for i := range s.keys {
		k := &s.keys[i]
		if kid != "" && k.kid != "" && k.kid != kid {
			continue
		}
		if !slices.Contains(k.algs, alg) {
			continue
		}
		out = append(out, k)
	}
	return out
}

// hasKid reports whether a key with exactly this kid is in the set.
func (s *keySet) hasKid(kid string) bool {
	if s == nil {
		return false
	}
	for i := range s.keys {
		if s.keys[i].kid == kid {
			return true
		}
	}
	return false
}
