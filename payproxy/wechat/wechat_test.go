package wechat

import (
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/paysim"
	"github.com/tollgate/tollgate/internal/paysim/paysimtest"
	"github.com/tollgate/tollgate/payproxy/provider"
)

// fixture is an adapter pointed at the paysim engine, plus the platform's
// private key (which paysim keeps next to the merchant's files) so that the
// tests can sign notifications as WeChat Pay would.
type fixture struct {
	a        *Adapter
	keys     paysim.Keys
	platform *rsa.PrivateKey
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	sim, simURL := paysimtest.Start(t, paysim.Config{})
	k := sim.Keys()
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	a, err := New(Config{MchID: k.WechatMchID, AppID: k.WechatAppID, SerialNo: k.WechatSerialNo,
		PrivateKeyPEM: read(k.WechatPrivateKeyFile), APIv3Key: k.WechatAPIv3Key,
		PlatformPublicKeyPEM: read(k.WechatPlatformPublicKeyFile), PlatformPublicKeyID: k.WechatPlatformPublicKeyID,
		BaseURL: simURL, NotifyURL: "http://127.0.0.1:1/notify"})
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode([]byte(read(filepath.Join(filepath.Dir(k.WechatPlatformPublicKeyFile), "wechat_platform_private_key.pem"))))
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		rk, err2 := x509.ParsePKCS1PrivateKey(block.Bytes)
		if err2 != nil {
			t.Fatal(err)
		}
		key = rk
	}
	return &fixture{a: a, keys: k, platform: key.(*rsa.PrivateKey)}
}

// notification builds a signed request; resource nil means "no resource".
func (f *fixture) notification(t *testing.T, ts time.Time, event string, plain any, withResource bool) *http.Request {
	t.Helper()
	env := map[string]any{"id": "EV-1", "create_time": ts.Format(time.RFC3339), "resource_type": "encrypt-resource",
		"event_type": event, "summary": "s"}
	if withResource {
		pt, _ := json.Marshal(plain)
		block, _ := aes.NewCipher([]byte(f.keys.WechatAPIv3Key))
		gcm, _ := cipher.NewGCM(block)
		nonce := "0123456789ab"
		env["resource"] = map[string]string{"original_type": "transaction", "algorithm": "AEAD_AES_256_GCM",
			"ciphertext":      base64.StdEncoding.EncodeToString(gcm.Seal(nil, []byte(nonce), pt, []byte("transaction"))),
			"associated_data": "transaction", "nonce": nonce}
	}
	body, _ := json.Marshal(env)
	tsStr, nonce := strconv.FormatInt(ts.Unix(), 10), "n0nce"
	sum := sha256.Sum256([]byte(tsStr + "\n" + nonce + "\n" + string(body) + "\n"))
	sig, err := rsa.SignPKCS1v15(rand.Reader, f.platform, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodPost, "/pay/notify/wechat", strings.NewReader(string(body)))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Wechatpay-Timestamp", tsStr)
	r.Header.Set("Wechatpay-Nonce", nonce)
	r.Header.Set("Wechatpay-Serial", f.keys.WechatPlatformPublicKeyID)
	r.Header.Set("Wechatpay-Signature", base64.StdEncoding.EncodeToString(sig))
	r.Header.Set("Wechatpay-Signature-Type", "WECHATPAY2-SHA256-RSA2048")
	return r
}

func (f *fixture) tx(mchid string) map[string]any {
	return map[string]any{"mchid": mchid, "appid": f.keys.WechatAppID, "out_trade_no": "TG1", "trade_state": "SUCCESS",
		"amount": map[string]any{"total": 1230}}
}

func TestSignedNotificationIsDecoded(t *testing.T) {
	f := newFixture(t)
	n, err := f.a.ParseNotification(f.notification(t, time.Now(), "TRANSACTION.SUCCESS", f.tx(f.keys.WechatMchID), true))
	if err != nil {
		t.Fatal(err)
	}
	if n.Kind != provider.NotifyTrade || n.Status != provider.TradePaid || n.TradeNo != "TG1" || n.AmountFen != 1230 {
		t.Fatalf("%+v", n)
	}
	refund := map[string]any{"mchid": f.keys.WechatMchID, "out_trade_no": "TG1", "out_refund_no": "R1", "refund_status": "SUCCESS",
		"amount": map[string]any{"total": 1230, "refund": 30}}
	n, err = f.a.ParseNotification(f.notification(t, time.Now(), "REFUND.SUCCESS", refund, true))
	if err != nil {
		t.Fatal(err)
	}
	if n.Kind != provider.NotifyRefund || n.RefundState != provider.RefundSucceeded || n.RefundNo != "R1" || n.RefundFen != 30 {
		t.Fatalf("%+v", n)
	}
}

func TestSignedNotificationWithoutResourceIsRefusedNotPanicking(t *testing.T) {
	f := newFixture(t)
	// The SDK dereferences the missing resource (PROVIDERS.md §3); the
	// adapter recovers and refuses.
	_, err := f.a.ParseNotification(f.notification(t, time.Now(), "TRANSACTION.SUCCESS", nil, false))
	if err == nil || !strings.Contains(err.Error(), "malformed signed body") {
		t.Fatalf("got %v", err)
	}
}

func TestStaleOrForeignNotificationIsRefused(t *testing.T) {
	f := newFixture(t)
	if _, err := f.a.ParseNotification(f.notification(t, time.Now().Add(-10*time.Minute), "TRANSACTION.SUCCESS", f.tx(f.keys.WechatMchID), true)); err == nil {
		t.Fatal("a notification signed 10 minutes ago was accepted")
	}
	if _, err := f.a.ParseNotification(f.notification(t, time.Now(), "TRANSACTION.SUCCESS", f.tx("1999999999"), true)); err == nil {
		t.Fatal("a notification for another merchant was accepted")
	}
	r := f.notification(t, time.Now(), "TRANSACTION.SUCCESS", f.tx(f.keys.WechatMchID), true)
	r.Header.Set("Wechatpay-Signature", "WECHATPAY/SIGNTEST/"+r.Header.Get("Wechatpay-Signature"))
	if _, err := f.a.ParseNotification(r); err == nil {
		t.Fatal("a SIGNTEST probe was accepted")
	}
}

func TestBaseURLRedirectsTheSDK(t *testing.T) {
	f := newFixture(t)
	q, err := f.a.Query(context.Background(), "NEVER_CREATED_1")
	if err != nil || q.Status != provider.TradeNotCreated {
		t.Fatalf("query through base_url: %+v %v", q, err)
	}
	qr, err := f.a.Create(context.Background(), provider.CreateRequest{TradeNo: "TG_BASEURL_1", AmountFen: 1, Subject: "s", ExpiresAt: time.Now().Add(time.Hour)})
	if err != nil || !strings.HasPrefix(qr, "weixin://") {
		t.Fatalf("create through base_url: %q %v", qr, err)
	}
}

func TestAPIv3KeyMustBe32Bytes(t *testing.T) {
	for _, k := range []string{"", "0123456789abcdef", strings.Repeat("k", 33)} {
		if _, err := New(Config{APIv3Key: k}); err == nil || !strings.Contains(err.Error(), "exactly 32 bytes") {
			t.Errorf("key of %d bytes: %v", len(k), err)
		}
	}
}
