package payproxy_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/paysim"
)

// closeOp is the provider operation that stops an unscanned trade.
var closeOp = map[string]string{"alipay": "alipay.trade.cancel", "wechat": "wechat.close"}

var refundOp = map[string]string{"alipay": "alipay.trade.refund", "wechat": "wechat.refund"}

// paidCode is each provider's "already paid" error code.
var paidCode = map[string]string{"alipay": "ACQ.TRADE_HAS_SUCCESS", "wechat": "ORDERPAID"}

// TestUnsignedAlreadyPaidAnswerToACreateNeverMarksTheOrderPaid: an
// "already paid" error body that no provider signed (any hop can send one)
// is "outcome unknown": the order stays UNKNOWN, no trade.paid is sent,
// and the retry gets the same trade number and its QR code.
func TestUnsignedAlreadyPaidAnswerToACreateNeverMarksTheOrderPaid(t *testing.T) {
	e := newEnv(t)
	e.start()
	for _, ch := range []string{"alipay", "wechat"} {
		t.Run(ch, func(t *testing.T) {
			order := "UNSIGNED_PAID_" + ch
			e.sim.SetFault(paysim.Fault{Operation: createOp[ch], Mode: paysim.FaultUnsignedError, Status: 400, Code: paidCode[ch]})
			wantStatus(t, e.create(order, ch, 50000), http.StatusBadGateway, "provider_error")
			if st := e.get(order).str("state"); st != "UNKNOWN" {
				t.Fatalf("after an unsigned ORDERPAID the order is %s", st)
			}
			r := e.create(order, ch, 50000)
			wantStatus(t, r, http.StatusOK, "")
			if r.str("state") != "PAYING" {
				t.Fatalf("retry: %s", r.Raw)
			}
			e.quiesce()
			if n := len(e.hooks.ofType("trade.paid", order)); n != 0 {
				t.Fatalf("%d trade.paid events for an order nobody paid", n)
			}
		})
	}
}

// TestUnsignedErrorOnCloseNeitherClosesNorPaysTheTrade: an unsigned
// "already paid" answer to a close changes nothing: the close is answered
// as unknown, the trade stays PAYING, and a later close works.
func TestUnsignedErrorOnCloseNeitherClosesNorPaysTheTrade(t *testing.T) {
	e := newEnv(t)
	e.options["poll_interval"] = "1h"
	e.start()
	for _, ch := range []string{"alipay", "wechat"} {
		t.Run(ch, func(t *testing.T) {
			order := "UNSIGNED_CLOSE_" + ch
			wantStatus(t, e.create(order, ch, 700), http.StatusOK, "")
			e.sim.SetFault(paysim.Fault{Operation: closeOp[ch], Mode: paysim.FaultUnsignedError, Status: 400, Code: paidCode[ch]})
			wantStatus(t, do(t, "POST", e.base+"/pay/trades/"+order+"/close", nil), http.StatusBadGateway, "provider_error")
			if st := e.get(order).str("state"); st != "PAYING" {
				t.Fatalf("after an unsigned answer to its close the order is %s", st)
			}
			cl := do(t, "POST", e.base+"/pay/trades/"+order+"/close", nil)
			wantStatus(t, cl, http.StatusOK, "")
			if cl.str("state") != "CLOSED" {
				t.Fatalf("second close: %s", cl.Raw)
			}
			e.quiesce()
			if n := len(e.hooks.ofType("trade.paid", order)); n != 0 {
				t.Fatalf("%d trade.paid events for an order nobody paid", n)
			}
		})
	}
}

