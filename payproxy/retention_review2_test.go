package payproxy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

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
	a, b := e.archiveThenPayRetired(t, order, "alipay", func() {})
	marker := "tollgate:pay:{o:" + order + "}:archived"
	live := false
	e.answered(t, a, "payment", func() { live = len(existing(t, rdb, marker)) == 1 })
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

// archiveThenPayRetired archives an order paid on its second trade
// (secondChannel; the Alipay cancel of its first did not take effect),
// waits for step 2 (records deleted, marker written), and pays the
// first trade. before runs once the order is paid, before its archival.
// It returns the two trade numbers.
func (e *env) archiveThenPayRetired(t *testing.T, order, secondChannel string, before func()) (string, string) {
	t.Helper()
	rdb := e.redis.Client()
	a, b := e.paidOnSecondTrade(t, order, secondChannel)
	eventually(t, 5*time.Second, "PAID", func() bool { return e.get(order).str("state") == "PAID" })
	before()
	e.archivedOf(t, order, 20*time.Second)
	marker := "tollgate:pay:{o:" + order + "}:archived"
	eventually(t, 10*time.Second, "step 2: the records deleted, the marker written", func() bool {
		return len(existing(t, rdb, orderKeys(order, b)[:5]...)) == 0 && len(existing(t, rdb, marker)) == 1
	})
	if err := e.sim.Pay(a); err != nil {
		t.Fatalf("paying the retired QR code: %v", err)
	}
	return a, b
}

// payPastTheMarker waits until order (closed; tn's cancel ignored) is
// archived and its records, marker and index are gone, then has the buyer
// pay tn and waits until its notification was answered once.
func (e *env) payPastTheMarker(t *testing.T, order, tn string) {
	t.Helper()
	rdb := e.redis.Client()
	e.archivedOf(t, order, 20*time.Second)
	eventually(t, 20*time.Second, "the records, the marker and the index gone", func() bool {
		return len(existing(t, rdb, append(orderKeys(order, tn), "tollgate:pay:{o:"+order+"}:archived")...)) == 0
	})
	if err := e.sim.Pay(tn); err != nil {
		t.Fatalf("paying the QR code whose cancel did not take effect: %v", err)
	}
	e.attempted(t, tn, "payment")
}

// attempted waits until a notification of kind about tradeNo was sent
// once (answered success or not).
func (e *env) attempted(t *testing.T, tradeNo, kind string) {
	t.Helper()
	eventually(t, 10*time.Second, "the "+kind+" notification of "+tradeNo+" answered once", func() bool {
		for _, d := range e.deliveries(tradeNo, kind) {
			if len(d.Attempts) > 0 {
				return true
			}
		}
		return false
	})
}

// paidOnSecondTrade creates an Alipay trade of 1000 for order, whose
// cancel paysim then ignores, replaces it by a trade of 1200 on
// secondChannel and pays that one: a, the first, may still be paid.
func (e *env) paidOnSecondTrade(t *testing.T, order, secondChannel string) (a, b string) {
	t.Helper()
	first := e.create(order, "alipay", 1000)
	wantStatus(t, first, http.StatusOK, "")
	e.sim.SetFault(paysim.Fault{Operation: "alipay.trade.cancel", Mode: paysim.FaultIgnore})
	second := e.create(order, secondChannel, 1200)
	wantStatus(t, second, http.StatusOK, "")
	a, b = first.str("trade_no"), second.str("trade_no")
	if err := e.sim.Pay(b); err != nil {
		t.Fatal(err)
	}
	return a, b
}

// payRetiredAfterDeletion is archiveThenPayRetired, then waits for the
// order to come back from its marker as a duplicate payment.
func (e *env) payRetiredAfterDeletion(t *testing.T, order, secondChannel string, before func()) (string, string) {
	t.Helper()
	a, b := e.archiveThenPayRetired(t, order, secondChannel, before)
	eventually(t, 10*time.Second, "trade.duplicate_paid (TestAPaymentOfARetiredTradeOfAnOrderWhoseRecordsWereDeletedIsRefundedAsADuplicate)", func() bool {
		return len(e.hooks.ofType("trade.duplicate_paid", order)) == 1
	})
	return a, b
}

