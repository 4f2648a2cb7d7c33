package payproxy_test

import (
	"context"
	"testing"
	"time"
)

// TestACompactedTradeStillNamesItsOrderForPreviousReleaseInstancesDuringARollingUpgrade
// (review 8, finding "compaction drops order_no under a rolling upgrade",
// Medium): README's "Trade index buckets" has upgraded and previous-release
// instances share Redis during a rolling upgrade. The previous release
// (b8a2cd3, store.go load) takes a trade's order from the hash's
// order_no field; this release's compaction deletes it (scripts.go
// retainScript). An order with a refund (so kept as a compacted hash, not
// a live marker) that an upgraded poller compacted is then read by a
// previous-release instance with OrderNo "": a refund it takes is sent to
// the provider but checked and settled on order "" (`{o:}:checks`, a due
// entry "", refundSettleScript answering unknown), its poller reads the
// order's refunds as none and, retainScript answering open for the
// PROCESSING refund, puts the order off a whole retention; a WeChat refund
// notification it receives is acknowledged as an unknown refund.
// Fix: keep order_no in the compacted hash for this release (it now costs
// only the minority of orders that are not live markers) and drop it in
// the next one; or README: no previous-release instance may run once an
// upgraded poller has started (no rolling upgrade from b8a2cd3).
func TestACompactedTradeStillNamesItsOrderForPreviousReleaseInstancesDuringARollingUpgrade(t *testing.T) {
	e := newEnv(t)
	e.extra = "\t\tretention 1h\n"
	e.start()
	rdb := e.redis.Client()
	ctx := context.Background()
	order := "R8_ROLLING"
	e.paidOrder(order, "wechat", 1000)
	wantStatus(t, e.refund(order, "R8_RF1", 400), 200, "")
	e.eventuallyRefund(t, "R8_RF1", "SUCCESS", 15*time.Second)
	key := "tollgate:pay:{o:" + order + "}:trade"
	eventually(t, 10*time.Second, order+" compacted after its refund", func() bool {
		f := rdb.HGetAll(ctx, key).Val()
		_, qr := f["qr_code"]
		return len(f) > 0 && !qr
	})
	if got := rdb.HGet(ctx, key, "order_no").Val(); got != order {
		t.Fatalf("the compacted trade names order %q: a previous-release instance (load: OrderNo = order_no) "+
			"handles its refunds and notifications as order \"\"", got)
	}
}
