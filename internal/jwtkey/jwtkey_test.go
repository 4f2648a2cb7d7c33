package jwtkey

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testKeys are generated once: RSA is slow under -race.
type testKeys struct {
	rsa    *rsa.PrivateKey
	small  *rsa.PrivateKey // 1024 bits
	ec     *ecdsa.PrivateKey
	p521   *ecdsa.PrivateKey
	ed     ed25519.PrivateKey
	certEC []byte // DER of a self-signed certificate of ec
}

func newTestKeys(t *testing.T) *testKeys {
	t.Helper()
	var k testKeys
	var err error
	if k.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	if k.small, err = rsa.GenerateKey(rand.Reader, 1024); err != nil {
		t.Fatal(err)
	}
	if k.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	if k.p521, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	if _, k.ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "jwt"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	if k.certEC, err = x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.ec.Public(), k.ec); err != nil {
		t.Fatal(err)
	}
	return &k
}

func block(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func pkcs8(t *testing.T, key crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return block("PRIVATE KEY", der)
}

func publicPEM(t *testing.T, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return block("PUBLIC KEY", der)
}

func sec1(t *testing.T, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return block("EC PRIVATE KEY", der)
}

// The policy per use: a verifying key is a public key or a certificate,
// and a file with a private key in it is refused, whatever else it holds;
// a signing key is a private key, and a file without one is refused.
func TestEachUseAcceptsItsOwnKindOfKeyFileAndRefusesTheOther(t *testing.T) {
	k := newTestKeys(t)
	type parse func([]byte) error
	verifying := func(b []byte) error { _, err := ParseVerifying(b); return err }
	signing := func(b []byte) error { _, err := ParseSigning(b); return err }
	for _, tc := range []struct {
		name  string
		parse parse
		pem   []byte
		want  string // "" for accepted
	}{
		{"verifying PKIX RSA", verifying, publicPEM(t, k.rsa.Public()), ""},
		{"verifying PKCS1 RSA", verifying, block("RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&k.rsa.PublicKey)), ""},
		{"verifying PKIX P-256", verifying, publicPEM(t, k.ec.Public()), ""},
		{"verifying PKIX Ed25519", verifying, publicPEM(t, k.ed.Public()), ""},
		{"verifying certificate", verifying, block("CERTIFICATE", k.certEC), ""},
		{"verifying PKCS8 private", verifying, pkcs8(t, k.ec), "holds a private key (PRIVATE KEY): give the public key or a certificate"},
		{"verifying PKCS1 private", verifying, block("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k.rsa)), "holds a private key (RSA PRIVATE KEY)"},
		{"verifying SEC1 private", verifying, sec1(t, k.ec), "holds a private key (EC PRIVATE KEY)"},
		{"verifying public then private", verifying, append(publicPEM(t, k.ec.Public()), pkcs8(t, k.ec)...), "holds a private key (PRIVATE KEY)"},
		{"verifying no PEM", verifying, []byte("not a key"), "no PEM block found"},
		{"verifying other block", verifying, block("EC PARAMETERS", p256OID), "no PEM public key or certificate found"},
		{"verifying corrupt", verifying, block("PUBLIC KEY", []byte{1, 2, 3}), "parsing PUBLIC KEY: "},
		{"signing PKCS8 ECDSA", signing, pkcs8(t, k.ec), ""},
		{"signing PKCS8 Ed25519", signing, pkcs8(t, k.ed), ""},
		{"signing PKCS1 RSA", signing, block("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k.rsa)), ""},
		{"signing SEC1 after EC PARAMETERS", signing, append(block("EC PARAMETERS", p256OID), sec1(t, k.ec)...), ""},
		{"signing public key", signing, publicPEM(t, k.ec.Public()), "holds no private key (only PUBLIC KEY): a signing key must be the private key"},
		{"signing certificate", signing, block("CERTIFICATE", k.certEC), "holds no private key (only CERTIFICATE)"},
		{"signing encrypted", signing, block("ENCRYPTED PRIVATE KEY", []byte{1}), "ENCRYPTED PRIVATE KEY is not supported"},
		{"signing no PEM", signing, []byte("not a key"), "no PEM private key found"},
		{"signing corrupt", signing, block("PRIVATE KEY", []byte{1, 2, 3}), "parsing PRIVATE KEY: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.parse(tc.pem)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// Weak and unsupported keys are refused for both uses, and so by Check for
// keys that come from a JWK Set.
func TestWeakOrUnsupportedKeysAreRefusedForEitherUse(t *testing.T) {
	k := newTestKeys(t)
	for _, tc := range []struct {
		name  string
		priv  crypto.Signer
		want  string
		check crypto.PublicKey
	}{
		{"RSA 1024", k.small, "RSA key of 1024 bits is too small (minimum 2048)", k.small.Public()},
		{"P-521", k.p521, "unsupported ECDSA curve P-521 (P-256 or P-384)", k.p521.Public()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseVerifying(publicPEM(t, tc.priv.Public())); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("verifying: %v, want %q", err, tc.want)
			}
			if _, err := ParseSigning(pkcs8(t, tc.priv)); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("signing: %v, want %q", err, tc.want)
			}
			if err := Check(tc.check); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Check: %v, want %q", err, tc.want)
			}
		})
	}
	if err := Check([]byte("hmac")); err == nil || !strings.Contains(err.Error(), "unsupported key type []uint8") {
		t.Errorf("Check of an HMAC secret: %v", err)
	}
}

// A file that cannot be read is reported by its cause alone: the caller
// names the path with its subdirective.
func TestAnUnreadableKeyFileIsReportedByItsCause(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "absent.pem")
	for name, read := range map[string]func(string) error{
		"verifying": func(p string) error { _, err := ReadVerifying(p); return err },
		"signing":   func(p string) error { _, err := ReadSigning(p); return err },
	} {
		err := read(missing)
		if err == nil || err.Error() != "cannot read the file: no such file or directory" {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// p256OID is the DER of the "EC PARAMETERS" block openssl writes before a
// P-256 key: the curve's OID, 1.2.840.10045.3.1.7.
var p256OID = []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}
