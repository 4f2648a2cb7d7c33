package paysim

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"testing"
)

// Test vectors from wechatpay-go v0.2.20 (PROVIDERS.md §6), copied from the
// SDK's test files in the module cache:
//   core/auth/verifiers/sha256withrsa_pubkey_verifier_test.go (public key),
//   core/auth/verifiers/sha256withrsa_verifier_test.go (signature of "source"),
//   core/notify/notify_test.go (signed notification, payscore resource),
//   utils/aes_test.go (AES-GCM).

const sdkTestPubKey = `-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA2VCTd91fnUn73Xy9DLvt
/V62TVxRTEEstVdeRaZ3B3leO0pldE806mXO4RwdHXagHQ4vGeZN0yqm++rDsGK+
U3AH7kejyD2pXshNP9Cq5YwbptiLGtjcquw4HNxJQUOmDeJf2vg6byms9RUipiq4
SzbJKqJFlUpbuIPDpSpWz10PYmyCNeDGUUK65E5h2B834uxl1zNLYQCrkdBzb8oU
xwYeP5a2DNxmjL5lsJML7DGr5znsevnoqGRwTm9fxCGfy8wus7hwKz6clt3Whmmd
a7UAdb1c08hEQFVRbF14AR73xbnd8N0obCWJPCbzMCtkaSef4FdEEgEXJiw0VAJT
8wIDAQAB
-----END PUBLIC KEY-----`

const sdkSourceSignature = "BKyAfU4iMCuvXMXS0Wzam3V/cnxZ+JaqigPM5OhljS2iOT95OO6Fsuml2JkFANJU9K6q9bLlDhPXuoVz+pp4hAm6pHU4ld815U4jsKu1RkyaII+1CYBUYC8TK0XtJ8FwUXXz8vZHh58rrAVN1XwNyvD1vfpxrMT4SL536GLwvpUHlCqIMzoZUguLli/K8V29QiOhuH6IEqLNJn8e9b3nwNcQ7be3CzYGpDAKBfDGPCqCv8Rw5zndhlffk2FEA70G4hvMwe51qMN/RAJbknXG23bSlObuTCN7Ndj1aJGH6/L+hdwfLpUtJm4QYVazzW7DFD27EpSQEqA8bX9+8m1rLg=="

const (
	sdkNotifyTimestamp = "1624523846"
	sdkNotifyNonce     = "EcZ9Cmy4Xyx1i6RlJQzLcCyEqDa26NBz"
	sdkNotifySignature = "tJHIiIS9eB2hAYstmAmbbD3ZE5LiIm/Ug5tuL4fC0YOFRWIHV39UFIZXC0e9Wl6lBu6sKvkqDkzpqzBsVHyXF" +
		"lbYZTOQrVdG4b6LfTnK4mikv9++ixJMd3vTf2yCqvBkh98zs3Ds5zsYQakzbcwhmw4fMJs4nPLws28H0UW9FjDR//rxELLwXvV1VEA1I" +
		"BLX70xptjL8hrfUjEE8kkry6yNJTHZRU8CAc7qHli2Ng1V1qb9ARbK8A3ThmFmPQvRGrapI/jS2laKKgYUmfdEdkNO6B2Cke5e8VTxY4" +
		"06ArAmQ90GAihDwIcb16TQMnzCMBoutnwZKNiKRACrFmtxw2Q=="
	sdkNotifyCiphertext = "YDS3lKPaC4Y52Gf3uhft5qUBlIa8b428AWTtTauHQfQrRw+X1WpiuHIDy0vo1Vd6VEq67aVyqPdDYMkRVSDaZL3iZt" +
		"tevRMOoPKMifozg6XPWjIZumks/GpT48lI4NizyeaqLBokNebthah3o1H76qSlO9NkDjp9bzmKLEYYH9TEklFUpsvPqOTOcgSLgh21YJXYR" +
		"7dEBXFgRLiNIKRgO5JdXh1hccRUAlyVWxE54PXpnQ=="
	sdkNotifyPlaintext = `{"mchid":"1234567890","appid":"054aa7d7a2a54ab5898df65bd96f001c","create_time":"2020-06-30T12:12:00+08:00","out_contract_code":"21640bdbd08e473e828f3206a2741c6e"}`
)

var sdkNotifyBody = `{"id":"3119dfba-e649-5eec-ab1e-3412bc4d2e17","create_time":"2021-06-24T16:37:26+08:00",` +
	`"resource_type":"encrypt-resource","event_type":"PAYSCORE.USER_OPEN_SERVICE","summary":"签约成功",` +
	`"resource":{"original_type":"payscore","algorithm":"AEAD_AES_256_GCM","ciphertext":"` + sdkNotifyCiphertext +
	`","associated_data":"payscore","nonce":"Kj7QIyUiYx1q"}}`

