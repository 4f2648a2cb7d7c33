// Command tokengen writes distinct signed access JWTs, one per line, for
// the load scripts: bench/compare.sh feeds them to wrk (first-seen tokens),
// bench/memory.sh pipes a million of them into memload.
//
//	tokengen -alg RS256 -key k.pem -pub pub.pem -n 30000 > tokens.txt
//
// The private key file is created (PKCS#8) with its public key (PKIX) when
// it does not exist yet, and reused when it does. Every token has the same
// issuer, audience, role and a one-hour exp; sub and jti differ, so no two
// tokens are equal. Signing runs on every core; the order of lines is not
// the order of jti.
package main

import (
	"bufio"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"sync"
	"time"
)

func main() {
	alg := flag.String("alg", "ES256", "RS256 (2048-bit), ES256 or EdDSA (Ed25519)")
	keyFile := flag.String("key", "", "private key PEM (created when missing)")
	pubFile := flag.String("pub", "", "public key PEM written when the key is created")
	kid := flag.String("kid", "bench", "kid header (empty: none)")
	n := flag.Int("n", 1, "number of distinct tokens")
	ttl := flag.Duration("ttl", time.Hour, "token lifetime")
	flag.Parse()
	if err := run(*alg, *keyFile, *pubFile, *kid, *n, *ttl); err != nil {
		fmt.Fprintln(os.Stderr, "tokengen:", err)
		os.Exit(1)
	}
}

func run(alg, keyFile, pubFile, kid string, n int, ttl time.Duration) error {
	if keyFile == "" {
		return errors.New("-key is required")
	}
	key, err := loadOrCreate(alg, keyFile, pubFile)
	if err != nil {
		return err
	}
	hdr := map[string]string{"alg": alg, "typ": "JWT"}
	if kid != "" {
		hdr["kid"] = kid
	}
	hj, _ := json.Marshal(hdr)
	prefix := b64(hj) + "."
	now := time.Now().Unix()
	exp := now + int64(ttl/time.Second)

	out := bufio.NewWriterSize(os.Stdout, 1<<20)
	defer out.Flush()
	jobs := make(chan int, 1024)
	lines := make(chan string, 1024)
	var wg sync.WaitGroup
	var signErr error
	var once sync.Once
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				t, err := mint(alg, key, prefix, i, now, exp)
				if err != nil {
					once.Do(func() { signErr = err })
					continue
				}
				lines <- t
			}
		}()
	}
	go func() {
		for i := range n {
			jobs <- i
		}
		close(jobs)
		wg.Wait()
		close(lines)
	}()
	for t := range lines {
		if _, err := out.WriteString(t + "\n"); err != nil {
			return err // the reader went away
		}
	}
	return signErr
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func mint(alg string, key crypto.Signer, prefix string, i int, iat, exp int64) (string, error) {
	claims := fmt.Sprintf(`{"sub":"user-%d","jti":"bench-%d","iss":"https://auth.example","aud":"gateway","iat":%d,"exp":%d,"roles":["courier"]}`, i, i, iat, exp)
	input := prefix + b64([]byte(claims))
	var sig []byte
	var err error
	switch alg {
	case "EdDSA":
		sig, err = key.Sign(nil, []byte(input), crypto.Hash(0))
	case "RS256":
		d := sha256.Sum256([]byte(input))
		sig, err = rsa.SignPKCS1v15(nil, key.(*rsa.PrivateKey), crypto.SHA256, d[:])
	case "ES256":
		d := sha256.Sum256([]byte(input))
		var r, s []byte
		er, es, e := ecdsa.Sign(rand.Reader, key.(*ecdsa.PrivateKey), d[:])
		if e != nil {
			return "", e
		}
		r, s = er.FillBytes(make([]byte, 32)), es.FillBytes(make([]byte, 32))
		sig = append(r, s...) // JWS wants r||s, not ASN.1
	}
	if err != nil {
		return "", err
	}
	return input + "." + b64(sig), nil
}

func loadOrCreate(alg, keyFile, pubFile string) (crypto.Signer, error) {
	raw, err := os.ReadFile(keyFile)
	if err == nil {
		blk, _ := pem.Decode(raw)
		if blk == nil {
			return nil, fmt.Errorf("%s: no PEM block", keyFile)
		}
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", keyFile, err)
		}
		return k.(crypto.Signer), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	var k crypto.Signer
	switch alg {
	case "RS256":
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ES256":
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "EdDSA":
		_, k, err = ed25519.GenerateKey(rand.Reader)
	default:
		return nil, fmt.Errorf("unknown -alg %q", alg)
	}
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, err
	}
	if pubFile != "" {
		pder, err := x509.MarshalPKIXPublicKey(k.Public())
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(pubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pder}), 0o644); err != nil {
			return nil, err
		}
	}
	return k, nil
}
