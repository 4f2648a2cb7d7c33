package payproxy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/paysim"
	"github.com/tollgate/tollgate/internal/testredis"
	"github.com/tollgate/tollgate/payproxy"
)

// orderKeys are an order's keys in Redis (store.go's layout) and its
// trade's index as a key of its own (an archived order's; a live order's
// is a field of its bucket: bucketed).
func orderKeys(order, tradeNo string) []string {
	return []string{
		"tollgate:pay:{o:" + order + "}:trade", "tollgate:pay:{o:" + order + "}:trades",
		"tollgate:pay:{o:" + order + "}:refunds", "tollgate:pay:{o:" + order + "}:outbox",
		"tollgate:pay:{o:" + order + "}:checks", "tollgate:pay:{t:" + tradeNo + "}",
	}
}

// existing returns which of keys exist (one EXISTS each: on a Cluster
// they live on several slots).
func existing(t *testing.T, rdb redis.UniversalClient, keys ...string) []string {
	t.Helper()
	var out []string
	for _, k := range keys {
		n, err := rdb.Exists(context.Background(), k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			out = append(out, k)
		}
	}
	return out
}

// reconcileIndexed returns which of members are in a per-day index of
// reconciliation (KEYS: the test's own Redis holds a few keys).
func reconcileIndexed(t *testing.T, rdb redis.UniversalClient, members ...string) []string {
	t.Helper()
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, "tollgate:pay:{rc:*}:day:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range members {
		for _, k := range keys {
			if err := rdb.ZScore(ctx, k, m).Err(); err == nil {
				out = append(out, m)
				break
			}
		}
	}
	return out
}

// finishAcknowledged has paysim end trade tn (Alipay's TRADE_FINISHED,
// months after the payment) and waits until payproxy acknowledged its
// notification.
func finishAcknowledged(t *testing.T, e *env, tn string) {
	t.Helper()
	if err := e.sim.Finish(tn); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "TRADE_FINISHED acknowledged", func() bool {
		for _, d := range e.sim.Notifications() {
			if d.OutTradeNo == tn && d.Kind == "finish" && d.Delivered {
				return true
			}
		}
		return false
	})
}

