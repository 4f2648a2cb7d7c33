package payproxy_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/testredis"
)

const (
	dueZset       = "tollgate:pay:{due}"
	parkedBuckets = "tollgate:pay:{due}:parked"
)

// countParked counts ARGV[1]'s entries in every registered parked list,
// and all entries, at one instant (one script: a sample taken between an
// unpark and the park that follows must not count an order twice).
const countParked = `
local mine, all = 0, 0
for _, b in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  for _, o in ipairs(redis.call('LRANGE', KEYS[1] .. ':' .. b, 0, -1)) do
    all = all + 1
    if o == ARGV[1] then mine = mine + 1 end
  end
end
return {mine, all}
`

// parkedEntries counts order's entries in the parked lists (every
// registered bucket), and all entries of every order.
func parkedEntries(t testing.TB, rdb redis.UniversalClient, order string) (mine, all int) {
	t.Helper()
	n, err := rdb.Eval(context.Background(), countParked, []string{parkedBuckets}, order).Int64Slice()
	if err != nil || len(n) != 2 {
		t.Fatalf("counting parked entries: %v %v", n, err)
	}
	return int(n[0]), int(n[1])
}

// inDueZset tells whether order has an entry in the due zset.
func inDueZset(t testing.TB, rdb redis.UniversalClient, order string) bool {
	t.Helper()
	_, err := rdb.ZScore(context.Background(), dueZset, order).Result()
	if err != nil && err != redis.Nil {
		t.Fatal(err)
	}
	return err == nil
}

// scheduled tells whether order is scheduled: in the due zset or parked.
func scheduled(t testing.TB, rdb redis.UniversalClient, order string) bool {
	mine, _ := parkedEntries(t, rdb, order)
	return inDueZset(t, rdb, order) || mine > 0
}

// waitParked waits until order has no due-zset entry and one parked entry.
func waitParked(t testing.TB, rdb redis.UniversalClient, order string) {
	t.Helper()
	eventually(t, 15*time.Second, order+" parked", func() bool {
		mine, _ := parkedEntries(t, rdb, order)
		return mine == 1 && !inDueZset(t, rdb, order)
	})
}

// parkedThenArchived pays n orders, sees each parked (no due-zset entry,
// one list entry) while it waits for its retention, then archived once
// with every key gone, and nothing left parked.
func parkedThenArchived(t *testing.T, e *env, rdb redis.UniversalClient, prefix string, n int) {
	t.Helper()
	trades := make([]string, n)
	for i := range trades {
		order := fmt.Sprintf("%s_%d", prefix, i)
		trades[i] = e.paidOrder(order, []string{"alipay", "wechat"}[i%2], 100+int64(i))
		waitParked(t, rdb, order)
	}
	for i, tn := range trades {
		order := fmt.Sprintf("%s_%d", prefix, i)
		eventually(t, 30*time.Second, order+" archived", func() bool {
			return len(e.hooks.ofType("trade.archived", order)) > 0 && len(existing(t, rdb, orderKeys(order, tn)...)) == 0
		})
	}
	eventually(t, 10*time.Second, "nothing parked", func() bool {
		_, all := parkedEntries(t, rdb, "")
		n, err := rdb.Exists(context.Background(), parkedBuckets).Result()
		return all == 0 && err == nil && n == 0
	})
	e.quiesce()
	for i := range trades {
		order := fmt.Sprintf("%s_%d", prefix, i)
		if got := e.hooks.ofType("trade.archived", order); len(got) != 1 || got[0].Data.PaidFen != 100+int64(i) {
			t.Fatalf("%s: trade.archived %+v", order, got)
		}
		if inDueZset(t, rdb, order) {
			t.Fatalf("%s archived but still in the due zset", order)
		}
	}
}

// TestASettledOrderWaitingForArchivalIsParkedOutOfTheDueZsetAndArchivedOnce:
// with a retention of 3 s, a paid order, once compacted, holds no
// due-zset entry but one entry in a parked list, and is archived once
// when its retention has passed, leaving no parked entry behind.
func TestASettledOrderWaitingForArchivalIsParkedOutOfTheDueZsetAndArchivedOnce(t *testing.T) {
	e := newEnv(t)
	e.extra = "\t\tretention 3s\n"
	e.start()
	parkedThenArchived(t, e, e.redis.Client(), "PARK_ONE", 2)
}

// TestParkedOrdersAreArchivedOnRedisCluster: the same on a real
// three-master Cluster (the park and unpark scripts' keys share the
// {due} slot).
func TestParkedOrdersAreArchivedOnRedisCluster(t *testing.T) {
	e := newEnv(t)
	c := testredis.StartCluster(t, 3)
	e.redisURL = c.URL()
	e.extra = "\t\tretention 3s\n"
	e.start()
	parkedThenArchived(t, e, c.Client(), "PARK_CLUSTER", 4)
}

