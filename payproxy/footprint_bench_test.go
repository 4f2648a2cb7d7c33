package payproxy

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/tollgate/tollgate/payproxy/reconcile"
)

// BenchmarkMillionOrders measures payproxy's Redis after a million orders
// of a delivery platform's mix, before and after retention (issue 17).
// It drives the store's own scripts in-process — allocate, issue the QR
// code, record the payment, reserve and settle refunds, close, deliver
// the events (their tombstones stay), index for reconciliation, compact,
// archive (trade.archived, delivered, then the records go) — so every key is the one payproxy writes; only HTTP and the
// providers (which write nothing to Redis but the order's lock, checks
// and gap keys, all transient) are left out: bench/footprint measures
// those paths end to end with paysim, in fewer orders. Run by
// bench/million.sh against a Redis of its own:
//
//	TOLLGATE_BENCH_REDIS=redis://127.0.0.1:6379/0 TOLLGATE_BENCH_ORDERS=1000000 \
//	  go test -run '^$' -bench '^BenchmarkMillionOrders$' -benchtime 1x ./payproxy/
//
// The mix, per 100 orders: 84 paid, 4 paid then fully refunded, 2 paid
// then partly refunded, 8 closed unpaid (the customer left), 2 still
// unpaid (created within the last QR lifetime).
func BenchmarkMillionOrders(b *testing.B) {
	url := os.Getenv("TOLLGATE_BENCH_REDIS")
	if url == "" {
		b.Skip("TOLLGATE_BENCH_REDIS names the benchmark's own Redis (bench/million.sh)")
	}
	n, _ := strconv.Atoi(os.Getenv("TOLLGATE_BENCH_ORDERS"))
	if n <= 0 {
		n = 1_000_000
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		b.Fatal(err)
	}
	opt.PoolSize = 64
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	ctx := context.Background()
	if err := rdb.FlushDB(ctx).Err(); err != nil {
		b.Fatal(err)
	}
	p := &PayProxy{
		Retention: caddy.Duration(defaultRetention), PollInterval: caddy.Duration(time.Second),
		Webhook: &WebhookConfig{MaxAttempts: defaultMaxAttempts},
		logger:  zap.NewNop(), rdb: rdb, store: &tradeStore{rdb: rdb},
	}
	base := memory(ctx, b, rdb)
	fmt.Printf("payproxy's Redis after %d orders (84 %% paid, 4 %% fully refunded, 2 %% partly refunded, 8 %% closed unpaid, 2 %% open)\n", n)
	fmt.Printf("empty Redis: used_memory %d, used_memory_dataset %d\n", base[0], base[1])
	for b.Loop() {
		start := time.Now()
		each(n, func(i int) { millionOrder(ctx, b, p, i) })
		report(ctx, b, rdb, base, n, "created and settled, events delivered", time.Since(start))
		start = time.Now()
		each(n, func(i int) {
			if _, err := p.retainAndPark(ctx, benchOrder(i), time.Now()); err != nil {
				b.Fatal(err)
			}
		})
		report(ctx, b, rdb, base, n, "compacted and parked (settled, inside retention)", time.Since(start))
		expire(ctx, b, rdb, isTombstone)
		report(ctx, b, rdb, base, n, "a day on: the events' tombstones expired (the window's cost)", 0)
		if os.Getenv("TOLLGATE_BENCH_WINDOW_ONLY") != "" {
			continue // the window's cost only (bench/million.sh WINDOW_ONLY=1)
		}
		// Every settled order is archived as if retention had passed; its
		// marker and trade indexes keep the real retention to live.
		later := time.Now().Add(time.Duration(p.Retention) + p.parkWidth() + time.Minute)
		start = time.Now()
		unparkAll(ctx, b, p, later)
		each(n, func(i int) { p.retainAt(ctx, benchOrder(i), later) }) // writes trade.archived
		deliverQueued(ctx, b, p)
		each(n, func(i int) { // delivered: the records go, the order leaves the due set
			if p.retainAt(ctx, benchOrder(i), later).IsZero() {
				if err := rdb.ZRem(ctx, dueKey, benchOrder(i)).Err(); err != nil {
					b.Fatal(err)
				}
			}
		})
		report(ctx, b, rdb, base, n, "after retention: archived (markers, trade indexes, tombstones left)", time.Since(start))
		expire(ctx, b, rdb, isTombstone)
		report(ctx, b, rdb, base, n, "a day on: trade.archived's tombstones expired", 0)
		expire(ctx, b, rdb, func(k string) bool { return strings.HasSuffix(k, ":archived") || strings.HasPrefix(k, keyPrefix+"{t:") })
		report(ctx, b, rdb, base, n, "another retention on: markers and trade indexes expired", 0)
	}
}