// TestSettledOrdersLeaveRedisAfterRetentionAndOpenOnesStay: with a
// retention of 2 s, a paid order, a fully refunded one, a partly refunded
// one and a closed one each send one trade.archived (order, trade,
// channel, paid and refunded amounts, refunds) and then hold no key in
// Redis, their trade and refund indexes included; an unpaid order and one
// with a refund in progress stay whole however long they wait.
func TestSettledOrdersLeaveRedisAfterRetentionAndOpenOnesStay(t *testing.T) {
	e := newEnv(t)
	e.extra = "\t\tretention 2s\n"
	// The unpaid trade must stay open past retention.
	e.options["pay_timeout"] = "1h"
	inst := e.start()
	rdb := e.redis.Client()
	ctx := context.Background()

	paid := e.paidOrder("RET_PAID", "alipay", 1000)
	full := e.paidOrder("RET_FULL", "wechat", 800)
	wantStatus(t, e.refund("RET_FULL", "RET_FULL_R1", 800), 200, "")
	part := e.paidOrder("RET_PART", "wechat", 900)
	wantStatus(t, e.refund("RET_PART", "RET_PART_R1", 300), 200, "")
	closed := e.create("RET_CLOSED", "alipay", 700).str("trade_no")
	wantStatus(t, do(t, "POST", e.base+"/pay/trades/RET_CLOSED/close", nil), 200, "")
	open := e.create("RET_OPEN", "wechat", 600).str("trade_no")
	// A refund the provider never settles stays PROCESSING; an ABNORMAL
	// one waits for a person.
	stuck := e.paidOrder("RET_STUCK", "wechat", 500)
	e.sim.SetFault(paysim.Fault{Operation: "wechat.refund", Mode: paysim.FaultStuck})
	wantStatus(t, e.refund("RET_STUCK", "RET_STUCK_R1", 100), 200, "")
	abnormal := e.paidOrder("RET_ABNORMAL", "wechat", 500)
	e.sim.SetFault(paysim.Fault{Operation: "wechat.refund", Mode: paysim.FaultAbnormal})
	wantStatus(t, e.refund("RET_ABNORMAL", "RET_ABNORMAL_R1", 100), 200, "")
	e.eventuallyRefund(t, "RET_ABNORMAL_R1", "ABNORMAL", 15*time.Second)

	// Reconciliation's per-day index names the payments and refunds
	// until their order is archived.
	indexed := []string{"p" + paid, "p" + full, "r" + "RET_FULL_R1", "p" + part, "r" + "RET_PART_R1"}
	if got := reconcileIndexed(t, rdb, indexed...); len(got) != len(indexed) {
		t.Fatalf("before archival the reconciliation index holds only %v of %v", got, indexed)
	}
	for _, o := range []struct {
		order, trade, ch string
		paid, refunded   int64
		refunds          int
		refundIndexes    []string
	}{
		{"RET_PAID", paid, "alipay", 1000, 0, 0, nil},
		{"RET_FULL", full, "wechat", 800, 800, 1, []string{"RET_FULL_R1"}},
		{"RET_PART", part, "wechat", 900, 300, 1, []string{"RET_PART_R1"}},
		{"RET_CLOSED", closed, "alipay", 0, 0, 0, nil},
	} {
		eventually(t, 30*time.Second, o.order+" archived", func() bool { return len(e.hooks.ofType("trade.archived", o.order)) > 0 })
		eventually(t, 10*time.Second, o.order+"'s keys gone", func() bool {
			keys := orderKeys(o.order, o.trade)
			for _, r := range o.refundIndexes {
				keys = append(keys, "tollgate:pay:{r:"+r+"}")
			}
			return len(existing(t, rdb, keys...)) == 0 && len(bucketed(t, rdb, o.trade)) == 0
		})
		ev := e.hooks.ofType("trade.archived", o.order)[0]
		d := ev.Data
		if ev.ID != fmt.Sprintf("evt_%s_%d_trade.archived", o.trade, d.Seq) || d.TradeNo != o.trade || d.Channel != o.ch || d.PaidFen != o.paid ||
			d.RefundedFen != o.refunded || len(d.Refunds) != o.refunds || d.Seq < 2 {
			t.Fatalf("%s: trade.archived %+v", o.order, ev)
		}
		if o.refunds > 0 && (d.Refunds[0].RefundNo != o.refundIndexes[0] || d.Refunds[0].State != "SUCCESS" || d.Refunds[0].TradeNo != o.trade) {
			t.Fatalf("%s: refunds in trade.archived %+v", o.order, d.Refunds)
		}
		if r := e.get(o.order); r.Status != 404 {
			t.Fatalf("%s after archival: %d %s", o.order, r.Status, r.Raw)
		}
	}
	if got := reconcileIndexed(t, rdb, indexed...); len(got) != 0 {
		t.Fatalf("archived orders left entries in the reconciliation index: %v", got)
	}
	// A delivered event's tombstone lives a minute under this retention
	// (a day at most), not a week.
	if ttl := rdb.TTL(ctx, "tollgate:pay:{wh}:done:"+e.hooks.ofType("trade.archived", "RET_PAID")[0].ID).Val(); ttl <= 0 || ttl > time.Minute {
		t.Fatalf("tombstone of trade.archived expires in %v", ttl)
	}
	if got := existing(t, rdb, orderKeys("RET_OPEN", open)[0], orderKeys("RET_STUCK", stuck)[0], orderKeys("RET_STUCK", stuck)[2],
		orderKeys("RET_ABNORMAL", abnormal)[0], orderKeys("RET_ABNORMAL", abnormal)[2]); len(got) != 5 {
		t.Fatalf("an open order or a refund in progress lost its keys: only %v left", got)
	}
	for _, o := range []string{"RET_OPEN", "RET_STUCK", "RET_ABNORMAL"} {
		if n := len(e.hooks.ofType("trade.archived", o)); n != 0 {
			t.Fatalf("%s: %d trade.archived for an order with work left", o, n)
		}
	}
	// Only the three orders with work left are still in the due set.
	due, err := rdb.ZRange(ctx, "tollgate:pay:{due}", 0, -1).Result()
	if err != nil || len(due) != 3 {
		t.Fatalf("due set %v %v", due, err)
	}
	e.quiesce()
	// The gauge is the due set's size: the orders still in Redis.
	if m := do(t, "GET", inst.AdminURL()+"/metrics", nil); !strings.Contains(string(m.Raw), "\ntollgate_payproxy_orders_in_redis 3\n") {
		t.Fatalf("metrics lack tollgate_payproxy_orders_in_redis 3")
	}
	for _, o := range []string{"RET_PAID", "RET_FULL", "RET_PART", "RET_CLOSED"} {
		if n := len(e.hooks.ofType("trade.archived", o)); n != 1 {
			t.Fatalf("%s: %d trade.archived events", o, n)
		}
	}
}

