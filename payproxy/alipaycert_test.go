package payproxy_test

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"reflect"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// certGateway stands between payproxy and paysim's Alipay gateway and
// counts certificate downloads, answering them with an attacker's
// certificate (the SDK does not verify that answer).
type certGateway struct {
	srv       *httptest.Server
	downloads atomic.Int64
}

func newCertGateway(t *testing.T, simURL string, attackerCert []byte) *certGateway {
	g := &certGateway{}
	target, _ := url.Parse(simURL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ParseForm() == nil && r.Form.Get("method") == "alipay.open.app.alipaycert.download" {
			g.downloads.Add(1)
			body, _ := json.Marshal(map[string]any{"alipay_open_app_alipaycert_download_response": map[string]string{
				"code": "10000", "msg": "Success", "alipay_cert_content": base64.StdEncoding.EncodeToString(attackerCert)}})
			_, _ = w.Write(body)
			return
		}
		r.Body = http.NoBody
		r.ContentLength = -1
		proxy.ServeHTTP(w, requestWithForm(r))
	}))
	t.Cleanup(g.srv.Close)
	return g
}

// requestWithForm re-encodes a parsed form body so it can be proxied.
func requestWithForm(r *http.Request) *http.Request {
	body := r.PostForm.Encode()
	out := r.Clone(r.Context())
	out.Body = http.NoBody
	if body != "" {
		out.Body = readCloser{strings.NewReader(body)}
	}
	out.ContentLength = int64(len(body))
	return out
}

type readCloser struct{ *strings.Reader }

func (readCloser) Close() error { return nil }

// attacker is a key pair and a self-signed certificate of someone who is
// not Alipay.
func attacker(t *testing.T) (*rsa.PrivateKey, []byte) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(4242), Subject: pkix.Name{CommonName: "not alipay"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// alipayForm is a trade_status_sync notification signed with key the way
// Alipay signs: sorted k=v of every field but sign and sign_type.
func alipayForm(key *rsa.PrivateKey, v url.Values) string {
	v.Del("sign")
	var pairs []string
	for k := range v {
		if k != "sign_type" && k != "alipay_cert_sn" {
			pairs = append(pairs, k+"="+v.Get(k))
		}
	}
	sort.Strings(pairs)
	h := sha256.Sum256([]byte(strings.Join(pairs, "&")))
	sig, _ := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, h[:])
	v.Set("sign", base64.StdEncoding.EncodeToString(sig))
	return v.Encode()
}

// TestForgedNotificationCannotReconfigureAlipayVerification: a
// notification naming an alipay_cert_sn (payproxy uses public-key mode) is
// refused with 400 before anything else: no certificate is downloaded (the
// SDK would fetch it unverified, holding the lock every Alipay call needs,
// and make it its default verifier), nothing changes, and afterwards a
// notification signed with the attacker's key is still refused while
// genuine answers and notifications still verify.
func TestForgedNotificationCannotReconfigureAlipayVerification(t *testing.T) {
	key, cert := attacker(t)
	e := newEnv(t)
	gw := newCertGateway(t, e.simURL, cert)
	e.alipayGateway = gw.srv.URL + "/gateway.do"
	e.options["poll_interval"] = "1h"
	e.start()
	r := e.create("CERTSN_01", "alipay", 990)
	wantStatus(t, r, http.StatusOK, "")
	tradeNo := r.str("trade_no")
	notification := func(extra map[string]string) string {
		v := url.Values{"notify_type": {"trade_status_sync"}, "notify_id": {"forged1"}, "app_id": {e.sim.Keys().AlipayAppID},
			"charset": {"utf-8"}, "version": {"1.0"}, "sign_type": {"RSA2"}, "trade_no": {"2026010122001"},
			"out_trade_no": {tradeNo}, "trade_status": {"TRADE_SUCCESS"}, "total_amount": {"9.90"}}
		for k, x := range extra {
			v.Set(k, x)
		}
		return alipayForm(key, v)
	}
	e.quiesce()
	before := e.redis.Dump()
	for i := 0; i < 3; i++ {
		resp := do(t, "POST", e.base+"/pay/notify/alipay", notification(map[string]string{"alipay_cert_sn": "0123456789abcdef"}),
			"Content-Type", "application/x-www-form-urlencoded")
		wantStatus(t, resp, http.StatusBadRequest, "invalid_request")
	}
	if n := gw.downloads.Load(); n != 0 {
		t.Fatalf("a notification made payproxy download %d certificates", n)
	}
	if !reflect.DeepEqual(before, e.redis.Dump()) {
		t.Fatal("redis changed")
	}
	resp := do(t, "POST", e.base+"/pay/notify/alipay", notification(nil), "Content-Type", "application/x-www-form-urlencoded")
	wantStatus(t, resp, http.StatusUnauthorized, "invalid_signature")
	// Genuine traffic: answers verify, and so does the real notification.
	if st := do(t, "GET", e.base+"/pay/trades/CERTSN_01?sync=1", nil).str("state"); st != "PAYING" {
		t.Fatalf("a signed query no longer verifies: %s", st)
	}
	if err := e.sim.Pay(tradeNo); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "PAID", func() bool { return e.get("CERTSN_01").str("state") == "PAID" })
	wantStatus(t, e.create("CERTSN_02", "alipay", 100), http.StatusOK, "")
	if n := gw.downloads.Load(); n != 0 {
		t.Fatalf("%d certificate downloads", n)
	}
}
