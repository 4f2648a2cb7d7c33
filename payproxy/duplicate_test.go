package payproxy_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/paysim"
	"github.com/tollgate/tollgate/internal/testcaddy"
)

// paidTrades lists the trades of order (by the subject the tests send)
// that the buyer paid at the provider.
func (e *env) paidTrades(order string) map[string]paysim.Trade {
	out := map[string]paysim.Trade{}
	for _, tr := range e.sim.Trades() {
		if strings.HasSuffix(tr.Subject, " "+order) && !tr.PaidAt.IsZero() {
			out[tr.OutTradeNo] = tr
		}
	}
	return out
}

// replayNotifications posts every delivered payment notification of the
// trades ten more times, concurrently, spread over the instances.
func (e *env) replayNotifications(t *testing.T, bases []string, trades ...string) {
	t.Helper()
	var wg sync.WaitGroup
	for _, tn := range trades {
		for _, d := range e.deliveries(tn, "payment") {
			ct := "application/json"
			if d.Provider == "alipay" {
				ct = "application/x-www-form-urlencoded"
			}
			for i := 0; i < 10; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					req, _ := http.NewRequest("POST", bases[i%len(bases)]+"/pay/notify/"+d.Provider, strings.NewReader(d.Body))
					req.Header.Set("Content-Type", ct)
					if resp, err := client.Do(req); err == nil {
						resp.Body.Close()
					}
				}()
			}
		}
	}
	wg.Wait()
}

// TestPaymentOfARetiredTradeIsRecordedAndTheDuplicateRefunded: the close
// of an order's first QR code does not take effect (paysim ignore on the
// cancel of a QR code nobody scanned), the order moves on to a second
// trade (same channel with another amount, or another channel), and the
// buyer pays both. Both payments are recorded against the order: the first
// to arrive makes it PAID (trade.paid), the second is a duplicate
// (trade.duplicate_paid) refunded in full once with refund_no DUP_<trade>,
// while notifications are replayed on two instances racing their pollers.
func TestPaymentOfARetiredTradeIsRecordedAndTheDuplicateRefunded(t *testing.T) {
	e := newEnv(t)
	e.options["poll_interval"] = "50ms"
	inst := e.start()
	port2 := testcaddy.FreePort(t)
	proc := testcaddy.StartProcess(t, "", e.caddyfile(port2))
	if err := testcaddy.WaitListening(fmt.Sprintf("127.0.0.1:%d", port2), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	bases := []string{e.base, fmt.Sprintf("http://127.0.0.1:%d", port2)}
	cases := []struct {
		name, second string
		amount       int64
		payFirst     bool // the retired trade is paid before the current one
	}{
		{"same_channel", "alipay", 1200, true},
		{"channel_switch", "wechat", 1000, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			order := "DUP_" + strings.ToUpper(c.name)
			first := do(t, "POST", bases[0]+"/pay/trades", map[string]any{"order_no": order, "amount_fen": 1000, "channel": "alipay", "subject": "运费 " + order})
			wantStatus(t, first, http.StatusOK, "")
			e.sim.SetFault(paysim.Fault{Operation: "alipay.trade.cancel", Mode: paysim.FaultIgnore})
			second := do(t, "POST", bases[1]+"/pay/trades", map[string]any{"order_no": order, "amount_fen": c.amount, "channel": c.second, "subject": "运费 " + order})
			wantStatus(t, second, http.StatusOK, "")
			a, b := first.str("trade_no"), second.str("trade_no")
			if a == b {
				t.Fatal("the second create reused the first trade")
			}
			pay := []string{b, a}
			if c.payFirst {
				pay = []string{a, b}
			}
			for _, tn := range pay {
				if err := e.sim.Pay(tn); err != nil {
					t.Fatalf("paying %s: %v", tn, err)
				}
			}
			eventually(t, 10*time.Second, "both notifications acknowledged", func() bool {
				for _, tn := range pay {
					d := e.deliveries(tn, "payment")
					if len(d) != 1 || !d[0].Delivered {
						return false
					}
				}
				return true
			})
			e.replayNotifications(t, bases, a, b)
			eventually(t, 10*time.Second, "trade.paid and trade.duplicate_paid", func() bool {
				return len(e.hooks.ofType("trade.paid", order)) == 1 && len(e.hooks.ofType("trade.duplicate_paid", order)) == 1
			})
			primary := e.hooks.ofType("trade.paid", order)[0].Data.TradeNo
			dup := e.hooks.ofType("trade.duplicate_paid", order)[0]
			if primary == dup.Data.TradeNo || (primary != a && primary != b) || (dup.Data.TradeNo != a && dup.Data.TradeNo != b) {
				t.Fatalf("trade.paid %s, trade.duplicate_paid %s; trades %s %s", primary, dup.Data.TradeNo, a, b)
			}
			paid := e.paidTrades(order)
			if dup.Data.AmountFen != paid[dup.Data.TradeNo].TotalFen || dup.Data.Channel != paid[dup.Data.TradeNo].Provider {
				t.Fatalf("trade.duplicate_paid says %+v, the provider has %+v", dup.Data, paid[dup.Data.TradeNo])
			}
			refundNo := "DUP_" + dup.Data.TradeNo
			eventually(t, 10*time.Second, "duplicate refunded", func() bool {
				return do(t, "GET", e.base+"/pay/refunds/"+refundNo, nil).str("state") == "SUCCESS" &&
					len(e.hooks.ofType("refund.succeeded", order)) == 1
			})
			if ev := e.hooks.ofType("refund.succeeded", order)[0]; ev.Data.RefundNo != refundNo || ev.Data.TradeNo != dup.Data.TradeNo || ev.Data.AmountFen != dup.Data.AmountFen {
				t.Fatalf("refund.succeeded: %+v", ev.Data)
			}
			e.replayNotifications(t, bases, a, b)
			time.Sleep(300 * time.Millisecond) // several poller rounds on both instances
			var refunds []paysim.Refund
			for _, rf := range e.sim.Refunds() {
				if rf.OutTradeNo == a || rf.OutTradeNo == b {
					refunds = append(refunds, rf)
				}
			}
			if len(refunds) != 1 || refunds[0].OutTradeNo != dup.Data.TradeNo || refunds[0].AmountFen != dup.Data.AmountFen || refunds[0].OutRefundNo != refundNo {
				t.Fatalf("the provider holds refunds %+v, want one full refund of %s", refunds, dup.Data.TradeNo)
			}
			got := e.get(order)
			if got.str("state") != "PAID" || got.str("trade_no") != primary {
				t.Fatalf("the order reads %s", got.Raw)
			}
			wantStatus(t, e.create(order, "alipay", 1000), http.StatusConflict, "order_paid")
			if n := len(e.hooks.ofType("trade.paid", order)) + len(e.hooks.ofType("trade.duplicate_paid", order)); n != 2 {
				t.Fatalf("%d payment events, want 2", n)
			}
		})
	}
	// Each duplicate is counted once, by the instance that recorded it.
	total := 0.0
	for _, admin := range []string{inst.AdminURL(), proc.AdminURL()} {
		for _, line := range strings.Split(string(do(t, "GET", admin+"/metrics", nil).Raw), "\n") {
			if strings.HasPrefix(line, "tollgate_payproxy_duplicate_payments_total{channel=") {
				var v float64
				fmt.Sscan(line[strings.LastIndex(line, " ")+1:], &v)
				total += v
			}
		}
	}
	if total != float64(len(cases)) {
		t.Errorf("tollgate_payproxy_duplicate_payments_total sums to %v over both instances, want %d", total, len(cases))
	}
}