// answered waits until a notification of kind about tradeNo was
// answered success; each poll runs also first.
func (e *env) answered(t *testing.T, tradeNo, kind string, also func()) {
	t.Helper()
	eventually(t, 10*time.Second, kind+" notification of "+tradeNo+" acknowledged", func() bool {
		also()
		for _, d := range e.deliveries(tradeNo, kind) {
			if d.Delivered {
				return true
			}
		}
		return false
	})
}

// TestAnOrderArchivedAgainAfterComingBackFromItsMarkerStillReportsItsEarlierRefunds:
// an order paid 1200 and refunded 300 (R1) is archived (trade.archived:
// refunded 300, refunds [R1]); a retired QR code is then paid, the order
// comes back from its marker, the duplicate 1000 is refunded, and the
// order is archived again. That last trade.archived (highest seq) is the
// backend's final summary: README says its refunded_fen sums the order's
// SUCCESS refunds and refunds lists every refund. It must still count
// R1: 1300 refunded of 2200 paid. adoptScript restores the trade's
// refunded_fen but not its refunds, and retainScript sums the :refunds
// hash.
func TestAnOrderArchivedAgainAfterComingBackFromItsMarkerStillReportsItsEarlierRefunds(t *testing.T) {
	e := newEnv(t)
	e.extra = "\t\tretention 4s\n"
	e.start()
	rdb := e.redis.Client()
	const order = "REV2_REFUNDS_KEPT"
	_, b := e.payRetiredAfterDeletion(t, order, "alipay", func() {
		wantStatus(t, e.refund(order, "REV2_RK_R1", 300), http.StatusOK, "")
		e.eventuallyRefund(t, "REV2_RK_R1", "SUCCESS", 10*time.Second)
	})
	eventually(t, 30*time.Second, "archived a second time", func() bool {
		return len(e.hooks.ofType("trade.archived", order)) == 2 && len(existing(t, rdb, orderKeys(order, b)[:5]...)) == 0
	})
	last := e.hooks.ofType("trade.archived", order)[1]
	var refunds []string
	for _, r := range last.Data.Refunds {
		refunds = append(refunds, fmt.Sprintf("%s %d %s", r.RefundNo, r.AmountFen, r.State))
	}
	if last.Data.PaidFen != 2200 || last.Data.RefundedFen != 1300 {
		t.Fatalf("order %s's last trade.archived (seq %d) says paid_fen %d refunded_fen %d refunds %v; the order was paid 2200 and refunded 1300 (R1 300 before its first archival, the duplicate 1000 after)",
			order, last.Data.Seq, last.Data.PaidFen, last.Data.RefundedFen, refunds)
	}
}

// TestARefundHeldFailedThatSucceedsAfterTheOrderCameBackFromItsMarkerReachesTheBackend:
// an order's WeChat refund R1 (300) is held FAILED when the order is
// archived; the marker keeps it (failed), so that its later success is
// news. A retired Alipay QR code is then paid: the order comes back from
// its marker (adoptScript), without its refunds. WeChat then carries R1
// out and notifies REFUND.SUCCESS: 300 fen went back to the buyer, and
// the backend must hear refund.succeeded — as it does while the order is
// archived (archivedRefund) or was never archived (recheckRefund).
// refundNotification finds no R1 in the restored order and drops it.
func TestARefundHeldFailedThatSucceedsAfterTheOrderCameBackFromItsMarkerReachesTheBackend(t *testing.T) {
	// WeChat carries the refund out only when the test says so.
	e := newEnvWithSim(t, paysim.Config{WechatRefundDelay: time.Hour})
	e.extra = "\t\tretention 4s\n"
	e.start()
	const order = "REV2_FAILED_BACK"
	_, b := e.payRetiredAfterDeletion(t, order, "wechat", func() {
		wantStatus(t, e.refund(order, "REV2_FB_R1", 300), http.StatusOK, "")
		e.markFailed(t, order, "REV2_FB_R1", 300)
	})
	if err := e.sim.RefundSucceed("REV2_FB_R1"); err != nil {
		t.Fatal(err)
	}
	e.answered(t, b, "refund", func() {})
	e.quiesce()
	for _, ev := range e.hooks.ofType("refund.succeeded", order) {
		if ev.Data.RefundNo == "REV2_FB_R1" {
			return
		}
	}
	t.Fatalf("WeChat refunded 300 fen of order %s (refund REV2_FB_R1, held FAILED at its archival, kept in the marker) after the order came back from its marker; REFUND.SUCCESS was acknowledged and no refund.succeeded reached the backend",
		order)
}

