package payproxy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// TestWebhookReceiverDownThenUp: events pile up while the backend is down
// and all arrive, verifiable, once it is back; duplicates only with the
// same id.
func TestWebhookReceiverDownThenUp(t *testing.T) {
	e := newEnv(t)
	e.options["max_attempts"] = "1000"
	e.start()
	e.hooks.setDown(true)
	var orders []string
	for i := 0; i < 4; i++ {
		order := fmt.Sprintf("DOWN_%d_0001", i)
		orders = append(orders, order)
		e.paidOrder(order, []string{"alipay", "wechat"}[i%2], 100)
	}
	time.Sleep(700 * time.Millisecond) // several failed attempts each
	if n := len(e.hooks.all()); n != 0 {
		t.Fatalf("%d events accepted while down", n)
	}
	e.hooks.setDown(false)
	eventually(t, 5*time.Second, "all events", func() bool {
		for _, o := range orders {
			if len(e.hooks.ofType("trade.paid", o)) == 0 {
				return false
			}
		}
		return true
	})
	ids := map[string]string{}
	for _, ev := range e.hooks.all() {
		if prev, ok := ids[ev.Data.OrderNo+ev.Type]; ok && prev != ev.ID {
			t.Fatalf("duplicate with another id: %s vs %s", prev, ev.ID)
		}
		ids[ev.Data.OrderNo+ev.Type] = ev.ID
	}
	if e.hooks.badCount() != 0 {
		t.Fatal("bad signatures")
	}
}

// TestDeadLettersAreListedAndReplayedThroughTheAdminAPI.
func TestDeadLettersAreListedAndReplayedThroughTheAdminAPI(t *testing.T) {
	e := newEnv(t)
	e.options["max_attempts"] = "2"
	inst := e.start()
	e.hooks.setDown(true)
	e.paidOrder("DEAD_00001", "wechat", 100)
	var dead []map[string]any
	eventually(t, 5*time.Second, "dead letter", func() bool {
		r := do(t, "GET", inst.AdminURL()+"/tollgate/payproxy/dead_letters", nil)
		dead = nil
		_ = json.Unmarshal(r.Raw, &dead)
		return r.Status == 200 && len(dead) == 1
	})
	var ev struct {
		ID, Type string
	}
	raw, _ := json.Marshal(dead[0]["event"])
	_ = json.Unmarshal(raw, &ev)
	if ev.Type != "trade.paid" || dead[0]["id"] != ev.ID || dead[0]["attempts"].(float64) != 2 {
		t.Fatalf("dead letter: %v", dead[0])
	}
	e.hooks.setDown(false)
	r := do(t, "POST", inst.AdminURL()+"/tollgate/payproxy/dead_letters/replay", map[string]string{"id": ev.ID}, "Origin", inst.AdminURL())
	if r.Status != http.StatusOK || r.num("replayed") != 1 {
		t.Fatalf("replay: %d %s", r.Status, r.Raw)
	}
	eventually(t, 5*time.Second, "replayed event", func() bool { return len(e.hooks.ofType("trade.paid", "DEAD_00001")) == 1 })
	if got := e.hooks.ofType("trade.paid", "DEAD_00001")[0].ID; got != ev.ID {
		t.Fatalf("replayed with id %s, want %s", got, ev.ID)
	}
	r = do(t, "GET", inst.AdminURL()+"/tollgate/payproxy/dead_letters", nil)
	if string(r.Raw) != "[]\n" {
		t.Fatalf("dead letters after replay: %s", r.Raw)
	}
}

// TestReloadHandsBackLeasedEventsAtOnce: a config reload cancels the old
// sender in the middle of a leased batch (one event held by a slow
// receiver, any others of the batch waiting their turn). It hands them
// back, so the new config's sender delivers them all well before the 30s
// lease would have let them go.
func TestReloadHandsBackLeasedEventsAtOnce(t *testing.T) {
	e := newEnv(t)
	e.options["max_attempts"] = "1000"
	inst := e.start()
	e.hooks.setDown(true)
	var orders []string
	for i := 0; i < 4; i++ {
		order := fmt.Sprintf("LEASE_%d_0001", i)
		orders = append(orders, order)
		e.paidOrder(order, []string{"alipay", "wechat"}[i%2], 100)
	}
	queue := e.redis.Client()
	eventually(t, 5*time.Second, "4 queued events", func() bool {
		n, _ := queue.HLen(context.Background(), "tollgate:pay:{wh}:events").Result()
		return n == 4
	})
	e.hooks.setSlow(time.Minute)
	eventually(t, 5*time.Second, "a delivery held by the receiver", func() bool { return e.hooks.inFlight() == 1 })
	leased, _ := queue.ZCount(context.Background(), "tollgate:pay:{wh}:queue",
		strconv.FormatInt(time.Now().Add(10*time.Second).UnixMilli(), 10), "+inf").Result()
	t.Logf("%d events leased at the reload (one held by the receiver)", leased)
	e.hooks.setSlow(0)
	e.options["poll_interval"] = "150ms" // a different config: a real reload
	inst.Reload(e.caddyfile(e.port))
	eventually(t, 10*time.Second, "every event after the reload", func() bool {
		for _, o := range orders {
			if len(e.hooks.ofType("trade.paid", o)) == 0 {
				return false
			}
		}
		return true
	})
	if e.hooks.badCount() != 0 {
		t.Fatal("bad signatures")
	}
}
