package payproxy_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/testredis"
)

// refusedUntilAcknowledged waits for tradeNo's payment notification to be
// acknowledged and checks that every earlier attempt got the provider's
// failure answer (WeChat: 5xx with {"code":"FAIL"}; Alipay: anything but
// "success"), then that the payment landed once, with its event.
func (e *env) refusedUntilAcknowledged(t *testing.T, order, ch, tradeNo string, failedAtLeast int) {
	t.Helper()
	eventually(t, 30*time.Second, "the notification acknowledged", func() bool {
		d := e.deliveries(tradeNo, "payment")
		return len(d) == 1 && d[0].Delivered
	})
	d := e.deliveries(tradeNo, "payment")[0]
	if len(d.Attempts) < failedAtLeast+1 {
		t.Fatalf("acknowledged after %d attempts, want at least %d refused first: %+v", len(d.Attempts), failedAtLeast, d.Attempts)
	}
	for _, a := range d.Attempts[:len(d.Attempts)-1] {
		if a.Status < 500 || (ch == "wechat" && !strings.Contains(a.Answer, `"code":"FAIL"`)) || (ch == "alipay" && a.Answer == "success") {
			t.Fatalf("an attempt before the payment was stored was answered %d %s", a.Status, a.Answer)
		}
	}
	eventually(t, 10*time.Second, "PAID", func() bool { return e.get(order).str("state") == "PAID" })
	eventually(t, 10*time.Second, "trade.paid", func() bool { return len(e.hooks.ofType("trade.paid", order)) == 1 })
}

// TestNotificationIsAcknowledgedOnlyOnceThePaymentIsDurablyStored: while
// the payment cannot be written durably (the replica wait_replicas needs
// is down, so WAIT fails; or Redis itself is down), the provider gets its
// failure answer and retries; once Redis is back a retry lands the payment
// and only then is acknowledged.
func TestNotificationIsAcknowledgedOnlyOnceThePaymentIsDurablyStored(t *testing.T) {
	for _, ch := range []string{"alipay", "wechat"} {
		t.Run("replica_down_"+ch, func(t *testing.T) {
			e := newEnv(t)
			replica := testredis.Start(t, testredis.WithArgs("--replicaof", "127.0.0.1", strconv.Itoa(e.redis.Port)))
			waitSynced(t, replica)
			e.redisURL = e.redis.URL() + "?wait_replicas=1&wait_timeout=200ms"
			e.options["poll_interval"] = "1h" // only the notification may record the payment
			e.start()
			order := "DURABLE_R_" + ch
			r := e.create(order, ch, 321)
			wantStatus(t, r, 200, "")
			replica.Stop()
			if err := e.sim.Pay(r.str("trade_no")); err != nil {
				t.Fatal(err)
			}
			eventually(t, 10*time.Second, "two refused attempts", func() bool {
				d := e.deliveries(r.str("trade_no"), "payment")
				return len(d) == 1 && (len(d[0].Attempts) >= 2 || d[0].Delivered)
			})
			replica.Restart()
			e.refusedUntilAcknowledged(t, order, ch, r.str("trade_no"), 2)
		})
		t.Run("redis_down_"+ch, func(t *testing.T) {
			e := newEnv(t, testredis.WithAOF("always"))
			e.options["poll_interval"] = "1h"
			e.start()
			order := "DURABLE_D_" + ch
			r := e.create(order, ch, 123)
			wantStatus(t, r, 200, "")
			e.redis.Stop()
			if err := e.sim.Pay(r.str("trade_no")); err != nil {
				t.Fatal(err)
			}
			eventually(t, 10*time.Second, "two refused attempts", func() bool {
				d := e.deliveries(r.str("trade_no"), "payment")
				return len(d) == 1 && (len(d[0].Attempts) >= 2 || d[0].Delivered)
			})
			e.redis.Restart()
			e.refusedUntilAcknowledged(t, order, ch, r.str("trade_no"), 2)
		})
	}
}

// waitSynced waits until a replica reports its link to the master up.
func waitSynced(t *testing.T, replica *testredis.Server) {
	t.Helper()
	c := replica.Client()
	eventually(t, 15*time.Second, "replica in sync", func() bool {
		info, _ := c.Info(context.Background(), "replication").Result()
		return strings.Contains(info, "master_link_status:up")
	})
}
