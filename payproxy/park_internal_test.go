package payproxy

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/tollgate/tollgate/internal/testredis"
)

func parkingProxy(rdb redis.UniversalClient, retention time.Duration) *PayProxy {
	return &PayProxy{
		Retention: caddy.Duration(retention), PollInterval: caddy.Duration(time.Second),
		logger: zap.NewNop(), rdb: rdb, store: &tradeStore{rdb: rdb},
	}
}

func score(t *testing.T, rdb redis.UniversalClient, order string) (float64, bool) {
	t.Helper()
	s, err := rdb.ZScore(context.Background(), dueKey, order).Result()
	if err != nil && err != redis.Nil {
		t.Fatal(err)
	}
	return s, err == nil
}

// TestUnparkingMovesAtMostOneWakeUpsWorthAndCollapsesAnOrderParkedTwice:
// 1 200 orders parked in ended buckets come back over two wake-ups (1 000
// then 200), due now; an order parked twice comes back once; one
// scheduled anew meanwhile keeps its earlier time; one whose bucket has
// not ended stays parked; emptied buckets are unregistered.
func TestUnparkingMovesAtMostOneWakeUpsWorthAndCollapsesAnOrderParkedTwice(t *testing.T) {
	rdb := testredis.Start(t).Client()
	ctx := context.Background()
	p := parkingProxy(rdb, 3*time.Second)
	past := time.Now().Add(-2 * time.Second)
	for i := range 1200 {
		must(t, p.parkUnleased(ctx, fmt.Sprintf("O%d", i), past.Add(time.Duration(i)*time.Millisecond)))
	}
	must(t, p.parkUnleased(ctx, "TWICE", past))
	must(t, p.parkUnleased(ctx, "TWICE", past.Add(300*time.Millisecond)))
	must(t, p.parkUnleased(ctx, "ANEW", past))
	must(t, rdb.ZAdd(ctx, dueKey, redis.Z{Score: 42, Member: "ANEW"}).Err())
	must(t, p.parkUnleased(ctx, "LATER", time.Now().Add(time.Hour)))

	now := time.Now()
	p.unpark(ctx, now)
	if n := parkedCount(t, rdb); n != 1204-1000 {
		t.Fatalf("one wake-up left %d of 1 204 entries parked, want 204", n)
	}
	p.unpark(ctx, now)
	if n := parkedCount(t, rdb); n != 1 {
		t.Fatalf("two wake-ups left %d entries parked, want LATER's", n)
	}
	if n := rdb.ZCard(ctx, dueKey).Val(); n != 1202 {
		t.Fatalf("after two wake-ups %d orders in the due zset, want 1202 (1200, TWICE, ANEW)", n)
	}
	if s, ok := score(t, rdb, "O0"); !ok || int64(s) != now.UnixMilli() {
		t.Fatalf("an unparked order is due at %v (%v), want now %d", s, ok, now.UnixMilli())
	}
	if s, _ := score(t, rdb, "ANEW"); s != 42 {
		t.Fatalf("an order scheduled anew while parked was moved to %v", s)
	}
	if _, ok := score(t, rdb, "LATER"); ok {
		t.Fatal("an order whose bucket has not ended was unparked")
	}
	buckets := rdb.ZRange(ctx, parkedKey, 0, -1).Val()
	if len(buckets) != 1 || buckets[0] != strconv.FormatInt(p.bucketEnd(now.Add(time.Hour)), 10) {
		t.Fatalf("registered buckets %v, want only LATER's", buckets)
	}
	if n := rdb.Exists(ctx, parkedListKey(p.bucketEnd(past))).Val(); n != 0 {
		t.Fatal("an emptied bucket's list stays")
	}
}

// TestParkingLeavesAnOrderScheduledAnewInTheDueZset: the poller parks an
// order only while its score is the lease it holds (or it has none);
// an order scheduled anew meanwhile keeps its entry, and is not parked.
func TestParkingLeavesAnOrderScheduledAnewInTheDueZset(t *testing.T) {
	rdb := testredis.Start(t).Client()
	ctx := context.Background()
	p := parkingProxy(rdb, time.Hour)
	due := time.Now().Add(time.Hour)
	must(t, rdb.ZAdd(ctx, dueKey, redis.Z{Score: 1000, Member: "LEASED"}, redis.Z{Score: 999, Member: "ANEW"}).Err())
	p.park(ctx, "LEASED", due, 1000)
	p.park(ctx, "ANEW", due, 1000)
	p.park(ctx, "ABSENT", due, 1000)
	if _, ok := score(t, rdb, "LEASED"); ok {
		t.Fatal("a leased order was not taken off the due zset")
	}
	if s, ok := score(t, rdb, "ANEW"); !ok || s != 999 {
		t.Fatalf("an order scheduled anew was parked (%v %v)", s, ok)
	}
	got := rdb.LRange(ctx, parkedListKey(p.bucketEnd(due)), 0, -1).Val()
	if fmt.Sprint(got) != "[LEASED ABSENT]" {
		t.Fatalf("parked %v, want [LEASED ABSENT]", got)
	}
}

