package rsapub

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"math/big"
	"sync"
	"testing"
)

var (
	keysOnce sync.Once
	key2048  *rsa.PrivateKey
	key3072  *rsa.PrivateKey
)

func testKeys(t testing.TB) []*rsa.PrivateKey {
	keysOnce.Do(func() {
		var err error
		if key2048, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if key3072, err = rsa.GenerateKey(rand.Reader, 3072); err != nil {
			panic(err)
		}
	})
	return []*rsa.PrivateKey{key2048, key3072}
}

func prepared(t testing.TB, pub *rsa.PublicKey) *Key {
	t.Helper()
	k, err := New(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func digest(h crypto.Hash, msg []byte) []byte {
	switch h {
	case crypto.SHA384:
		d := sha512.Sum384(msg)
		return d[:]
	case crypto.SHA512:
		d := sha512.Sum512(msg)
		return d[:]
	}
	d := sha256.Sum256(msg)
	return d[:]
}

// agree checks that rsapub and crypto/rsa give the same verdict.
func agree(t *testing.T, what string, k *Key, h crypto.Hash, hashed, sig []byte) bool {
	t.Helper()
	want := rsa.VerifyPKCS1v15(k.Public(), h, hashed, sig)
	got := k.VerifyPKCS1v15(h, hashed, sig)
	if (got == nil) != (want == nil) {
		t.Fatalf("%s: rsapub says %v, crypto/rsa says %v", what, got, want)
	}
	if got != nil && got != rsa.ErrVerification {
		t.Fatalf("%s: error %v, want rsa.ErrVerification", what, got)
	}
	return got == nil
}

// TestValidSignaturesVerify: every hash, both key sizes, many messages.
func TestValidSignaturesVerify(t *testing.T) {
	for _, priv := range testKeys(t) {
		k := prepared(t, &priv.PublicKey)
		for _, h := range []crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512} {
			for i := range 20 {
				msg := make([]byte, i*7)
				_, _ = rand.Read(msg)
				hashed := digest(h, msg)
				sig, err := rsa.SignPKCS1v15(rand.Reader, priv, h, hashed)
				if err != nil {
					t.Fatal(err)
				}
				if !agree(t, "valid", k, h, hashed, sig) {
					t.Fatalf("%d-bit %v: a valid signature was refused", priv.N.BitLen(), h)
				}
			}
		}
	}
}

// TestTamperedInputsAreRefused: every single-bit change of the signature
// or the digest, and the usual malformations, are refused by both.
func TestTamperedInputsAreRefused(t *testing.T) {
	priv := testKeys(t)[0]
	k := prepared(t, &priv.PublicKey)
	other := prepared(t, &testKeys(t)[1].PublicKey)
	hashed := digest(crypto.SHA256, []byte("header.claims"))
	sig, _ := rsa.SignPKCS1v15(rand.Reader, priv, crypto.SHA256, hashed)
	for i := range len(sig) * 8 {
		bad := bytes.Clone(sig)
		bad[i/8] ^= 1 << (i % 8)
		if agree(t, "flipped signature bit", k, crypto.SHA256, hashed, bad) {
			t.Fatalf("signature with bit %d flipped accepted", i)
		}
	}
	for i := range len(hashed) * 8 {
		bad := bytes.Clone(hashed)
		bad[i/8] ^= 1 << (i % 8)
		if agree(t, "flipped digest bit", k, crypto.SHA256, bad, sig) {
			t.Fatalf("digest with bit %d flipped accepted", i)
		}
	}
	n := priv.N.Bytes()
	nMinus1 := new(big.Int).Sub(priv.N, big.NewInt(1)).FillBytes(make([]byte, len(n)))
	cases := map[string][]byte{
		"empty":               nil,
		"one byte short":      sig[1:],
		"one byte long":       append([]byte{0}, sig...),
		"zero":                make([]byte, len(sig)),
		"one":                 append(make([]byte, len(sig)-1), 1),
		"N":                   n,
		"N-1":                 nMinus1,
		"all ones":            bytes.Repeat([]byte{0xff}, len(sig)),
		"signature of 3072":   must(rsa.SignPKCS1v15(rand.Reader, testKeys(t)[1], crypto.SHA256, hashed)),
		"signature as digest": sig[:32],
	}
	for name, bad := range cases {
		if agree(t, name, k, crypto.SHA256, hashed, bad) {
			t.Fatalf("%s accepted", name)
		}
	}
	if agree(t, "other key", other, crypto.SHA256, hashed, sig) {
		t.Fatal("signature verified under another key")
	}
	// The right signature checked as another hash (a digest of that length
	// is required, so the SHA-256 digest is stretched).
	if agree(t, "wrong hash", k, crypto.SHA384, append(bytes.Clone(hashed), make([]byte, 16)...), sig) {
		t.Fatal("SHA-256 signature accepted as SHA-384")
	}
	if err := k.VerifyPKCS1v15(crypto.MD5, hashed[:16], sig); err == nil || err == rsa.ErrVerification {
		t.Fatalf("MD5: %v, want an unsupported-hash error", err)
	}
}

// TestForgedEncodingsAreRefused signs, with the raw private operation,
// encodings that a lenient parser would accept (Bleichenbacher 2006 and
// its kin): short padding, garbage after the digest, DigestInfo with
// other parameters, a wrong block type. Only the exact encoding verifies.
func TestForgedEncodingsAreRefused(t *testing.T) {
	priv := testKeys(t)[0]
	k := prepared(t, &priv.PublicKey)
	hashed := digest(crypto.SHA256, []byte("forge me"))
	size := k.n.Size()
	prefix := digestInfo[crypto.SHA256]
	encode := func(blockType byte, padLen int, info []byte, tail []byte) []byte {
		em := []byte{0x00, blockType}
		em = append(em, bytes.Repeat([]byte{0xff}, padLen)...)
		em = append(em, 0x00)
		em = append(em, info...)
		em = append(em, hashed...)
		em = append(em, tail...)
		if len(em) < size { // keep the length: pad with zeros after the tail
			em = append(em, make([]byte, size-len(em))...)
		}
		return em[:size]
	}
	exact := size - 3 - len(prefix) - len(hashed)
	rawSign := func(em []byte) []byte {
		m := new(big.Int).SetBytes(em)
		return new(big.Int).Exp(m, priv.D, priv.N).FillBytes(make([]byte, size))
	}
	if !agree(t, "exact encoding", k, crypto.SHA256, hashed, rawSign(encode(0x01, exact, prefix, nil))) {
		t.Fatal("the exact encoding, signed raw, was refused: the test's encoder is wrong")
	}
	infoWithParams := append([]byte{0x30, 0x33, 0x30, 0x0f, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x02, 0xde, 0xad}, 0x04, 0x20)
	forged := map[string][]byte{
		"block type 2":           encode(0x02, exact, prefix, nil),
		"block type 0":           encode(0x00, exact, prefix, nil),
		"short padding, garbage": encode(0x01, 8, prefix, bytes.Repeat([]byte{0x42}, exact-8)),
		"padding not 0xff":       bytes.Replace(encode(0x01, exact, prefix, nil), []byte{0xff, 0xff}, []byte{0xff, 0xfe}, 1),
		"DigestInfo parameters":  encode(0x01, exact-2, infoWithParams, nil),
		"SHA-1 DigestInfo":       encode(0x01, exact+4, []byte{0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14}, nil),
	}
	for name, em := range forged {
		if agree(t, name, k, crypto.SHA256, hashed, rawSign(em)) {
			t.Fatalf("forged encoding %q accepted", name)
		}
	}
}

func TestNewRefusesWhatCryptoRSARefuses(t *testing.T) {
	odd := func(bits int) *big.Int {
		n := new(big.Int).Lsh(big.NewInt(1), uint(bits-1))
		return n.Add(n, big.NewInt(1))
	}
	pub := &testKeys(t)[0].PublicKey
	cases := map[string]*rsa.PublicKey{
		"nil":          nil,
		"no modulus":   {E: 65537},
		"512 bits":     {N: odd(512), E: 65537},
		"even modulus": {N: new(big.Int).Lsh(big.NewInt(1), 2047), E: 65537},
		"exponent 1":   {N: pub.N, E: 1},
		"even exp":     {N: pub.N, E: 65536},
		"exponent 2³¹": {N: pub.N, E: 1 << 31},
	}
	for name, p := range cases {
		if _, err := New(p); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// FuzzMatchesCryptoRSA: for any signature and message bytes, rsapub and
// crypto/rsa agree.
func FuzzMatchesCryptoRSA(f *testing.F) {
	priv := testKeys(f)[0]
	k := prepared(f, &priv.PublicKey)
	msg := []byte("fuzz")
	sig, _ := rsa.SignPKCS1v15(rand.Reader, priv, crypto.SHA256, digest(crypto.SHA256, msg))
	f.Add(sig, msg)
	f.Add(sig[1:], msg)
	f.Add(priv.N.Bytes(), []byte{})
	f.Fuzz(func(t *testing.T, sig, msg []byte) {
		agree(t, "fuzz", k, crypto.SHA256, digest(crypto.SHA256, msg), sig)
	})
}

func BenchmarkVerify(b *testing.B) {
	priv := testKeys(b)[0]
	k := prepared(b, &priv.PublicKey)
	hashed := digest(crypto.SHA256, []byte("header.claims"))
	sig, _ := rsa.SignPKCS1v15(rand.Reader, priv, crypto.SHA256, hashed)
	b.Run("rsapub", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := k.VerifyPKCS1v15(crypto.SHA256, hashed, sig); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("crypto_rsa", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := rsa.VerifyPKCS1v15(&priv.PublicKey, crypto.SHA256, hashed, sig); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