// TestUnsignedTimeoutInFrontOfARefundNeverFailsIt: a 408 from a hop in
// front of the provider is not the provider's refusal: the refund stays
// PROCESSING, the poller finds it never arrived and sends it again with the
// same number, and it succeeds; no refund.failed is ever sent.
func TestUnsignedTimeoutInFrontOfARefundNeverFailsIt(t *testing.T) {
	e := newEnv(t)
	e.start()
	for _, ch := range []string{"alipay", "wechat"} {
		t.Run(ch, func(t *testing.T) {
			order := "UNSIGNED_RF_" + ch
			tradeNo := e.paidOrder(order, ch, 1000)
			e.sim.SetFault(paysim.Fault{Operation: refundOp[ch], Mode: paysim.FaultUnsignedError, Status: http.StatusRequestTimeout})
			wantStatus(t, e.refund(order, "URF_"+ch, 400), http.StatusBadGateway, "provider_error")
			if st := do(t, "GET", e.base+"/pay/refunds/URF_"+ch, nil).str("state"); st != "PROCESSING" {
				t.Fatalf("after an unsigned 408 the refund is %s", st)
			}
			eventually(t, 10*time.Second, "refund SUCCESS", func() bool {
				return do(t, "GET", e.base+"/pay/refunds/URF_"+ch, nil).str("state") == "SUCCESS"
			})
			eventually(t, 5*time.Second, "refund.succeeded", func() bool { return len(e.hooks.ofType("refund.succeeded", order)) == 1 })
			if n := len(e.hooks.ofType("refund.failed", order)); n != 0 {
				t.Fatalf("%d refund.failed events for a refund that succeeded", n)
			}
			n := 0
			for _, rf := range e.sim.Refunds() {
				if rf.OutTradeNo == tradeNo {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("the provider holds %d refunds, want 1", n)
			}
		})
	}
}

// TestRefundRecordedFailedIsHonouredWhenTheProviderReportsItSucceeded: a
// refund payproxy holds as FAILED (an earlier version took an unsigned
// answer for a refusal) is checked again when the provider's signed
// REFUND.SUCCESS arrives: it becomes SUCCESS, its amount is reserved again,
// and refund.succeeded is sent.
func TestRefundRecordedFailedIsHonouredWhenTheProviderReportsItSucceeded(t *testing.T) {
	e := newEnvWithSim(t, paysim.Config{WechatRefundDelay: 2 * time.Second})
	e.options["poll_interval"] = "1h"
	e.start()
	const order = "FAILED_THEN_OK_1"
	e.paidOrder(order, "wechat", 1000)
	wantStatus(t, e.refund(order, "FTO_RF_1", 300), http.StatusOK, "")
	ctx := context.Background()
	c := e.redis.Client()
	raw, err := c.HGet(ctx, "tollgate:pay:{o:"+order+"}:refunds", "FTO_RF_1").Result()
	if err != nil {
		t.Fatal(err)
	}
	var rec map[string]any
	_ = json.Unmarshal([]byte(raw), &rec)
	if rec["state"] != "PROCESSING" {
		t.Fatalf("refund is %v before the provider settled it", rec["state"])
	}
	rec["state"] = "FAILED"
	b, _ := json.Marshal(rec)
	if err := c.HSet(ctx, "tollgate:pay:{o:"+order+"}:refunds", "FTO_RF_1", string(b)).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.HIncrBy(ctx, "tollgate:pay:{o:"+order+"}:trade", "refunded_fen", -300).Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "refund SUCCESS", func() bool {
		return do(t, "GET", e.base+"/pay/refunds/FTO_RF_1", nil).str("state") == "SUCCESS"
	})
	eventually(t, 5*time.Second, "refund.succeeded", func() bool { return len(e.hooks.ofType("refund.succeeded", order)) == 1 })
	if got, _ := c.HGet(ctx, "tollgate:pay:{o:"+order+"}:trade", "refunded_fen").Int64(); got != 300 {
		t.Fatalf("refunded_fen %d, want 300", got)
	}
	// 701 more would exceed what was paid.
	wantStatus(t, e.refund(order, "FTO_RF_2", 701), http.StatusConflict, "refund_exceeds_paid")
}
