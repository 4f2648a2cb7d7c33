package payproxy_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/paysim"
)

var notifyOp = map[string]string{"alipay": "alipay.notify", "wechat": "wechat.notify"}

// TestDuplicatedNotificationsRecordEachPaymentAndRefundOnce: every
// notification is delivered again after it was acknowledged (same
// notify_id / event id), as both providers warn they may be: each payment
// and each refund is recorded once and reaches the backend once.
func TestDuplicatedNotificationsRecordEachPaymentAndRefundOnce(t *testing.T) {
	e := newEnv(t)
	e.start()
	for _, ch := range []string{"alipay", "wechat"} {
		t.Run(ch, func(t *testing.T) {
			order := "NOTIFY_DUP_" + ch
			e.sim.SetFault(paysim.Fault{Operation: notifyOp[ch], Mode: paysim.FaultDuplicate, Count: 100})
			defer e.sim.SetFault(paysim.Fault{Operation: notifyOp[ch], Mode: "none"})
			r := e.create(order, ch, 800)
			wantStatus(t, r, http.StatusOK, "")
			tradeNo := r.str("trade_no")
			if err := e.sim.Pay(tradeNo); err != nil {
				t.Fatal(err)
			}
			eventually(t, 10*time.Second, "the payment notification and its duplicate acknowledged", func() bool {
				d := e.deliveries(tradeNo, "payment")
				return len(d) == 2 && d[0].Delivered && d[1].Delivered && d[1].Duplicate && d[0].ID == d[1].ID
			})
			if st := e.get(order).str("state"); st != "PAID" {
				t.Fatalf("order %s", st)
			}
			wantStatus(t, e.refund(order, "ND_"+ch, 800), http.StatusOK, "")
			if ch == "wechat" {
				eventually(t, 10*time.Second, "the refund notification and its duplicate acknowledged", func() bool {
					d := e.deliveries(tradeNo, "refund")
					return len(d) == 2 && d[0].Delivered && d[1].Delivered
				})
			}
			e.eventuallyRefund(t, "ND_"+ch, "SUCCESS", 10*time.Second)
			e.checkOrder(t, order)
		})
	}
}

// TestLatePaymentNotificationAfterAFullRefundKeepsTheTradePaid: the
// payment notification is held back (delay) until after the order was
// paid (the poller's query), fully refunded, and the refund notified — on
// Alipay a full refund's notification reads TRADE_CLOSED, and so does the
// trade's query afterwards. The late TRADE_SUCCESS / TRANSACTION.SUCCESS,
// the TRADE_CLOSED reads and a sync never move the order back: it stays
// PAID with its refund SUCCESS, and no trade.closed is ever sent.
func TestLatePaymentNotificationAfterAFullRefundKeepsTheTradePaid(t *testing.T) {
	e := newEnv(t)
	e.start()
	for _, ch := range []string{"alipay", "wechat"} {
		t.Run(ch, func(t *testing.T) {
			order := "LATE_PAY_" + ch
			r := e.create(order, ch, 600)
			wantStatus(t, r, http.StatusOK, "")
			tradeNo := r.str("trade_no")
			e.sim.SetFault(paysim.Fault{Operation: notifyOp[ch], Mode: paysim.FaultDelay, DelayMS: 8000})
			if err := e.sim.Pay(tradeNo); err != nil {
				t.Fatal(err)
			}
			eventually(t, 5*time.Second, "PAID by the poller's query", func() bool { return e.get(order).str("state") == "PAID" })
			wantStatus(t, e.refund(order, "LP_"+ch, 600), http.StatusOK, "")
			e.eventuallyRefund(t, "LP_"+ch, "SUCCESS", 10*time.Second)
			eventually(t, 10*time.Second, "the refund's notification acknowledged", func() bool {
				d := e.deliveries(tradeNo, "refund")
				return len(d) == 1 && d[0].Delivered
			})
			if p := e.deliveries(tradeNo, "payment"); len(p) != 1 || p[0].Delivered {
				t.Fatalf("the payment notification came before the refund's: %+v", p)
			}
			eventually(t, 10*time.Second, "the late payment notification acknowledged", func() bool {
				d := e.deliveries(tradeNo, "payment")
				return len(d) == 1 && d[0].Delivered
			})
			if g := do(t, "GET", e.base+"/pay/trades/"+order+"?sync=1", nil); g.str("state") != "PAID" {
				t.Fatalf("after the late notification: %s", g.Raw)
			}
			if n := len(e.hooks.ofType("trade.closed", order)); n != 0 {
				t.Fatalf("%d trade.closed for a paid, refunded trade", n)
			}
			e.checkOrder(t, order)
		})
	}
}

