package payproxy_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/paysim"
	"github.com/tollgate/tollgate/internal/testredis"
)

// TestUnpaidTradesAreClosedAfterPayTimeout: the poller closes expired
// trades at the provider (Alipay by cancel) and emits trade.closed.
func TestUnpaidTradesAreClosedAfterPayTimeout(t *testing.T) {
	e := newEnv(t)
	e.options["pay_timeout"] = "1s"
	e.start()
	a := e.create("EXPIRE_A1", "alipay", 100)
	w := e.create("EXPIRE_W1", "wechat", 100)
	for _, order := range []string{"EXPIRE_A1", "EXPIRE_W1"} {
		eventually(t, 5*time.Second, order+" CLOSED", func() bool { return e.get(order).str("state") == "CLOSED" })
		eventually(t, 5*time.Second, order+" trade.closed", func() bool { return len(e.hooks.ofType("trade.closed", order)) == 1 })
	}
	// Alipay's QR code was never scanned: payproxy cancels it. WeChat's
	// time_expire has already closed it at the provider, which the
	// poller's query learns.
	if e.sim.Calls()["alipay.trade.cancel"] == 0 {
		t.Fatalf("calls: %v", e.sim.Calls())
	}
	for _, tn := range []string{a.str("trade_no"), w.str("trade_no")} {
		if err := e.sim.Pay(tn); err == nil {
			t.Fatalf("expired trade %s can still be paid", tn)
		}
	}
}

// TestLostLockAbandonsTheProviderCall: when the watchdog cannot extend the
// lock, the provider call is cancelled and the answer is 503, state UNKNOWN.
func TestLostLockAbandonsTheProviderCall(t *testing.T) {
	e := newEnv(t)
	e.options["provider_timeout"] = "5s"
	e.start()
	e.sim.SetFault(paysim.Fault{Operation: "wechat.native.prepay", Mode: "delay", DelayMS: 2000})
	go func() {
		time.Sleep(150 * time.Millisecond)
		e.redis.Client().Del(context.Background(), "tollgate:pay:{o:LOCKLOST_1}:lock")
	}()
	start := time.Now()
	wantStatus(t, e.create("LOCKLOST_1", "wechat", 100), http.StatusServiceUnavailable, "lock_lost")
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Fatalf("the provider call was not abandoned (%s)", d)
	}
	if st := e.get("LOCKLOST_1").str("state"); st != "UNKNOWN" {
		t.Fatalf("state %s", st)
	}
}

// TestRedisRestartWithAOFLosesNothing: trades, refunds and undelivered
// events survive a crash of redis-server with appendfsync always.
func TestRedisRestartWithAOFLosesNothing(t *testing.T) {
	e := newEnv(t, testredis.WithAOF("always"))
	e.options["max_attempts"] = "1000"
	e.start()
	e.hooks.setDown(true)
	e.paidOrder("AOF_PAID_1", "alipay", 900)
	wantStatus(t, e.refund("AOF_PAID_1", "AOF_RF_1", 400), 200, "")
	eventually(t, 5*time.Second, "refund SUCCESS", func() bool { return do(t, "GET", e.base+"/pay/refunds/AOF_RF_1", nil).str("state") == "SUCCESS" })
	open := e.create("AOF_OPEN_1", "wechat", 100)
	queued := func() int64 {
		n, _ := e.redis.Client().HLen(context.Background(), "tollgate:pay:{wh}:events").Result()
		return n
	}
	eventually(t, 5*time.Second, "2 queued events", func() bool { return queued() == 2 })
	before := map[string]string{}
	for _, k := range []string{"tollgate:pay:{o:AOF_PAID_1}:trade", "tollgate:pay:{o:AOF_PAID_1}:refunds", "tollgate:pay:{o:AOF_OPEN_1}:trade", "tollgate:pay:{wh}:events"} {
		before[k] = e.redis.Dump()[k]
	}
	e.redis.Restart()
	dump := e.redis.Dump()
	for k, v := range before {
		if dump[k] != v {
			t.Errorf("%s: before %s, after %s", k, v, dump[k])
		}
	}
	if r := e.get("AOF_OPEN_1"); r.str("trade_no") != open.str("trade_no") || r.str("state") != "PAYING" {
		t.Fatalf("open trade after restart: %s", r.Raw)
	}
	e.hooks.setDown(false)
	eventually(t, 10*time.Second, "events after restart", func() bool {
		return len(e.hooks.ofType("trade.paid", "AOF_PAID_1")) == 1 && len(e.hooks.ofType("refund.succeeded", "AOF_PAID_1")) == 1
	})
	if err := e.sim.Pay(open.str("trade_no")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "paid after restart", func() bool { return e.get("AOF_OPEN_1").str("state") == "PAID" })
}

