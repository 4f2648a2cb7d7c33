package paysim

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/url"
	"sort"
	"strings"
)

// Both providers use the same primitive: SHA256withRSA, PKCS#1 v1.5,
// base64 (standard alphabet, padded).

func signSHA256RSA(k *rsa.PrivateKey, msg []byte) string {
	h := sha256.Sum256(msg)
	sig, err := rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, h[:])
	if err != nil {
		panic(err) // only fails for keys too small for SHA-256, never ours
	}
	return base64.StdEncoding.EncodeToString(sig)
}

func verifySHA256RSA(k *rsa.PublicKey, msg []byte, sigB64 string) error {
	sig, err := base64.StdEncoding.DecodeString(sigB64)
	if err != nil {
		return err
	}
	h := sha256.Sum256(msg)
	return rsa.VerifyPKCS1v15(k, crypto.SHA256, h[:], sig)
}

// alipaySignContent builds Alipay's string-to-sign: "k=v" pairs of every
// parameter except the ignored ones, sorted, joined with "&". Sorting the
// joined pairs (not the keys) is what smartwalle's encoder does; for the key
// sets Alipay uses both orders agree. Empty values are skipped, as Alipay's
// own rule says and as the SDK never sends them.
func alipaySignContent(v url.Values, ignore ...string) []byte {
	skip := map[string]bool{}
	for _, k := range ignore {
		skip[k] = true
	}
	pairs := make([]string, 0, len(v))
	for k, vs := range v {
		if skip[k] {
			continue
		}
		for _, x := range vs {
			if x == "" {
				continue
			}
			pairs = append(pairs, k+"="+x)
		}
	}
	sort.Strings(pairs)
	return []byte(strings.Join(pairs, "&"))
}

// wechatMessage is the string WeChat Pay signs on responses and notifications.
func wechatMessage(ts, nonce string, body []byte) []byte {
	m := make([]byte, 0, len(ts)+len(nonce)+len(body)+3)
	m = append(m, ts...)
	m = append(m, '\n')
	m = append(m, nonce...)
	m = append(m, '\n')
	m = append(m, body...)
	m = append(m, '\n')
	return m
}

// aeadSeal is WeChat's AEAD_AES_256_GCM resource encryption: the APIv3 key
// bytes are the AES key, the nonce is a 12-character string used as bytes,
// the output is base64(ciphertext||tag). A 16-byte key gives AES-128, which
// the SDK also accepts (its own test vectors use one).
func aeadSeal(key, nonce, associatedData string, plaintext []byte) (string, error) {
	gcm, err := newGCM(key)
	if err != nil {
		return "", err
	}
	if len(nonce) != gcm.NonceSize() {
		return "", errors.New("nonce must be 12 bytes")
	}
	ct := gcm.Seal(nil, []byte(nonce), plaintext, []byte(associatedData))
	return base64.StdEncoding.EncodeToString(ct), nil
}

// aeadOpen is the inverse of aeadSeal.
func aeadOpen(key, nonce, associatedData, ciphertextB64 string) ([]byte, error) {
	gcm, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	ct, err := base64.StdEncoding.DecodeString(ciphertextB64)
	if err != nil {
		return nil, err
	}
	if len(nonce) != gcm.NonceSize() {
		return nil, errors.New("nonce must be 12 bytes")
	}
	return gcm.Open(nil, []byte(nonce), ct, []byte(associatedData))
}

func newGCM(key string) (cipher.AEAD, error) {
	block, err := aes.NewCipher([]byte(key))
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}