// TestTheLateSuccessOfAnArchivedOrdersFailedRefundIsNotStrandedWhenQueueingFails:
// an archived order's refund held FAILED succeeds at WeChat; the
// notification finds the marker, and archivedRefundScript removes the
// refund from the marker's failed list and writes refund.succeeded into
// the order's outbox in one step. Queueing it then fails (here: Redis
// refuses the webhook queue's and the due set's slots for a moment; the
// same as the instance dying right after the script), and the
// notification is acknowledged all the same (before the fix). publish's fallback, the
// poller, never visits the order: it has no record and is off the due
// set. WeChat does not notify again (acknowledged), and a retry would
// find the refund gone from the marker's failed list: the event is
// stranded in the outbox and the backend never learns that 300 fen went
// back to the buyer.
func TestTheLateSuccessOfAnArchivedOrdersFailedRefundIsNotStrandedWhenQueueingFails(t *testing.T) {
	e := newEnvWithSim(t, paysim.Config{WechatRefundDelay: time.Hour})
	e.extra = "\t\tretention 3s\n"
	e.start()
	ctx := context.Background()
	rdb := e.redis.Client()
	// The test's own client, untouched by the restriction below.
	must(t, rdb.Do(ctx, "ACL", "SETUSER", "reviewer", "on", ">reviewpw", "~*", "&*", "+@all").Err())
	admin := redis.NewClient(&redis.Options{Addr: e.redis.Addr(), Username: "reviewer", Password: "reviewpw"})
	t.Cleanup(func() { _ = admin.Close() })
	const order = "REV2_STRANDED"
	tn := e.paidOrder(order, "wechat", 1000)
	wantStatus(t, e.refund(order, "REV2_ST_R1", 300), http.StatusOK, "")
	e.markFailed(t, order, "REV2_ST_R1", 300)
	e.archivedOf(t, order, 20*time.Second)
	marker := "tollgate:pay:{o:" + order + "}:archived"
	eventually(t, 10*time.Second, "step 2: the records deleted, the marker written", func() bool {
		return len(existing(t, rdb, orderKeys(order, tn)[:5]...)) == 0 && len(existing(t, rdb, marker)) == 1
	})
	// Redis refuses the webhook queue and the due set (other slots than
	// the order's: on a Cluster, another master failing over).
	must(t, admin.Do(ctx, "ACL", "SETUSER", "default", "resetkeys", "~tollgate:pay:{o:*", "~tollgate:pay:{t:*", "~tollgate:pay:{ti:*").Err())
	if err := e.sim.RefundSucceed("REV2_ST_R1"); err != nil {
		t.Fatal(err)
	}
	// Its first delivery is answered (acknowledged, or refused: WeChat
	// then notifies again on its schedule).
	e.attempted(t, tn, "refund")
	must(t, admin.Do(ctx, "ACL", "SETUSER", "default", "allkeys").Err())
	deadline := time.Now().Add(8 * time.Second) // 40 poll intervals
	for time.Now().Before(deadline) {
		for _, ev := range e.hooks.ofType("refund.succeeded", order) {
			if ev.Data.RefundNo == "REV2_ST_R1" {
				return
			}
		}
		e.sim.Advance(time.Minute) // WeChat's next attempt, if it was refused
		time.Sleep(200 * time.Millisecond)
	}
	outbox := admin.HGetAll(ctx, "tollgate:pay:{o:"+order+"}:outbox").Val()
	t.Fatalf("WeChat refunded 300 fen of archived order %s (REV2_ST_R1, held FAILED); REFUND.SUCCESS was acknowledged, the marker no longer holds the refund FAILED, and refund.succeeded never reached the backend: %d event(s) stranded in the outbox %v, order scheduled (in the due set or parked): %v",
		order, len(outbox), keysOf(outbox), scheduled(t, admin, order))
}

