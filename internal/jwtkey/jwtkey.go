// Package jwtkey reads the PEM key files tollgate's JWT modules are given,
// with one policy per use, written here once:
//
//   - A verifying key — authjwt's `key`, jwt_refresh's `legacy_key` — is a
//     public key (PKIX "PUBLIC KEY", PKCS #1 "RSA PUBLIC KEY") or an X.509
//     "CERTIFICATE". A file that holds a private key is refused, not
//     reduced to its public half: a verifier never needs the signing half,
//     and accepting it would let a signing key sit unnoticed on every host
//     that only verifies.
//   - A signing key — jwt_refresh's `signing_key` — is a private key
//     (PKCS #8 "PRIVATE KEY", PKCS #1 "RSA PRIVATE KEY", SEC 1 "EC PRIVATE
//     KEY", other blocks such as "EC PARAMETERS" before it skipped). A file
//     with only a public key or a certificate is refused: it cannot sign.
//
// Either way the key is one tollgate accepts (Check): RSA of 2048 bits or
// more, ECDSA P-256 or P-384, or Ed25519.
//
// Errors never contain key material, and leave the path to the caller,
// which names it with its subdirective (`key /etc/k.pem: holds a private
// key …`).
package jwtkey

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// MinRSABits is the smallest RSA modulus accepted.
const MinRSABits = 2048

// privateTypes are the PEM block types that hold a private key.
var privateTypes = map[string]bool{
	"PRIVATE KEY": true, "RSA PRIVATE KEY": true, "EC PRIVATE KEY": true, "ENCRYPTED PRIVATE KEY": true,
}

// ReadVerifying reads the PEM file of a verifying key (see the package
// policy) and checks the key.
func ReadVerifying(path string) (crypto.PublicKey, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return ParseVerifying(data)
}

// ReadSigning reads the PEM file of a signing key (see the package policy)
// and checks the key.
func ReadSigning(path string) (crypto.Signer, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return ParseSigning(data)
}

// ParseVerifying is ReadVerifying on the file's contents.
func ParseVerifying(data []byte) (crypto.PublicKey, error) {
	var found *pem.Block
	seen := false
	for rest := data; ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			break
		}
		seen = true
		if privateTypes[block.Type] {
			return nil, fmt.Errorf("holds a private key (%s): give the public key or a certificate, "+
				"a verifier never needs the signing half (openssl pkey -pubout)", block.Type)
		}
		if found == nil && (block.Type == "PUBLIC KEY" || block.Type == "RSA PUBLIC KEY" || block.Type == "CERTIFICATE") {
			found = block
		}
	}
	switch {
	case !seen:
		return nil, errors.New("no PEM block found")
	case found == nil:
		return nil, errors.New("no PEM public key or certificate found")
	}
	pub, err := parsePublic(found)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", found.Type, err)
	}
	return pub, Check(pub)
}

func parsePublic(block *pem.Block) (crypto.PublicKey, error) {
	switch block.Type {
	case "PUBLIC KEY":
		return x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		return x509.ParsePKCS1PublicKey(block.Bytes)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, err
	}
	return cert.PublicKey, nil
}

// ParseSigning is ReadSigning on the file's contents.
func ParseSigning(data []byte) (crypto.Signer, error) {
	var other string
	for rest := data; ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			break
		}
		if !privateTypes[block.Type] {
			if other == "" {
				other = block.Type
			}
			continue // e.g. "EC PARAMETERS" before the key
		}
		signer, err := parsePrivate(block)
		if err != nil {
			return nil, err
		}
		return signer, Check(signer.Public())
	}
	if other != "" {
		return nil, fmt.Errorf("holds no private key (only %s): a signing key must be the private key", other)
	}
	return nil, errors.New("no PEM private key found")
}

func parsePrivate(block *pem.Block) (crypto.Signer, error) {
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("%s is not supported: store the key unencrypted, readable by tollgate alone", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", block.Type, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported private key type %T", key)
	}
	return signer, nil
}

// Check refuses a key tollgate does not sign or verify with: RSA under
// MinRSABits, ECDSA on a curve other than P-256 or P-384, any other type
// than RSA, ECDSA or Ed25519. Keys from a JWK Set go through it too.
func Check(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < MinRSABits {
			return fmt.Errorf("RSA key of %d bits is too small (minimum %d)", k.N.BitLen(), MinRSABits)
		}
		return nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return fmt.Errorf("unsupported ECDSA curve %s (P-256 or P-384)", k.Curve.Params().Name)
		}
		return nil
	case ed25519.PublicKey:
		return nil
	}
	return fmt.Errorf("unsupported key type %T (RSA, ECDSA or Ed25519)", pub)
}

// readFile reads a key file; the error is the cause alone, since the
// caller names the path.
func readFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("cannot read the file: %w", err)
	}
	return data, nil
}
