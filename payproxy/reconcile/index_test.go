package reconcile

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/testredis"
)

// indexed writes n payments of channel at t into the index.
func indexed(t *testing.T, rdb redis.UniversalClient, channel string, at time.Time, n int) []string {
	t.Helper()
	ctx := context.Background()
	var members []string
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range n {
			r := Ref{TradeNo: fmt.Sprintf("TG%s%010d", at.UTC().Format("20060102150405"), i)}
			Index(ctx, p, channel, r, at.Add(time.Duration(i)*time.Millisecond))
			members = append(members, member(r))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(members)
	return members
}

// scanned returns the members scanIndex gives for [start, end), deduped.
func scanned(t *testing.T, rdb redis.UniversalClient, channel string, start, end time.Time) []string {
	t.Helper()
	seen := map[string]bool{}
	err := scanIndex(context.Background(), rdb, channel, start, end, func(es []indexEntry) error {
		for _, e := range es {
			seen[e.member] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, 0, len(seen))
	for m := range seen {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}

// Every paid order keeps its index entry as long as it is in Redis (issue
// 17): a day of a busy channel must not be one big zset (a skiplist entry
// costs ~122 bytes, a listpack one ~43).
func TestADaysIndexOfManyPaymentsIsKeptInSmallListpackZsets(t *testing.T) {
	rdb := testredis.Start(t).Client()
	ctx := context.Background()
	day := time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)
	want := indexed(t, rdb, "alipay", day, 20000)
	keys, err := rdb.Keys(ctx, DayKey("alipay", day)+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if enc := rdb.ObjectEncoding(ctx, k).Val(); enc != "listpack" {
			t.Fatalf("%s holds %d entries as a %s", k, rdb.ZCard(ctx, k).Val(), enc)
		}
		if ttl := rdb.TTL(ctx, k).Val(); ttl <= 0 {
			t.Fatalf("%s has no expiry (%v)", k, ttl)
		}
	}
	got := scanned(t, rdb, "alipay", day.Add(-time.Hour), day.Add(time.Hour))
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("the scan gave %d entries, want %d", len(got), len(want))
	}
	if n := len(scanned(t, rdb, "alipay", day.Add(time.Hour), day.Add(2*time.Hour))); n != 0 {
		t.Fatalf("an hour with no payment gave %d entries", n)
	}
}

// An upgrade keeps the days the previous release indexed in one zset per
// day: they are still reconciled, and an archival still removes their
// entries.
func TestADayIndexedByThePreviousReleaseIsStillReadAndCleaned(t *testing.T) {
	rdb := testredis.Start(t).Client()
	ctx := context.Background()
	day := time.Date(2026, 12, 1, 23, 59, 30, 0, time.UTC)
	old := []string{"pTG_OLD_1", "rRF_OLD_2"}
	for _, m := range old {
		if err := rdb.ZAdd(ctx, DayKey("wechat", day), redis.Z{Score: float64(day.UnixMilli()), Member: m}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	fresh := indexed(t, rdb, "wechat", day, 3)
	got := scanned(t, rdb, "wechat", day.Add(-time.Hour), day.Add(time.Hour))
	want := append(append([]string{}, fresh...), old...)
	sort.Strings(want)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("scanned %v, want %v", got, want)
	}
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		Unindex(ctx, p, "wechat", old[0], day)
		Unindex(ctx, p, "wechat", fresh[0], day)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got = scanned(t, rdb, "wechat", day.Add(-time.Hour), day.Add(time.Hour))
	want = []string{fresh[1], fresh[2], old[1]}
	sort.Strings(want)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after unindexing %s and %s: %v, want %v", old[0], fresh[0], got, want)
	}
}