// TestASettledOrderKeepsOnlyWhatRefundsNotificationsAndReconciliationNeed:
// once paid and settled (long before its retention), an order with
// nothing but its trade is kept as one compact string, its live marker
// (no trade hash, no expiry: ~136 bytes of Redis instead of ~184); the
// status, a create, a duplicate notification and reconciliation's lookup
// read it as it is; a refund gives the order its records back, and once
// refunded it keeps a compacted trade hash without its QR code, subject,
// creation-time fields or what its key says.
func TestASettledOrderKeepsOnlyWhatRefundsNotificationsAndReconciliationNeed(t *testing.T) {
	e := newEnv(t)
	e.extra = "\t\tretention 1h\n"
	e.start()
	rdb := e.redis.Client()
	ctx := context.Background()
	for _, ch := range []string{"alipay", "wechat"} {
		order := "COMPACT_" + ch
		tn := e.paidOrder(order, ch, 1000)
		key, marker := keptLive(t, rdb, order)
		if r := e.get(order); r.Status != 200 || r.str("state") != "PAID" || r.num("amount_fen") != 1000 ||
			r.str("trade_no") != tn || r.str("expires_at") != "" {
			t.Fatalf("%s: status of a compacted order: %d %s", order, r.Status, r.Raw)
		}
		wantStatus(t, e.create(order, ch, 1000), 409, "order_paid")
		for _, d := range e.deliveries(tn, "payment") {
			if d.Provider != "alipay" {
				continue // WeChat Pay signs its headers, which paysim does not keep: Alipay's body is whole
			}
			resp, err := client.Post(e.base+"/pay/notify/alipay", "application/x-www-form-urlencoded", strings.NewReader(d.Body))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != "success" {
				t.Fatalf("%s: a duplicate notification of the compacted order answered %d %s", order, resp.StatusCode, body)
			}
		}
		if rec, err := payproxy.LedgerRecord(ctx, rdb, ch, tn); err != nil || !rec.Found || rec.State != "PAID" || rec.AmountFen != 1000 {
			t.Fatalf("%s: reconciliation reads %+v (%v)", order, rec, err)
		}
		if rdb.Exists(ctx, key).Val() != 0 {
			t.Fatalf("%s: reading the order gave it its trade hash back", order)
		}
		wantStatus(t, e.refund(order, "CR_"+ch, 400), 200, "")
		e.eventuallyRefund(t, "CR_"+ch, "SUCCESS", 15*time.Second)
		var fields map[string]string
		eventually(t, 10*time.Second, order+" compacted after its refund", func() bool {
			fields = rdb.HGetAll(ctx, key).Val()
			_, qr := fields["qr_code"]
			_, pid := fields["provider_trade_id"] // a restored record's is ""
			return len(fields) > 0 && !qr && !pid
		})
		for _, gone := range []string{"qr_code", "qr_issued_at", "subject", "created_at", "expires_at", "provider_trade_id"} {
			if _, ok := fields[gone]; ok {
				t.Fatalf("%s: compacted trade keeps %s: %v", order, gone, fields)
			}
		}
		for _, kept := range []string{"order_no", "trade_no", "channel", "amount_fen", "state", "paid_at", "seq", "refunded_fen"} {
			if _, ok := fields[kept]; !ok {
				t.Fatalf("%s: compacted trade lost %s: %v", order, kept, fields)
			}
		}
		if rdb.Exists(ctx, marker).Val() != 0 {
			t.Fatalf("%s: the live marker outlived the records it was expanded into", order)
		}
		if r := e.get(order); r.Status != 200 || r.str("state") != "PAID" || r.str("trade_no") != tn {
			t.Fatalf("%s: status after the refund: %d %s", order, r.Status, r.Raw)
		}
		wantStatus(t, e.create(order, ch, 1000), 409, "order_paid")
	}
}

