package payproxy_test

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestTradeLifecycleEndToEnd: create → scan → pay → provider notification
// → PAID → signed webhook → refund → refund.succeeded, for both channels.
func TestTradeLifecycleEndToEnd(t *testing.T) {
	e := newEnv(t)
	inst := e.start()
	for _, ch := range []string{"alipay", "wechat"} {
		t.Run(ch, func(t *testing.T) {
			order := "E2E_" + ch + "_1"
			r := e.create(order, ch, 1230)
			wantStatus(t, r, http.StatusOK, "")
			if r.str("state") != "PAYING" || r.str("qr_code") == "" || r.str("trade_no") == "" ||
				r.num("amount_fen") != 1230 || r.str("channel") != ch || r.str("order_no") != order || r.str("expires_at") == "" {
				t.Fatalf("create answer: %s", r.Raw)
			}
			tradeNo := r.str("trade_no")
			if r.Header.Get("X-Payproxy-Order") != order || r.Header.Get("X-Payproxy-Trade") != tradeNo || r.Header.Get("X-Payproxy-Lock") != "held" {
				t.Fatalf("placeholders: %v", r.Header)
			}
			again := e.create(order, ch, 1230)
			if again.str("trade_no") != tradeNo || again.str("qr_code") != r.str("qr_code") {
				t.Fatalf("replayed create gave another trade: %s vs %s", again.Raw, r.Raw)
			}
			if err := e.sim.Scan(tradeNo); err != nil {
				t.Fatal(err)
			}
			if err := e.sim.Pay(tradeNo); err != nil {
				t.Fatal(err)
			}
			eventually(t, 5*time.Second, "PAID", func() bool { return e.get(order).str("state") == "PAID" })
			eventually(t, 5*time.Second, "trade.paid webhook", func() bool { return len(e.hooks.ofType("trade.paid", order)) == 1 })
			ev := e.hooks.ofType("trade.paid", order)[0]
			if ev.Data.TradeNo != tradeNo || ev.Data.AmountFen != 1230 || ev.Data.Channel != ch || ev.Data.State != "PAID" || ev.ID == "" || ev.CreatedAt == "" {
				t.Fatalf("trade.paid event: %+v", ev)
			}
			wantStatus(t, e.create(order, ch, 1230), http.StatusConflict, "order_paid")

			rf := do(t, "POST", e.base+"/pay/refunds", map[string]any{"order_no": order, "refund_no": "RF_" + order, "amount_fen": 230, "reason": "damaged"})
			wantStatus(t, rf, http.StatusOK, "")
			if rf.str("refund_no") != "RF_"+order || rf.num("amount_fen") != 230 || rf.str("order_no") != order {
				t.Fatalf("refund answer: %s", rf.Raw)
			}
			eventually(t, 5*time.Second, "refund SUCCESS", func() bool {
				return do(t, "GET", e.base+"/pay/refunds/RF_"+order, nil).str("state") == "SUCCESS"
			})
			eventually(t, 5*time.Second, "refund.succeeded webhook", func() bool { return len(e.hooks.ofType("refund.succeeded", order)) == 1 })
			rev := e.hooks.ofType("refund.succeeded", order)[0]
			if rev.Data.RefundNo != "RF_"+order || rev.Data.AmountFen != 230 {
				t.Fatalf("refund.succeeded event: %+v", rev)
			}
			if e.hooks.badCount() != 0 {
				t.Fatalf("%d webhook deliveries had a bad signature", e.hooks.badCount())
			}
		})
	}
	m := do(t, "GET", inst.AdminURL()+"/metrics", nil)
	for _, want := range []string{
		`tollgate_payproxy_provider_calls_total{channel="wechat",operation="create",outcome="ok"}`,
		`tollgate_payproxy_provider_call_duration_seconds_bucket{channel="alipay",operation="create"`,
		`tollgate_payproxy_lock_wait_seconds_count{result="acquired"}`,
		`tollgate_payproxy_notifications_total{channel="alipay",result="applied"}`,
		`tollgate_payproxy_webhook_deliveries_total{result="delivered"}`,
	} {
		if !strings.Contains(string(m.Raw), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
