package paysim

import (
	"bytes"
	"context"
	"crypto/rsa"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/smartwalle/alipay/v3"
	"github.com/wechatpay-apiv3/wechatpay-go/core"
	"github.com/wechatpay-apiv3/wechatpay-go/core/option"
	"github.com/wechatpay-apiv3/wechatpay-go/utils"
)

// testConfig keeps background work short so tests finish quickly, and
// leaves Alipay's 3-second rule between refunds off: its own test runs
// with the default.
var testConfig = Config{
	NotifyRetry:       []time.Duration{20 * time.Millisecond, 20 * time.Millisecond, 20 * time.Millisecond},
	WechatRefundDelay: 50 * time.Millisecond,
	AlipayRefundGap:   -1,
}

func startSim(t *testing.T, cfg Config) (*Sim, *httptest.Server) {
	t.Helper()
	sim, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(func() {
		srv.Close()
		sim.Close()
	})
	return sim, srv
}

func newAlipayClient(t *testing.T, srv *httptest.Server, appID, appPrivPEM, alipayPubPEM string, rt http.RoundTripper) *alipay.Client {
	t.Helper()
	hc := &http.Client{Timeout: 10 * time.Second, Transport: rt}
	c, err := alipay.New(appID, appPrivPEM, false, alipay.WithTimeLocation(chinaTZ), alipay.WithSandboxGateway(srv.URL+"/gateway.do"), alipay.WithHTTPClient(hc))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.LoadAliPayPublicKey(alipayPubPEM); err != nil {
		t.Fatal(err)
	}
	return c
}

// alipayFor is a merchant client configured exactly from the sim's Keys,
// reading the key files as payproxy will.
func alipayFor(t *testing.T, sim *Sim, srv *httptest.Server) *alipay.Client {
	t.Helper()
	k := sim.Keys()
	return newAlipayClient(t, srv, k.AlipayAppID, string(mustRead(t, k.AlipayPrivateKeyFile)), string(mustRead(t, k.AlipayPublicKeyFile)), nil)
}

// rewrite sends the WeChat SDK's requests (whose host is a compile-time
// constant) to the test server; the request signature does not cover the
// host, so it stays valid.
type rewrite struct {
	target *url.URL
	next   http.RoundTripper
}

func (rt rewrite) RoundTrip(r *http.Request) (*http.Response, error) {
	c := r.Clone(r.Context())
	c.URL.Scheme, c.URL.Host, c.Host = rt.target.Scheme, rt.target.Host, rt.target.Host
	next := rt.next
	if next == nil {
		next = http.DefaultTransport
	}
	return next.RoundTrip(c)
}

type wechatCreds struct {
	mchID, serial string
	priv          *rsa.PrivateKey
	pubKeyID      string
	pub           *rsa.PublicKey
}

func wechatCredsFor(t *testing.T, sim *Sim) wechatCreds {
	t.Helper()
	k := sim.Keys()
	priv, err := utils.LoadPrivateKeyWithPath(k.WechatPrivateKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := utils.LoadPublicKeyWithPath(k.WechatPlatformPublicKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	return wechatCreds{k.WechatMchID, k.WechatSerialNo, priv, k.WechatPlatformPublicKeyID, pub}
}

func newWechatClient(t *testing.T, srv *httptest.Server, c wechatCreds, next http.RoundTripper) *core.Client {
	t.Helper()
	target, _ := url.Parse(srv.URL)
	client, err := core.NewClient(context.Background(),
		option.WithWechatPayPublicKeyAuthCipher(c.mchID, c.serial, c.priv, c.pubKeyID, c.pub),
		option.WithHTTPClient(&http.Client{Timeout: 10 * time.Second, Transport: rewrite{target: target, next: next}}),
	)
	if err != nil {
		t.Fatal(err)
	}
	return client
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// captured is one request a receiver got.
type captured struct {
	header http.Header
	body   []byte
	form   url.Values
}

// receiver is a merchant's notify endpoint. answer decides the reply to the
// n-th request (0-based).
type receiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	got    []captured
	answer func(n int, r *http.Request) (int, string)
}

func newReceiver(t *testing.T, answer func(n int, r *http.Request) (int, string)) *receiver {
	rc := &receiver{answer: answer}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		c := captured{header: r.Header.Clone(), body: body}
		if r.Header.Get("Content-Type") != "application/json" {
			_ = r.ParseForm()
			c.form = r.PostForm
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		rc.mu.Lock()
		n := len(rc.got)
		rc.got = append(rc.got, c)
		rc.mu.Unlock()
		status, text := rc.answer(n, r)
		w.WriteHeader(status)
		_, _ = io.WriteString(w, text)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) requests() []captured {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]captured(nil), rc.got...)
}

// waitFor polls cond until it holds or the deadline passes: notifications
// are asynchronous, and tests must not depend on timing.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// deliveriesOf returns the deliveries for one out_trade_no and kind.
func deliveriesOf(sim *Sim, no, kind string) []Delivery {
	var out []Delivery
	for _, d := range sim.Notifications() {
		if d.OutTradeNo == no && d.Kind == kind {
			out = append(out, d)
		}
	}
	return out
}

func findTrade(sim *Sim, provider, no string) (Trade, bool) {
	for _, tr := range sim.Trades() {
		if tr.Provider == provider && tr.OutTradeNo == no {
			return tr, true
		}
	}
	return Trade{}, false
}
