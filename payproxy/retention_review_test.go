package payproxy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/paysim"
	"github.com/tollgate/tollgate/internal/testcaddy"
)

// Review of issue 17 (retention): each test is an attack or a failure on
// the archival, run against real Redis, real Caddy and paysim.

// archivedOf waits for the order's trade.archived and returns it.
func (e *env) archivedOf(t *testing.T, order string, within time.Duration) hookEvent {
	t.Helper()
	eventually(t, within, order+" archived", func() bool { return len(e.hooks.ofType("trade.archived", order)) > 0 })
	return e.hooks.ofType("trade.archived", order)[0]
}

// TestAPaymentOfAClosedTradeAfterItsOrderWasArchivedPaidIsRefundedAsADuplicate:
// the cancel of an order's first Alipay QR code does not take effect (the
// design's "a close may not take effect"), the order is paid on its second
// trade and archived. The buyer then pays the first QR code: the order was
// paid, so this is a duplicate payment, to be reported as
// trade.duplicate_paid and refunded in full (duplicate_refund auto), as it
// is before archival. Archival must not turn it into the order's payment.
func TestAPaymentOfAClosedTradeAfterItsOrderWasArchivedPaidIsRefundedAsADuplicate(t *testing.T) {
	e := newEnv(t)
	// The marker and the trade indexes live 4 s after archival.
	e.extra = "\t\tretention 4s\n"
	e.start()
	const order = "REV_ARCH_DUP"
	a, _ := e.paidOnSecondTrade(t, order, "alipay")
	e.archivedOf(t, order, 20*time.Second)
	if err := e.sim.Pay(a); err != nil {
		t.Fatalf("paying the retired QR code: %v", err)
	}
	eventually(t, 10*time.Second, "the payment of "+a+" recorded", func() bool {
		for _, ev := range append(e.hooks.ofType("trade.paid", order), e.hooks.ofType("trade.duplicate_paid", order)...) {
			if ev.Data.TradeNo == a {
				return true
			}
		}
		return false
	})
	for _, ev := range e.hooks.ofType("trade.paid", order) {
		if ev.Data.TradeNo == a {
			t.Fatalf("the second payment of archived paid order %s (trade %s) was reported as trade.paid seq %d, not trade.duplicate_paid: the customer paid twice and nothing refunds it",
				order, a, ev.Data.Seq)
		}
	}
	eventually(t, 10*time.Second, "the duplicate refunded at the provider", func() bool {
		for _, rf := range e.sim.Refunds() {
			if rf.OutTradeNo == a && rf.AmountFen == 1000 {
				return true
			}
		}
		return false
	})
}

// TestEventsOfAnOrderCreatedAgainAfterArchivalNumberAboveItsArchivedEvent:
// README: "a receiver applies an event only if its seq is above the last
// one it applied for the order". An order whose QR code was closed is
// archived (trade.archived, seq n); the customer comes back and the order
// gets a new trade (as README says it does) and pays: its trade.paid must
// carry a seq above n, or a receiver following the contract drops the
// payment.
func TestEventsOfAnOrderCreatedAgainAfterArchivalNumberAboveItsArchivedEvent(t *testing.T) {
	e := newEnv(t)
	e.extra = "\t\tretention 1s\n"
	e.start()
	const order = "REV_SEQ_AGAIN"
	wantStatus(t, e.create(order, "wechat", 1000), http.StatusOK, "")
	wantStatus(t, do(t, "POST", e.base+"/pay/trades/"+order+"/close", nil), http.StatusOK, "")
	arch := e.archivedOf(t, order, 20*time.Second)
	again := e.paidOrder(order, "wechat", 1000)
	eventually(t, 10*time.Second, "trade.paid", func() bool { return len(e.hooks.ofType("trade.paid", order)) == 1 })
	paid := e.hooks.ofType("trade.paid", order)[0]
	if paid.Data.TradeNo != again || paid.Data.Seq <= arch.Data.Seq {
		t.Fatalf("trade.paid of %s has seq %d, not above trade.archived's seq %d: a receiver applying only higher seqs drops the payment",
			again, paid.Data.Seq, arch.Data.Seq)
	}
}

