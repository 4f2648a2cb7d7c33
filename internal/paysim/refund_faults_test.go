package paysim

import (
	"fmt"
	"testing"
	"time"

	"github.com/wechatpay-apiv3/wechatpay-go/services/refunddomestic"
)

// TestWechatRefundEndsAbnormalClosedOrStaysProcessing: abnormal, closed
// and stuck on wechat.refund: the refund is accepted PROCESSING, then
// ends ABNORMAL (REFUND.ABNORMAL) or CLOSED (REFUND.CLOSED, its amount
// refundable again), or stays PROCESSING with no notification however
// long one waits, until a person settles it.
func TestWechatRefundEndsAbnormalClosedOrStaysProcessing(t *testing.T) {
	m := newMerchant(t, testConfig)
	ep := m.endpoint(ProviderWechat, acknowledge(ProviderWechat))
	for i, tc := range []struct {
		mode, event string
		status      refunddomestic.Status
	}{
		{FaultAbnormal, "REFUND.ABNORMAL", refunddomestic.STATUS_ABNORMAL},
		{FaultClosed, "REFUND.CLOSED", refunddomestic.STATUS_CLOSED},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			no, rno := fmt.Sprintf("RFEND-%d", i), fmt.Sprintf("RFEND-R-%d", i)
			m.mustPrepay(no, 500, ep.srv.URL, m.in(time.Hour))
			m.pay(no)
			m.sim.SetFault(Fault{Operation: "wechat.refund", Mode: tc.mode})
			r, err := m.wxRefund(no, rno, 500, 500, ep.srv.URL)
			if err != nil || *r.Status != refunddomestic.STATUS_PROCESSING {
				t.Fatalf("create %v %v", r, err)
			}
			var got heard
			waitFor(t, tc.event, func() bool {
				for _, h := range ep.heard() {
					if h.wxType == tc.event && h.wx["out_refund_no"] == rno {
						got = h
						return true
					}
				}
				return false
			})
			if got.wx["refund_status"] != string(tc.status) || got.wx["success_time"] != nil {
				t.Fatalf("%s notification %v", tc.event, got.wx)
			}
			if st := m.wxRefundStatus(rno); st != tc.status {
				t.Fatalf("query: %s", st)
			}
			_, err = m.wxRefund(no, rno+"-again", 500, 500, ep.srv.URL)
			refundable := err == nil
			if refundable != (tc.mode == FaultClosed) {
				t.Fatalf("after %s, a new refund of the whole amount: %v", tc.mode, err)
			}
		})
	}
	t.Run(FaultStuck, func(t *testing.T) {
		no, rno := "RFEND-STUCK", "RFEND-R-STUCK"
		m.mustPrepay(no, 500, ep.srv.URL, m.in(time.Hour))
		m.pay(no)
		m.sim.SetFault(Fault{Operation: "wechat.refund", Mode: FaultStuck})
		if _, err := m.wxRefund(no, rno, 200, 500, ep.srv.URL); err != nil {
			t.Fatal(err)
		}
		m.sim.Advance(30 * 24 * time.Hour)
		if st := m.wxRefundStatus(rno); st != refunddomestic.STATUS_PROCESSING {
			t.Fatalf("a stuck refund reads %s a month later", st)
		}
		if ds := deliveriesOf(m.sim, no, "refund"); len(ds) != 0 {
			t.Fatalf("a stuck refund notified %+v", ds)
		}
		if status, body := do(t, "POST", m.srv.URL+"/_sim/refunds/"+rno+"/succeed", ""); status != 200 {
			t.Fatalf("succeed: %d %s", status, body)
		}
		if st := m.wxRefundStatus(rno); st != refunddomestic.STATUS_SUCCESS {
			t.Fatalf("after succeed: %s", st)
		}
	})
}

// TestWechatRefusesRefundsAsWechatDoes: a refund of an unpaid order is
// 404 RESOURCE_NOT_EXISTS; the 51st refund of one order is refused (400
// INVALID_REQUEST); balance_not_enough is 403 NOT_ENOUGH. All signed, and
// none stores a refund.
func TestWechatRefusesRefundsAsWechatDoes(t *testing.T) {
	m := newMerchant(t, testConfig)
	m.mustPrepay("REFUSE-UNPAID", 500, "http://127.0.0.1:1/n", m.in(time.Hour))
	m.mustPrepay("REFUSE-CAP", 5000, "http://127.0.0.1:1/n", m.in(time.Hour))
	m.pay("REFUSE-CAP")
	for i := 0; i < 50; i++ {
		if _, err := m.wxRefund("REFUSE-CAP", fmt.Sprintf("CAP-%02d", i), 1, 5000, ""); err != nil {
			t.Fatalf("refund %d: %v", i+1, err)
		}
	}
	m.mustPrepay("REFUSE-BAL", 500, "http://127.0.0.1:1/n", m.in(time.Hour))
	m.pay("REFUSE-BAL")
	before := len(m.sim.Refunds())
	for _, tc := range []struct {
		name, no, code string
		total          int64
		fault          string
		status         int
	}{
		{"an unpaid order", "REFUSE-UNPAID", "RESOURCE_NOT_EXISTS", 500, "", 404},
		{"the 51st refund of an order", "REFUSE-CAP", "INVALID_REQUEST", 5000, "", 400},
		{"balance_not_enough", "REFUSE-BAL", "NOT_ENOUGH", 500, FaultBalanceNotEnough, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.fault != "" {
				m.sim.SetFault(Fault{Operation: "wechat.refund", Mode: tc.fault})
			}
			_, err := m.wxRefund(tc.no, "REFUSE-"+tc.code, 1, tc.total, "")
			ae, signed := m.signedAPIError(err)
			if ae.StatusCode != tc.status || ae.Code != tc.code || ae.Message == "" || !signed {
				t.Fatalf("%d %s %q signed=%v", ae.StatusCode, ae.Code, ae.Message, signed)
			}
			if n := len(m.sim.Refunds()); n != before {
				t.Fatalf("a refused refund was stored (%d, want %d)", n, before)
			}
		})
	}
}