// TestTwoInstancesUnparkingTheSameBucketsArchiveEachOrderOnce: two
// instances share one Redis; 12 paid orders are parked, and both
// instances' pollers unpark the same buckets: each order is archived
// once.
func TestTwoInstancesUnparkingTheSameBucketsArchiveEachOrderOnce(t *testing.T) {
	e := newEnv(t)
	e.extra = "\t\tretention 3s\n"
	twoInstances(t, e)
	parkedThenArchived(t, e, e.redis.Client(), "PARK_TWO", 12)
}

// TestAParkedOrderTouchedAgainIsArchivedOnceAndItsListEntriesDoNotAccumulate:
// a parked order is refunded twice (each refund schedules it anew in the
// zset, and it is parked again a retention after the refund), and is
// scheduled anew five more times without a change (as a payment
// notification does): it holds at most one list entry per touch plus one,
// and untouched their number never grows (a stale entry comes back at its
// bucket's end and collapses or is parked again); it is archived once,
// with the refunds, and leaves no parked entry.
func TestAParkedOrderTouchedAgainIsArchivedOnceAndItsListEntriesDoNotAccumulate(t *testing.T) {
	e := newEnv(t)
	e.extra = "\t\tretention 4s\n"
	e.start()
	rdb := e.redis.Client()
	ctx := context.Background()
	const order = "PARK_TOUCHED"
	tn := e.paidOrder(order, "wechat", 1000)
	waitParked(t, rdb, order)
	touches := 0
	for i := range 2 {
		rn := fmt.Sprintf("PARK_TOUCHED_R%d", i)
		wantStatus(t, e.refund(order, rn, 100), 200, "")
		e.eventuallyRefund(t, rn, "SUCCESS", 15*time.Second)
		touches++
		eventually(t, 15*time.Second, order+" parked again", func() bool {
			mine, _ := parkedEntries(t, rdb, order)
			return mine >= 1 && !inDueZset(t, rdb, order)
		})
	}
	for range 5 {
		if err := rdb.ZAddNX(ctx, dueZset, redis.Z{Score: float64(time.Now().UnixMilli()), Member: order}).Err(); err != nil {
			t.Fatal(err)
		}
		touches++
		eventually(t, 15*time.Second, order+" parked again", func() bool { return !inDueZset(t, rdb, order) })
	}
	// From now on nothing touches the order: unparking its stale entries
	// never adds one (each comes back, collapses or is parked again).
	most, _ := parkedEntries(t, rdb, order)
	if most > touches+1 {
		t.Fatalf("%s holds %d parked entries after %d touches", order, most, touches)
	}
	// A sample may fall between an unpark (its bucket's entries gone) and
	// the park that follows (one entry back): the number never exceeds
	// what the touches left.
	for deadline := time.Now().Add(30 * time.Second); len(e.hooks.ofType("trade.archived", order)) == 0 && time.Now().Before(deadline); {
		if mine, _ := parkedEntries(t, rdb, order); mine > most {
			t.Fatalf("%s's parked entries grew from %d to %d untouched", order, most, mine)
		}
		time.Sleep(20 * time.Millisecond)
	}
	eventually(t, 15*time.Second, order+"'s keys gone and nothing parked", func() bool {
		mine, all := parkedEntries(t, rdb, order)
		return len(existing(t, rdb, orderKeys(order, tn)[:5]...)) == 0 && mine == 0 && all == 0 && !inDueZset(t, rdb, order)
	})
	e.quiesce()
	got := e.hooks.ofType("trade.archived", order)
	if len(got) != 1 || got[0].Data.RefundedFen != 200 || len(got[0].Data.Refunds) != 2 {
		t.Fatalf("trade.archived of an order touched after parking: %+v", got)
	}
	t.Logf("at most %d parked entries of the order after %d touches", most, touches)
}

// TestTheOrdersGaugeCountsParkedOrders: two paid orders parked and one
// unpaid order in the due zset are three orders in Redis.
func TestTheOrdersGaugeCountsParkedOrders(t *testing.T) {
	e := newEnv(t)
	e.extra = "\t\tretention 1h\n"
	inst := e.start()
	rdb := e.redis.Client()
	for _, o := range []string{"GAUGE_PARKED_1", "GAUGE_PARKED_2"} {
		e.paidOrder(o, "alipay", 100)
		waitParked(t, rdb, o)
	}
	wantStatus(t, e.create("GAUGE_OPEN", "wechat", 100), 200, "")
	e.quiesce()
	m := do(t, "GET", inst.AdminURL()+"/metrics", nil)
	if !strings.Contains(string(m.Raw), "\ntollgate_payproxy_orders_in_redis 3\n") {
		t.Fatalf("metrics lack tollgate_payproxy_orders_in_redis 3 (two parked, one open)")
	}
}
