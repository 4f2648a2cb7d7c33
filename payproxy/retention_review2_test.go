package payproxy_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/paysim"
)

// Second review of issue 17 (retention, two-step archival, the marker,
// restoring an order from it): each test is an attack or a failure, run
// against real Redis, real Caddy and paysim.

// markFailed rewrites a PROCESSING refund as FAILED and releases its
// reservation, as refundSettleScript does for a refund the provider
// refused (the state TestARefundRecordedFailedThatTheProviderCarriesOutAfterArchivalReachesTheBackend
// sets up the same way).
func (e *env) markFailed(t *testing.T, order, refundNo string, amount int64) {
	t.Helper()
	ctx := context.Background()
	c := e.redis.Client()
	refunds := "tollgate:pay:{o:" + order + "}:refunds"
	raw, err := c.HGet(ctx, refunds, refundNo).Result()
	if err != nil {
		t.Fatal(err)
	}
	var rec map[string]any
	_ = json.Unmarshal([]byte(raw), &rec)
	rec["state"] = "FAILED"
	b, _ := json.Marshal(rec)
	if err := c.HSet(ctx, refunds, refundNo, string(b)).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.HIncrBy(ctx, "tollgate:pay:{o:"+order+"}:trade", "refunded_fen", -amount).Err(); err != nil {
		t.Fatal(err)
	}
}

// TestAPaymentOfARetiredTradeOfAnOrderWhoseRecordsWereDeletedIsRefundedAsADuplicate:
// as TestAPaymentOfAClosedTradeAfterItsOrderWasArchivedPaidIsRefundedAsADuplicate,
// but the buyer pays the retired QR code once archival's step 2 has
// deleted the order's records (that test pays it right after
// trade.archived is delivered, while the records are still there, so it
// never reaches the marker). README: "a payment of another of its
// trades ...: the order's trade comes back from the marker and the
// payment is recorded as before archival — a trade.duplicate_paid,
// refunded in full". Archival comes at least retention after every
// trade of the order was made, so each of them is "made longer than
// retention ago" by then: tradeOfNotification's archivedLongAgo must not
// swallow the payment while the marker lives.
func TestAPaymentOfARetiredTradeOfAnOrderWhoseRecordsWereDeletedIsRefundedAsADuplicate(t *testing.T) {
	e := newEnv(t)
	e.extra = "\t\tretention 4s\n"
	e.start()
	rdb := e.redis.Client()
	const order = "REV2_DUP_AFTER_DELETE"
	first := e.create(order, "alipay", 1000)
	wantStatus(t, first, http.StatusOK, "")
	e.sim.SetFault(paysim.Fault{Operation: "alipay.trade.cancel", Mode: paysim.FaultIgnore})
	second := e.create(order, "alipay", 1200)
	wantStatus(t, second, http.StatusOK, "")
	a, b := first.str("trade_no"), second.str("trade_no")
	if err := e.sim.Pay(b); err != nil {
		t.Fatal(err)
	}
	e.archivedOf(t, order, 20*time.Second)
	marker := "tollgate:pay:{o:" + order + "}:archived"
	eventually(t, 10*time.Second, "step 2: the records deleted, the marker written", func() bool {
		return len(existing(t, rdb, orderKeys(order, b)[:5]...)) == 0 && len(existing(t, rdb, marker)) == 1
	})
	if err := e.sim.Pay(a); err != nil {
		t.Fatalf("paying the retired QR code: %v", err)
	}
	live := false
	eventually(t, 10*time.Second, "the payment's notification answered", func() bool {
		live = len(existing(t, rdb, marker)) == 1
		for _, d := range e.deliveries(a, "payment") {
			if d.Delivered {
				return true
			}
		}
		return false
	})
	if !live {
		t.Skip("the marker expired before the notification was answered (machine too slow for retention 4s)")
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && len(e.hooks.ofType("trade.duplicate_paid", order)) == 0 {
		time.Sleep(50 * time.Millisecond)
	}
	if len(e.hooks.ofType("trade.duplicate_paid", order)) == 0 {
		var refunded bool
		for _, rf := range e.sim.Refunds() {
			refunded = refunded || rf.OutTradeNo == a
		}
		t.Fatalf("the buyer paid retired trade %s of order %s (archived PAID by %s, marker live when it was answered); the notification was answered success, no trade.duplicate_paid reached the backend and the provider holds a refund of it: %v — the second payment is kept and nobody knows",
			a, order, b, refunded)
	}
}
