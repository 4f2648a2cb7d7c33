// Package testkeys writes key files and signs tokens for tests: the PEM
// forms the modules read, and JWTs signed with any key and algorithm
// (forgeries included).
package testkeys

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// WritePrivate stores key as a PKCS#8 "PRIVATE KEY" PEM file dir/name and
// returns its path. It returns errors rather than taking a testing.TB so
// that keys can be made once per test binary, outside any test.
func WritePrivate(dir, name string, key crypto.Signer) (string, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", err
	}
	return write(dir, name, "PRIVATE KEY", der)
}

// WritePublic stores pub as a PKIX "PUBLIC KEY" PEM file dir/name.
func WritePublic(dir, name string, pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	return write(dir, name, "PUBLIC KEY", der)
}

func write(dir, name, typ string, der []byte) (string, error) {
	path := filepath.Join(dir, name)
	return path, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}

// Sign returns claims as a compact JWT signed with key by method, with kid
// in the header when it is not empty.
func Sign(t testing.TB, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