// TestConfigReloadMidTrafficFailsNoRequestAndLeaksNoGoroutine: every
// request that reaches payproxy during three reloads succeeds, and one
// poller and one sender remain. A connection-level failure (EOF or reset
// before any answer: Caddy's listener handover closing a keep-alive or
// just-accepted connection) is retried, which is safe because creating
// is idempotent per order_no; the retried create must return the same
// trade. Such retries are counted and logged.
func TestConfigReloadMidTrafficFailsNoRequestAndLeaksNoGoroutine(t *testing.T) {
	e := newEnv(t)
	inst := e.start()
	var failures, total, retries atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				order := fmt.Sprintf("RELOAD_%d_%d", w, i)
				ch := []string{"alipay", "wechat"}[i%2]
				body := map[string]any{"order_no": order, "amount_fen": 100, "channel": ch}
				r := retryTransport(&retries, func() (response, error) { return tryDo("POST", e.base+"/pay/trades", body) })
				g := retryTransport(&retries, func() (response, error) { return tryDo("GET", e.base+"/pay/trades/"+order, nil) })
				total.Add(2)
				if r.Status != 200 || g.Status != 200 || g.str("trade_no") != r.str("trade_no") {
					failures.Add(1)
					t.Errorf("during reload: create %d %s, get %d %s", r.Status, r.Raw, g.Status, g.Raw)
				}
			}
		}(w)
	}
	for _, iv := range []string{"150ms", "250ms", "200ms"} {
		time.Sleep(300 * time.Millisecond)
		e.options["poll_interval"] = iv
		inst.Reload(e.caddyfile(e.port))
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("%d requests, %d connection-level retries", total.Load(), retries.Load())
	if failures.Load() != 0 || total.Load() < 20 {
		t.Fatalf("%d of %d requests failed", failures.Load(), total.Load())
	}
	eventually(t, 5*time.Second, "one poller and one sender", func() bool {
		return countGoroutines("payproxy.(*PayProxy).runPoller") == 1 && countGoroutines("payproxy.(*PayProxy).runSender") == 1
	})
}

// retryTransport repeats fn while it fails below HTTP (at most 5 times).
func retryTransport(n *atomic.Int64, fn func() (response, error)) response {
	for i := 0; ; i++ {
		r, err := fn()
		if err == nil || i == 4 {
			return r
		}
		n.Add(1)
		time.Sleep(20 * time.Millisecond)
	}
}

func countGoroutines(fn string) int {
	var b strings.Builder
	_ = pprof.Lookup("goroutine").WriteTo(&b, 2)
	n := 0
	for _, g := range strings.Split(b.String(), "\n\n") {
		if strings.Contains(g, fn) {
			n++
		}
	}
	return n
}