// TestRetainAndParkParksACompactedOrderAsThePollerDoes: the footprint
// benchmark's call parks a closed order compacted inside its retention,
// and parks nothing once the retention has passed (it is archived).
func TestRetainAndParkParksACompactedOrderAsThePollerDoes(t *testing.T) {
	rdb := testredis.Start(t).Client()
	ctx := context.Background()
	p := parkingProxy(rdb, time.Hour)
	now := time.Now()
	tr := &tradeRecord{OrderNo: "BENCH_PARK", TradeNo: newTradeNo(now), Channel: "alipay", AmountFen: 100,
		Subject: "s", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	_, err := p.store.allocate(ctx, tr, "", now)
	must(t, err)
	_, ev, err := p.store.markClosed(ctx, tr, now)
	must(t, err)
	p.publish(ctx, tr.OrderNo, ev)
	due, err := p.retainAndPark(ctx, tr.OrderNo, time.Now())
	must(t, err)
	if _, ok := score(t, rdb, tr.OrderNo); ok || due.Before(now.Add(time.Hour-time.Second)) {
		t.Fatalf("due %v, in the due zset: %v", due, ok)
	}
	if got := rdb.LRange(ctx, parkedListKey(p.bucketEnd(due)), 0, -1).Val(); fmt.Sprint(got) != "[BENCH_PARK]" {
		t.Fatalf("parked %v", got)
	}
	if _, err := p.retainAndPark(ctx, tr.OrderNo, time.Now().Add(2*time.Hour)); err != nil || parkedCount(t, rdb) != 1 {
		t.Fatalf("an order past its retention was parked again (%v): %d entries", err, parkedCount(t, rdb))
	}
}

// TestABucketIsAtMostAnHourAndAThirtySecondOfRetention: the bucket
// width bounds how late an order is archived and how many buckets exist.
func TestABucketIsAtMostAnHourAndAThirtySecondOfRetention(t *testing.T) {
	for _, c := range []struct{ retention, width time.Duration }{
		{720 * time.Hour, time.Hour}, {16 * time.Hour, 30 * time.Minute}, {32 * time.Second, time.Second}, {time.Second, 100 * time.Millisecond},
	} {
		p := parkingProxy(nil, c.retention)
		if w := p.parkWidth(); w != c.width {
			t.Fatalf("retention %v: width %v, want %v", c.retention, w, c.width)
		}
		due := time.UnixMilli(1_700_000_000_123)
		end := p.bucketEnd(due)
		if end < due.UnixMilli() || end-due.UnixMilli() >= c.width.Milliseconds() || end%c.width.Milliseconds() != 0 {
			t.Fatalf("retention %v: due %d in the bucket ending %d", c.retention, due.UnixMilli(), end)
		}
	}
}

// parkedCount is the number of entries in every registered bucket.
func parkedCount(t *testing.T, rdb redis.UniversalClient) int64 {
	t.Helper()
	n, err := ordersInRedisScript.Run(context.Background(), rdb, []string{"{none}", parkedKey}).Int64()
	must(t, err)
	return n
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// BenchmarkParkedFootprint measures the Redis bytes per settled order of
// the due structures: N orders parked (due times spread over the default
// retention, as orders settled continuously: ~720 buckets) against the
// same N orders in the due zset, in one run (MEMORY USAGE, SAMPLES 0):
//
//	TOLLGATE_PARK_ORDERS=100000 go test -run '^$' -bench '^BenchmarkParkedFootprint$' -benchtime 1x ./payproxy/
func BenchmarkParkedFootprint(b *testing.B) {
	n, _ := strconv.Atoi(os.Getenv("TOLLGATE_PARK_ORDERS"))
	if n <= 0 {
		n = 100_000
	}
	rdb := testredis.Start(b).Client()
	ctx := context.Background()
	p := parkingProxy(rdb, defaultRetention)
	start := time.Now()
	due := func(i int) time.Time { return start.Add(defaultRetention / time.Duration(n) * time.Duration(i)) }
	for b.Loop() {
		must(b, rdb.FlushDB(ctx).Err())
		each(n, func(i int) {
			must(b, rdb.ZAdd(ctx, dueKey, redis.Z{Score: float64(due(i).UnixMilli()), Member: benchOrder(i)}).Err())
		})
		zset := usage(ctx, b, rdb, dueKey)
		must(b, rdb.Del(ctx, dueKey).Err())
		each(n, func(i int) { must(b, p.parkUnleased(ctx, benchOrder(i), due(i))) })
		buckets := rdb.ZRange(ctx, parkedKey, 0, -1).Val()
		parked := usage(ctx, b, rdb, parkedKey)
		for _, e := range buckets {
			parked += usage(ctx, b, rdb, parkedKey+":"+e)
		}
		fmt.Printf("%d orders: due zset %d B (%.1f B/order); parked in %d buckets %d B (%.1f B/order, %.3f of the zset)\n",
			n, zset, float64(zset)/float64(n), len(buckets), parked, float64(parked)/float64(n), float64(parked)/float64(zset))
	}
}

func usage(ctx context.Context, b *testing.B, rdb *redis.Client, key string) int64 {
	v, err := rdb.MemoryUsage(ctx, key, 0).Result()
	if err != nil {
		b.Fatal(err)
	}
	return v
}