// TestTwoInstancesArchiveEachOrderOnce: two instances share one Redis and
// a retention of 1 s; 20 paid orders are each archived once (one
// trade.archived each), whichever instance's poller leases them.
func TestTwoInstancesArchiveEachOrderOnce(t *testing.T) {
	e := newEnv(t)
	e.extra = "\t\tretention 1s\n"
	twoInstances(t, e)
	archiveMany(t, e, e.redis.Client(), "TWO_INSTANCES", 20)
}

// TestRetentionOnRedisCluster: the same on a real three-master Cluster
// (the archival script's keys share the order's slot; the indexes on
// other slots are removed one by one).
func TestRetentionOnRedisCluster(t *testing.T) {
	e := newEnv(t)
	c := testredis.StartCluster(t, 3)
	e.redisURL = c.URL()
	e.extra = "\t\tretention 1s\n"
	e.start()
	archiveMany(t, e, c.Client(), "CLUSTER", 10)
}

// archiveMany pays n orders (both channels) and waits for each to be
// archived once, with every key and its bucket field gone.
func archiveMany(t *testing.T, e *env, rdb redis.UniversalClient, prefix string, n int) {
	t.Helper()
	trades := make([]string, n)
	for i := range trades {
		trades[i] = e.paidOrder(fmt.Sprintf("%s_%d", prefix, i), []string{"alipay", "wechat"}[i%2], 100+int64(i))
	}
	for i, tn := range trades {
		order := fmt.Sprintf("%s_%d", prefix, i)
		eventually(t, 30*time.Second, order+" archived", func() bool {
			return len(e.hooks.ofType("trade.archived", order)) > 0 && len(existing(t, rdb, orderKeys(order, tn)...)) == 0 &&
				len(bucketed(t, rdb, tn)) == 0
		})
	}
	e.quiesce()
	for i := range trades {
		order := fmt.Sprintf("%s_%d", prefix, i)
		if got := e.hooks.ofType("trade.archived", order); len(got) != 1 || got[0].Data.PaidFen != 100+int64(i) {
			t.Fatalf("%s: trade.archived %+v", order, got)
		}
	}
}

// TestAfterArchivalALateNotificationIsAcknowledgedAndCreatesAndRefundsAreRefused:
// an Alipay order paid and archived (retention 10 s) then gets Alipay's
// TRADE_FINISHED three months later: it is verified and answered success
// (the provider stops retrying), and changes nothing; a create of the
// order answers 409 order_paid without a trade at the provider; a refund
// answers 409 order_archived; neither leaves a key behind.
func TestAfterArchivalALateNotificationIsAcknowledgedAndCreatesAndRefundsAreRefused(t *testing.T) {
	e := newEnv(t)
	// The marker and the trade index live another 10 s after archival:
	// the checks below run inside them.
	e.extra = "\t\tretention 10s\n"
	e.start()
	rdb := e.redis.Client()
	const order = "ARCHIVED_LATE"
	tn := e.paidOrder(order, "alipay", 1000)
	eventually(t, 40*time.Second, "archived", func() bool {
		return len(e.hooks.ofType("trade.archived", order)) == 1 && len(existing(t, rdb, orderKeys(order, tn)[:5]...)) == 0
	})
	marker := "tollgate:pay:{o:" + order + "}:archived"
	for _, k := range []string{marker, "tollgate:pay:{t:" + tn + "}"} {
		if ttl := rdb.PTTL(context.Background(), k).Val(); ttl <= 0 || ttl > 10*time.Second {
			t.Fatalf("%s: PTTL %s, want the retention", k, ttl)
		}
	}
	// [state, trade_no, channel, amount_fen, refunded_fen, paid_at, seq, others, refunds]
	got := rdb.Get(context.Background(), marker).Val()
	var m []any
	if err := json.Unmarshal([]byte(got), &m); err != nil || len(m) != 9 || m[0] != "PAID" || m[1] != tn ||
		m[2] != "alipay" || m[3] != 1000.0 || m[6] != 2.0 || m[7] != 0.0 || m[8] != 0.0 {
		t.Fatalf("marker %s", got)
	}
	e.quiesce()
	before := e.redis.Dump()
	wantStatus(t, e.create(order, "alipay", 1000), 409, "order_paid")
	wantStatus(t, e.create(order, "wechat", 500), 409, "order_paid")
	wantStatus(t, e.refund(order, "ARCH_R1", 100), 409, "order_archived")
	e.wantProviderTrades(t, order, 1)
	finishAcknowledged(t, e, tn)
	e.quiesce()
	after := e.redis.Dump()
	for k, v := range before {
		if after[k] != v && !strings.Contains(k, "{due}") {
			t.Fatalf("%s changed after archival: %q → %q", k, v, after[k])
		}
	}
	for k := range after {
		if _, ok := before[k]; !ok && !strings.Contains(k, "{due}") {
			t.Fatalf("%s appeared after archival", k)
		}
	}
	if n := len(e.hooks.all()); n != len(e.hooks.ofType("trade.paid", order))+len(e.hooks.ofType("trade.archived", order)) {
		t.Fatalf("events after archival: %+v", e.hooks.all())
	}
}

