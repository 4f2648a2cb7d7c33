package payproxy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/paysim"
	"github.com/tollgate/tollgate/internal/testcaddy"
	"github.com/tollgate/tollgate/internal/testredis"
)

// env is one test's world: a real redis-server, the paysim engine on an
// httptest server, a webhook receiver, and the Caddyfile options.
type env struct {
	t       *testing.T
	redis   *testredis.Server
	sim     *paysim.Sim
	simURL  string
	hooks   *hookReceiver
	port    int
	base    string // http://127.0.0.1:<port>
	options map[string]string
	extra   string // extra lines inside the payproxy block
	// site is put at the start of the site block (e.g. an authjwt).
	site string
	// alipayGateway replaces paysim's /gateway.do (e.g. a recording proxy).
	alipayGateway string
	// redisURL replaces the single redis-server (e.g. a Cluster URL).
	redisURL string
	// wechatBase replaces paysim as WeChat Pay's base URL (e.g. a proxy).
	wechatBase string
}

const webhookSecret = "whsec_test_0123456789abcdef0123456789"

func newEnv(t *testing.T, redisOpts ...testredis.Option) *env {
	t.Helper()
	return newEnvWithSim(t, paysim.Config{WechatRefundDelay: 300 * time.Millisecond}, redisOpts...)
}

// newEnvWithSim is newEnv with the simulator configured by cfg.
func newEnvWithSim(t *testing.T, cfg paysim.Config, redisOpts ...testredis.Option) *env {
	t.Helper()
	sim, err := paysim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(func() { srv.Close(); sim.Close() })
	e := &env{t: t, redis: testredis.Start(t, redisOpts...), sim: sim, simURL: srv.URL, hooks: newHookReceiver(t)}
	e.port = testcaddy.FreePort(t)
	e.base = fmt.Sprintf("http://127.0.0.1:%d", e.port)
	e.options = map[string]string{
		"provider_timeout": "2s", "lock_ttl": "1s", "poll_interval": "200ms", "pay_timeout": "1m",
		"max_attempts": "5", "operations": "create status close refund notify",
		// A refund is first checked 200 ms after it is sent (10 s in
		// production), then less and less often.
		"refund_checks": "200ms 400ms 800ms 1600ms",
	}
	return e
}

// caddyfile renders the site with payproxy on port.
func (e *env) caddyfile(port int) string {
	k := e.sim.Keys()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	var opts strings.Builder
	for _, name := range []string{"provider_timeout", "lock_ttl", "poll_interval", "pay_timeout", "qr_lifetime", "refund_checks", "operations"} {
		if v := e.options[name]; v != "" {
			fmt.Fprintf(&opts, "\t\t%s %s\n", name, v)
		}
	}
	redisURL := e.redis.URL()
	if e.redisURL != "" {
		redisURL = e.redisURL
	}
	gateway := e.simURL + "/gateway.do"
	if e.alipayGateway != "" {
		gateway = e.alipayGateway
	}
	wechatBase := e.simURL
	if e.wechatBase != "" {
		wechatBase = e.wechatBase
	}
	alipayExtra := ""
	if v := e.options["alipay_refund_gap"]; v != "" {
		alipayExtra = "\t\t\trefund_gap " + v + "\n"
	}
	return fmt.Sprintf(`http://127.0.0.1:%d {
%s	payproxy {
		redis %s
		prefix /pay
		alipay {
			app_id %s
			private_key %s
			alipay_public_key %s
			gateway %s
			notify_url %s/pay/notify/alipay
%s		}
		wechat {
			mch_id %s
			app_id %s
			serial_no %s
			private_key %s
			apiv3_key %s
			platform_public_key %s
			platform_public_key_id %s
			base_url %s
			notify_url %s/pay/notify/wechat
		}
%s		webhook %s {
			secret %s
			max_attempts %s
			backoff 50ms
			max_backoff 200ms
		}
%s	}
	header >X-Payproxy-Order {http.payproxy.order_no}
	header >X-Payproxy-Trade {http.payproxy.trade_no}
	header >X-Payproxy-Lock {http.payproxy.lock}
	respond "upstream" 200
}
`, port, e.site, redisURL,
		k.AlipayAppID, k.AlipayPrivateKeyFile, k.AlipayPublicKeyFile, gateway, base, alipayExtra,
		k.WechatMchID, k.WechatAppID, k.WechatSerialNo, k.WechatPrivateKeyFile, k.WechatAPIv3Key,
		k.WechatPlatformPublicKeyFile, k.WechatPlatformPublicKeyID, wechatBase, base,
		opts.String(), e.hooks.srv.URL, webhookSecret, e.options["max_attempts"], e.extra)
}

// start runs Caddy in this process.
func (e *env) start() *testcaddy.Instance {
	e.t.Helper()
	inst := testcaddy.Start(e.t, "", e.caddyfile(e.port))
	if err := testcaddy.WaitListening(fmt.Sprintf("127.0.0.1:%d", e.port), 5*time.Second); err != nil {
		e.t.Fatal(err)
	}
	return inst
}

