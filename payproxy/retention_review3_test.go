package payproxy_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/paysim"
	"github.com/tollgate/tollgate/payproxy"
)

// Third review of issue 17 (the compact marker, restoring an order from
// it, archivedLongAgo past the marker): each test is an attack or a
// failure, run against real Redis, real Caddy and paysim.

// TestARefundThatBroughtItsOrderBackFromTheMarkerCanBeReadByItsNumber:
// WeChat refund R1 (300) of a paid order is held FAILED when the order
// is archived; archival removes R1's refund index. WeChat then carries
// R1 out: the order comes back from its marker (restoreScript), R1
// becomes SUCCESS and refund.succeeded reaches the backend. The backend
// then reads R1 as README tells it to, GET {prefix}/refunds/{refund_no}:
// the order holds R1 SUCCESS, but the refund index that GET (and
// reconciliation's refundOf, and claimRefundNo's uniqueness across
// orders) goes through was not restored, so the refund the backend was
// just told of is answered 404.
func TestARefundThatBroughtItsOrderBackFromTheMarkerCanBeReadByItsNumber(t *testing.T) {
	e := newEnvWithSim(t, paysim.Config{WechatRefundDelay: time.Hour})
	e.extra = "\t\tretention 3s\n"
	e.start()
	rdb := e.redis.Client()
	const order = "REV3_REFUND_INDEX"
	tn := e.paidOrder(order, "wechat", 1000)
	wantStatus(t, e.refund(order, "REV3_RI_R1", 300), http.StatusOK, "")
	e.markFailed(t, order, "REV3_RI_R1", 300)
	e.archivedOf(t, order, 20*time.Second)
	marker := "tollgate:pay:{o:" + order + "}:archived"
	eventually(t, 10*time.Second, "step 2: the records deleted, the marker written", func() bool {
		return len(existing(t, rdb, orderKeys(order, tn)[:5]...)) == 0 && len(existing(t, rdb, marker)) == 1
	})
	if err := e.sim.RefundSucceed("REV3_RI_R1"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "refund.succeeded of REV3_RI_R1", func() bool {
		for _, ev := range e.hooks.ofType("refund.succeeded", order) {
			if ev.Data.RefundNo == "REV3_RI_R1" {
				return true
			}
		}
		return false
	})
	restored := len(existing(t, rdb, "tollgate:pay:{o:"+order+"}:refunds")) == 1
	r := do(t, "GET", e.base+"/pay/refunds/REV3_RI_R1", nil)
	if r.Status != http.StatusOK || r.str("state") != "SUCCESS" {
		t.Fatalf("refund.succeeded of REV3_RI_R1 (order %s back from its marker, records restored: %v) reached the backend; GET /pay/refunds/REV3_RI_R1 then answered %d %s",
			order, restored, r.Status, strings.TrimSpace(string(r.Raw)))
	}
}

// TestALateNotificationOfAnOrderArchivedAgainAfterComingBackFromItsMarkerIsAcknowledged:
// an order paid on trade B is archived (its trade indexes get the
// marker's lifetime, retention); a retired QR code A is then paid and the
// order comes back from its marker (a duplicate, refunded). Restoring
// does not give the indexes back their lifetime: they expire a retention
// after the first archival while the order lives on, and when it is
// archived again (a new marker, PEXPIRE on indexes that are gone) no
// index names its trades. Alipay's TRADE_FINISHED of B, inside the new
// marker's life, is then "a notification for an unknown trade", answered
// 404 and retried by Alipay for a day — README: a late notification of a
// trade the marker holds paid is acknowledged and changes nothing.
func TestALateNotificationOfAnOrderArchivedAgainAfterComingBackFromItsMarkerIsAcknowledged(t *testing.T) {
	e := newEnv(t)
	e.extra = "\t\tretention 4s\n"
	e.start()
	rdb := e.redis.Client()
	const order = "REV3_INDEX_TTL"
	a, b := e.payRetiredAfterDeletion(t, order, "alipay", func() {})
	marker := "tollgate:pay:{o:" + order + "}:archived"
	eventually(t, 30*time.Second, "archived a second time", func() bool {
		return len(e.hooks.ofType("trade.archived", order)) == 2 && len(existing(t, rdb, orderKeys(order, b)[:5]...)) == 0
	})
	indexes := existing(t, rdb, "tollgate:pay:{t:"+a+"}", "tollgate:pay:{t:"+b+"}")
	if err := e.sim.Finish(b); err != nil {
		t.Fatal(err)
	}
	var status []int
	live := false
	eventually(t, 10*time.Second, "TRADE_FINISHED of "+b+" answered", func() bool {
		live = len(existing(t, rdb, marker)) == 1
		status = nil
		for _, d := range e.sim.Notifications() {
			if d.OutTradeNo == b && d.Kind == "finish" {
				for _, at := range d.Attempts {
					status = append(status, at.Status)
				}
				if d.Delivered {
					return true
				}
			}
		}
		return len(status) > 0
	})
	if !live {
		t.Skip("the second marker expired before TRADE_FINISHED was answered (machine too slow for retention 4s)")
	}
	for _, d := range e.deliveries(b, "finish") {
		if d.Delivered {
			return
		}
	}
	t.Fatalf("order %s archived a second time (marker live); Alipay's TRADE_FINISHED of its paid trade %s was refused (attempts' statuses %v): trade indexes left %v of %s and %s",
		order, b, status, indexes, a, b)
}