// TestRefundNotificationsOutOfOrderSettleEachRefundOnce: refund 1's
// notification is held back so that refund 2's overtakes it: both are
// SUCCESS, each reported once.
func TestRefundNotificationsOutOfOrderSettleEachRefundOnce(t *testing.T) {
	e := newEnv(t)
	e.start()
	for _, ch := range []string{"alipay", "wechat"} {
		t.Run(ch, func(t *testing.T) {
			order := "REORDER_" + ch
			tradeNo := e.paidOrder(order, ch, 1000)
			eventually(t, 5*time.Second, "payment notification acknowledged", func() bool {
				d := e.deliveries(tradeNo, "payment")
				return len(d) == 1 && d[0].Delivered
			})
			e.sim.SetFault(paysim.Fault{Operation: notifyOp[ch], Mode: paysim.FaultDelay, DelayMS: 9000})
			wantStatus(t, e.refund(order, "RO_"+ch+"_1", 300), http.StatusOK, "")
			wantStatus(t, e.refund(order, "RO_"+ch+"_2", 300), http.StatusOK, "")
			eventually(t, 20*time.Second, "refund 2's notification acknowledged before refund 1's", func() bool {
				var first, second *paysim.Delivery
				for _, d := range e.deliveries(tradeNo, "refund") {
					switch d.OutRefundNo {
					case "RO_" + ch + "_1":
						first = &d
					case "RO_" + ch + "_2":
						second = &d
					}
				}
				if first != nil && first.Delivered && (second == nil || !second.Delivered) {
					t.Fatalf("refund 1's notification was not held back")
				}
				return second != nil && second.Delivered
			})
			e.settledRefunds(t, order, 15*time.Second)
			eventually(t, 15*time.Second, "every refund notification acknowledged", func() bool {
				for _, d := range e.deliveries(tradeNo, "refund") {
					if !d.Delivered {
						return false
					}
				}
				return true
			})
			for _, no := range []string{"RO_" + ch + "_1", "RO_" + ch + "_2"} {
				if st := e.refundState(no); st != "SUCCESS" {
					t.Fatalf("%s is %s", no, st)
				}
			}
			e.checkOrder(t, order)
		})
	}
}

// TestClosedAndFinishedNotificationsNeverMoveAPaidTradeBack: Alipay
// notifies TRADE_FINISHED when a paid trade's refund period ends: the
// order stays PAID with no new event, and a refund after it is refused
// (ACQ.TRADE_HAS_FINISHED: FAILED, nothing moved). A TRADE_FINISHED that
// arrives before the payment's own notification records the payment.
// A scanned trade that times out unpaid notifies TRADE_CLOSED: recorded
// CLOSED once.
func TestClosedAndFinishedNotificationsNeverMoveAPaidTradeBack(t *testing.T) {
	e := newEnv(t)
	e.options["poll_interval"] = "1h" // only the notifications move the orders
	e.start()

	t.Run("finished_after_paid", func(t *testing.T) {
		const order = "FINISH_1"
		r := e.create(order, "alipay", 700)
		tradeNo := r.str("trade_no")
		if err := e.sim.Pay(tradeNo); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, "PAID", func() bool { return e.get(order).str("state") == "PAID" })
		if err := e.sim.Finish(tradeNo); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, "TRADE_FINISHED acknowledged", func() bool {
			d := e.deliveries(tradeNo, "finish")
			return len(d) == 1 && d[0].Delivered
		})
		if st := e.get(order).str("state"); st != "PAID" {
			t.Fatalf("after TRADE_FINISHED the order is %s", st)
		}
		e.wantRefundAnswer(t, e.refund(order, "FIN_1", 100), "FAILED", "refund after the refund period")
		e.checkOrder(t, order)
	})
	t.Run("finished_before_the_payment_notification", func(t *testing.T) {
		const order = "FINISH_2"
		r := e.create(order, "alipay", 700)
		tradeNo := r.str("trade_no")
		e.sim.SetFault(paysim.Fault{Operation: "alipay.notify", Mode: paysim.FaultDelay, DelayMS: 60000})
		if err := e.sim.Pay(tradeNo); err != nil {
			t.Fatal(err)
		}
		if err := e.sim.Finish(tradeNo); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, "PAID from TRADE_FINISHED", func() bool { return e.get(order).str("state") == "PAID" })
		e.checkOrder(t, order)
	})
	t.Run("closed_unpaid", func(t *testing.T) {
		const order = "CLOSED_NOTIFY_1"
		r := e.create(order, "alipay", 700)
		tradeNo := r.str("trade_no")
		if err := e.sim.Scan(tradeNo); err != nil {
			t.Fatal(err)
		}
		if err := e.sim.Expire(tradeNo); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, "CLOSED from TRADE_CLOSED", func() bool { return e.get(order).str("state") == "CLOSED" })
		eventually(t, 5*time.Second, "trade.closed", func() bool { return len(e.hooks.ofType("trade.closed", order)) == 1 })
		e.checkOrder(t, order)
	})
}