// TestWechatSDKVectors: the simulator's own signature and AEAD code agrees
// with the official vectors, byte for byte.
func TestWechatSDKVectors(t *testing.T) {
	pub, err := parsePublicKeyPEM([]byte(sdkTestPubKey))
	if err != nil {
		t.Fatal(err)
	}
	sigTests := []struct {
		name, msg, sig string
		ok             bool
	}{
		{"signature over source", "source", sdkSourceSignature, true},
		{"same signature over another message", "wrong source", sdkSourceSignature, false},
		{"signed notification message", string(wechatMessage(sdkNotifyTimestamp, sdkNotifyNonce, []byte(sdkNotifyBody))), sdkNotifySignature, true},
		{"notification message with another nonce", string(wechatMessage(sdkNotifyTimestamp, "x"+sdkNotifyNonce[1:], []byte(sdkNotifyBody))), sdkNotifySignature, false},
	}
	for _, tc := range sigTests {
		t.Run(tc.name, func(t *testing.T) {
			if err := verifySHA256RSA(pub, []byte(tc.msg), tc.sig); (err == nil) != tc.ok {
				t.Fatalf("verify: %v, want ok=%v", err, tc.ok)
			}
		})
	}
	aeadTests := []struct {
		name, key, nonce, ad, plain, cipher string
	}{
		{"utils/aes_test.go vector", "testAPIv3Key0000", "wCq51qZv4Yfg", "Dl56FrqWQJF1t9LtC3vEUsniZKvbqdR8", "Hello World", "FsdXzxryWfKwvLJKf8LG/ToRPTRh8RN9wROC"},
		{"notify_test.go payscore resource", "testMchAPIv3Key0", "Kj7QIyUiYx1q", "payscore", sdkNotifyPlaintext, sdkNotifyCiphertext},
	}
	for _, tc := range aeadTests {
		t.Run("seal reproduces "+tc.name, func(t *testing.T) {
			got, err := aeadSeal(tc.key, tc.nonce, tc.ad, []byte(tc.plain))
			if err != nil || got != tc.cipher {
				t.Fatalf("got %q %v, want %q", got, err, tc.cipher)
			}
		})
		t.Run("open reproduces "+tc.name, func(t *testing.T) {
			got, err := aeadOpen(tc.key, tc.nonce, tc.ad, tc.cipher)
			if err != nil || string(got) != tc.plain {
				t.Fatalf("got %q %v", got, err)
			}
			if _, err := aeadOpen(tc.key, tc.nonce, tc.ad+"x", tc.cipher); err == nil {
				t.Fatal("opened with the wrong associated data")
			}
		})
	}
}

// TestAlipaySignContent: the string-to-sign skips sign (and for
// notifications sign_type) and empty values, and sorts the pairs.
func TestAlipaySignContent(t *testing.T) {
	v := map[string][]string{"b": {"2"}, "a": {"1"}, "sign": {"S"}, "sign_type": {"RSA2"}, "empty": {""}, "c_d": {"3"}}
	tests := []struct {
		name   string
		ignore []string
		want   string
	}{
		{"request", []string{"sign"}, "a=1&b=2&c_d=3&sign_type=RSA2"},
		{"notification", []string{"sign", "sign_type"}, "a=1&b=2&c_d=3"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(alipaySignContent(v, tc.ignore...)); got != tc.want {
				t.Fatalf("got %q", got)
			}
		})
	}
}

func TestMoneyParsing(t *testing.T) {
	yuan := []struct {
		in   string
		fen  int64
		want error
	}{
		{"0.01", 1, nil}, {"12.3", 1230, nil}, {"12.30", 1230, nil}, {"100000000", 10000000000, nil},
		{"0", 0, errAmountRange}, {"100000000.01", 0, errAmountRange}, {"999999999", 0, errAmountRange}, {"1000000000.00", 0, errAmountRange},
		{"1.001", 0, errAmountFormat}, {"1.", 0, errAmountFormat}, {".1", 0, errAmountFormat}, {"-1", 0, errAmountFormat},
		{"1e3", 0, errAmountFormat}, {"01", 0, errAmountFormat}, {"", 0, errAmountFormat}, {"１", 0, errAmountFormat},
	}
	for _, tc := range yuan {
		t.Run("yuan "+tc.in, func(t *testing.T) {
			fen, err := parseYuan(tc.in)
			if !errors.Is(err, tc.want) || fen != tc.fen {
				t.Fatalf("got %d %v, want %d %v", fen, err, tc.fen, tc.want)
			}
			if err == nil && formatYuan(fen) != formatYuan(tc.fen) {
				t.Fatal("format")
			}
		})
	}
	fen := []struct {
		in   string
		want error
	}{
		{"1", nil}, {"10000000000", nil}, {"0", errAmountRange}, {"10000000001", errAmountRange}, {"-5", errAmountRange},
		{"1.5", errAmountInt}, {"1.0", errAmountInt}, {"1e2", errAmountInt}, {`"100"`, errAmountInt}, {"", errAmountInt}, {"null", errAmountInt},
	}
	for _, tc := range fen {
		t.Run("fen "+tc.in, func(t *testing.T) {
			if _, err := parseFen(json.Number(tc.in)); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	if formatYuan(1230) != "12.30" || formatYuan(5) != "0.05" {
		t.Fatal("formatYuan")
	}
}

// TestKeysPersist: LoadOrCreateKeys writes PKCS#8 and PKIX PEM files and
// returns the same identities on the next call.
func TestKeysPersist(t *testing.T) {
	dir := t.TempDir()
	a, err := LoadOrCreateKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadOrCreateKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Fatalf("second load differs:\n%+v\n%+v", a, b)
	}
	for _, f := range []struct{ path, typ string }{
		{a.AlipayPrivateKeyFile, "PRIVATE KEY"}, {a.AlipayPublicKeyFile, "PUBLIC KEY"},
		{a.WechatPrivateKeyFile, "PRIVATE KEY"}, {a.WechatPlatformPublicKeyFile, "PUBLIC KEY"},
	} {
		block, _ := pem.Decode(mustRead(t, f.path))
		if block == nil || block.Type != f.typ {
			t.Fatalf("%s: not a %s PEM", f.path, f.typ)
		}
		if f.typ == "PRIVATE KEY" {
			if _, err := x509.ParsePKCS8PrivateKey(block.Bytes); err != nil {
				t.Fatal(err)
			}
		}
	}
	env := a.Env("http://127.0.0.1:8090/")
	if len(env) != len(EnvNames) || env["ALIPAY_GATEWAY"] != "http://127.0.0.1:8090/gateway.do" {
		t.Fatalf("env %v", env)
	}
}