// unparkAll brings every parked order whose bucket has ended by now back
// into the due set, as the poller's wake-ups do.
func unparkAll(ctx context.Context, b *testing.B, p *PayProxy, now time.Time) {
	for {
		n, err := p.rdb.ZCount(ctx, parkedKey, "-inf", strconv.FormatInt(now.UnixMilli(), 10)).Result()
		if err != nil {
			b.Fatal(err)
		}
		if n == 0 {
			return
		}
		p.unpark(ctx, now) // ended buckets only: each call empties some

	}
}

func benchOrder(i int) string { return fmt.Sprintf("SO%011d", i) }

// each runs fn for 0..n-1 on a few goroutines.
func each(n int, fn func(int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 8 * runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				fn(i)
			}
		}()
	}
	wg.Wait()
}

// millionOrder writes order i's life as payproxy would.
func millionOrder(ctx context.Context, b *testing.B, p *PayProxy, i int) {
	now := time.Now()
	channel, qr := "alipay", "https://qr.alipay.com/bax0"+strconv.Itoa(1000000+i)+"k8m2qz4jdl0f6e"
	if i%2 == 1 {
		channel, qr = "wechat", "weixin://wxpay/bizpayurl?pr=Zx"+strconv.Itoa(1000000+i)+"Q"
	}
	t := &tradeRecord{
		OrderNo: benchOrder(i), TradeNo: newTradeNo(now), Channel: channel, AmountFen: 1500 + int64(i%5000),
		Subject: "外卖订单 " + benchOrder(i) + " 黄焖鸡米饭等2件", CreatedAt: now, ExpiresAt: now.Add(time.Duration(defaultQRLifetime)),
	}
	if _, err := p.store.allocate(ctx, t, "", now.Add(time.Minute)); err != nil {
		b.Fatal(err)
	}
	if _, err := p.store.issued(ctx, t.OrderNo, t.TradeNo, qr, now); err != nil {
		b.Fatal(err)
	}
	switch kind := i % 100; {
	case kind < 90:
		if err := p.recordPayment(ctx, t, "4200001234"+strconv.Itoa(100000000+i)); err != nil {
			b.Fatal(err)
		}
		deliver(ctx, b, p, "evt_"+t.TradeNo+"_trade.paid")
		switch {
		case kind >= 84 && kind < 88:
			benchRefund(ctx, b, p, t, "RF"+t.OrderNo, t.AmountFen)
		case kind >= 88:
			benchRefund(ctx, b, p, t, "RF"+t.OrderNo, t.AmountFen/3)
		}
	case kind < 98:
		_, ev, err := p.store.markClosed(ctx, t, now)
		if err != nil {
			b.Fatal(err)
		}
		p.publish(ctx, t.OrderNo, ev)
		deliver(ctx, b, p, ev.ID)
	}
	if err := p.store.schedule(ctx, t.OrderNo, now); err != nil {
		b.Fatal(err)
	}
}