// TestAlipayFundChangeNIsNotYetARefund: fund_change_n answers 10000 with
// fund_change=N and the refund query shows no refund_status until the
// refund completes delay_ms later (here an hour on the moved clock); then
// REFUND_SUCCESS and its notification. While pending its amount is
// reserved, and the same out_request_no again moves nothing.
func TestAlipayFundChangeNIsNotYetARefund(t *testing.T) {
	m := newMerchant(t, testConfig)
	ep := m.endpoint(ProviderAlipay, acknowledge(ProviderAlipay))
	no := "FCN-1"
	m.mustPrecreate(no, "5.00", ep.srv.URL, m.in(time.Hour))
	m.pay(no)
	ep.waitHeard(1)
	m.sim.SetFault(Fault{Operation: "alipay.trade.refund", Mode: FaultFundChangeN, DelayMS: 3600 * 1000})
	r, err := m.aliRefund(no, "FCN-R-1", "3.00")
	if err != nil || !r.IsSuccess() || r.FundChange != "N" || r.RefundFee != "0.00" {
		t.Fatalf("first answer %+v %v", r, err)
	}
	if q := m.aliRefundQuery(no, "FCN-R-1"); q.RefundStatus != "" || q.RefundAmount != "" {
		t.Fatalf("query while pending %+v", q)
	}
	if r, err := m.aliRefund(no, "FCN-R-2", "3.00"); err != nil || r.SubCode != "ACQ.REASON_TRADE_REFUND_FEE_ERR" {
		t.Fatalf("the pending amount is not reserved: %+v %v", r, err)
	}
	if r, err := m.aliRefund(no, "FCN-R-1", "3.00"); err != nil || r.FundChange != "N" {
		t.Fatalf("repeat while pending %+v %v", r, err)
	}
	m.sim.Advance(time.Hour)
	if n := ep.waitHeard(2)[1].ali; n.OutBizNo != "FCN-R-1" || n.RefundFee != "3.00" {
		t.Fatalf("refund notification %+v", n)
	}
	if q := m.aliRefundQuery(no, "FCN-R-1"); q.RefundStatus != "REFUND_SUCCESS" || q.RefundAmount != "3.00" {
		t.Fatalf("query once completed %+v", q)
	}
	if r, err := m.aliRefund(no, "FCN-R-1", "3.00"); err != nil || r.FundChange != "N" || r.RefundFee != "3.00" {
		t.Fatalf("repeat once completed %+v %v", r, err)
	}
	var moved int64
	for _, rf := range m.sim.Refunds() {
		moved += rf.AmountFen
	}
	if moved != 300 {
		t.Fatalf("moved %d fen, want 300", moved)
	}
}

// TestAlipayRefundQueriedTooEarlyShowsNoRefundStatus: query_too_early
// answers 10000 without refund_status (nor refund data) while the refund
// is younger than delay_ms; the same query later shows REFUND_SUCCESS.
func TestAlipayRefundQueriedTooEarlyShowsNoRefundStatus(t *testing.T) {
	m := newMerchant(t, testConfig)
	no := "EARLY-1"
	m.paidAlipay(no, "5.00")
	m.mustAliRefund(no, "EARLY-R-1", "1.00")
	m.sim.SetFault(Fault{Operation: "alipay.trade.fastpay.refund.query", Mode: FaultQueryTooEarly, DelayMS: 60 * 1000, Count: 2})
	if q := m.aliRefundQuery(no, "EARLY-R-1"); q.RefundStatus != "" || q.RefundAmount != "" || q.Code != "10000" {
		t.Fatalf("too early %+v", q)
	}
	m.sim.Advance(time.Minute)
	if q := m.aliRefundQuery(no, "EARLY-R-1"); q.RefundStatus != "REFUND_SUCCESS" || q.RefundAmount != "1.00" {
		t.Fatalf("a minute later %+v", q)
	}
}

