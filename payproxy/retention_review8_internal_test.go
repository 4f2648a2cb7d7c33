package payproxy

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/testredis"
	"github.com/tollgate/tollgate/payproxy/reconcile"
)

// Review 8 (issue 17): the live marker is read by load and by
// reconciliation's ledger from two commands — a pipeline (load) or two
// round trips (ledger.Records, then readRetired) — that Redis may
// interleave with another client's script: a pipeline is not a
// transaction. interleaveHook runs `between` (another instance's script)
// right after the first command of the first pipeline whose first command
// is `name key`, as Redis may when the pipeline's commands arrive in more
// than one read.
type interleaveHook struct {
	name, key string
	between   func()
	once      sync.Once
}

func (h *interleaveHook) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h *interleaveHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h *interleaveHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		args := cmds[0].Args()
		if len(args) < 2 || !strings.EqualFold(cmds[0].Name(), h.name) || args[1] != h.key {
			return next(ctx, cmds)
		}
		fire := false
		h.once.Do(func() { fire = true })
		if !fire {
			return next(ctx, cmds)
		}
		err := next(ctx, cmds[:1])
		h.between()
		if len(cmds) > 1 {
			if err2 := next(ctx, cmds[1:]); err == nil {
				err = err2
			}
		}
		return err
	}
}

// liveOrder stores a paid order (trade tn, 900 fen, alipay) indexed in
// its bucket, and lets retainScript keep it as its live marker (retention
// 1 h); it fails unless the order is then its live marker alone.
func liveOrder(t *testing.T, rdb *redis.Client, order, tn string) {
	t.Helper()
	ctx := context.Background()
	paid := time.Now().Add(-time.Minute).UnixMilli()
	must(t, rdb.HSet(ctx, tradeBucketKey(tn), tn, order).Err())
	must(t, rdb.HSet(ctx, tradeKey(order), "order_no", order, "trade_no", tn, "channel", "alipay", "amount_fen", 900,
		"state", StatePaid, "refunded_fen", 0, "seq", 2, "created_at", paid-1000, "paid_at", paid, "provider_trade_id", "P1").Err())
	p := parkingProxy(rdb, time.Hour)
	if _, wait := p.retainWaiting(ctx, order, time.Now()); !wait {
		t.Fatal("the paid order was not kept waiting for its archival")
	}
	if rdb.Exists(ctx, tradeKey(order)).Val() != 0 || rdb.Exists(ctx, archivedKey(order)).Val() != 1 {
		t.Fatal("the paid order is not its live marker alone")
	}
}

// refusedRefundAfter is a second client on rdb's server whose first
// pipeline starting with `name <order's :trade>` lets another instance's
// refund of order (901 fen of 900: refused, exceeds) run right after that
// first command: refundReserveScript expands the live marker first.
func refusedRefundAfter(t *testing.T, rdb *redis.Client, name, order string) *redis.Client {
	other := &tradeStore{rdb: rdb}
	c := redis.NewClient(rdb.Options())
	c.AddHook(&interleaveHook{name: name, key: tradeKey(order), between: func() {
		st, _, err := other.reserveRefund(context.Background(), order, "R8_TOO_MUCH", 901, "r", time.Now())
		if err != nil || st != "exceeds" {
			t.Errorf("the concurrent refund: %q %v", st, err)
		}
	}})
	t.Cleanup(func() { c.Close() })
	return c
}

// TestThePollerNeverDropsAnOrderWhoseLiveMarkerIsExpandedBetweenItsTwoReads
// (review 8, finding "load is not atomic", Low): an unparked live order
// is leased by the poller; between load's HGETALL :trade (empty: the
// order is its marker) and its GET :archived, another instance's refund
// request is refused (exceeds the paid amount) after refundReserveScript
// expanded the marker into the trade hash. load answers errNoRecord, the
// round returns zero and releases the order: it keeps its records but is
// neither due nor parked, never archived (no expiry: Redis grows).
// Fix: store.go load reads both in one MULTI (TxPipelined, one slot) or
// one script.
func TestThePollerNeverDropsAnOrderWhoseLiveMarkerIsExpandedBetweenItsTwoReads(t *testing.T) {
	rdb := testredis.Start(t).Client()
	ctx := context.Background()
	order, tn := "R8_LIVE_POLL", "TG20261202000000R8LIVEPOLL01"
	liveOrder(t, rdb, order, tn)
	p := parkingProxy(refusedRefundAfter(t, rdb, "hgetall", order), time.Hour)
	// Unparked at its bucket's end: due now, as unparkScript leaves it.
	must(t, rdb.ZAdd(ctx, dueKey, redis.Z{Score: float64(time.Now().UnixMilli()), Member: order}).Err())
	if n := p.pollBatch(ctx); n != 1 {
		t.Fatalf("the poller leased %d orders", n)
	}
	// (Read atomically, as by the fix, the hook never fires and the
	// round parks the live order.)
	_, due := score(t, rdb, order)
	if !due && parkedCount(t, rdb) == 0 {
		t.Fatal("an order with records was released by the poller: neither due nor parked, never archived")
	}
}

