package payproxy_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/testredis"
)

// TestOnRedisCluster: the key layout keeps every script's keys in one slot
// (no CROSSSLOT): the whole lifecycle, a duplicate storm and concurrent
// refunds on a real three-master Cluster.
func TestOnRedisCluster(t *testing.T) {
	e := newEnv(t)
	e.redisURL = testredis.StartCluster(t, 3).URL()
	e.start()
	for _, ch := range []string{"alipay", "wechat"} {
		t.Run(ch, func(t *testing.T) {
			order := "CLUSTER_" + ch
			answers := make([]response, 20)
			var wg sync.WaitGroup
			for i := range answers {
				wg.Add(1)
				go func(i int) { defer wg.Done(); answers[i] = e.create(order, ch, 1000) }(i)
			}
			wg.Wait()
			for _, r := range answers {
				if r.Status != 200 || r.str("trade_no") != answers[0].str("trade_no") {
					t.Fatalf("storm: %d %s", r.Status, r.Raw)
				}
			}
			if err := e.sim.Pay(answers[0].str("trade_no")); err != nil {
				t.Fatal(err)
			}
			eventually(t, 5*time.Second, "PAID", func() bool { return e.get(order).str("state") == "PAID" })
			eventually(t, 5*time.Second, "trade.paid", func() bool { return len(e.hooks.ofType("trade.paid", order)) == 1 })
			ok := 0
			var mu sync.Mutex
			for i := 0; i < 5; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					if e.refund(order, fmt.Sprintf("CR_%s_%d", ch, i), 400).Status == 200 {
						mu.Lock()
						ok++
						mu.Unlock()
					}
				}(i)
			}
			wg.Wait()
			if ok != 2 {
				t.Fatalf("%d refunds of 400 accepted against 1000", ok)
			}
			eventually(t, 5*time.Second, "refund.succeeded x2", func() bool { return len(e.hooks.ofType("refund.succeeded", order)) == 2 })
		})
	}
}
