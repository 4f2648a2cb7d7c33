package payproxy_test

import (
	"bytes"
	"image/png"
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/paysim"
)

// TestBadInputIsRejectedAndChangesNothing: every bad input gets its status
// and code, and Redis is byte-for-byte what it was.
func TestBadInputIsRejectedAndChangesNothing(t *testing.T) {
	e := newEnv(t)
	e.options["poll_interval"] = "1h" // the poller's own rescheduling would show in the dumps
	e.start()
	// Some state to protect: a paid order and an unpaid one.
	paid := e.create("BAD_PAID_1", "alipay", 500)
	wantStatus(t, paid, 200, "")
	if err := e.sim.Pay(paid.str("trade_no")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "PAID", func() bool { return e.get("BAD_PAID_1").str("state") == "PAID" })
	wantStatus(t, e.create("BAD_OPEN_1", "wechat", 100), 200, "")
	wantStatus(t, do(t, "POST", e.base+"/pay/refunds", map[string]any{"order_no": "BAD_PAID_1", "refund_no": "BAD_RF_1", "amount_fen": 100}), 200, "")
	eventually(t, 5*time.Second, "quiet", func() bool {
		return len(e.hooks.all()) == 2 && do(t, "GET", e.base+"/pay/refunds/BAD_RF_1", nil).str("state") == "SUCCESS"
	})
	e.quiesce()

	long := "A234567890123456789012345678901234567890123456789012345678901234567890"
	cases := []struct {
		name, method, path string
		body               any
		status             int
		code               string
	}{
		{"BadJSON", "POST", "/pay/trades", `{"order_no":`, 400, "invalid_request"},
		{"TrailingJSON", "POST", "/pay/trades", `{"order_no":"X1234567","amount_fen":1,"channel":"alipay"} {}`, 400, "invalid_request"},
		{"UnknownChannel", "POST", "/pay/trades", map[string]any{"order_no": "ORD12345", "amount_fen": 100, "channel": "paypal"}, 400, "invalid_request"},
		{"ZeroAmount", "POST", "/pay/trades", map[string]any{"order_no": "ORD12345", "amount_fen": 0, "channel": "alipay"}, 400, "invalid_request"},
		{"NegativeAmount", "POST", "/pay/trades", map[string]any{"order_no": "ORD12345", "amount_fen": -5, "channel": "wechat"}, 400, "invalid_request"},
		{"FractionalAmount", "POST", "/pay/trades", `{"order_no":"ORD12345","amount_fen":12.5,"channel":"alipay"}`, 400, "invalid_request"},
		{"ExponentAmount", "POST", "/pay/trades", `{"order_no":"ORD12345","amount_fen":1e3,"channel":"alipay"}`, 400, "invalid_request"},
		{"StringAmount", "POST", "/pay/trades", `{"order_no":"ORD12345","amount_fen":"100","channel":"alipay"}`, 400, "invalid_request"},
		{"MissingAmount", "POST", "/pay/trades", map[string]any{"order_no": "ORD12345", "channel": "alipay"}, 400, "invalid_request"},
		{"AboveAlipayLimit", "POST", "/pay/trades", map[string]any{"order_no": "ORD12345", "amount_fen": int64(10_000_000_001), "channel": "alipay"}, 400, "invalid_request"},
		{"AboveWechatLimit", "POST", "/pay/trades", map[string]any{"order_no": "ORD12345", "amount_fen": int64(2_147_483_648), "channel": "wechat"}, 400, "invalid_request"},
		{"OrderTooLongForAlipay", "POST", "/pay/trades", map[string]any{"order_no": long, "amount_fen": 1, "channel": "alipay"}, 400, "invalid_request"},
		{"OrderCharsetAlipay", "POST", "/pay/trades", map[string]any{"order_no": "ORD-123", "amount_fen": 1, "channel": "alipay"}, 400, "invalid_request"},
		{"OrderTooLongForWechat", "POST", "/pay/trades", map[string]any{"order_no": "O23456789012345678901234567890123", "amount_fen": 1, "channel": "wechat"}, 400, "invalid_request"},
		{"OrderTooShortForWechat", "POST", "/pay/trades", map[string]any{"order_no": "O1", "amount_fen": 1, "channel": "wechat"}, 400, "invalid_request"},
		{"OrderHashTagInjection", "POST", "/pay/trades", map[string]any{"order_no": "a}{b", "amount_fen": 1, "channel": "wechat"}, 400, "invalid_request"},
		{"PaidOrderCreatedAgain", "POST", "/pay/trades", map[string]any{"order_no": "BAD_PAID_1", "amount_fen": 500, "channel": "alipay"}, 409, "order_paid"},
		{"PaidOrderOtherAmount", "POST", "/pay/trades", map[string]any{"order_no": "BAD_PAID_1", "amount_fen": 900, "channel": "wechat"}, 409, "order_paid"},
		{"GetUnknownOrder", "GET", "/pay/trades/NOPE12345", nil, 404, "not_found"},
		{"GetInvalidOrder", "GET", "/pay/trades/a%7Bb", nil, 400, "invalid_request"},
		{"CloseUnknownOrder", "POST", "/pay/trades/NOPE12345/close", nil, 404, "not_found"},
		{"ClosePaidOrder", "POST", "/pay/trades/BAD_PAID_1/close", nil, 409, "order_paid"},
		{"WrongMethod", "DELETE", "/pay/trades", nil, 405, "method_not_allowed"},
		{"RefundUnknownOrder", "POST", "/pay/refunds", map[string]any{"order_no": "NOPE12345", "refund_no": "R1", "amount_fen": 1}, 404, "not_found"},
		{"RefundUnpaidOrder", "POST", "/pay/refunds", map[string]any{"order_no": "BAD_OPEN_1", "refund_no": "R2", "amount_fen": 1}, 409, "order_not_paid"},
		{"RefundAbovePaid", "POST", "/pay/refunds", map[string]any{"order_no": "BAD_PAID_1", "refund_no": "R3", "amount_fen": 401}, 409, "refund_exceeds_paid"},
		{"RefundSameNoOtherAmount", "POST", "/pay/refunds", map[string]any{"order_no": "BAD_PAID_1", "refund_no": "BAD_RF_1", "amount_fen": 101}, 422, "idempotency_mismatch"},
		{"RefundNoOfAnotherOrder", "POST", "/pay/refunds", map[string]any{"order_no": "BAD_OPEN_1", "refund_no": "BAD_RF_1", "amount_fen": 100}, 422, "idempotency_mismatch"},
		{"RefundZero", "POST", "/pay/refunds", map[string]any{"order_no": "BAD_PAID_1", "refund_no": "R4", "amount_fen": 0}, 400, "invalid_request"},
		{"RefundBadNo", "POST", "/pay/refunds", map[string]any{"order_no": "BAD_PAID_1", "refund_no": "R 4", "amount_fen": 1}, 400, "invalid_request"},
		{"RefundBadJSON", "POST", "/pay/refunds", `[`, 400, "invalid_request"},
		{"GetUnknownRefund", "GET", "/pay/refunds/NOPE", nil, 404, "not_found"},
		{"ForgedAlipayNotification", "POST", "/pay/notify/alipay", "out_trade_no=X&trade_status=TRADE_SUCCESS&total_amount=5.00&sign=AAAA", 401, "invalid_signature"},
		{"ForgedWechatNotification", "POST", "/pay/notify/wechat", `{"id":"x","event_type":"TRANSACTION.SUCCESS","resource":{}}`, 401, "invalid_signature"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := e.redis.Dump()
			var r response
			if c.name == "ForgedAlipayNotification" {
				r = do(t, c.method, e.base+c.path, c.body, "Content-Type", "application/x-www-form-urlencoded")
			} else {
				r = do(t, c.method, e.base+c.path, c.body)
			}
			wantStatus(t, r, c.status, c.code)
			if r.str("error_description") == "" {
				t.Errorf("no error_description: %s", r.Raw)
			}
			if after := e.redis.Dump(); !reflect.DeepEqual(before, after) {
				t.Errorf("redis changed:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}

// TestOtherPathsReachTheNextHandler: payproxy only answers under its prefix.
func TestOtherPathsReachTheNextHandler(t *testing.T) {
	e := newEnv(t)
	e.start()
	for _, path := range []string{"/", "/payx/trades", "/pay", "/pay/unknown", "/orders/1"} {
		r := do(t, "GET", e.base+path, nil)
		if r.Status != 200 || string(r.Raw) != "upstream" {
			t.Errorf("%s: %d %s", path, r.Status, r.Raw)
		}
	}
}

// TestQRCodeAsPNGAndSyncAndClose covers Accept: image/png, ?sync=1 and the
// close endpoint (trade.closed event, and the QR code is dead at the provider).
func TestQRCodeAsPNGAndSyncAndClose(t *testing.T) {
	e := newEnv(t)
	e.options["poll_interval"] = "1h" // only sync=1 may learn the payment
	e.start()
	for _, ch := range []string{"alipay", "wechat"} {
		t.Run(ch, func(t *testing.T) {
			order := "PNG_" + ch + "_01"
			r := do(t, "POST", e.base+"/pay/trades", map[string]any{"order_no": order, "amount_fen": 88, "channel": ch}, "Accept", "image/png")
			if r.Status != 200 || r.Header.Get("Content-Type") != "image/png" {
				t.Fatalf("png: %d %s", r.Status, r.Header)
			}
			if _, err := png.Decode(bytes.NewReader(r.Raw)); err != nil {
				t.Fatalf("not a PNG: %v", err)
			}
			tradeNo := e.get(order).str("trade_no")
			if err := e.sim.Scan(tradeNo); err != nil {
				t.Fatal(err)
			}
			if st := do(t, "GET", e.base+"/pay/trades/"+order+"?sync=1", nil).str("state"); st != "PAYING" {
				t.Fatalf("sync before payment: %s", st)
			}
			cl := do(t, "POST", e.base+"/pay/trades/"+order+"/close", nil)
			wantStatus(t, cl, 200, "")
			if cl.str("state") != "CLOSED" {
				t.Fatalf("close: %s", cl.Raw)
			}
			if err := e.sim.Pay(tradeNo); err == nil {
				t.Fatal("the provider still accepts payment of a closed trade")
			}
			eventually(t, 5*time.Second, "trade.closed", func() bool { return len(e.hooks.ofType("trade.closed", order)) == 1 })
			// A new create after close makes a new trade.
			n := e.create(order, ch, 88)
			if n.str("trade_no") == tradeNo || n.str("state") != "PAYING" {
				t.Fatalf("create after close: %s", n.Raw)
			}
			if err := e.sim.Pay(n.str("trade_no")); err != nil {
				t.Fatal(err)
			}
			// Ignore the notification: ask with sync=1.
			eventually(t, 5*time.Second, "sync=1 sees PAID", func() bool {
				return do(t, "GET", e.base+"/pay/trades/"+order+"?sync=1", nil).str("state") == "PAID"
			})
		})
	}
}

// TestChangedAmountClosesTheOldTradeFirst: a live trade with another amount
// or channel is closed at the provider before a new one is created.
func TestChangedAmountClosesTheOldTradeFirst(t *testing.T) {
	e := newEnv(t)
	e.start()
	first := e.create("CHG_000001", "wechat", 100)
	second := e.create("CHG_000001", "wechat", 120)
	third := e.create("CHG_000001", "alipay", 120)
	wantStatus(t, third, 200, "")
	if first.str("trade_no") == second.str("trade_no") || second.str("trade_no") == third.str("trade_no") {
		t.Fatal("a changed amount or channel reused the old trade")
	}
	for _, tr := range e.sim.Trades() {
		if tr.OutTradeNo == first.str("trade_no") && tr.State != paysim.WechatClosed {
			t.Errorf("old trade is %s at the provider", tr.State)
		}
		if tr.OutTradeNo == second.str("trade_no") && tr.State != paysim.WechatClosed {
			t.Errorf("second trade is %s at the provider", tr.State)
		}
	}
	if err := e.sim.Pay(first.str("trade_no")); err == nil {
		t.Fatal("the replaced trade can still be paid")
	}
	// Paid at the provider behind our back, then created with another amount → 409.
	if err := e.sim.Pay(third.str("trade_no")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "PAID", func() bool { return e.get("CHG_000001").str("state") == "PAID" })
	wantStatus(t, e.create("CHG_000001", "alipay", 999), http.StatusConflict, "order_paid")
}
