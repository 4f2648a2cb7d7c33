package payproxy_test

import (
	"context"
	"fmt"
	"hash/crc32"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/testredis"
)

// tradeBucket is the hash that holds trade tn's index while its order has
// records (store.go's layout, spelled here on its own: 4 hex digits of
// crc32 IEEE mod 65536).
func tradeBucket(tn string) string {
	return fmt.Sprintf("tollgate:pay:{ti:%04x}", crc32.ChecksumIEEE([]byte(tn))%65536)
}

// tradeIndexOf returns the order trade tn's bucket field names and the one
// its key of its own names ("": none).
func tradeIndexOf(t *testing.T, rdb redis.UniversalClient, tn string) (field, key string) {
	t.Helper()
	ctx := context.Background()
	field, err := rdb.HGet(ctx, tradeBucket(tn), tn).Result()
	if err != nil && err != redis.Nil {
		t.Fatal(err)
	}
	key, err = rdb.Get(ctx, "tollgate:pay:{t:"+tn+"}").Result()
	if err != nil && err != redis.Nil {
		t.Fatal(err)
	}
	return field, key
}

// bucketed returns which of the trades have a field in their bucket.
func bucketed(t *testing.T, rdb redis.UniversalClient, trades ...string) []string {
	t.Helper()
	var out []string
	for _, tn := range trades {
		if field, _ := tradeIndexOf(t, rdb, tn); field != "" {
			out = append(out, tn)
		}
	}
	return out
}

// payIndexedAsPreviousRelease creates a trade of order, rewrites its
// index as the release before the buckets wrote it (a key of its own, no
// expiry, no field) and has the buyer pay it.
func payIndexedAsPreviousRelease(t *testing.T, e *env, order, channel string) string {
	t.Helper()
	ctx, rdb := context.Background(), e.redis.Client()
	r := e.create(order, channel, 1000)
	wantStatus(t, r, http.StatusOK, "")
	tn := r.str("trade_no")
	must(t, rdb.HDel(ctx, tradeBucket(tn), tn).Err())
	must(t, rdb.Set(ctx, "tollgate:pay:{t:"+tn+"}", order, 0).Err())
	if err := e.sim.Pay(tn); err != nil {
		t.Fatal(err)
	}
	return tn
}

// TestAPaidOrdersTradeIndexIsAFieldOfItsBucketAndNoKeyOfItsOwn: a key per
// trade costs ~130 bytes of Redis, a field of a small hash ~50; a paid
// order (its notification found it through the index) keeps its trade's
// index in its listpack-encoded bucket only.
func TestAPaidOrdersTradeIndexIsAFieldOfItsBucketAndNoKeyOfItsOwn(t *testing.T) {
	e := newEnv(t)
	e.extra = "\t\tretention 1h\n"
	e.start()
	rdb := e.redis.Client()
	const order = "TI_PAID"
	tn := e.paidOrder(order, "alipay", 1000)
	if field, key := tradeIndexOf(t, rdb, tn); field != order || key != "" {
		t.Fatalf("trade %s of paid order %s: bucket field %q, key of its own %q", tn, order, field, key)
	}
	if enc := rdb.ObjectEncoding(context.Background(), tradeBucket(tn)).Val(); enc != "listpack" {
		t.Fatalf("bucket %s is encoded %q", tradeBucket(tn), enc)
	}
}

// TestAnArchivedOrdersTradeIndexLeavesItsBucketForAKeyThatExpiresWithItsMarker:
// the bucket has no expiry of its own; an archived order's trade index
// moves to a key that lives as long as the marker (a late notification
// is acknowledged inside it) and then goes by itself.
func TestAnArchivedOrdersTradeIndexLeavesItsBucketForAKeyThatExpiresWithItsMarker(t *testing.T) {
	e := newEnv(t)
	e.extra = "\t\tretention 8s\n"
	e.start()
	archivedIndexMoves(t, e, e.redis.Client(), "TI_ARCHIVED", 8*time.Second)
}

// TestOnAClusterAnArchivedOrdersTradeIndexMovesToAKeyExpiringWithItsMarker:
// the same on a real Cluster, where the bucket, the index key and the
// order's keys live on other slots (TestTradeIndexIsWrittenBeforeItsTradeOnACluster
// shows the bucket on another master).
func TestOnAClusterAnArchivedOrdersTradeIndexMovesToAKeyExpiringWithItsMarker(t *testing.T) {
	e := newEnv(t)
	c := testredis.StartCluster(t, 3)
	e.redisURL = c.URL()
	e.extra = "\t\tretention 8s\n"
	e.start()
	archivedIndexMoves(t, e, c.Client(), "TI_CLUSTER", 8*time.Second)
}

