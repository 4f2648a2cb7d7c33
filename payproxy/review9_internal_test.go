package payproxy

import (
	"context"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/testredis"
	"github.com/tollgate/tollgate/payproxy/reconcile"
)

// TestOnAClusterReconciliationReadsABatchOfOrdersOnManySlots (review 9):
// Records reads a batch's trades and markers in one TxPipelined; go-redis's
// ClusterClient refuses a transaction over more than one slot (CROSSSLOT),
// and a bill's batch names many orders.
func TestOnAClusterReconciliationReadsABatchOfOrdersOnManySlots(t *testing.T) {
	rdb := testredis.StartCluster(t, 3).Client()
	ctx := context.Background()
	paid := time.Now().Add(-time.Minute).UnixMilli()
	var refs []reconcile.Ref
	for _, o := range []struct{ order, tn string }{{"R9_A", "TG20261202000000R9CLUSTERA01"}, {"R9_B", "TG20261202000000R9CLUSTERB01"}} {
		must(t, rdb.HSet(ctx, tradeBucketKey(o.tn), o.tn, o.order).Err())
		must(t, rdb.HSet(ctx, tradeKey(o.order), "order_no", o.order, "trade_no", o.tn, "channel", "alipay", "amount_fen", 900,
			"state", StatePaid, "refunded_fen", 0, "seq", 2, "paid_at", paid).Err())
		refs = append(refs, reconcile.Ref{TradeNo: o.tn})
	}
	l := reconcileLedger{p: &PayProxy{rdb: rdb, store: &tradeStore{rdb: rdb}}, channel: "alipay"}
	recs, err := l.Records(ctx, refs)
	if err != nil {
		t.Fatalf("reconciliation of two paid orders on a Cluster: %v", err)
	}
	for _, r := range recs {
		if !r.Found || r.State != StatePaid {
			t.Fatalf("a paid order read as %+v", r)
		}
	}
}

// TestReconciliationReportsAFailedIndexReadInsteadOfAnUnknownTrade (review
// 9): ordersOfTrades takes a pipeline's first error, which is the redis.Nil
// of an earlier trade's missing field, for "no failure": a later trade's
// failed read (here WRONGTYPE; on a Cluster, a master down) reads as "no
// index", and the paid trade is reported missing_locally with no order
// (no heal).
func TestReconciliationReportsAFailedIndexReadInsteadOfAnUnknownTrade(t *testing.T) {
	rdb := testredis.Start(t).Client()
	ctx := context.Background()
	unknown, failing := "TG20261202000000R9UNKNOWN001", "TG20261202000000R9FAILING001"
	if tradeBucketKey(unknown) == tradeBucketKey(failing) {
		t.Fatal("pick trade numbers in two buckets")
	}
	must(t, rdb.Set(ctx, tradeBucketKey(failing), "not a hash", 0).Err())
	l := reconcileLedger{p: &PayProxy{rdb: rdb, store: &tradeStore{rdb: rdb}}, channel: "alipay"}
	recs, err := l.Records(ctx, []reconcile.Ref{{TradeNo: unknown}, {TradeNo: failing}})
	if err == nil {
		t.Fatalf("a failed read of a trade's index was read as no index: %+v", recs[1])
	}
}
