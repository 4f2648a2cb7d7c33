package payproxy_test

import (
	"context"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/paysim"
	"github.com/tollgate/tollgate/payproxy/alipay"
	"github.com/tollgate/tollgate/payproxy/provider"
)

func (e *env) deliveries(tradeNo, kind string) []paysim.Delivery {
	var out []paysim.Delivery
	for _, d := range e.sim.Notifications() {
		if d.OutTradeNo == tradeNo && d.Kind == kind {
			out = append(out, d)
		}
	}
	return out
}

// TestReplayedNotificationsRacingThePollerChangeStateOnce: each payment's
// notification is posted ten more times, concurrently, while the poller
// queries the same trades: one transition and one event per trade.
func TestReplayedNotificationsRacingThePollerChangeStateOnce(t *testing.T) {
	e := newEnv(t)
	e.options["poll_interval"] = "50ms"
	e.start()
	var orders, trades []string
	for i := 0; i < 5; i++ {
		order := "RACE_" + string(rune('A'+i)) + "_01"
		r := e.create(order, "alipay", int64(100+i))
		wantStatus(t, r, 200, "")
		orders, trades = append(orders, order), append(trades, r.str("trade_no"))
	}
	for _, tn := range trades {
		if err := e.sim.Pay(tn); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 5*time.Second, "notifications delivered", func() bool {
		for _, tn := range trades {
			d := e.deliveries(tn, "payment")
			if len(d) != 1 || !d[0].Delivered {
				return false
			}
		}
		return true
	})
	var wg sync.WaitGroup
	for _, tn := range trades {
		body := e.deliveries(tn, "payment")[0].Body
		for i := 0; i < 10; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := do(t, "POST", e.base+"/pay/notify/alipay", body, "Content-Type", "application/x-www-form-urlencoded")
				if r.Status != 200 || string(r.Raw) != "success" {
					t.Errorf("replayed notification: %d %s", r.Status, r.Raw)
				}
			}()
		}
	}
	wg.Wait()
	time.Sleep(500 * time.Millisecond) // several poller rounds and sender ticks
	for _, order := range orders {
		if st := e.get(order).str("state"); st != "PAID" {
			t.Errorf("%s: %s", order, st)
		}
		if n := len(e.hooks.ofType("trade.paid", order)); n != 1 {
			t.Errorf("%s: %d trade.paid events, want 1", order, n)
		}
	}
}

// TestUntrustworthyNotificationsChangeNothing: tampered, unknown-order,
// amount-mismatch and SIGNTEST notifications are refused and leave Redis
// as it was.
func TestUntrustworthyNotificationsChangeNothing(t *testing.T) {
	e := newEnv(t)
	e.options["poll_interval"] = "1h" // only notifications may change anything
	e.start()

	t.Run("TamperedAmount", func(t *testing.T) {
		r := e.create("TAMPER_01", "alipay", 1000)
		e.hooks.setDown(true) // keep the real notification from being accepted first
		defer e.hooks.setDown(false)
		// Pay, but make the first delivery fail at our side by tampering before it lands:
		// take the genuine body and change the amount.
		if err := e.sim.Pay(r.str("trade_no")); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, "genuine notification", func() bool { return len(e.deliveries(r.str("trade_no"), "payment")) == 1 })
		body := e.deliveries(r.str("trade_no"), "payment")[0].Body
		v, _ := url.ParseQuery(body)
		v.Set("total_amount", "0.01")
		v.Set("buyer_pay_amount", "0.01")
		before := e.redis.Dump()
		resp := do(t, "POST", e.base+"/pay/notify/alipay", v.Encode(), "Content-Type", "application/x-www-form-urlencoded")
		wantStatus(t, resp, 401, "invalid_signature")
		// The genuine one may land at any moment (paysim retries it). Take
		// the second dump first, then look at the state: if the genuine one
		// had landed before that dump, the state says PAID and the dumps
		// may rightly differ; if it had not, the dumps must be equal.
		after := e.redis.Dump()
		if e.get("TAMPER_01").str("state") != "PAID" && !reflect.DeepEqual(before, after) {
			t.Fatal("redis changed")
		}
	})

	t.Run("SignedAmountDiffersFromStoredTrade", func(t *testing.T) {
		r := e.create("MISMATCH_01", "alipay", 1000)
		// The stored trade says 10.01 yuan; the provider's (signed) notification will say 10.00.
		if err := e.redis.Client().HSet(context.Background(), "tollgate:pay:{o:MISMATCH_01}:trade", "amount_fen", "1001").Err(); err != nil {
			t.Fatal(err)
		}
		e.quiesce()
		before := e.redis.Dump()
		if err := e.sim.Pay(r.str("trade_no")); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, "refused notification", func() bool {
			d := e.deliveries(r.str("trade_no"), "payment")
			return len(d) == 1 && len(d[0].Attempts) >= 1
		})
		d := e.deliveries(r.str("trade_no"), "payment")[0]
		if d.Attempts[0].Status != 400 || d.Delivered {
			t.Fatalf("mismatched amount accepted: %+v", d.Attempts[0])
		}
		if !reflect.DeepEqual(before, e.redis.Dump()) {
			t.Fatal("redis changed")
		}
	})

	t.Run("UnknownOrder", func(t *testing.T) {
		k := e.sim.Keys()
		priv, pub := readFile(t, k.AlipayPrivateKeyFile), readFile(t, k.AlipayPublicKeyFile)
		direct, err := alipay.New(alipay.Config{AppID: k.AlipayAppID, PrivateKeyPEM: priv, PublicKeyPEM: pub,
			Gateway: e.simURL + "/gateway.do", NotifyURL: e.base + "/pay/notify/alipay"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := direct.Create(context.Background(), provider.CreateRequest{TradeNo: "NOT_OURS_1", AmountFen: 5, Subject: "x", ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		e.quiesce()
		before := e.redis.Dump()
		if err := e.sim.Pay("NOT_OURS_1"); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, "refused notification", func() bool {
			d := e.deliveries("NOT_OURS_1", "payment")
			return len(d) == 1 && len(d[0].Attempts) >= 1
		})
		if a := e.deliveries("NOT_OURS_1", "payment")[0].Attempts[0]; a.Status != 404 {
			t.Fatalf("unknown order answered %d %s", a.Status, a.Answer)
		}
		if !reflect.DeepEqual(before, e.redis.Dump()) {
			t.Fatal("redis changed")
		}
	})

	t.Run("WechatSigntest", func(t *testing.T) {
		r := e.create("SIGNTEST_01", "wechat", 300)
		e.quiesce()
		before := e.redis.Dump()
		if err := e.sim.SendWechatSignTest(r.str("trade_no")); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, "signtest answered", func() bool {
			d := e.deliveries(r.str("trade_no"), "signtest")
			return len(d) == 1 && len(d[0].Attempts) == 1
		})
		if a := e.deliveries(r.str("trade_no"), "signtest")[0].Attempts[0]; a.Status != 401 || !strings.Contains(a.Answer, "invalid_signature") {
			t.Fatalf("signtest answered %d %s", a.Status, a.Answer)
		}
		if !reflect.DeepEqual(before, e.redis.Dump()) || e.get("SIGNTEST_01").str("state") != "PAYING" {
			t.Fatal("SIGNTEST changed the trade")
		}
		// The genuine payment notification still works.
		if err := e.sim.Pay(r.str("trade_no")); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, "PAID", func() bool { return e.get("SIGNTEST_01").str("state") == "PAID" })
	})
}
