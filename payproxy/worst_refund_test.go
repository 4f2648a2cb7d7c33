package payproxy_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/paysim"
	"github.com/tollgate/tollgate/payproxy/alipay"
	"github.com/tollgate/tollgate/payproxy/provider"
)

// TestRefundQueriedInTheOlderShapeIsConfirmedByTheTradesRefundedTotal:
// Alipay's refund query answers in its older documented shape (the
// refund's data, no refund_status), which the old documentation calls a
// success and the current one does not. Two partial refunds of one trade
// are neither FAILED nor taken as SUCCESS from that answer alone: sent
// again with the same number, Alipay's signed answer carries the trade's
// refunded total, which confirms them. The provider holds each once.
func TestRefundQueriedInTheOlderShapeIsConfirmedByTheTradesRefundedTotal(t *testing.T) {
	e := newEnv(t)
	e.start()
	const order = "LEGACY_RF_1"
	e.paidOrder(order, "alipay", 1000)
	e.sim.SetFault(paysim.Fault{Operation: "alipay.trade.fastpay.refund.query", Mode: paysim.FaultLegacyQueryShape, Count: 1000})
	var wg sync.WaitGroup
	for i, amount := range []int64{300, 200} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r := e.refund(order, fmt.Sprintf("LEG_%d", i), amount); r.Status != http.StatusOK || r.str("state") != "PROCESSING" {
				t.Errorf("refund %d: %d %s", i, r.Status, r.Raw)
			}
		}()
	}
	wg.Wait()
	e.settledRefunds(t, order, 20*time.Second)
	for _, no := range []string{"LEG_0", "LEG_1"} {
		if st := e.refundState(no); st != "SUCCESS" {
			t.Fatalf("refund %s is %s", no, st)
		}
	}
	e.wantProviderRefunds(t, order, 2)
	eventually(t, 5*time.Second, "2 refund.succeeded", func() bool { return len(e.hooks.ofType("refund.succeeded", order)) == 2 })
	e.checkOrder(t, order)
}

// TestConcurrentAlipayRefundsOfOneTradeAreQueuedNotRefused: Alipay refuses
// a refund of a trade sooner than 3 s after the previous one (paysim's
// default, as Alipay). Three concurrent refunds of one order are all
// accepted (200 PROCESSING), sent 3 s apart, and succeed; the provider
// never had to refuse one.
func TestConcurrentAlipayRefundsOfOneTradeAreQueuedNotRefused(t *testing.T) {
	e := newEnv(t)
	e.start()
	const order = "GAP_RF_1"
	e.paidOrder(order, "alipay", 900)
	answers := make([]response, 3)
	var wg sync.WaitGroup
	for i := range answers {
		wg.Add(1)
		go func() { defer wg.Done(); answers[i] = e.refund(order, fmt.Sprintf("GAP_%d", i), 300) }()
	}
	wg.Wait()
	for i, r := range answers {
		if r.Status != http.StatusOK || (r.str("state") != "PROCESSING" && r.str("state") != "SUCCESS") {
			t.Fatalf("refund %d: %d %s", i, r.Status, r.Raw)
		}
	}
	e.settledRefunds(t, order, 20*time.Second)
	refunds := e.providerRefunds(order)
	if len(refunds) != 3 {
		t.Fatalf("the provider holds %d refunds, want 3", len(refunds))
	}
	for i := 1; i < len(refunds); i++ {
		if gap := refunds[i].CreatedAt.Sub(refunds[i-1].CreatedAt); gap < paysim.DefaultAlipayRefundGap {
			t.Fatalf("refunds %d and %d reached the provider %s apart", i-1, i, gap)
		}
	}
	e.checkOrder(t, order)
}

