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
	"github.com/tollgate/tollgate/internal/testcaddy"
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

// TestLockServersChangedByRollingReloadsKeepOneTrade: while a rolling
// reload adds lock_redis, one instance still locks on the trade Redis and
// the other on three lock servers, so the two locks exclude nothing; the
// trade record's compare-and-set must still keep each order at one trade
// at the provider, and every client must get that trade. Storms of 100
// creates split over both instances with a provider slower than lock_ttl,
// in each phase: lock_redis on one instance only, on both, then removed
// from one again.
func TestLockServersChangedByRollingReloadsKeepOneTrade(t *testing.T) {
	e := newEnv(t)
	e.options["provider_timeout"] = "5s"
	a := e.start() // locks on the trade Redis
	port2 := testcaddy.FreePort(t)
	plain2 := e.caddyfile(port2)
	lockServers(t, e, 3)
	b := testcaddy.StartProcess(t, "", e.caddyfile(port2)) // locks on the three
	if err := testcaddy.WaitListening(fmt.Sprintf("127.0.0.1:%d", port2), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	bases := []string{e.base, fmt.Sprintf("http://127.0.0.1:%d", port2)}
	e.sim.SetFault(paysim.Fault{Operation: "alipay.trade.precreate", Mode: "delay", DelayMS: 1200}) // lock_ttl is 1s
	phases := []struct {
		name   string
		reload func()
	}{
		{"lock_redis_on_one_instance", func() {}},
		{"lock_redis_on_both", func() { a.Reload(e.caddyfile(e.port)) }},
		{"lock_redis_removed_from_one", func() { b.Reload(plain2) }},
	}
	for i, ph := range phases {
		ph.reload()
		// A reload closes the old listener's idle connections; a POST sent
		// on one would fail before reaching payproxy.
		client.CloseIdleConnections()
		order := fmt.Sprintf("LOCKMOVE_%d", i)
		answers := make([]response, 100)
		errs := make([]error, 100)
		var wg sync.WaitGroup
		for j := range answers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				answers[j], errs[j] = tryDo("POST", bases[j%2]+"/pay/trades", map[string]any{"order_no": order, "amount_fen": 700, "channel": "alipay", "subject": order})
			}()
		}
		wg.Wait()
		for j, r := range answers {
			if errs[j] != nil || r.Status != 200 || r.str("trade_no") != answers[0].str("trade_no") {
				t.Fatalf("%s: answer %d differs: %v %d %s vs %s", ph.name, j, errs[j], r.Status, r.Raw, answers[0].Raw)
			}
		}
		var trades []string
		for _, tr := range e.sim.Trades() {
			if tr.Subject == order {
				trades = append(trades, tr.OutTradeNo+"("+tr.State+")")
			}
		}
		if len(trades) != 1 || !strings.HasPrefix(trades[0], answers[0].str("trade_no")+"(") {
			t.Fatalf("%s: trades at the provider %v, clients were answered %s", ph.name, trades, answers[0].str("trade_no"))
		}
		t.Logf("%s: one trade %s, 100 identical answers", ph.name, trades[0])
	}
}