// TestAnOrderArchivedClosedAndThenPaidIsArchivedAgainAsPaid: the close of
// an Alipay QR code does not take effect; the order is archived CLOSED
// (trade.archived, paid_fen 0). The buyer then pays that QR code: the
// order is back in Redis, PAID, and after its retention it must be
// archived again with what it now holds (state PAID, paid_fen 1000): the
// backend's last word about the order may not stay "closed, nothing paid".
func TestAnOrderArchivedClosedAndThenPaidIsArchivedAgainAsPaid(t *testing.T) {
	e := newEnv(t)
	e.extra = "\t\tretention 3s\n"
	e.start()
	rdb := e.redis.Client()
	const order = "REV_ARCH_TWICE"
	tn := e.create(order, "alipay", 1000).str("trade_no")
	e.sim.SetFault(paysim.Fault{Operation: "alipay.trade.cancel", Mode: paysim.FaultIgnore})
	wantStatus(t, do(t, "POST", e.base+"/pay/trades/"+order+"/close", nil), http.StatusOK, "")
	if first := e.archivedOf(t, order, 20*time.Second); first.Data.State != "CLOSED" || first.Data.PaidFen != 0 {
		t.Fatalf("first trade.archived %+v", first.Data)
	}
	if err := e.sim.Pay(tn); err != nil {
		t.Fatalf("paying the QR code whose cancel did not take effect: %v", err)
	}
	eventually(t, 10*time.Second, "trade.paid", func() bool { return len(e.hooks.ofType("trade.paid", order)) == 1 })
	// Archived again: its records leave Redis a second time.
	deadline := time.Now().Add(15 * time.Second) // five retentions
	for time.Now().Before(deadline) && len(existing(t, rdb, orderKeys(order, tn)[:5]...)) > 0 {
		time.Sleep(100 * time.Millisecond)
	}
	if left := existing(t, rdb, orderKeys(order, tn)[:5]...); len(left) > 0 {
		t.Fatalf("order %s, paid after its archival, still holds %v after five retentions (scheduled, in the due set or parked: %v): never archived again, its payment never in a trade.archived",
			order, left, scheduled(t, rdb, order))
	}
	e.quiesce()
	var states []string
	for _, ev := range e.hooks.ofType("trade.archived", order) {
		states = append(states, fmt.Sprintf("%s/%d", ev.Data.State, ev.Data.PaidFen))
	}
	if len(states) != 2 || states[1] != "PAID/1000" {
		t.Fatalf("trade.archived events for %s (state/paid_fen): %v; want a second one PAID/1000 (the records holding the payment were deleted)", order, states)
	}
}