// response is a decoded answer.
type response struct {
	Status int
	Body   map[string]any
	Raw    []byte
	Header http.Header
}

func (r response) str(k string) string { s, _ := r.Body[k].(string); return s }

func (r response) num(k string) int64 {
	f, _ := r.Body[k].(float64)
	return int64(f)
}

var client = &http.Client{Timeout: 20 * time.Second}

func do(t testing.TB, method, url string, body any, headers ...string) response {
	t.Helper()
	r, err := tryDo(method, url, body, headers...)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return r
}

// tryDo sends one request and returns a transport error instead of failing.
func tryDo(method, url string, body any, headers ...string) (response, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return response{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	out := response{Status: resp.StatusCode, Raw: raw, Header: resp.Header}
	_ = json.Unmarshal(raw, &out.Body)
	return out, nil
}

func (e *env) create(order, channel string, amount int64) response {
	e.t.Helper()
	return do(e.t, "POST", e.base+"/pay/trades", map[string]any{
		"order_no": order, "amount_fen": amount, "channel": channel, "subject": "运费 " + order,
	})
}

func (e *env) get(order string) response {
	e.t.Helper()
	return do(e.t, "GET", e.base+"/pay/trades/"+order, nil)
}

func wantStatus(t testing.TB, r response, status int, code string) {
	t.Helper()
	if r.Status != status || (code != "" && r.str("error") != code) {
		t.Fatalf("got %d %s, want %d %s", r.Status, r.Raw, status, code)
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s", within, what)
}

// hookReceiver is the backend's webhook endpoint: it verifies every
// signature and records the events; it can be switched off (503).
type hookReceiver struct {
	t      *testing.T
	srv    *httptest.Server
	mu     sync.Mutex
	down   bool
	events []hookEvent
	bad    int
	// delay holds each request before it is answered; a request whose
	// client gives up meanwhile is not recorded. inflight counts held ones.
	delay    time.Duration
	inflight int
}

type hookEvent struct {
	ID        string `json:"id"`
	Type      string `json:"type"`
	CreatedAt string `json:"created_at"`
	Data      struct {
		OrderNo   string `json:"order_no"`
		TradeNo   string `json:"trade_no"`
		Channel   string `json:"channel"`
		AmountFen int64  `json:"amount_fen"`
		State     string `json:"state"`
		RefundNo  string `json:"refund_no"`
		Seq       int64  `json:"seq"`
		// trade.archived
		PaidFen     int64 `json:"paid_fen"`
		RefundedFen int64 `json:"refunded_fen"`
		Refunds     []struct {
			RefundNo  string `json:"refund_no"`
			TradeNo   string `json:"trade_no"`
			AmountFen int64  `json:"amount_fen"`
			State     string `json:"state"`
		} `json:"refunds"`
	} `json:"data"`
}

func newHookReceiver(t *testing.T) *hookReceiver {
	h := &hookReceiver{t: t}
	h.srv = httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hookReceiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if !h.hold(r) {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.down {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	if verifyTollgateSignature(webhookSecret, r.Header.Get("X-Tollgate-Signature"), body, time.Now()) != nil {
		h.bad++
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	var ev hookEvent
	if err := json.Unmarshal(body, &ev); err != nil {
		h.bad++
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	h.events = append(h.events, ev)
	w.WriteHeader(http.StatusNoContent)
}

// hold waits out the delay; false if the client went away meanwhile.
func (h *hookReceiver) hold(r *http.Request) bool {
	h.mu.Lock()
	d := h.delay
	h.inflight++
	h.mu.Unlock()
	defer func() { h.mu.Lock(); h.inflight--; h.mu.Unlock() }()
	select {
	case <-time.After(d):
		return true
	case <-r.Context().Done():
		return false
	}
}

// setSlow brings the receiver up, holding each request for delay.
func (h *hookReceiver) setSlow(delay time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.down, h.delay = false, delay
}

func (h *hookReceiver) inFlight() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.inflight
}

func (h *hookReceiver) setDown(down bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.down = down
}

func (h *hookReceiver) all() []hookEvent {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]hookEvent(nil), h.events...)
}

func (h *hookReceiver) ofType(typ, order string) []hookEvent {
	var out []hookEvent
	for _, e := range h.all() {
		if e.Type == typ && e.Data.OrderNo == order {
			out = append(out, e)
		}
	}
	return out
}

func (h *hookReceiver) badCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.bad
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// quiesce waits until no webhook event is waiting, so that a Redis dump
// taken next is not changed by deliveries in flight.
func (e *env) quiesce() {
	e.t.Helper()
	c := e.redis.Client()
	eventually(e.t, 5*time.Second, "empty webhook queue", func() bool {
		n, err := c.ZCard(context.Background(), "tollgate:pay:{wh}:queue").Result()
		return err == nil && n == 0
	})
	time.Sleep(50 * time.Millisecond)
}