func keysOf(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestARefundRetriedWithItsNumberAfterTheOrderCameBackFromItsMarkerIsNotCountedTwice:
// R1 refunded 300 of an order paid 1200 before its archival; the order
// comes back from its marker (a retired QR code paid: a duplicate). The
// operator's tool retries R1 (refund_no is the idempotency key: the same
// request again must change nothing) and then refunds the remaining
// 900. The restored order holds R1's 300 in refunded_fen but no R1
// record, so the retry reserves R1 a second time (the provider answers
// the refund it already made): refunded_fen counts 600 for 300 moved,
// and the buyer's last 300 can no longer be refunded.
func TestARefundRetriedWithItsNumberAfterTheOrderCameBackFromItsMarkerIsNotCountedTwice(t *testing.T) {
	e := newEnv(t)
	e.extra = "\t\tretention 4s\n"
	e.start()
	const order = "REV2_R1_AGAIN"
	e.payRetiredAfterDeletion(t, order, "alipay", func() {
		wantStatus(t, e.refund(order, "REV2_RA_R1", 300), http.StatusOK, "")
		e.eventuallyRefund(t, "REV2_RA_R1", "SUCCESS", 10*time.Second)
	})
	retry := e.refund(order, "REV2_RA_R1", 300)
	rest := e.refund(order, "REV2_RA_R2", 900)
	var moved int64
	for _, rf := range e.providerRefunds(order) {
		moved += rf.AmountFen
	}
	if rest.Status != http.StatusOK {
		t.Fatalf("after retrying R1 (answered %d %q), refunding the remaining 900 of 1200 paid (300 refunded, R1) answered %d %q; the provider holds refunds of %d fen of the order so far",
			retry.Status, strings.TrimSpace(string(retry.Raw)), rest.Status, strings.TrimSpace(string(rest.Raw)), moved)
	}
}

// TestAPaymentPastTheMarkerIsNotAcknowledgedUnrecordedWhenRetentionIsShorterThanATradesLife:
// archivedLongAgo rests on "both providers' trades expire within hours":
// a trade made longer than retention ago can no longer be paid. Nothing
// holds retention to that (without reconcile any positive duration is
// accepted; here 2 s for a QR code that stays payable far longer). An
// order whose Alipay cancel did not take effect is archived CLOSED, its
// marker and index expire, and the buyer then pays the QR code: the
// verified payment is answered success and recorded nowhere — money
// taken, no trade.paid, no refund, and the provider stops notifying.
func TestAPaymentPastTheMarkerIsNotAcknowledgedUnrecordedWhenRetentionIsShorterThanATradesLife(t *testing.T) {
	e := newEnv(t)
	e.extra = "\t\tretention 2s\n"
	e.start()
	const order = "REV2_SHORT_RETENTION"
	tn := e.create(order, "alipay", 1000).str("trade_no")
	e.sim.SetFault(paysim.Fault{Operation: "alipay.trade.cancel", Mode: paysim.FaultIgnore})
	wantStatus(t, do(t, "POST", e.base+"/pay/trades/"+order+"/close", nil), http.StatusOK, "")
	e.payPastTheMarker(t, order, tn)
	e.quiesce()
	for _, d := range e.deliveries(tn, "payment") {
		if d.Delivered && len(e.hooks.ofType("trade.paid", order)) == 0 {
			t.Fatalf("retention 2s accepted; trade %s of order %s paid 1000 fen after its marker expired: the notification was answered success and nothing recorded it (no trade.paid, no refund, no record) — the provider will not notify again",
				tn, order)
		}
	}
}