// TestAPaymentPastTheMarkerIsNotAcknowledgedUnrecordedAfterAReloadShortenedPayTimeout:
// archivedLongAgo bounds a trade's payable life by the pay_timeout in
// force now, but the trade was made (and told the provider its expiry)
// under the pay_timeout of its day. An Alipay QR code made with
// pay_timeout 1h, whose cancel did not take effect, is archived CLOSED;
// ops then reload with pay_timeout 1s. Once the marker and the index
// expire, the buyer pays the QR code (still payable: its hour has not
// passed): the verified payment is answered success and recorded
// nowhere. (The providers' two days of retries are made one second:
// the test cannot wait two days; the reload could as well shorten
// pay_timeout by weeks in production.)
func TestAPaymentPastTheMarkerIsNotAcknowledgedUnrecordedAfterAReloadShortenedPayTimeout(t *testing.T) {
	prev := payproxy.SetNotifyRetryWindow(time.Second)
	t.Cleanup(func() { payproxy.SetNotifyRetryWindow(prev) })
	e := newEnv(t)
	e.extra = "\t\tretention 2s\n"
	e.options["pay_timeout"] = "1h"
	inst := e.start()
	const order = "REV3_PAY_TIMEOUT_RELOAD"
	tn := e.create(order, "alipay", 1000).str("trade_no")
	e.sim.SetFault(paysim.Fault{Operation: "alipay.trade.cancel", Mode: paysim.FaultIgnore})
	wantStatus(t, do(t, "POST", e.base+"/pay/trades/"+order+"/close", nil), http.StatusOK, "")
	e.options["pay_timeout"] = "1s"
	inst.Reload(e.caddyfile(e.port))
	e.payPastTheMarker(t, order, tn)
	e.quiesce()
	for _, d := range e.deliveries(tn, "payment") {
		if d.Delivered && len(e.hooks.ofType("trade.paid", order)) == 0 {
			t.Fatalf("trade %s of order %s (made under pay_timeout 1h, reloaded to 1s) paid 1000 fen after its marker expired: the notification was answered success and nothing recorded it (no trade.paid, no refund, no record)",
				tn, order)
		}
	}
}

// TestARefundNumberOfAnArchivedOrderIsNotClaimedByAnotherOrderWhileItsMarkerLives:
// order A's refund R succeeded and A is archived; while A's marker lives
// (a late notification can still bring A back), order B asks for a
// refund under the same number R. Refund numbers are unique across
// orders (the provider's out_refund_no is unique per merchant): B is
// refused, and A's binding of R is not taken over.
func TestARefundNumberOfAnArchivedOrderIsNotClaimedByAnotherOrderWhileItsMarkerLives(t *testing.T) {
	e := newEnv(t)
	e.extra = "\t\tretention 10s\n"
	e.start()
	rdb := e.redis.Client()
	const a, b, r = "REV4_REFUND_A", "REV4_REFUND_B", "REV4_SHARED_R"
	ta := e.paidOrder(a, "wechat", 1000)
	wantStatus(t, e.refund(a, r, 300), http.StatusOK, "")
	e.eventuallyRefund(t, r, "SUCCESS", 10*time.Second)
	e.archivedOf(t, a, 30*time.Second)
	eventually(t, 10*time.Second, "A's records deleted, its marker written", func() bool {
		return len(existing(t, rdb, orderKeys(a, ta)[:5]...)) == 0 && len(existing(t, rdb, "tollgate:pay:{o:"+a+"}:archived")) == 1
	})
	e.paidOrder(b, "wechat", 800)
	if got := e.refund(b, r, 100); got.Status == http.StatusOK {
		t.Fatalf("order %s claimed refund number %s of archived order %s while its marker lived: %d %s", b, r, a, got.Status, got.Raw)
	}
	if owner := rdb.Get(context.Background(), "tollgate:pay:{r:"+r+"}").Val(); owner != a {
		t.Fatalf("refund number %s now names order %q, not %s", r, owner, a)
	}
}
