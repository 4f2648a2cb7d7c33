package payproxy_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/paysim"
	"github.com/tollgate/tollgate/internal/testredis"
)

// lockServers starts n independent redis-servers and puts the per-order
// lock on them (lock_redis); trades stay on e.redis.
func lockServers(t *testing.T, e *env, n int) []*testredis.Server {
	t.Helper()
	servers := make([]*testredis.Server, n)
	urls := make([]string, n)
	for i := range servers {
		servers[i] = testredis.Start(t)
		urls[i] = servers[i].URL()
	}
	e.extra += "\t\tlock_redis " + strings.Join(urls, " ") + "\n"
	return servers
}

// TestQuorumLockSurvivesALockServerStoppedMidStorm: 100 concurrent creates
// of one order over two tollgate instances, the lock on three servers, and
// the server holding the lock is stopped while the provider call runs (and
// lasts longer than lock_ttl, so the watchdog must extend on the two
// left): one creation at the provider, 100 identical answers.
func TestQuorumLockSurvivesALockServerStoppedMidStorm(t *testing.T) {
	e := newEnv(t)
	e.options["provider_timeout"] = "5s"
	servers := lockServers(t, e, 3)
	a, b := twoInstances(t, e)
	const order = "QUORUM_STORM_1"
	e.sim.SetFault(paysim.Fault{Operation: "alipay.trade.precreate", Mode: "delay", DelayMS: 1500}) // lock_ttl is 1s
	answers := make([]response, 100)
	stormStart := time.Now()
	var wg sync.WaitGroup
	for i := range answers {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			base := []string{a, b}[i%2]
			answers[i] = do(t, "POST", base+"/pay/trades", map[string]any{"order_no": order, "amount_fen": 700, "channel": "alipay", "subject": "s"})
		}(i)
	}
	stopped := stopALockHolder(t, servers, order)
	wg.Wait()
	t.Logf("stopped lock server %d while it held the lock; storm took %s", stopped, time.Since(stormStart))
	for i, r := range answers {
		if r.Status != 200 || r.str("trade_no") != answers[0].str("trade_no") || r.str("state") != "PAYING" {
			t.Fatalf("answer %d differs: %d %s vs %s", i, r.Status, r.Raw, answers[0].Raw)
		}
	}
	if n := e.sim.Calls()["alipay.trade.precreate"]; n != 1 {
		t.Fatalf("provider saw %d creations, want 1", n)
	}
}

// stopALockHolder waits until one of the lock servers holds the order's
// lock (the storm is in flight) and stops that server; it returns which.
func stopALockHolder(t *testing.T, servers []*testredis.Server, order string) int {
	t.Helper()
	key := "tollgate:pay:{o:" + order + "}:lock"
	stopped := -1
	eventually(t, 5*time.Second, "a lock on a lock server", func() bool {
		for i, s := range servers {
			c := s.Client()
			if n, _ := c.Exists(context.Background(), key).Result(); n == 1 {
				s.Stop()
				stopped = i
				return true
			}
		}
		return false
	})
	return stopped
}

// TestQuorumLockWithAMajorityDownAnswers503AndCreatesNothing: with two of
// three lock servers down no lock can be granted; the create answers 503
// without waiting out the lock wait (2·provider_timeout + lock_ttl = 11s),
// the provider is not called and nothing is stored.
func TestQuorumLockWithAMajorityDownAnswers503AndCreatesNothing(t *testing.T) {
	e := newEnv(t)
	e.options["provider_timeout"] = "5s"
	servers := lockServers(t, e, 3)
	e.start()
	servers[0].Stop()
	servers[2].Stop()
	for i, ch := range []string{"alipay", "wechat"} {
		order := fmt.Sprintf("QUORUM_DOWN_%d", i)
		start := time.Now()
		wantStatus(t, e.create(order, ch, 100), http.StatusServiceUnavailable, "redis_unavailable")
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("%s: the 503 took %s: the lock wait was waited out", ch, d)
		}
		for k := range e.redis.Dump() {
			if strings.Contains(k, order) {
				t.Fatalf("%s: %s was stored", ch, k)
			}
		}
	}
	if calls := e.sim.Calls(); calls["alipay.trade.precreate"]+calls["wechat.native.prepay"] != 0 {
		t.Fatalf("provider called: %v", calls)
	}
}