// TestOrderSourceDecidesTheAmount: the backend's amount and subject win,
// no request header is forwarded (without authjwt there is no verified
// identity to send), and its 404/403 reach the client.
func TestOrderSourceDecidesTheAmount(t *testing.T) {
	var mu sync.Mutex
	seen := http.Header{}
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = r.Header.Clone()
		mu.Unlock()
		switch r.URL.Path {
		case "/orders/OS_OK_0001":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"amount_fen": 2500, "subject": "freight"}`))
		case "/orders/OS_FORBID_1":
			w.WriteHeader(http.StatusForbidden)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer backend.Close()
	e := newEnv(t)
	e.extra = "\t\torder_source " + backend.URL + "/orders/{order_no}\n"
	e.start()
	post := func(body map[string]any) response {
		return do(t, "POST", e.base+"/pay/trades", body, "X-User-Id", "42", "X-User-Roles", "courier", "Authorization", "Bearer t", "X-Other", "no")
	}
	r := post(map[string]any{"order_no": "OS_OK_0001", "channel": "wechat"})
	wantStatus(t, r, 200, "")
	if r.num("amount_fen") != 2500 {
		t.Fatalf("amount %d", r.num("amount_fen"))
	}
	mu.Lock()
	if seen.Get("X-User-Id") != "" || seen.Get("X-User-Roles") != "" || seen.Get("Authorization") != "" || seen.Get("X-Other") != "" {
		t.Errorf("forwarded headers: %v", seen)
	}
	mu.Unlock()
	for _, tr := range e.sim.Trades() {
		if tr.OutTradeNo == r.str("trade_no") && (tr.TotalFen != 2500 || tr.Subject != "freight") {
			t.Fatalf("provider trade %+v", tr)
		}
	}
	wantStatus(t, post(map[string]any{"order_no": "OS_OK_0001", "channel": "wechat", "amount_fen": 2500}), 200, "")
	before := e.redis.Dump()
	wantStatus(t, post(map[string]any{"order_no": "OS_OK_0001", "channel": "wechat", "amount_fen": 1}), http.StatusConflict, "amount_mismatch")
	wantStatus(t, post(map[string]any{"order_no": "OS_NONE_01", "channel": "wechat"}), http.StatusNotFound, "not_found")
	wantStatus(t, post(map[string]any{"order_no": "OS_FORBID_1", "channel": "alipay"}), http.StatusForbidden, "forbidden")
	time.Sleep(50 * time.Millisecond)
	after := e.redis.Dump()
	for k, v := range before {
		if !strings.Contains(k, "{due}") && after[k] != v {
			t.Errorf("%s changed", k)
		}
	}
}

// TestRedisDownAnswers503: no Redis, no trade, no guess.
func TestRedisDownAnswers503(t *testing.T) {
	e := newEnv(t)
	e.start()
	wantStatus(t, e.create("REDISDOWN_1", "wechat", 100), 200, "")
	e.redis.Stop()
	wantStatus(t, e.create("REDISDOWN_2", "wechat", 100), http.StatusServiceUnavailable, "redis_unavailable")
	wantStatus(t, e.get("REDISDOWN_1"), http.StatusServiceUnavailable, "redis_unavailable")
	wantStatus(t, e.refund("REDISDOWN_1", "RD_1", 1), http.StatusServiceUnavailable, "redis_unavailable")
	if n := e.sim.Calls()["wechat.native.prepay"]; n != 1 {
		t.Fatalf("provider saw %d creations with Redis down", n)
	}
}

// TestPayErrorTradeIsClosedAtTheProviderBeforeItIsRecordedClosed: WeChat
// PAYERROR (the buyer's payment failed) is not a closed trade: payproxy
// closes it at the provider and records CLOSED only once the provider's
// query confirms, so the QR code cannot be paid after payproxy says closed.
func TestPayErrorTradeIsClosedAtTheProviderBeforeItIsRecordedClosed(t *testing.T) {
	e := newEnv(t)
	e.start()
	r := e.create("PAYERROR_01", "wechat", 450)
	wantStatus(t, r, http.StatusOK, "")
	tradeNo := r.str("trade_no")
	if err := e.sim.PayError(tradeNo); err != nil {
		t.Fatal(err)
	}
	atProvider := func() string {
		for _, tr := range e.sim.Trades() {
			if tr.OutTradeNo == tradeNo {
				return tr.State
			}
		}
		return ""
	}
	var seen string
	eventually(t, 5*time.Second, "CLOSED", func() bool {
		if e.get("PAYERROR_01").str("state") != "CLOSED" {
			return false
		}
		seen = atProvider()
		return true
	})
	if seen != paysim.WechatClosed || e.sim.Calls()["wechat.close"] == 0 {
		t.Fatalf("payproxy recorded CLOSED while the provider had %s (close calls %d)", seen, e.sim.Calls()["wechat.close"])
	}
	eventually(t, 5*time.Second, "trade.closed", func() bool { return len(e.hooks.ofType("trade.closed", "PAYERROR_01")) == 1 })
}
