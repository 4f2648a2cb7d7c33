// Package rsapub verifies RSASSA-PKCS1-v1_5 signatures (RFC 8017 §8.2.2)
// with a public key whose Montgomery modulus is computed once.
//
// crypto/rsa converts the public key on every verification (Go 1.26:
// rsa.VerifyPKCS1v15 → fipsPublicKey → bigmod.NewModulus, which computes
// R² mod N), about a third of the cost of verifying an RS256 token. A
// gateway verifies every new token against the same few keys, so the key
// is prepared once here and the verification does only s^e mod N and the
// comparison. The arithmetic is filippo.io/bigmod, the exported copy of
// the standard library's own crypto/internal/fips140/bigmod.
//
// The check is the one RFC 8017 prescribes and crypto/rsa performs: build
// the whole expected encoding EM' = 0x00 01 FF…FF 00 ‖ DigestInfo ‖ H from
// the hash, and compare it byte for byte with s^e mod N. Nothing of the
// signature's encoding is parsed, so no lenient-parsing forgery applies.
// Public-key operations handle no secret: variable time is fine.
package rsapub

import (
	"crypto"
	"crypto/rsa"
	"crypto/subtle"
	"errors"
	"fmt"

	"filippo.io/bigmod"
)

// Key is an RSA public key prepared for verification. It is immutable and
// safe for concurrent use.
type Key struct {
	pub *rsa.PublicKey
	n   *bigmod.Modulus
	e   uint
}

// MinBits is the smallest modulus New accepts, as crypto/rsa does.
const MinBits = 1024

// New prepares pub. It refuses what crypto/rsa's verification refuses: a
// modulus under MinBits bits or even, an exponent below 2, even, or above
// 2³¹-1.
func New(pub *rsa.PublicKey) (*Key, error) {
	if pub == nil || pub.N == nil {
		return nil, errors.New("rsapub: no key")
	}
	if bits := pub.N.BitLen(); bits < MinBits {
		return nil, fmt.Errorf("rsapub: %d-bit modulus is too small", bits)
	}
	if pub.N.Bit(0) == 0 {
		return nil, errors.New("rsapub: modulus is even")
	}
	if pub.E < 2 || pub.E&1 == 0 || pub.E > 1<<31-1 {
		return nil, fmt.Errorf("rsapub: unsupported public exponent %d", pub.E)
	}
	n, err := bigmod.NewModulus(pub.N.Bytes())
	if err != nil {
		return nil, fmt.Errorf("rsapub: %w", err)
	}
	return &Key{pub: pub, n: n, e: uint(pub.E)}, nil
}

// Public returns the key New was given.
func (k *Key) Public() *rsa.PublicKey { return k.pub }

// digestInfo holds the DER prefix of DigestInfo for each hash (RFC 8017
// §9.2, note 1).
var digestInfo = map[crypto.Hash][]byte{
	crypto.SHA256: {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20},
	crypto.SHA384: {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30},
	crypto.SHA512: {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40},
}

// VerifyPKCS1v15 reports whether sig is a valid PKCS #1 v1.5 signature
// of hashed, the digest by hash. Any failure is rsa.ErrVerification,
// as with crypto/rsa; an unsupported hash is its own error.
func (k *Key) VerifyPKCS1v15(hash crypto.Hash, hashed, sig []byte) error {
	prefix, ok := digestInfo[hash]
	if !ok {
		return fmt.Errorf("rsapub: unsupported hash %v", hash)
	}
	size := k.n.Size()
	tLen := len(prefix) + len(hashed)
	// The signature is exactly the modulus' length (RFC 8017 §8.2.2 step 1),
	// the digest has its hash's length, and EM leaves room for eight 0xFF.
	if len(sig) != size || len(hashed) != hash.Size() || size < tLen+11 {
		return rsa.ErrVerification
	}
	s, err := bigmod.NewNat().SetBytes(sig, k.n) // refuses s ≥ N
	if err != nil {
		return rsa.ErrVerification
	}
	em := bigmod.NewNat().ExpShortVarTime(s, k.e, k.n).Bytes(k.n)
	want := make([]byte, size)
	want[1] = 0x01
	for i := 2; i < size-tLen-1; i++ {
		want[i] = 0xff
	}
	copy(want[size-tLen:], prefix)
	copy(want[size-len(hashed):], hashed)
	if subtle.ConstantTimeCompare(em, want) != 1 {
		return rsa.ErrVerification
	}
	return nil
}
