package authjwt

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	_ "crypto/sha256" // RS256 in verify
	_ "crypto/sha512" // RS384, RS512
	"slices"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate/tollgate/internal/jwtkey"
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
	if err := jwtkey.Check(key); err != nil {
		return nil, err
	}
	switch k := key.(type) {
	case *rsa.PublicKey:
		return []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}, nil
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P384() {
			return []string{"ES384"}, nil
		}
		return []string{"ES256"}, nil
	}
	return []string{"EdDSA"}, nil
}

// loadKeyFile reads a verifying key's PEM file (internal/jwtkey's policy:
// a public key or a certificate, never a private key). Its errors leave
// the path to the caller, which names it with its subdirective.
func loadKeyFile(path, kid string) (verificationKey, error) {
	key, err := jwtkey.ReadVerifying(path)
	if err != nil {
		return verificationKey{}, err
	}
	return newVerificationKey(kid, key)
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