// TestRefundNumberAlipayHoldsWithAnotherAmountIsNeverFailed: the refund
// number was used at Alipay before, for another amount (another system
// on the same app), and Alipay answers ACQ.DISCORDANT_REPEAT_REQUEST: "the
// refund of that number was carried out". payproxy asks the refund query
// and never marks it FAILED: Alipay's refund is for another amount, so the
// refund is ABNORMAL (refund.abnormal), its amount still reserved, for a
// person.
func TestRefundNumberAlipayHoldsWithAnotherAmountIsNeverFailed(t *testing.T) {
	e := newEnv(t)
	e.start()
	const order = "DISCORD_1"
	tradeNo := e.paidOrder(order, "alipay", 1000)
	k := e.sim.Keys()
	direct, err := alipay.New(alipay.Config{AppID: k.AlipayAppID, PrivateKeyPEM: readFile(t, k.AlipayPrivateKeyFile),
		PublicKeyPEM: readFile(t, k.AlipayPublicKeyFile), Gateway: e.simURL + "/gateway.do"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := direct.Refund(context.Background(), provider.RefundRequest{TradeNo: tradeNo, RefundNo: "DIS_1", AmountFen: 100, TotalFen: 1000}); err != nil {
		t.Fatal(err)
	}
	e.sim.Advance(paysim.DefaultAlipayRefundGap) // the other system's refund was a while ago
	r := e.refund(order, "DIS_1", 200)
	if r.Status != http.StatusOK {
		t.Fatalf("refund: %d %s", r.Status, r.Raw)
	}
	eventually(t, 10*time.Second, "refund DIS_1 settled", func() bool { return e.refundState("DIS_1") != "PROCESSING" })
	if st := e.refundState("DIS_1"); st != "ABNORMAL" {
		t.Fatalf("a refund number Alipay carried out (for another amount) is %s", st)
	}
	eventually(t, 5*time.Second, "refund.abnormal", func() bool { return len(e.hooks.ofType("refund.abnormal", order)) == 1 })
	if n := len(e.hooks.ofType("refund.failed", order)); n != 0 {
		t.Fatalf("%d refund.failed for a number Alipay carried out", n)
	}
	// Its 200 fen stay reserved: 801 more would exceed what was paid.
	wantStatus(t, e.refund(order, "DIS_2", 801), http.StatusConflict, "refund_exceeds_paid")
	e.checkOrder(t, order)
}

// TestSignedRateLimitOnARefundIsNeverARefusal: Alipay's rate limit (40005)
// under Alipay's signature is a verified "no", but never a refusal: the
// refund stays PROCESSING (the client gets 503 provider_busy), is sent
// again later and succeeds. Unsigned, the same.
func TestSignedRateLimitOnARefundIsNeverARefusal(t *testing.T) {
	e := newEnv(t)
	e.start()
	for _, shape := range []string{paysim.ShapeSigned, ""} {
		t.Run("shape_"+shape, func(t *testing.T) {
			order := "RATE_RF_" + shape
			e.paidOrder(order, "alipay", 1000)
			e.sim.SetFault(paysim.Fault{Operation: "alipay.trade.refund", Mode: paysim.FaultRateLimited, Shape: shape})
			no := "RATE_" + shape
			wantStatus(t, e.refund(order, no, 400), http.StatusServiceUnavailable, "provider_busy")
			if st := e.refundState(no); st != "PROCESSING" {
				t.Fatalf("after a rate limit the refund is %s", st)
			}
			e.eventuallyRefund(t, no, "SUCCESS", 10*time.Second)
			e.wantProviderRefunds(t, order, 1)
			e.checkOrder(t, order)
		})
	}
}

// TestRefundQueriedTooEarlyIsNeverFailedAndNotQueriedAtOnce: Alipay advises
// querying a refund 10 s after it at the earliest and answers no
// refund_status before it is done (query_too_early). payproxy does not
// query a refund as it sends it: its first check comes after the first
// refund_checks step (or when Alipay notifies that it is done). An early empty answer never fails it. A refund
// answered fund_change=N (not yet a success) completes later and is
// recorded SUCCESS once the query says so.
func TestRefundQueriedTooEarlyIsNeverFailedAndNotQueriedAtOnce(t *testing.T) {
	e := newEnv(t)
	e.options["refund_checks"] = "1s 500ms"
	e.start()
	const order = "EARLY_RF_1"
	e.paidOrder(order, "alipay", 1000)
	e.sim.SetFault(paysim.Fault{Operation: "alipay.trade.fastpay.refund.query", Mode: paysim.FaultQueryTooEarly, Count: 1000, DelayMS: 1500})
	// The refund's notification (Alipay's word that it is done, which
	// payproxy checks with a query at once) is held back: only payproxy's
	// own schedule asks.
	e.sim.SetFault(paysim.Fault{Operation: "alipay.notify", Mode: paysim.FaultDelay, DelayMS: 60000})
	queries := e.sim.Calls()["alipay.trade.fastpay.refund.query"]
	e.wantRefundAnswer(t, e.refund(order, "EARLY_1", 300), "PROCESSING", "refund")
	if n := e.sim.Calls()["alipay.trade.fastpay.refund.query"] - queries; n != 0 {
		t.Fatalf("the refund was queried %d times as it was sent", n)
	}
	c, ok := e.checkEntry(t, order, "r:EARLY_1")
	if !ok || c.Sends != 1 || c.Next-c.At != 1000 {
		t.Fatalf("the refund's first check is not one step (1s) after it was sent: %+v (found %v)", c, ok)
	}
	e.eventuallyRefund(t, "EARLY_1", "SUCCESS", 15*time.Second)
	e.sim.SetFault(paysim.Fault{Operation: "alipay.trade.fastpay.refund.query", Mode: "none"})

	e.sim.Advance(paysim.DefaultAlipayRefundGap)
	e.sim.SetFault(paysim.Fault{Operation: "alipay.trade.refund", Mode: paysim.FaultFundChangeN, DelayMS: 1500})
	e.wantRefundAnswer(t, e.refund(order, "EARLY_2", 300), "PROCESSING", "refund answered fund_change=N")
	e.eventuallyRefund(t, "EARLY_2", "SUCCESS", 15*time.Second)
	e.wantProviderRefunds(t, order, 2)
	e.checkOrder(t, order)
}

// TestWechatRefundsThatEndAbnormalClosedOrStuck: a refund WeChat accepts
// and then cannot pay back (abnormal) is ABNORMAL with refund.abnormal; one
// that fails (closed) is FAILED with refund.failed and its amount free
// again; one that stays PROCESSING (stuck) is checked on the refund_checks
// schedule, less and less often, never FAILED, and is SUCCESS once WeChat
// settles it.
func TestWechatRefundsThatEndAbnormalClosedOrStuck(t *testing.T) {
	e := newEnv(t)
	e.options["refund_checks"] = "200ms 400ms 800ms"
	e.start()

	t.Run("abnormal", func(t *testing.T) {
		const order = "WX_ABN_1"
		e.paidOrder(order, "wechat", 1000)
		e.sim.SetFault(paysim.Fault{Operation: "wechat.refund", Mode: paysim.FaultAbnormal})
		wantStatus(t, e.refund(order, "WXA_1", 400), http.StatusOK, "")
		e.eventuallyRefund(t, "WXA_1", "ABNORMAL", 10*time.Second)
		eventually(t, 5*time.Second, "refund.abnormal", func() bool { return len(e.hooks.ofType("refund.abnormal", order)) == 1 })
		e.checkOrder(t, order)
	})
	t.Run("closed", func(t *testing.T) {
		const order = "WX_CLOSED_1"
		e.paidOrder(order, "wechat", 1000)
		e.sim.SetFault(paysim.Fault{Operation: "wechat.refund", Mode: paysim.FaultClosed})
		wantStatus(t, e.refund(order, "WXC_1", 1000), http.StatusOK, "")
		e.eventuallyRefund(t, "WXC_1", "FAILED", 10*time.Second)
		eventually(t, 5*time.Second, "refund.failed", func() bool { return len(e.hooks.ofType("refund.failed", order)) == 1 })
		// The amount is free again: the whole order can be refunded.
		wantStatus(t, e.refund(order, "WXC_2", 1000), http.StatusOK, "")
		e.eventuallyRefund(t, "WXC_2", "SUCCESS", 10*time.Second)
		e.checkOrder(t, order)
	})
	t.Run("stuck", func(t *testing.T) {
		const order = "WX_STUCK_1"
		e.paidOrder(order, "wechat", 1000)
		e.sim.SetFault(paysim.Fault{Operation: "wechat.refund", Mode: paysim.FaultStuck})
		wantStatus(t, e.refund(order, "WXS_1", 400), http.StatusOK, "")
		steps := []int64{200, 400, 800, 800}
		for checks := 1; checks <= 3; checks++ {
			eventually(t, 10*time.Second, fmt.Sprintf("check %d", checks), func() bool {
				c, ok := e.checkEntry(t, order, "r:WXS_1")
				return ok && c.Checks >= checks
			})
			c, _ := e.checkEntry(t, order, "r:WXS_1")
			if c.Next-c.At != steps[c.Checks] {
				t.Fatalf("after %d checks the next comes %d ms later, want %d", c.Checks, c.Next-c.At, steps[c.Checks])
			}
		}
		if st := e.refundState("WXS_1"); st != "PROCESSING" {
			t.Fatalf("a stuck refund is %s", st)
		}
		if err := e.sim.RefundSucceed("WXS_1"); err != nil {
			t.Fatal(err)
		}
		e.eventuallyRefund(t, "WXS_1", "SUCCESS", 10*time.Second)
		e.checkOrder(t, order)
	})
}

// TestRefundTheMerchantCannotCoverIsFailedAndMovesNothing: Alipay
// ACQ.SELLER_BALANCE_NOT_ENOUGH and WeChat 403 NOT_ENOUGH are signed
// refusals: the refund is FAILED (refund.failed), its amount free again,
// and the provider holds nothing. After topping up, a new refund number
// goes through.
func TestRefundTheMerchantCannotCoverIsFailedAndMovesNothing(t *testing.T) {
	e := newEnv(t)
	e.start()
	for _, ch := range []string{"alipay", "wechat"} {
		t.Run(ch, func(t *testing.T) {
			order := "BALANCE_" + ch
			e.paidOrder(order, ch, 1000)
			e.sim.SetFault(paysim.Fault{Operation: refundOp[ch], Mode: paysim.FaultBalanceNotEnough})
			e.wantRefundAnswer(t, e.refund(order, "BAL_"+ch+"_1", 1000), "FAILED", "refund")
			eventually(t, 5*time.Second, "refund.failed", func() bool { return len(e.hooks.ofType("refund.failed", order)) == 1 })
			e.wantProviderRefunds(t, order, 0)
			e.sim.Advance(paysim.DefaultAlipayRefundGap)
			wantStatus(t, e.refund(order, "BAL_"+ch+"_2", 1000), http.StatusOK, "")
			e.eventuallyRefund(t, "BAL_"+ch+"_2", "SUCCESS", 10*time.Second)
			e.checkOrder(t, order)
		})
	}
}

// TestFiftyFirstWechatRefundOfAnOrderIsFailed: WeChat takes at most 50
// refunds of one order; the 51st is refused (signed 400) and FAILED,
// while the 50 before it succeed.
func TestFiftyFirstWechatRefundOfAnOrderIsFailed(t *testing.T) {
	e := newEnvWithSim(t, paysim.Config{WechatRefundDelay: 50 * time.Millisecond})
	e.start()
	const order = "WX_CAP_1"
	e.paidOrder(order, "wechat", 100)
	for i := 1; i <= 50; i++ {
		wantStatus(t, e.refund(order, fmt.Sprintf("CAP_%d", i), 1), http.StatusOK, "")
	}
	e.wantRefundAnswer(t, e.refund(order, "CAP_51", 1), "FAILED", "51st refund")
	e.settledRefunds(t, order, 20*time.Second)
	// The events reach the backend from the webhook queue, after the state.
	eventually(t, 10*time.Second, "50 refund.succeeded", func() bool { return len(e.hooks.ofType("refund.succeeded", order)) >= 50 })
	e.checkOrder(t, order)
	if n := len(e.hooks.ofType("refund.succeeded", order)); n != 50 {
		t.Fatalf("%d refund.succeeded, want 50", n)
	}
}

// TestRefundOfAnOrderWechatDoesNotKnowIsFailed: WeChat answers a refund of
// an order it holds no payment for with a signed 404 RESOURCE_NOT_EXISTS:
// FAILED, nothing moved. The same code from a hop in front of WeChat
// (unsigned) is not WeChat's: the refund stays PROCESSING, is sent again
// and succeeds.
func TestRefundOfAnOrderWechatDoesNotKnowIsFailed(t *testing.T) {
	e := newEnv(t)
	e.start()
	const unpaid = "WX_NOTEXIST_1"
	wantStatus(t, e.create(unpaid, "wechat", 500), http.StatusOK, "")
	// payproxy holds it PAID (say, from a record restored elsewhere);
	// WeChat holds no payment.
	if err := e.redis.Client().HSet(context.Background(), "tollgate:pay:{o:"+unpaid+"}:trade", "state", "PAID").Err(); err != nil {
		t.Fatal(err)
	}
	e.wantRefundAnswer(t, e.refund(unpaid, "NE_1", 500), "FAILED", "refund of an order WeChat does not know")
	e.wantProviderRefunds(t, unpaid, 0)

	const order = "WX_NOTEXIST_2"
	e.paidOrder(order, "wechat", 500)
	e.sim.SetFault(paysim.Fault{Operation: "wechat.refund", Mode: paysim.FaultUnsignedError, Status: http.StatusNotFound, Code: "RESOURCE_NOT_EXISTS"})
	wantStatus(t, e.refund(order, "NE_2", 500), http.StatusBadGateway, "provider_error")
	e.eventuallyRefund(t, "NE_2", "SUCCESS", 10*time.Second)
	e.checkOrder(t, order)
}

// TestRefundTheProviderIgnoredIsNeverSuccessUntilItMovedMoney: the
// provider answers a refund with its normal signed acceptance and does
// nothing (ignore). The answer alone never makes the refund SUCCESS: it
// stays PROCESSING until the refund query finds it missing, is sent again
// with the same number, and succeeds; the provider holds it once.
func TestRefundTheProviderIgnoredIsNeverSuccessUntilItMovedMoney(t *testing.T) {
	e := newEnv(t)
	e.start()
	for _, ch := range []string{"alipay", "wechat"} {
		t.Run(ch, func(t *testing.T) {
			order := "IGNORED_RF_" + ch
			e.paidOrder(order, ch, 600)
			e.sim.SetFault(paysim.Fault{Operation: refundOp[ch], Mode: paysim.FaultIgnore})
			no := "IGN_" + ch
			e.wantRefundAnswer(t, e.refund(order, no, 600), "PROCESSING", "refund the provider ignored")
			e.eventuallyRefund(t, no, "SUCCESS", 15*time.Second)
			e.wantProviderRefunds(t, order, 1)
			e.checkOrder(t, order)
		})
	}
}