// archivedIndexMoves pays order, waits for its archival and checks its
// trade index moved from the bucket to a key expiring with the marker.
func archivedIndexMoves(t *testing.T, e *env, rdb redis.UniversalClient, order string, retention time.Duration) {
	t.Helper()
	ctx := context.Background()
	tn := e.paidOrder(order, "alipay", 1000)
	if field, _ := tradeIndexOf(t, rdb, tn); field != order {
		t.Fatalf("before archival the bucket field names %q", field)
	}
	marker := "tollgate:pay:{o:" + order + "}:archived"
	eventually(t, 40*time.Second, "archived, its index moved", func() bool {
		field, key := tradeIndexOf(t, rdb, tn)
		return len(existing(t, rdb, orderKeys(order, tn)[:5]...)) == 0 && field == "" && key == order
	})
	if ttl := rdb.PTTL(ctx, "tollgate:pay:{t:"+tn+"}").Val(); ttl <= 0 || ttl > retention {
		t.Fatalf("the archived trade's index expires in %v, want the retention %v", ttl, retention)
	}
	if mttl := rdb.PTTL(ctx, marker).Val(); mttl <= 0 {
		t.Fatalf("marker PTTL %v", mttl)
	}
	// A late notification inside the marker's life finds the order.
	finishAcknowledged(t, e, tn)
	eventually(t, 2*retention, "the marker and the index gone by themselves", func() bool {
		field, key := tradeIndexOf(t, rdb, tn)
		return len(existing(t, rdb, marker)) == 0 && field == "" && key == ""
	})
}

// TestARestoredOrdersTradesAreIndexedInTheirBucketAgain: an order
// archived paid on trade B comes back from its marker when its retired
// QR code A is paid (a duplicate, refunded); both trades are indexed in
// their buckets again, a late notification of B is acknowledged, and at
// the second archival the indexes move to expiring keys again.
func TestARestoredOrdersTradesAreIndexedInTheirBucketAgain(t *testing.T) {
	e := newEnv(t)
	e.extra = "\t\tretention 6s\n"
	e.start()
	rdb := e.redis.Client()
	const order = "TI_RESTORED"
	a, b := e.payRetiredAfterDeletion(t, order, "alipay", func() {})
	for _, tn := range []string{a, b} {
		if field, _ := tradeIndexOf(t, rdb, tn); field != order {
			t.Fatalf("restored order %s: bucket field of %s names %q", order, tn, field)
		}
	}
	if r := e.get(order); r.Status != http.StatusOK || r.str("state") != "PAID" {
		t.Fatalf("status of the restored order: %d %s", r.Status, r.Raw)
	}
	if err := e.sim.Finish(b); err != nil {
		t.Fatal(err)
	}
	e.answered(t, b, "finish", func() {})
	eventually(t, 40*time.Second, "archived a second time, indexes moved", func() bool {
		if len(e.hooks.ofType("trade.archived", order)) != 2 {
			return false
		}
		for _, tn := range []string{a, b} {
			if field, key := tradeIndexOf(t, rdb, tn); field != "" || key != order {
				return false
			}
		}
		return true
	})
	for _, tn := range []string{a, b} {
		if ttl := rdb.PTTL(context.Background(), "tollgate:pay:{t:"+tn+"}").Val(); ttl <= 0 || ttl > 6*time.Second {
			t.Fatalf("index of %s expires in %v after the second archival", tn, ttl)
		}
	}
}

// TestAnArchivalNeverTakesOverATradeIndexKeyNamingAnotherOrder: an
// order's trade number is (by a fault, or a hand) named by a key of its
// own for another order; archival moves the order's field out of the
// bucket but leaves the other order's key as it was, without expiry.
func TestAnArchivalNeverTakesOverATradeIndexKeyNamingAnotherOrder(t *testing.T) {
	e := newEnv(t)
	e.extra = "\t\tretention 3s\n"
	e.start()
	rdb := e.redis.Client()
	ctx := context.Background()
	const order, other = "TI_OWN", "TI_OTHER"
	tn := e.paidOrder(order, "alipay", 1000)
	if field, _ := tradeIndexOf(t, rdb, tn); field != order {
		t.Fatalf("bucket field names %q", field)
	}
	must(t, rdb.Set(ctx, "tollgate:pay:{t:"+tn+"}", other, 0).Err())
	e.archivedOf(t, order, 20*time.Second)
	eventually(t, 10*time.Second, "the field out of the bucket", func() bool {
		field, _ := tradeIndexOf(t, rdb, tn)
		return len(existing(t, rdb, orderKeys(order, tn)[:5]...)) == 0 && field == ""
	})
	if _, key := tradeIndexOf(t, rdb, tn); key != other {
		t.Fatalf("the key naming %s now names %q", other, key)
	}
	if ttl := rdb.TTL(ctx, "tollgate:pay:{t:"+tn+"}").Val(); ttl != -1 {
		t.Fatalf("archival of %s gave %s's index an expiry: %v", order, other, ttl)
	}
}

