package refresh

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/testcaddy"
	"github.com/tollgate/tollgate/internal/testredis"
)

// The refresh race of TestFiftyConcurrentRefreshesOfOneTokenRotateOnce, on
// a real three-master Redis Cluster: the session hash and the user's index
// share a hash tag, so the one script per refresh runs on one slot.
func TestRefreshRaceOnARedisCluster(t *testing.T) {
	testKeys(t)
	cluster := testredis.StartCluster(t, 3)
	backend := startBackend(t)
	port := testcaddy.FreePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	testcaddy.Start(t, "", siteBlock(port, cluster.URL(), backend.hostPort(), ""))

	first := login(t, base, "cluster-user").pair.RefreshToken
	sid := sidOf(t, first)
	for i, r := range raceRefresh(t, []string{base}, first, 50) {
		if r.status != http.StatusOK || genOf(t, r.pair.RefreshToken) != 2 {
			t.Fatalf("caller %d: %d %s", i, r.status, r.raw)
		}
	}
	gen, err := cluster.Client().HGet(context.Background(), sessionKey(testRealm, "cluster-user", sid), "gen").Result()
	if err != nil || gen != "2" {
		t.Fatalf("stored gen %q (%v): want exactly one rotation", gen, err)
	}
	// Logout still reaches every watcher through the cluster's pub/sub.
	expectStatus(t, post(t, base+"/logout", "", "", "Refresh-Token", first), http.StatusOK, "")
}

// With wait_replicas=1 every answered login has reached the replica, so a
// Sentinel failover in the middle of traffic loses no session: each one
// still refreshes on the promoted master.
func TestFailoverLosesNoAcknowledgedSession(t *testing.T) {
	testKeys(t)
	set := testredis.StartSentinel(t, testredis.WithAOF("always"))
	backend := startBackend(t)
	port := testcaddy.FreePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	testcaddy.Start(t, "", siteBlock(port, set.URL()+"?wait_replicas=1&wait_timeout=500ms", backend.hostPort(),
		"refresh_ttl 60s\n\t\tsession_max 120s\n\t\treuse_grace 30s"))

	var mu sync.Mutex
	var acked []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				r := post(t, base+"/login", "application/json", fmt.Sprintf(`{"user":"u%d-%d"}`, w, i))
				if r.status == http.StatusOK {
					mu.Lock()
					acked = append(acked, r.pair.RefreshToken)
					mu.Unlock()
				} else if r.status != http.StatusServiceUnavailable {
					t.Errorf("login during failover: %d %s", r.status, r.raw)
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	set.Failover()
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	if len(acked) == 0 {
		t.Fatal("no login was answered")
	}
	// Refreshes write too, and with wait_replicas they need a replica again:
	// wait for Sentinel to attach the old master to the new one.
	set.WaitReplicaOfNewMaster()
	for i, rt := range acked {
		if r := refreshUntilAnswered(t, base, rt); r.status != http.StatusOK {
			t.Fatalf("acknowledged session %d of %d lost in the failover: %d %s", i, len(acked), r.status, r.raw)
		}
	}
	t.Logf("%d acknowledged sessions, all alive after the failover", len(acked))
}

// refreshUntilAnswered retries a 503 (the client's documented behaviour
// while Redis fails over) until another answer comes.
func refreshUntilAnswered(t *testing.T, base, rt string) response {
	t.Helper()
	var r response
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if r = refreshWith(t, base, rt); r.status != http.StatusServiceUnavailable {
			return r
		}
	}
	return r
}