// TestATradeArchivedEventIsNeverDroppedByTheDeadLetterCap: the backend is
// down; an order is archived (its records deleted) and its trade.archived
// is dead-lettered. The outage goes on: 10 000 more events die. The cap
// may drop letters, but not the only copy left of an archived order's
// money record.
func TestATradeArchivedEventIsNeverDroppedByTheDeadLetterCap(t *testing.T) {
	e := newEnv(t)
	e.options["max_attempts"] = "1"
	e.extra = "\t\tretention 1s\n"
	e.start()
	rdb := e.redis.Client()
	ctx := context.Background()
	const dead = "tollgate:pay:{wh}:dead"
	e.hooks.setDown(true)
	const order = "REV_DEAD_ARCHIVED"
	tn := e.paidOrder(order, "alipay", 1000)
	var id string
	eventually(t, 20*time.Second, "trade.archived dead-lettered", func() bool {
		for _, raw := range rdb.LRange(ctx, dead, 0, -1).Val() {
			if i := strings.Index(raw, `"evt_`+tn+`_`); i >= 0 && strings.Contains(raw, `_trade.archived"`) {
				id = raw[i+1 : i+1+strings.Index(raw[i+1:], `"`)]
				return true
			}
		}
		return false
	})
	// The rest of the outage: 10 000 other events died after it.
	pipe := rdb.Pipeline()
	for i := range 10000 {
		pipe.RPush(ctx, dead, fmt.Sprintf(`{"id":"evt_outage_%d","event":"{}","attempts":1,"last_error":"503","failed_at":%d}`, i, time.Now().UnixMilli()))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	other := e.paidOrder("REV_DEAD_NEXT", "wechat", 500)
	eventually(t, 15*time.Second, "the next dead letter", func() bool {
		return strings.Contains(rdb.LIndex(ctx, dead, -1).Val(), `"evt_`+other+`_`)
	})
	held := strings.Contains(strings.Join(rdb.LRange(ctx, dead, 0, -1).Val(), "\n"), `"`+id+`"`) ||
		rdb.HExists(ctx, "tollgate:pay:{wh}:events", id).Val() ||
		len(existing(t, rdb, orderKeys(order, tn)[:5]...)) > 0
	if !held {
		t.Fatalf("%s dropped by the dead-letter cap and the order's records deleted: nothing in Redis (nor at the backend) says %s was paid 1000 fen", id, order)
	}
}

// TestARefundRecordedFailedThatTheProviderCarriesOutAfterArchivalReachesTheBackend:
// a refund payproxy holds FAILED is not final for payproxy itself (a
// signed success is honoured: refundNotification, recheckRefund; set here
// as TestRefundRecordedFailedIsHonouredWhenTheProviderReportsItSucceeded
// does). Archival counts it final; when the provider then carries it out
// and notifies REFUND.SUCCESS, the issue requires the late notification to
// reach the backend as an event when it changes anything.
func TestARefundRecordedFailedThatTheProviderCarriesOutAfterArchivalReachesTheBackend(t *testing.T) {
	// Archived 6 s after the refund's last change; the provider carries
	// the refund out 9 s after it, while the marker lives.
	e := newEnvWithSim(t, paysim.Config{WechatRefundDelay: 9 * time.Second})
	e.extra = "\t\tretention 6s\n"
	e.start()
	ctx := context.Background()
	c := e.redis.Client()
	const order = "REV_FAILED_LATE"
	tn := e.paidOrder(order, "wechat", 1000)
	wantStatus(t, e.refund(order, "REV_FL_R1", 300), http.StatusOK, "")
	refunds := "tollgate:pay:{o:" + order + "}:refunds"
	raw, err := c.HGet(ctx, refunds, "REV_FL_R1").Result()
	if err != nil {
		t.Fatal(err)
	}
	var rec map[string]any
	_ = json.Unmarshal([]byte(raw), &rec)
	rec["state"] = "FAILED"
	b, _ := json.Marshal(rec)
	if err := c.HSet(ctx, refunds, "REV_FL_R1", string(b)).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.HIncrBy(ctx, "tollgate:pay:{o:"+order+"}:trade", "refunded_fen", -300).Err(); err != nil {
		t.Fatal(err)
	}
	arch := e.archivedOf(t, order, 20*time.Second)
	eventually(t, 20*time.Second, "REFUND.SUCCESS acknowledged", func() bool {
		for _, d := range e.deliveries(tn, "refund") {
			if d.Delivered {
				return true
			}
		}
		return false
	})
	e.quiesce()
	if n := len(e.hooks.ofType("refund.succeeded", order)); n == 0 {
		t.Fatalf("the provider refunded 300 fen of archived order %s (trade.archived said refunded_fen %d, refund FAILED); its REFUND.SUCCESS was acknowledged and no event reached the backend",
			order, arch.Data.RefundedFen)
	}
}

// TestAnOrderSettledBeforeTheUpgradeIsArchivedToo: the previous version
// took an order off the due set once nothing was left to do; retention
// only ever visits orders in the due set. An order settled before the
// upgrade (in Redis, not in the due set) must still leave Redis, or the
// footprint of everything before the upgrade stays forever (and
// orders_in_redis does not count it).
func TestAnOrderSettledBeforeTheUpgradeIsArchivedToo(t *testing.T) {
	e := newEnv(t)
	e.extra = "\t\tretention 1s\n"
	// This instance plays the previous version: its poller never runs.
	e.options["poll_interval"] = "1h"
	e.start()
	rdb := e.redis.Client()
	ctx := context.Background()
	const order = "REV_PRE_UPGRADE"
	tn := e.paidOrder(order, "alipay", 1000)
	eventually(t, 10*time.Second, "trade.paid delivered", func() bool { return len(e.hooks.ofType("trade.paid", order)) == 1 })
	// What the previous version's release left: the order's records, and
	// the order off the due set.
	if err := rdb.ZRem(ctx, "tollgate:pay:{due}", order).Err(); err != nil {
		t.Fatal(err)
	}
	// The upgraded instance, on the same Redis.
	e.options["poll_interval"] = "100ms"
	port2 := testcaddy.FreePort(t)
	testcaddy.StartProcess(t, "", e.caddyfile(port2))
	if err := testcaddy.WaitListening(fmt.Sprintf("127.0.0.1:%d", port2), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(8 * time.Second) // eight retentions
	for time.Now().Before(deadline) && len(existing(t, rdb, orderKeys(order, tn)[0])) == 1 {
		time.Sleep(100 * time.Millisecond)
	}
	if got := existing(t, rdb, orderKeys(order, tn)[0]); len(got) == 1 {
		t.Fatalf("order %s settled before the upgrade still holds %v after eight retentions: retention never visits an order off the due set", order, got)
	}
}

// TestASecondArchivalOfTheSameTradeReachesTheBackend: as above, an order
// archived CLOSED whose QR code is then paid; the operator refunds the
// payment (which puts the order back in the due set), and the order is
// archived a second time, now PAID 1000 and refunded 1000. That second
// trade.archived must reach the backend: its id may not be the first
// one's (evt_<trade_no>_trade.archived), which the webhook's 7-day
// tombstone refuses to queue again.
func TestASecondArchivalOfTheSameTradeReachesTheBackend(t *testing.T) {
	e := newEnv(t)
	e.extra = "\t\tretention 3s\n"
	e.start()
	rdb := e.redis.Client()
	const order = "REV_ARCH_SAME_ID"
	tn := e.create(order, "alipay", 1000).str("trade_no")
	e.sim.SetFault(paysim.Fault{Operation: "alipay.trade.cancel", Mode: paysim.FaultIgnore})
	wantStatus(t, do(t, "POST", e.base+"/pay/trades/"+order+"/close", nil), http.StatusOK, "")
	e.archivedOf(t, order, 20*time.Second)
	if err := e.sim.Pay(tn); err != nil {
		t.Fatalf("paying the QR code whose cancel did not take effect: %v", err)
	}
	eventually(t, 10*time.Second, "trade.paid", func() bool { return len(e.hooks.ofType("trade.paid", order)) == 1 })
	wantStatus(t, e.refund(order, "REV_SAME_R1", 1000), http.StatusOK, "")
	e.eventuallyRefund(t, "REV_SAME_R1", "SUCCESS", 15*time.Second)
	eventually(t, 20*time.Second, "the order's records gone again", func() bool {
		return len(existing(t, rdb, orderKeys(order, tn)[:5]...)) == 0
	})
	e.quiesce()
	var got []string
	for _, ev := range e.hooks.ofType("trade.archived", order) {
		got = append(got, fmt.Sprintf("%s %s paid %d refunded %d", ev.ID, ev.Data.State, ev.Data.PaidFen, ev.Data.RefundedFen))
	}
	if len(got) != 2 {
		t.Fatalf("order %s archived twice, the backend received %d trade.archived: %v (the second, PAID 1000 refunded 1000, was refused by the first one's tombstone)",
			order, len(got), got)
	}
}
