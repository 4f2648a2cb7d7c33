package payproxy_test

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/paysim"
	"github.com/tollgate/tollgate/internal/testcaddy"
)

// twoInstances starts one Caddy in this process and one tollgate process,
// sharing Redis and the provider.
func twoInstances(t *testing.T, e *env) (string, string) {
	t.Helper()
	e.start()
	port2 := testcaddy.FreePort(t)
	testcaddy.StartProcess(t, "", e.caddyfile(port2))
	if err := testcaddy.WaitListening(fmt.Sprintf("127.0.0.1:%d", port2), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	return e.base, fmt.Sprintf("http://127.0.0.1:%d", port2)
}

var createOp = map[string]string{"alipay": "alipay.trade.precreate", "wechat": "wechat.native.prepay"}

// TestConcurrentCreatesAcrossInstancesMakeOneTrade: 100 concurrent creates
// of one order, split over two Caddy instances, while the provider is slow:
// one creation at the provider, 100 identical answers. Then a provider
// slower than lock_ttl: the watchdog keeps the lock, and a request to the
// other instance still gets the same trade.
func TestConcurrentCreatesAcrossInstancesMakeOneTrade(t *testing.T) {
	e := newEnv(t)
	e.options["provider_timeout"] = "5s"
	a, b := twoInstances(t, e)
	for _, ch := range []string{"alipay", "wechat"} {
		t.Run("storm_"+ch, func(t *testing.T) {
			order := "STORM_" + ch
			before := e.sim.Calls()[createOp[ch]]
			e.sim.SetFault(paysim.Fault{Operation: createOp[ch], Mode: "delay", DelayMS: 300})
			answers := make([]response, 100)
			var wg sync.WaitGroup
			for i := range answers {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					base := a
					if i%2 == 1 {
						base = b
					}
					answers[i] = do(t, "POST", base+"/pay/trades", map[string]any{"order_no": order, "amount_fen": 700, "channel": ch, "subject": "s"})
				}(i)
			}
			wg.Wait()
			for i, r := range answers {
				if r.Status != 200 || r.str("trade_no") != answers[0].str("trade_no") || r.str("qr_code") != answers[0].str("qr_code") || r.str("state") != "PAYING" {
					t.Fatalf("answer %d differs: %d %s vs %s", i, r.Status, r.Raw, answers[0].Raw)
				}
			}
			if n := e.sim.Calls()[createOp[ch]] - before; n != 1 {
				t.Fatalf("provider saw %d creations, want 1", n)
			}
		})
		t.Run("slower_than_lock_ttl_"+ch, func(t *testing.T) {
			order := "SLOW_" + ch
			before := e.sim.Calls()[createOp[ch]]
			e.sim.SetFault(paysim.Fault{Operation: createOp[ch], Mode: "delay", DelayMS: 2500}) // lock_ttl is 1s
			var first, second response
			var wg sync.WaitGroup
			wg.Add(2)
			go func() { defer wg.Done(); first = e.createAt(a, order, ch, 300) }()
			go func() {
				defer wg.Done()
				time.Sleep(1500 * time.Millisecond) // past lock_ttl: only the watchdog keeps the lock
				second = e.createAt(b, order, ch, 300)
			}()
			wg.Wait()
			wantStatus(t, first, 200, "")
			wantStatus(t, second, 200, "")
			if first.str("trade_no") != second.str("trade_no") {
				t.Fatalf("two trades: %s / %s", first.Raw, second.Raw)
			}
			if n := e.sim.Calls()[createOp[ch]] - before; n != 1 {
				t.Fatalf("provider saw %d creations, want 1", n)
			}
		})
	}
}

func (e *env) createAt(base, order, channel string, amount int64) response {
	return do(e.t, "POST", base+"/pay/trades", map[string]any{"order_no": order, "amount_fen": amount, "channel": channel, "subject": "s"})
}

