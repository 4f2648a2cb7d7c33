package payproxy_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/paysim"
)

func (e *env) paidOrder(order, ch string, amount int64) string {
	e.t.Helper()
	r := e.create(order, ch, amount)
	wantStatus(e.t, r, 200, "")
	if err := e.sim.Pay(r.str("trade_no")); err != nil {
		e.t.Fatal(err)
	}
	eventually(e.t, 5*time.Second, "PAID", func() bool { return e.get(order).str("state") == "PAID" })
	return r.str("trade_no")
}

func (e *env) refund(order, refundNo string, amount int64) response {
	return do(e.t, "POST", e.base+"/pay/refunds", map[string]any{"order_no": order, "refund_no": refundNo, "amount_fen": amount, "reason": "r"})
}

// TestConcurrentRefundsNeverExceedThePaidAmount: ten concurrent refunds of
// 300 fen against 1000 paid: three pass, seven get 409, the provider moves
// 900 fen (on Alipay one refund every 3 s: Alipay's gap between refunds of
// a trade).
func TestConcurrentRefundsNeverExceedThePaidAmount(t *testing.T) {
	e := newEnv(t)
	e.start()
	for _, ch := range []string{"alipay", "wechat"} {
		t.Run(ch, func(t *testing.T) {
			order := "OVER_" + ch
			tradeNo := e.paidOrder(order, ch, 1000)
			answers := make([]response, 10)
			var wg sync.WaitGroup
			for i := range answers {
				wg.Add(1)
				go func(i int) { defer wg.Done(); answers[i] = e.refund(order, fmt.Sprintf("OV_%s_%d", ch, i), 300) }(i)
			}
			wg.Wait()
			ok, refused := 0, 0
			for _, r := range answers {
				switch {
				case r.Status == 200:
					ok++
				case r.Status == http.StatusConflict && r.str("error") == "refund_exceeds_paid":
					refused++
				default:
					t.Fatalf("unexpected answer %d %s", r.Status, r.Raw)
				}
			}
			if ok != 3 || refused != 7 {
				t.Fatalf("%d accepted, %d refused; want 3 and 7", ok, refused)
			}
			moved := func() int64 {
				var n int64
				for _, rf := range e.sim.Refunds() {
					if rf.OutTradeNo == tradeNo {
						n += rf.AmountFen
					}
				}
				return n
			}
			eventually(t, 15*time.Second, "900 fen refunded at the provider", func() bool { return moved() >= 900 })
			if n := moved(); n != 900 {
				t.Fatalf("provider refunded %d fen, want 900", n)
			}
			// The same refund again is a replay, not a new refund.
			first := answers[0]
			for _, r := range answers {
				if r.Status == 200 {
					first = r
					break
				}
			}
			again := e.refund(order, first.str("refund_no"), 300)
			wantStatus(t, again, 200, "")
			eventually(t, 10*time.Second, "3 refund.succeeded", func() bool { return len(e.hooks.ofType("refund.succeeded", order)) == 3 })
		})
	}
}

