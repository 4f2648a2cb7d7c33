package revocation

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/tollgate/tollgate/internal/redisclient"
	"github.com/tollgate/tollgate/internal/testredis"
)

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRevokedSessionReachesEveryWatcherWithinASecond(t *testing.T) {
	srv := testredis.Start(t)
	w, err := Acquire(redisclient.Config{URL: srv.URL()}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Release()
	waitFor(t, "initial load", w.Loaded)

	start := time.Now()
	if err := Revoke(context.Background(), srv.Client(), time.Now().Add(time.Minute), "sid-a", "sid-b"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "pub/sub delivery", func() bool { return w.Revoked("sid-a") && w.Revoked("sid-b") })
	if d := time.Since(start); d > time.Second {
		t.Errorf("revocation took %s, want under 1s", d)
	}
	if w.Revoked("sid-c") || w.Revoked("") {
		t.Error("an unrevoked session is reported revoked")
	}
}

func TestWatcherCatchesUpAfterRedisRestart(t *testing.T) {
	srv := testredis.Start(t, testredis.WithAOF("always"))
	w, err := Acquire(redisclient.Config{URL: srv.URL()}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Release()
	waitFor(t, "initial load", w.Loaded)

	srv.Restart()
	// Written while the watcher's subscription is still broken: only the
	// reload after re-subscribing can bring it in.
	c := srv.Client()
	if err := c.ZAdd(context.Background(), Key, redisZ(time.Now().Add(time.Minute), "sid-missed")).Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "reload after reconnect", func() bool { return w.Revoked("sid-missed") })
}

func TestExpiredRevocationsAreForgotten(t *testing.T) {
	srv := testredis.Start(t)
	w, err := Acquire(redisclient.Config{URL: srv.URL()}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Release()
	waitFor(t, "initial load", w.Loaded)
	if err := Revoke(context.Background(), srv.Client(), time.Now().Add(-2*time.Second), "old"); err != nil {
		t.Fatal(err)
	}
	if err := Revoke(context.Background(), srv.Client(), time.Now().Add(time.Minute), "new"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "new revocation", func() bool { return w.Revoked("new") })
	if w.Revoked("old") {
		t.Error("a revocation past its expiry still rejects")
	}
}

// The revoked set has no TTL of its own (its entries have different
// times): every Revoke trims, in the same MULTI, every entry whose time
// has passed, so the set holds at most the revocations of the last
// access_ttl + MaxLeeway + a margin.
func TestEveryRevokeTrimsTheEntriesWhoseTimeHasPassed(t *testing.T) {
	srv := testredis.Start(t)
	c := srv.Client()
	ctx := context.Background()
	for i := range 1000 {
		if err := c.ZAdd(ctx, Key, redisZ(time.Now().Add(-time.Duration(i+1)*time.Second), "stale-"+strconv.Itoa(i))).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := Revoke(ctx, c, time.Now().Add(time.Minute), "fresh"); err != nil {
		t.Fatal(err)
	}
	members, err := c.ZRange(ctx, Key, 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(members) != 1 || members[0] != "fresh" {
		t.Fatalf("after one revocation the set holds %d entries, want only the fresh one: %v…", len(members), members[:min(3, len(members))])
	}
}

func TestWatcherIsSharedAndStopsOnLastRelease(t *testing.T) {
	srv := testredis.Start(t)
	a, _ := Acquire(redisclient.Config{URL: srv.URL()}, zap.NewNop())
	b, _ := Acquire(redisclient.Config{URL: srv.URL()}, zap.NewNop())
	if a != b {
		t.Fatal("two acquisitions of one URL gave two watchers")
	}
	a.Release()
	select {
	case <-b.done:
		t.Fatal("watcher stopped while still in use")
	default:
	}
	b.Release()
	select {
	case <-b.done:
	case <-time.After(3 * time.Second):
		t.Fatal("watcher goroutine did not stop after the last release")
	}
}

func redisZ(until time.Time, sid string) redis.Z {
	return redis.Z{Score: float64(until.Unix()), Member: sid}
}

func TestMembersOfDifferentRealmsNeverCollide(t *testing.T) {
	if Member("", "abc") != "abc" {
		t.Errorf("the default realm's entries are the bare sids: %q", Member("", "abc"))
	}
	seen := map[string]string{}
	for _, realm := range []string{"a", "a:b", "a%3Ab", "https://x.example/", "x y", "{u:1}", "é"} {
		m := Member(realm, "s1")
		if strings.ContainsAny(RealmTag(realm), ": {}") {
			t.Errorf("tag of %q holds a separator: %q", realm, RealmTag(realm))
		}
		if other, dup := seen[m]; dup {
			t.Errorf("realms %q and %q share the entry %q", realm, other, m)
		}
		seen[m] = realm
	}
}