// benchRefund reserves a refund, settles it SUCCESS as the provider's
// answer would, indexes it and delivers its event.
func benchRefund(ctx context.Context, b *testing.B, p *PayProxy, t *tradeRecord, refundNo string, amount int64) {
	_, r, err := p.store.reserveRefund(ctx, t.OrderNo, refundNo, amount, "骑手超时，用户申请退款", time.Now())
	if err != nil || r == nil {
		b.Fatalf("refund %s: %v %v", refundNo, r, err)
	}
	_, ev, err := p.store.settleRefund(ctx, t, r, RefundSuccess, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	p.indexForReconcile(ctx, t.Channel, reconcile.Ref{Refund: true, TradeNo: t.TradeNo, RefundNo: refundNo})
	p.publish(ctx, t.OrderNo, ev)
	deliver(ctx, b, p, ev.ID)
}

// deliver acknowledges a queued event as the sender does once the backend
// answered 2xx: it leaves the queue and its tombstone stays.
func deliver(ctx context.Context, b *testing.B, p *PayProxy, id string) {
	err := ackEventScript.Run(ctx, p.rdb, []string{queueKey, eventsKey, attemptsKey, tombstoneKey(id)}, id, p.tombstoneTTL()).Err()
	if err != nil {
		b.Fatal(err)
	}
}

// deliverQueued delivers every queued event.
func deliverQueued(ctx context.Context, b *testing.B, p *PayProxy) {
	for {
		ids, err := p.rdb.ZRange(ctx, queueKey, 0, 999).Result()
		if err != nil {
			b.Fatal(err)
		}
		if len(ids) == 0 {
			return
		}
		each(len(ids), func(i int) { deliver(ctx, b, p, ids[i]) })
	}
}

func isTombstone(k string) bool { return strings.HasPrefix(k, keyPrefix+"{wh}:done:") }

// expire removes the keys of which expires and that have a TTL, as time
// would (an open order's trade index has none).
func expire(ctx context.Context, b *testing.B, rdb *redis.Client, expires func(string) bool) {
	var cursor uint64
	for {
		keys, next, err := rdb.Scan(ctx, cursor, "*", 10000).Result()
		if err != nil {
			b.Fatal(err)
		}
		ttls := map[string]*redis.DurationCmd{}
		pipe := rdb.Pipeline()
		for _, k := range keys {
			if expires(k) {
				ttls[k] = pipe.PTTL(ctx, k)
			}
		}
		if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
			b.Fatal(err)
		}
		pipe = rdb.Pipeline()
		for k, ttl := range ttls {
			if ttl.Val() > 0 {
				pipe.Unlink(ctx, k)
			}
		}
		if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
			b.Fatal(err)
		}
		if cursor = next; cursor == 0 {
			return
		}
	}
}

// memory is Redis's {used_memory, used_memory_dataset, keys}.
func memory(ctx context.Context, b *testing.B, rdb *redis.Client) [3]int64 {
	info, err := rdb.Info(ctx, "memory", "keyspace").Result()
	if err != nil {
		b.Fatal(err)
	}
	var out [3]int64
	for _, line := range strings.Split(info, "\r\n") {
		k, v, _ := strings.Cut(line, ":")
		switch k {
		case "used_memory":
			out[0], _ = strconv.ParseInt(v, 10, 64)
		case "used_memory_dataset":
			out[1], _ = strconv.ParseInt(v, 10, 64)
		case "db0":
			keys, _, _ := strings.Cut(strings.TrimPrefix(v, "keys="), ",")
			out[2], _ = strconv.ParseInt(keys, 10, 64)
		}
	}
	return out
}

func report(ctx context.Context, b *testing.B, rdb *redis.Client, base [3]int64, n int, stage string, took time.Duration) {
	m := memory(ctx, b, rdb)
	fmt.Printf("%-95s used_memory %11d  dataset %11d (%5d bytes/order)  keys %8d  (%s)\n", stage,
		m[0], m[1], (m[1]-base[1])/int64(n), m[2], took.Round(time.Second))
}