// TestDuplicateRefundOffRecordsTheDuplicateWithoutRefunding: with
// duplicate_refund off the second payment is recorded and reported, and
// nothing is refunded.
func TestDuplicateRefundOffRecordsTheDuplicateWithoutRefunding(t *testing.T) {
	e := newEnv(t)
	e.extra = "\t\tduplicate_refund off\n"
	e.start()
	const order = "DUP_OFF_1"
	first := e.create(order, "alipay", 500)
	e.sim.SetFault(paysim.Fault{Operation: "alipay.trade.cancel", Mode: paysim.FaultIgnore})
	second := e.create(order, "alipay", 600)
	wantStatus(t, second, http.StatusOK, "")
	for _, tn := range []string{second.str("trade_no"), first.str("trade_no")} {
		if err := e.sim.Pay(tn); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, "trade.duplicate_paid", func() bool { return len(e.hooks.ofType("trade.duplicate_paid", order)) == 1 })
	time.Sleep(500 * time.Millisecond)
	if n := len(e.sim.Refunds()); n != 0 {
		t.Fatalf("%d refunds with duplicate_refund off", n)
	}
}

// TestCloseTheProviderDoesNotConfirmNeverReplacesTheTrade: when the
// provider answers a close but its query still shows the trade open (a
// WeChat close ignored, an Alipay close of a scanned QR ignored), or
// answers TRADE_NOT_FOUND to the cancel of an Alipay QR code, the order's
// trade is not replaced: the create answers 502 and the old trade stays,
// and when the buyer pays it the order is PAID by it.
func TestCloseTheProviderDoesNotConfirmNeverReplacesTheTrade(t *testing.T) {
	e := newEnv(t)
	e.start()
	cases := []struct {
		name, channel, fault, mode string
		scan, lostCreate           bool
	}{
		{"wechat_close_ignored", "wechat", "wechat.close", paysim.FaultIgnore, false, false},
		{"alipay_close_of_a_scanned_trade_ignored", "alipay", "alipay.trade.close", paysim.FaultIgnore, true, false},
		{"alipay_cancel_answers_trade_not_found", "alipay", "", "", false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			order := "NOREPL_" + strings.ToUpper(c.name[:6]) + fmt.Sprint(len(c.name))
			if c.lostCreate {
				e.sim.SetFault(paysim.Fault{Operation: createOp[c.channel], Mode: paysim.FaultReset})
				wantStatus(t, e.create(order, c.channel, 800), http.StatusBadGateway, "provider_error")
			} else {
				wantStatus(t, e.create(order, c.channel, 800), http.StatusOK, "")
			}
			tradeNo := e.get(order).str("trade_no")
			if c.scan {
				if err := e.sim.Scan(tradeNo); err != nil {
					t.Fatal(err)
				}
			}
			if c.fault != "" {
				e.sim.SetFault(paysim.Fault{Operation: c.fault, Mode: c.mode, Count: 100})
			}
			wantStatus(t, e.create(order, c.channel, 900), http.StatusBadGateway, "provider_error")
			if got := e.get(order); got.str("trade_no") != tradeNo {
				t.Fatalf("the trade was replaced: %s", got.Raw)
			}
			if c.fault != "" {
				e.sim.SetFault(paysim.Fault{Operation: c.fault, Mode: "none"})
			}
			if c.lostCreate {
				return
			}
			if err := e.sim.Pay(tradeNo); err != nil {
				t.Fatal(err)
			}
			eventually(t, 10*time.Second, "PAID by the first trade", func() bool {
				r := e.get(order)
				return r.str("state") == "PAID" && r.str("trade_no") == tradeNo
			})
			n := 0
			for _, tr := range e.sim.Trades() {
				if strings.HasSuffix(tr.Subject, " "+order) {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("the provider holds %d trades for the order, want 1", n)
			}
		})
	}
}