// TestAlipayLegacyRefundQueryShapeHasDataButNoRefundStatus:
// legacy_query_shape answers a completed refund the older documented way:
// refund_amount, total_amount and out_request_no, no refund_status; an
// unknown refund still has no data.
func TestAlipayLegacyRefundQueryShapeHasDataButNoRefundStatus(t *testing.T) {
	m := newMerchant(t, testConfig)
	no := "LEGACY-1"
	m.paidAlipay(no, "5.00")
	m.mustAliRefund(no, "LEGACY-R-1", "2.00")
	m.sim.SetFault(Fault{Operation: "alipay.trade.fastpay.refund.query", Mode: FaultLegacyQueryShape, Count: 2})
	q := m.aliRefundQuery(no, "LEGACY-R-1")
	if q.RefundStatus != "" || q.RefundAmount != "2.00" || q.TotalAmount != "5.00" || q.OutRequestNo != "LEGACY-R-1" {
		t.Fatalf("legacy shape %+v", q)
	}
	if q := m.aliRefundQuery(no, "LEGACY-R-NONE"); q.RefundStatus != "" || q.RefundAmount != "" {
		t.Fatalf("legacy shape of an unknown refund %+v", q)
	}
}

// TestAlipayRefusesTheSameOutRequestNoWithAnotherAmount: a refund number
// already used answers 40004 ACQ.DISCORDANT_REPEAT_REQUEST when the
// amount differs (refund_fee "0.00", signed), and moves nothing.
func TestAlipayRefusesTheSameOutRequestNoWithAnotherAmount(t *testing.T) {
	m := newMerchant(t, testConfig)
	no := "DISC-1"
	m.paidAlipay(no, "5.00")
	m.mustAliRefund(no, "DISC-R-1", "1.00")
	r, err := m.aliRefund(no, "DISC-R-1", "2.00")
	if err != nil || r.Code != "40004" || r.SubCode != "ACQ.DISCORDANT_REPEAT_REQUEST" || r.SubMsg == "" || r.RefundFee != "0.00" || r.SendBackFee != "0.00" {
		t.Fatalf("another amount %+v %v", r, err)
	}
	if rs := m.sim.Refunds(); len(rs) != 1 || rs[0].AmountFen != 100 {
		t.Fatalf("refunds %+v", rs)
	}
}

// TestAlipayBalanceNotEnoughRefusesTheRefund: balance_not_enough answers
// 40004 ACQ.SELLER_BALANCE_NOT_ENOUGH (signed, refund_fee "0.00") and
// moves nothing; the same refund later goes through.
func TestAlipayBalanceNotEnoughRefusesTheRefund(t *testing.T) {
	m := newMerchant(t, testConfig)
	no := "BAL-1"
	m.paidAlipay(no, "5.00")
	m.sim.SetFault(Fault{Operation: "alipay.trade.refund", Mode: FaultBalanceNotEnough})
	r, err := m.aliRefund(no, "BAL-R-1", "1.00")
	if err != nil || r.SubCode != "ACQ.SELLER_BALANCE_NOT_ENOUGH" || r.Code != "40004" || r.RefundFee != "0.00" {
		t.Fatalf("%+v %v", r, err)
	}
	if len(m.sim.Refunds()) != 0 {
		t.Fatal("a refused refund was stored")
	}
	m.mustAliRefund(no, "BAL-R-1", "1.00") // after topping up
}

// TestAlipayRefundsOfOneTradeLessThanThreeSecondsApartAreRefused: by
// default (Alipay's own 3 s), a second refund of a trade sooner than that is
// refused with 40004 ACQ.SYSTEM_ERROR and moves nothing; a repeat of the
// first is still answered; 3 s later the second goes through. Another
// trade is not held back.
func TestAlipayRefundsOfOneTradeLessThanThreeSecondsApartAreRefused(t *testing.T) {
	m := newMerchant(t, Config{NotifyRetry: testConfig.NotifyRetry})
	m.paidAlipay("GAP-1", "5.00")
	m.paidAlipay("GAP-2", "5.00")
	m.mustAliRefund("GAP-1", "GAP-R-1", "1.00")
	r, err := m.aliRefund("GAP-1", "GAP-R-2", "1.00")
	if err != nil || r.Code != "40004" || r.SubCode != "ACQ.SYSTEM_ERROR" || r.RefundFee != "0.00" {
		t.Fatalf("second within 3 s %+v %v", r, err)
	}
	if r, err := m.aliRefund("GAP-1", "GAP-R-1", "1.00"); err != nil || r.FundChange != "N" {
		t.Fatalf("repeat of the first within 3 s %+v %v", r, err)
	}
	m.mustAliRefund("GAP-2", "GAP-R-3", "1.00") // another trade
	m.sim.Advance(3 * time.Second)
	m.mustAliRefund("GAP-1", "GAP-R-2", "1.00")
	if n := len(m.sim.Refunds()); n != 3 {
		t.Fatalf("%d refunds, want 3", n)
	}
}
