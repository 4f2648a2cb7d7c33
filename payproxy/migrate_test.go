package payproxy_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/testcaddy"
	"github.com/tollgate/tollgate/internal/testredis"
)

// The due migration (migrate.go): orders the previous release took off the
// due set are put back into it once per deployment, so that retention
// archives them.

const (
	dueSet        = "tollgate:pay:{due}"
	migratedMark  = "tollgate:pay:{due}:migrated:v1"
	migratingMark = "tollgate:pay:{due}:migrating:v1"
)

// settledOffTheDueSet pays order on an instance whose poller never runs
// and leaves it as the previous release did: records in Redis, off the
// due set. It returns the trade_no.
func settledOffTheDueSet(t *testing.T, e *env, rdb redis.UniversalClient, order string) string {
	t.Helper()
	tn := e.paidOrder(order, "alipay", 1000)
	eventually(t, 10*time.Second, order+" trade.paid delivered", func() bool { return len(e.hooks.ofType("trade.paid", order)) == 1 })
	must(t, rdb.ZRem(context.Background(), dueSet, order).Err())
	return tn
}

// archivedAway waits until the order's trade record has left Redis
// (alone, the nine Cluster orders go in ~4 s; under make test's load, with
// every package's tests at once on two cores, 20 s was twice not enough).
func archivedAway(t *testing.T, rdb redis.UniversalClient, order, tn string) {
	t.Helper()
	eventually(t, time.Minute, order+" archived", func() bool { return len(existing(t, rdb, orderKeys(order, tn)[0])) == 0 })
}

// restartPoller reloads the in-process instance with another poll
// interval: its poller (and the migration) start again.
func restartPoller(t *testing.T, e *env, inst *testcaddy.Instance, interval string) {
	t.Helper()
	e.options["poll_interval"] = interval
	inst.Reload(e.caddyfile(e.port))
	testcaddy.Settle(t, e.base)
	// A kept-alive connection to the replaced server is closed by it: a
	// POST on it would fail with EOF (and is not retried).
	client.CloseIdleConnections()
}

// TestOrdersSettledBeforeTheUpgradeOnEveryClusterMasterAreArchived: on a
// three-master Cluster the migration scans each master, not the one node
// a Cluster client's SCAN would reach: pre-upgrade orders spread over the
// slots all leave Redis.
func TestOrdersSettledBeforeTheUpgradeOnEveryClusterMasterAreArchived(t *testing.T) {
	e := newEnv(t)
	c := testredis.StartCluster(t, 3)
	e.redisURL = c.URL()
	e.extra = "\t\tretention 1s\n"
	e.options["poll_interval"] = "1h"
	inst := e.start()
	rdb := c.Client()
	trades := map[string]string{}
	for i := range 9 {
		order := fmt.Sprintf("MIG_CLUSTER_%d", i)
		trades[order] = settledOffTheDueSet(t, e, rdb, order)
	}
	restartPoller(t, e, inst, "100ms")
	for order, tn := range trades {
		archivedAway(t, rdb, order, tn)
	}
	eventually(t, 10*time.Second, "the marker", func() bool { return rdb.Exists(context.Background(), migratedMark).Val() == 1 })
	if n := rdb.Exists(context.Background(), migratingMark).Val(); n != 0 {
		t.Fatalf("the lease %s outlives the completed pass", migratingMark)
	}
}

// TestTheDueMigrationRunsOncePerDeployment: once a pass has completed
// (the marker), a restart does not scan again: an order taken off the due
// set after it stays off (nothing of the previous release is left to
// find), while the poller goes on archiving due orders. Deleting the
// marker makes the next start-up pass again.
func TestTheDueMigrationRunsOncePerDeployment(t *testing.T) {
	e := newEnv(t)
	e.extra = "\t\tretention 1s\n"
	e.options["poll_interval"] = "1h"
	inst := e.start()
	rdb := e.redis.Client()
	ctx := context.Background()
	first := settledOffTheDueSet(t, e, rdb, "MIG_ONCE_FIRST")
	restartPoller(t, e, inst, "100ms")
	archivedAway(t, rdb, "MIG_ONCE_FIRST", first)
	eventually(t, 10*time.Second, "the marker", func() bool { return rdb.Exists(ctx, migratedMark).Val() == 1 })

	restartPoller(t, e, inst, "1h")
	later := settledOffTheDueSet(t, e, rdb, "MIG_ONCE_LATER")
	restartPoller(t, e, inst, "150ms")
	// The restarted poller archives an order paid now: by then the
	// start-up's migration has long looked at the marker.
	due := e.paidOrder("MIG_ONCE_DUE", "wechat", 500)
	archivedAway(t, rdb, "MIG_ONCE_DUE", due)
	if _, err := rdb.ZScore(ctx, dueSet, "MIG_ONCE_LATER").Result(); err != redis.Nil {
		t.Fatalf("MIG_ONCE_LATER put into the due set (%v) by a restart after the marker: the migration ran twice", err)
	}
	if got := existing(t, rdb, orderKeys("MIG_ONCE_LATER", later)[0]); len(got) != 1 {
		t.Fatalf("MIG_ONCE_LATER's records: %v", got)
	}

	must(t, rdb.Del(ctx, migratedMark).Err())
	restartPoller(t, e, inst, "100ms")
	archivedAway(t, rdb, "MIG_ONCE_LATER", later)
	eventually(t, 10*time.Second, "the marker again", func() bool { return rdb.Exists(ctx, migratedMark).Val() == 1 })
}

// TestAMigrationLeftByADeadInstanceIsMadeByAnotherOnceItsLeaseRunsOut:
// another instance took the lease and died mid-pass. While its lease
// lives nobody else migrates (nor takes the lease over); once it runs out
// (deleted here: its expiry is Redis's), this instance makes the pass.
func TestAMigrationLeftByADeadInstanceIsMadeByAnotherOnceItsLeaseRunsOut(t *testing.T) {
	e := newEnv(t)
	e.extra = "\t\tretention 1s\n"
	e.options["poll_interval"] = "1h"
	inst := e.start()
	rdb := e.redis.Client()
	ctx := context.Background()
	tn := settledOffTheDueSet(t, e, rdb, "MIG_LEASE")
	const dead = "lease-of-a-dead-instance"
	must(t, rdb.Set(ctx, migratingMark, dead, time.Hour).Err())
	restartPoller(t, e, inst, "100ms")
	// Many polls later (an order paid now is archived), the migration,
	// retrying every poll, still left the lease and the order alone.
	archivedAway(t, rdb, "MIG_LEASE_DUE", e.paidOrder("MIG_LEASE_DUE", "wechat", 500))
	if _, err := rdb.ZScore(ctx, dueSet, "MIG_LEASE").Result(); err != redis.Nil {
		t.Fatalf("MIG_LEASE put into the due set (%v) while another instance's lease lived", err)
	}
	if v := rdb.Get(ctx, migratingMark).Val(); v != dead {
		t.Fatalf("the lease of another instance was taken over while it lived: %q", v)
	}
	if rdb.Exists(ctx, migratedMark).Val() != 0 {
		t.Fatal("marker set while another instance held the lease")
	}
	must(t, rdb.Del(ctx, migratingMark).Err())
	archivedAway(t, rdb, "MIG_LEASE", tn)
	eventually(t, 10*time.Second, "the marker", func() bool { return rdb.Exists(ctx, migratedMark).Val() == 1 })
}