// TestReconciliationFindsALiveOrdersPaymentExpandedBetweenItsReads
// (review 8, finding "ledger reads the live marker a round trip after the
// trade", Low): Records reads the order's :trade (empty: a live order),
// then, a round trip later, its :archived; a refund request of another
// instance in between expands the marker into :trade. The paid trade is
// then reported not found (a false missing_locally in the day's report,
// healed by a provider query). Fix: ledger.go Records reads the trade
// hash and the marker in the same pipeline, in one MULTI (same slot), and
// readRetired only the retired trades.
func TestReconciliationFindsALiveOrdersPaymentExpandedBetweenItsReads(t *testing.T) {
	rdb := testredis.Start(t).Client()
	ctx := context.Background()
	order, tn := "R8_LIVE_LEDGER", "TG20261202000000R8LIVELEDGR1"
	liveOrder(t, rdb, order, tn)
	c := refusedRefundAfter(t, rdb, "hmget", order)
	l := reconcileLedger{p: &PayProxy{rdb: c, store: &tradeStore{rdb: c}}, channel: "alipay"}
	recs, err := l.Records(ctx, []reconcile.Ref{{TradeNo: tn}})
	must(t, err)
	if r := recs[0]; !r.Found || r.State != StatePaid || r.AmountFen != 900 {
		t.Fatalf("reconciliation reads a paid order's payment as %+v: not found", r)
	}
}

// TestARefusedAllocationLeavesNoTradeIndexBehind (review 8, finding
// "orphan bucket fields", Low): allocate writes the new trade's bucket
// field first; when allocScript refuses the allocation (0: the record
// changed since the caller read it — a lost lock, or load's race above),
// the field stays, naming the order, in a bucket with no expiry: no
// archival ever moves it (the trade is none of the order's). Only the
// archived-paid refusal (2) removes it. The previous release leaked a
// {t:} key the same way; a bucket field is cheaper but just as eternal.
// Fix: store.go allocate removes the field (unbucketTradeScript) when n
// is 0 too: the number was never sent to a provider.
func TestARefusedAllocationLeavesNoTradeIndexBehind(t *testing.T) {
	rdb := testredis.Start(t).Client()
	ctx := context.Background()
	s := &tradeStore{rdb: rdb}
	order := "R8_ORPHAN"
	now := time.Now()
	first := &tradeRecord{OrderNo: order, TradeNo: newTradeNo(now), Channel: "alipay", AmountFen: 100, State: StateUnknown,
		CreatedAt: now, ExpiresAt: now.Add(time.Minute)}
	ok, err := s.allocate(ctx, first, "", now)
	must(t, err)
	if !ok {
		t.Fatal("the first allocation was refused")
	}
	stale := *first
	stale.TradeNo = newTradeNo(now)
	if ok, err := s.allocate(ctx, &stale, "", now); err != nil || ok {
		t.Fatalf("an allocation from a stale read: %v %v", ok, err)
	}
	if o := rdb.HGet(ctx, tradeBucketKey(stale.TradeNo), stale.TradeNo).Val(); o != "" {
		t.Fatalf("the refused trade %s stays indexed to %q for good", stale.TradeNo, o)
	}
}

// reverseHook runs the first pipeline whose first command is `hget key`
// command by command in reverse, `between` before its first command: on
// a Cluster, the trade index's field and key live on two masters, which
// go-redis asks concurrently, so the key's GET may be served before and
// the field's HGET after anything else.
type reverseHook struct {
	key     string
	between func()
	once    sync.Once
}

func (h *reverseHook) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h *reverseHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h *reverseHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		args := cmds[0].Args()
		fire := false
		if len(cmds) == 2 && cmds[0].Name() == "hget" && args[1] == h.key {
			h.once.Do(func() { fire = true })
		}
		if !fire {
			return next(ctx, cmds)
		}
		err := next(ctx, cmds[1:])
		h.between()
		if err2 := next(ctx, cmds[:1]); err2 != nil && err == nil {
			err = err2
		}
		return err
	}
}

// TestOnAClusterANotificationDuringTheArchivalOfItsTradesIndexStillFindsTheOrder
// (review 8, finding "index read in parallel on a Cluster", Low):
// orderOfTrade reads the bucket field and the key in one pipeline, which
// a ClusterClient sends to both masters at once. The archival writes the
// key, then removes the field ("never neither"); a read whose GET is
// served before the SET and whose HGET after the HDEL finds neither: the
// notification is answered 404 unknown_trade (the provider retries) and
// reconciliation reads the payment as missing_locally. Fix: store.go
// readTradeIndex/orderOfTrade (and ledger.orders): read the field first
// and the key only for the trades whose field is missing, in a second
// round trip (only archived orders' trades pay it).
func TestOnAClusterANotificationDuringTheArchivalOfItsTradesIndexStillFindsTheOrder(t *testing.T) {
	rdb := testredis.Start(t).Client()
	ctx := context.Background()
	order, tn := "R8_INDEX_RACE", "TG20261202000000R8INDEXRACE01"
	must(t, rdb.HSet(ctx, tradeBucketKey(tn), tn, order).Err())
	archiver := parkingProxy(rdb, time.Hour)
	c := redis.NewClient(rdb.Options())
	t.Cleanup(func() { c.Close() })
	c.AddHook(&reverseHook{key: tradeBucketKey(tn), between: func() {
		if err := archiver.indexesArchived(ctx, order, []string{tn}, nil, nil); err != nil {
			t.Errorf("archiving the index: %v", err)
		}
	}})
	got, err := (&tradeStore{rdb: c}).orderOfTrade(ctx, tn)
	// (Read as by the fix, the hook never fires: the field is found.)
	if err != nil || got != order {
		t.Fatalf("a notification during the archival of trade %s's index: order %q, %v (404 unknown_trade)", tn, got, err)
	}
}