// TestARestoreNeverTakesOverABucketFieldNamingAnotherOrder: while an
// archived order's trade index lives as a key, its bucket field is bound
// to another order; the order then comes back from its marker (its
// retired QR code paid): the field still names the other order.
func TestARestoreNeverTakesOverABucketFieldNamingAnotherOrder(t *testing.T) {
	e := newEnv(t)
	e.extra = "\t\tretention 6s\n"
	e.start()
	rdb := e.redis.Client()
	ctx := context.Background()
	const order, other = "TI_RESTORE_OWN", "TI_RESTORE_OTHER"
	a, b := e.paidOnSecondTrade(t, order, "wechat")
	e.archivedOf(t, order, 20*time.Second)
	eventually(t, 10*time.Second, "records deleted, index moved", func() bool {
		field, key := tradeIndexOf(t, rdb, b)
		return len(existing(t, rdb, orderKeys(order, b)[:5]...)) == 0 && field == "" && key == order
	})
	must(t, rdb.HSet(ctx, tradeBucket(b), b, other).Err())
	if err := e.sim.Pay(a); err != nil {
		t.Fatal(err)
	}
	e.attempted(t, a, "payment")
	if field, _ := tradeIndexOf(t, rdb, b); field != other {
		t.Fatalf("the bucket field of %s, bound to %s, now names %q", b, other, field)
	}
}

// TestATradeIndexedByThePreviousReleasesKeyIsStillFoundByANotificationAndByReconciliation:
// a trade created before the upgrade is indexed by a key of its own with
// no expiry and no bucket field; its payment notification finds the
// order, and reconciliation matches the bill's payment to it.
func TestATradeIndexedByThePreviousReleasesKeyIsStillFoundByANotificationAndByReconciliation(t *testing.T) {
	e := newEnv(t)
	e.extra = "\t\tretention 1h\n"
	inst := e.start()
	rdb := e.redis.Client()
	const order = "TI_PREVIOUS"
	tn := payIndexedAsPreviousRelease(t, e, order, "alipay")
	eventually(t, 10*time.Second, "PAID through the previous release's index", func() bool { return e.get(order).str("state") == "PAID" })
	e.notified(tn)
	rep := runReconcile(t, inst.AdminURL(), "alipay", today())
	if d, ok := diffOf(rep, tn, ""); ok {
		t.Fatalf("reconciliation of a trade indexed the previous release's way: %+v", d)
	}
	if field, key := tradeIndexOf(t, rdb, tn); field != "" || key != order {
		t.Fatalf("the previous release's index was rewritten: field %q key %q", field, key)
	}
}

// TestAPreviousReleasesTradeIndexExpiresWithItsOrdersMarker: no
// migration: the previous release's key gets its expiry at the order's
// archival.
func TestAPreviousReleasesTradeIndexExpiresWithItsOrdersMarker(t *testing.T) {
	e := newEnv(t)
	e.extra = "\t\tretention 3s\n"
	e.start()
	rdb := e.redis.Client()
	const order = "TI_PREVIOUS_ARCHIVED"
	tn := payIndexedAsPreviousRelease(t, e, order, "wechat")
	e.archivedOf(t, order, 30*time.Second)
	eventually(t, 10*time.Second, "the previous release's index expiring", func() bool {
		return rdb.PTTL(context.Background(), "tollgate:pay:{t:"+tn+"}").Val() > 0
	})
	if field, _ := tradeIndexOf(t, rdb, tn); field != "" {
		t.Fatalf("archival left a bucket field naming %q", field)
	}
}

// BenchmarkTradeIndexBytes measures Redis's used_memory per trade index
// written as a key of its own and as a field of its bucket, n of each on
// the same redis-server (TOLLGATE_INDEX_BYTES=n; skipped otherwise).
func BenchmarkTradeIndexBytes(b *testing.B) {
	n, _ := strconv.Atoi(os.Getenv("TOLLGATE_INDEX_BYTES"))
	if n <= 0 {
		b.Skip("TOLLGATE_INDEX_BYTES=<indexes> measures bytes per trade index")
	}
	rdb := testredis.Start(b).Client()
	ctx := context.Background()
	used := func() int64 {
		info := rdb.Info(ctx, "memory").Val()
		for _, l := range strings.Split(info, "\r\n") {
			if v, ok := strings.CutPrefix(l, "used_memory:"); ok {
				u, _ := strconv.ParseInt(v, 10, 64)
				return u
			}
		}
		b.Fatal("no used_memory")
		return 0
	}
	write := func(index func(p redis.Pipeliner, tn, order string)) float64 {
		must(b, rdb.FlushAll(ctx).Err())
		before := used()
		for start := 0; start < n; start += 1000 {
			_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				for i := start; i < min(n, start+1000); i++ {
					index(p, fmt.Sprintf("TG20261202075800%012d", i), fmt.Sprintf("ORDER_%010d", i))
				}
				return nil
			})
			must(b, err)
		}
		return float64(used()-before) / float64(n)
	}
	for b.Loop() {
		key := write(func(p redis.Pipeliner, tn, order string) { p.Set(ctx, "tollgate:pay:{t:"+tn+"}", order, 0) })
		field := write(func(p redis.Pipeliner, tn, order string) { p.HSet(ctx, tradeBucket(tn), tn, order) })
		b.ReportMetric(key, "B/key-index")
		b.ReportMetric(field, "B/bucket-index")
		b.ReportMetric(key/field, "key/bucket")
	}
}