// TestDeadLettersAreDroppedPast30DaysAndBeyond10000AndCounted: the
// dead-letter list holds one letter 31 days old and 10 000 fresh ones; a
// new dead letter drops the old one (age) and the oldest fresh one (the
// cap), keeps itself, and both drops are counted by reason.
func TestDeadLettersAreDroppedPast30DaysAndBeyond10000AndCounted(t *testing.T) {
	e := newEnv(t)
	e.options["max_attempts"] = "1"
	inst := e.start()
	rdb := e.redis.Client()
	ctx := context.Background()
	const dead = "tollgate:pay:{wh}:dead"
	old := time.Now().Add(-31 * 24 * time.Hour).UnixMilli()
	pipe := rdb.Pipeline()
	pipe.RPush(ctx, dead, fmt.Sprintf(`{"id":"evt_old","event":"{}","attempts":1,"last_error":"x","failed_at":%d}`, old))
	for i := range 10000 {
		pipe.RPush(ctx, dead, fmt.Sprintf(`{"id":"evt_%d","event":"{}","attempts":1,"last_error":"x","failed_at":%d}`, i, time.Now().UnixMilli()))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	// The counters are process-wide (other tests drop letters too): what
	// counts is what this test adds to them.
	counter := func(reason string) int {
		m := do(t, "GET", inst.AdminURL()+"/metrics", nil)
		for _, line := range strings.Split(string(m.Raw), "\n") {
			if v, ok := strings.CutPrefix(line, `tollgate_payproxy_webhook_dead_letters_dropped_total{reason="`+reason+`"} `); ok {
				n, _ := strconv.Atoi(v)
				return n
			}
		}
		return 0
	}
	ageBefore, capBefore := counter("age"), counter("cap")
	metric := func(reason string) string {
		return strconv.Itoa(counter(reason) - map[string]int{"age": ageBefore, "cap": capBefore}[reason])
	}
	e.hooks.setDown(true)
	tn := e.paidOrder("DEAD_CAPPED", "alipay", 100)
	eventually(t, 15*time.Second, "the trade.paid dead letter", func() bool {
		return strings.Contains(rdb.LIndex(ctx, dead, -1).Val(), `"evt_`+tn+`_trade.paid"`)
	})
	if n := rdb.LLen(ctx, dead).Val(); n != 10000 {
		t.Fatalf("%d dead letters, want the cap 10000", n)
	}
	if first := rdb.LIndex(ctx, dead, 0).Val(); !strings.Contains(first, `"evt_1"`) {
		t.Fatalf("oldest kept %s, want evt_1 (evt_old aged out, evt_0 over the cap)", first)
	}
	if metric("age") != "1" || metric("cap") != "1" {
		t.Fatalf("dropped: age %s cap %s, want 1 and 1", metric("age"), metric("cap"))
	}
}

// TestALateNotificationPastTheArchivalMarkerIsStillAcknowledged: once an
// archived order's marker and trade index have expired too, Alipay's
// TRADE_FINISHED of its trade is verified and answered success (the
// trade number says it was created longer than retention ago), and
// changes nothing.
func TestALateNotificationPastTheArchivalMarkerIsStillAcknowledged(t *testing.T) {
	// Two days of notification retries after the longest payable life
	// (15 days) are made none, and that life a second.
	prevWindow, prevLife := payproxy.SetNotifyRetryWindow(0), payproxy.SetPayableLife(time.Second)
	t.Cleanup(func() { payproxy.SetNotifyRetryWindow(prevWindow); payproxy.SetPayableLife(prevLife) })
	e := newEnv(t)
	e.extra = "\t\tretention 2s\n"
	e.options["pay_timeout"] = "1s"
	e.start()
	rdb := e.redis.Client()
	const order = "ARCHIVED_LONG_AGO"
	tn := e.paidOrder(order, "alipay", 1000)
	eventually(t, 30*time.Second, "archived and its marker expired", func() bool {
		return len(e.hooks.ofType("trade.archived", order)) == 1 &&
			len(existing(t, rdb, append(orderKeys(order, tn), "tollgate:pay:{o:"+order+"}:archived")...)) == 0
	})
	e.quiesce()
	before := e.redis.Dump()
	finishAcknowledged(t, e, tn)
	e.quiesce()
	after := e.redis.Dump()
	for k, v := range after {
		if before[k] != v && !strings.Contains(k, "{due}") {
			t.Fatalf("%s changed by a notification past the marker: %q → %q", k, before[k], v)
		}
	}
}

// keptLive waits until the poller keeps order as its live marker (no
// trade hash, a marker without expiry) and returns both keys.
func keptLive(t *testing.T, rdb redis.UniversalClient, order string) (key, marker string) {
	t.Helper()
	ctx := context.Background()
	key, marker = "tollgate:pay:{o:"+order+"}:trade", "tollgate:pay:{o:"+order+"}:archived"
	eventually(t, 10*time.Second, order+" kept as its live marker", func() bool {
		return rdb.Exists(ctx, key).Val() == 0 && rdb.Exists(ctx, marker).Val() == 1
	})
	if ttl := rdb.PTTL(ctx, marker).Val(); ttl != -1 {
		t.Fatalf("%s: the live marker expires in %v", order, ttl)
	}
	return key, marker
}

// TestAClosedOrderKeptAsItsLiveMarkerGetsANewTradeAndKeepsTheOldOne: an
// order closed unpaid is kept as its live marker inside its retention; a
// create then makes a new trade, whose events number on, and the closed
// trade is kept as the order's retired trade (a payment it still receives
// is recorded and refunded as before compaction).
func TestAClosedOrderKeptAsItsLiveMarkerGetsANewTradeAndKeepsTheOldOne(t *testing.T) {
	e := newEnv(t)
	e.extra = "\t\tretention 1h\n"
	e.start()
	rdb := e.redis.Client()
	ctx := context.Background()
	order := "LIVE_CLOSED"
	old := e.create(order, "alipay", 700).str("trade_no")
	wantStatus(t, do(t, "POST", e.base+"/pay/trades/"+order+"/close", nil), 200, "")
	key, marker := keptLive(t, rdb, order)
	if r := e.get(order); r.Status != 200 || r.str("state") != "CLOSED" || r.str("trade_no") != old {
		t.Fatalf("status of the compacted closed order: %d %s", r.Status, r.Raw)
	}
	r := e.create(order, "alipay", 900)
	wantStatus(t, r, 200, "")
	if r.str("trade_no") == old || r.num("amount_fen") != 900 {
		t.Fatalf("create after compaction: %s", r.Raw)
	}
	if raw := rdb.HGet(ctx, "tollgate:pay:{o:"+order+"}:trades", old).Val(); !strings.Contains(raw, `"CLOSED"`) {
		t.Fatalf("the closed trade %s is not kept as retired: %q", old, raw)
	}
	if seq := rdb.HGet(ctx, key, "seq").Val(); seq == "" || seq == "0" {
		t.Fatalf("the new trade's events start over: seq %q", seq)
	}
	if rdb.Exists(ctx, marker).Val() != 0 {
		t.Fatal("the live marker outlived the records it was expanded into")
	}
}