// TestRefundWithLostAnswerIsSettledByThePoller: Alipay commits the refund
// and the answer is lost (502, PROCESSING); the poller's refund query
// finds REFUND_SUCCESS. A refund that never reached Alipay (connection
// reset: 502, or 200 PROCESSING when it waited for Alipay's 3 s gap after
// the first and was sent by the poller) is found missing by the query and
// sent again with the same number.
func TestRefundWithLostAnswerIsSettledByThePoller(t *testing.T) {
	e := newEnv(t)
	e.start()
	tradeNo := e.paidOrder("LOSTRF_01", "alipay", 1000)
	e.sim.SetFault(paysim.Fault{Operation: "alipay.trade.refund", Mode: "drop_response"})
	wantStatus(t, e.refund("LOSTRF_01", "LR_1", 100), http.StatusBadGateway, "provider_error")
	// The poller may already have settled it; it is never FAILED.
	if st := do(t, "GET", e.base+"/pay/refunds/LR_1", nil).str("state"); st != "PROCESSING" && st != "SUCCESS" {
		t.Fatalf("after a lost answer the refund is %s", st)
	}
	eventually(t, 5*time.Second, "LR_1 SUCCESS", func() bool { return do(t, "GET", e.base+"/pay/refunds/LR_1", nil).str("state") == "SUCCESS" })

	e.sim.SetFault(paysim.Fault{Operation: "alipay.trade.refund", Mode: "reset"})
	if r := e.refund("LOSTRF_01", "LR_2", 200); r.Status != 200 || r.str("state") != "PROCESSING" {
		wantStatus(t, r, http.StatusBadGateway, "provider_error")
	}
	eventually(t, 10*time.Second, "LR_2 SUCCESS", func() bool { return do(t, "GET", e.base+"/pay/refunds/LR_2", nil).str("state") == "SUCCESS" })
	var moved int64
	n := 0
	for _, rf := range e.sim.Refunds() {
		if rf.OutTradeNo == tradeNo {
			moved += rf.AmountFen
			n++
		}
	}
	if moved != 300 || n != 2 {
		t.Fatalf("provider holds %d refunds of %d fen, want 2 of 300", n, moved)
	}
}

// TestAbnormalRefundIsItsOwnStateAndIsNotPolledForever: a WeChat refund
// that turns ABNORMAL (the money could not be returned; a person must act)
// is recorded ABNORMAL with refund.abnormal, keeps its reservation, leaves
// the poller's work, and is settled by WeChat's later REFUND.SUCCESS.
func TestAbnormalRefundIsItsOwnStateAndIsNotPolledForever(t *testing.T) {
	e := newEnvWithSim(t, paysim.Config{WechatRefundDelay: time.Hour})
	e.start()
	const order = "ABNORMAL_01"
	e.paidOrder(order, "wechat", 1000)
	wantStatus(t, e.refund(order, "ABN_RF_1", 600), http.StatusOK, "")
	if err := e.sim.RefundAbnormal("ABN_RF_1"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "ABNORMAL", func() bool {
		return do(t, "GET", e.base+"/pay/refunds/ABN_RF_1", nil).str("state") == "ABNORMAL"
	})
	eventually(t, 5*time.Second, "refund.abnormal", func() bool { return len(e.hooks.ofType("refund.abnormal", order)) == 1 })
	if ev := e.hooks.ofType("refund.abnormal", order)[0]; ev.Data.RefundNo != "ABN_RF_1" || ev.Data.AmountFen != 600 || ev.Data.State != "ABNORMAL" {
		t.Fatalf("refund.abnormal: %+v", ev.Data)
	}
	c := e.redis.Client()
	// It stays in the due set only for its retention (30 days by default).
	eventually(t, 10*time.Second, "the order off the poller's work", func() bool {
		at, err := c.ZScore(context.Background(), "tollgate:pay:{due}", order).Result()
		return err == redis.Nil || (err == nil && at > float64(time.Now().Add(24*time.Hour).UnixMilli()))
	})
	queries := e.sim.Calls()["wechat.refund.query"]
	time.Sleep(1 * time.Second) // five poll intervals
	if n := e.sim.Calls()["wechat.refund.query"]; n != queries {
		t.Fatalf("an ABNORMAL refund is still polled (%d more queries)", n-queries)
	}
	// The reservation stays: 401 more would exceed what was paid.
	wantStatus(t, e.refund(order, "ABN_RF_2", 401), http.StatusConflict, "refund_exceeds_paid")
	if err := e.sim.RefundSucceed("ABN_RF_1"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "SUCCESS", func() bool {
		return do(t, "GET", e.base+"/pay/refunds/ABN_RF_1", nil).str("state") == "SUCCESS"
	})
	eventually(t, 5*time.Second, "refund.succeeded", func() bool { return len(e.hooks.ofType("refund.succeeded", order)) == 1 })
}
