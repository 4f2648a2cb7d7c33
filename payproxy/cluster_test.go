package payproxy_test

import (
	"context"
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
		t.Run(ch, func(t *testing.T) { lifecycle(t, e, "CLUSTER_"+ch, ch) })
	}
}

// TestOnRedisSentinel: the lifecycle through a redis+sentinel:// URL with
// wait_replicas=1, then a failover (the replica promoted while the old
// master still runs and takes writes) with a storm of creates sent right
// after it. Every write waits for a replica, so a create that landed on
// the demoted master is never confirmed: it answers 503 before any
// provider call, the client retries, and the order still gets exactly
// one trade at the provider. (Without wait_replicas this storm split over
// the two masters and made two trades.) The order paid before the failover
// is PAID and refundable on the promoted master.
func TestOnRedisSentinel(t *testing.T) {
	e := newEnv(t)
	set := testredis.StartSentinel(t, testredis.WithAOF("always"))
	e.redisURL = set.URL() + "?wait_replicas=1&wait_timeout=300ms"
	e.start()
	lifecycle(t, e, "SENTINEL_BEFORE", "alipay")
	set.Failover()
	const order = "SENTINEL_AFTER"
	answers := make([]response, 20)
	var wg sync.WaitGroup
	for i := range answers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i] = untilAnswered(func() response { return e.create(order, "wechat", 1000) })
		}()
	}
	wg.Wait()
	for _, r := range answers {
		if r.Status != 200 || r.str("trade_no") != answers[0].str("trade_no") {
			t.Fatalf("storm after the failover: %d %s vs %s", r.Status, r.Raw, answers[0].Raw)
		}
	}
	var trades []string
	for _, tr := range e.sim.Trades() {
		if tr.Subject == "运费 "+order {
			trades = append(trades, tr.OutTradeNo)
		}
	}
	if len(trades) != 1 || trades[0] != answers[0].str("trade_no") {
		t.Fatalf("trades at the provider %v, answered %s", trades, answers[0].str("trade_no"))
	}
	if err := e.sim.Pay(trades[0]); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "PAID after the failover", func() bool { return e.get(order).str("state") == "PAID" })
	eventually(t, 15*time.Second, "trade.paid", func() bool { return len(e.hooks.ofType("trade.paid", order)) == 1 })
	if r := e.get("SENTINEL_BEFORE"); r.str("state") != "PAID" {
		t.Fatalf("order paid before the failover: %s", r.Raw)
	}
	// Its two refunds of 400 survived: 200 more fit into 1000, 1 more not.
	if r := untilAnswered(func() response { return e.refund("SENTINEL_BEFORE", "SR_AFTER_FAILOVER", 200) }); r.Status != 200 {
		t.Fatalf("refund after the failover of an order paid before it: %d %s", r.Status, r.Raw)
	}
	if r := untilAnswered(func() response { return e.refund("SENTINEL_BEFORE", "SR_OVER", 1) }); r.Status != 409 {
		t.Fatalf("over-refund after the failover: %d %s", r.Status, r.Raw)
	}
}

// untilAnswered retries a 503 (what a client does while Redis fails over)
// for up to 30 s.
func untilAnswered(send func() response) response {
	var r response
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if r = send(); r.Status != 503 {
			return r
		}
	}
	return r
}

// lifecycle: 20 concurrent creates of one order get one trade; paid at the
// provider, it becomes PAID with one trade.paid event; of five concurrent
// refunds of 400 against 1000, two are accepted and both succeed (on
// Alipay the second is sent 3 s after the first: Alipay's gap between
// refunds of a trade).
func lifecycle(t *testing.T, e *env, order, ch string) {
	t.Helper()
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
			if e.refund(order, fmt.Sprintf("R_%s_%d", order, i), 400).Status == 200 {
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
	eventually(t, 15*time.Second, "refund.succeeded x2", func() bool { return len(e.hooks.ofType("refund.succeeded", order)) == 2 })
}

// TestTradeIndexIsWrittenBeforeItsTradeOnACluster: on a Redis Cluster the
// trade index (trade_no → order, a field of the trade number's bucket, on
// the bucket's slot) and the trade (on the order's slot) live on
// different masters; the index must exist whenever the trade does, or a notification for the trade finds no order.
// Writes on every master but the order's are paused while the trade is
// created, and the trade is watched: it must never be there without its
// index (a pipeline sends both at once, and the trade's master answers
// first).
func TestTradeIndexIsWrittenBeforeItsTradeOnACluster(t *testing.T) {
	e := newEnv(t)
	cluster := testredis.StartCluster(t, 3)
	e.redisURL = cluster.URL()
	e.options["poll_interval"] = "1h"
	e.start()
	cc := cluster.Client()
	ctx := context.Background()
	masterOf := func(key string) string {
		m, err := cc.MasterForKey(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		return m.Options().Addr
	}
	crossNode := 0
	for i := 0; crossNode < 2 && i < 20; i++ {
		order := fmt.Sprintf("IDX_ORDER_%02d", i)
		tradeKey := "tollgate:pay:{o:" + order + "}:trade"
		home := masterOf(tradeKey)
		for _, m := range cluster.Masters {
			if m.Addr() != home {
				if err := m.Client().Do(ctx, "CLIENT", "PAUSE", 1500, "WRITE").Err(); err != nil {
					t.Fatal(err)
				}
			}
		}
		done := make(chan response, 1)
		go func() { done <- e.create(order, "wechat", 100) }()
		var r response
	watch:
		for {
			select {
			case r = <-done:
				break watch
			default:
			}
			if tn, _ := cc.HGet(ctx, tradeKey, "trade_no").Result(); tn != "" {
				if idx, _ := cc.HGet(ctx, tradeBucket(tn), tn).Result(); idx != order {
					t.Fatalf("trade %s of order %s exists while its index says %q", tn, order, idx)
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
		for _, m := range cluster.Masters {
			_ = m.Client().Do(ctx, "CLIENT", "UNPAUSE").Err()
		}
		wantStatus(t, r, 200, "")
		if masterOf(tradeBucket(r.str("trade_no"))) != home {
			crossNode++
		}
	}
	if crossNode < 2 {
		t.Fatalf("only %d of the trades had their index on another master: the test proved nothing", crossNode)
	}
}