// TestLostProviderAnswerIsRetriedWithTheSameTradeNumber: the provider
// commits the trade and the answer is lost; payproxy answers 502 with
// state UNKNOWN, and a retry reuses the out_trade_no, so the provider
// returns the same QR code and has one trade.
func TestLostProviderAnswerIsRetriedWithTheSameTradeNumber(t *testing.T) {
	e := newEnv(t)
	e.start()
	for _, ch := range []string{"alipay", "wechat"} {
		t.Run(ch, func(t *testing.T) {
			order := "DROP_" + ch
			e.sim.SetFault(paysim.Fault{Operation: createOp[ch], Mode: "drop_response"})
			wantStatus(t, e.create(order, ch, 4200), http.StatusBadGateway, "provider_error")
			stored := e.get(order)
			if stored.str("state") != "UNKNOWN" || stored.str("trade_no") == "" {
				t.Fatalf("after a lost answer: %s", stored.Raw)
			}
			retry := e.create(order, ch, 4200)
			wantStatus(t, retry, 200, "")
			if retry.str("trade_no") != stored.str("trade_no") || retry.str("state") != "PAYING" {
				t.Fatalf("retry: %s, stored: %s", retry.Raw, stored.Raw)
			}
			n := 0
			for _, tr := range e.sim.Trades() {
				if tr.OutTradeNo == retry.str("trade_no") {
					n++
					if tr.QRCode != retry.str("qr_code") {
						t.Fatalf("QR code differs from the provider's")
					}
				}
			}
			if n != 1 {
				t.Fatalf("provider holds %d trades, want 1", n)
			}
		})
	}
}

// TestProviderTimeoutAnswers504AndStaysUnknown: never a guess.
func TestProviderTimeoutAnswers504AndStaysUnknown(t *testing.T) {
	e := newEnv(t)
	e.options["provider_timeout"] = "300ms"
	e.start()
	e.sim.SetFault(paysim.Fault{Operation: "wechat.native.prepay", Mode: "delay", DelayMS: 1000})
	wantStatus(t, e.create("TIMEOUT_01", "wechat", 100), http.StatusGatewayTimeout, "provider_timeout")
	if st := e.get("TIMEOUT_01").str("state"); st != "UNKNOWN" {
		t.Fatalf("state %s", st)
	}
	e.sim.SetFault(paysim.Fault{Operation: "wechat.native.prepay", Mode: "error"})
	wantStatus(t, e.create("TIMEOUT_01", "wechat", 100), http.StatusBadGateway, "provider_error")
	wantStatus(t, e.create("TIMEOUT_01", "wechat", 100), 200, "")
}

// TestRetriedAlipayPrecreateSendsTheSameAbsoluteExpiry: a precreate whose
// answer was lost is retried with the trade's absolute deadline
// (time_expire), not a new relative timeout_express that would move the
// QR code's expiry past pay_timeout with every retry.
func TestRetriedAlipayPrecreateSendsTheSameAbsoluteExpiry(t *testing.T) {
	e := newEnv(t)
	e.options["pay_timeout"] = "90s"
	e.start()
	e.sim.SetFault(paysim.Fault{Operation: "alipay.trade.precreate", Mode: paysim.FaultDropResponse})
	wantStatus(t, e.create("EXPIRY_01", "alipay", 100), http.StatusBadGateway, "provider_error")
	time.Sleep(1100 * time.Millisecond) // the retry comes in a later second
	r := e.create("EXPIRY_01", "alipay", 100)
	wantStatus(t, r, http.StatusOK, "")
	want, err := time.Parse(time.RFC3339, r.str("expires_at"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range e.sim.Trades() {
		if tr.OutTradeNo != r.str("trade_no") {
			continue
		}
		if len(tr.RequestedExpiry) != 2 {
			t.Fatalf("the provider saw %d precreates, want 2", len(tr.RequestedExpiry))
		}
		for i, got := range tr.RequestedExpiry {
			if !got.Equal(want) {
				t.Fatalf("precreate %d asked for expiry %s, the trade expires at %s", i+1, got.UTC().Format(time.RFC3339), r.str("expires_at"))
			}
		}
		return
	}
	t.Fatal("no trade at the provider")
}
