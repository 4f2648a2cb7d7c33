package paysim

import (
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/smartwalle/alipay/v3"
)

// TestAcknowledgedNotificationArrivesAgainWithTheSameID: duplicate on
// alipay.notify / wechat.notify sends an acknowledged notification once
// more, verifiable, with the same notify_id / event id (WeChat: a new
// Request-ID), as a delivery of its own.
func TestAcknowledgedNotificationArrivesAgainWithTheSameID(t *testing.T) {
	m := newMerchant(t, testConfig)
	for _, provider := range []string{ProviderAlipay, ProviderWechat} {
		t.Run(provider, func(t *testing.T) {
			ep := m.endpoint(provider, acknowledge(provider))
			no := "DUP-" + provider
			if provider == ProviderAlipay {
				m.mustPrecreate(no, "5.00", ep.srv.URL, m.in(time.Hour))
			} else {
				m.mustPrepay(no, 500, ep.srv.URL, m.in(time.Hour))
			}
			m.sim.SetFault(Fault{Operation: provider + ".notify", Mode: FaultDuplicate})
			m.pay(no)
			got := ep.waitHeard(2)
			if provider == ProviderAlipay {
				if got[0].ali.NotifyId != got[1].ali.NotifyId || got[1].ali.TradeStatus != alipay.TradeStatusSuccess {
					t.Fatalf("notify_id %s then %s", got[0].ali.NotifyId, got[1].ali.NotifyId)
				}
			} else {
				if got[0].wxID != got[1].wxID || got[1].wxType != "TRANSACTION.SUCCESS" {
					t.Fatalf("event id %s then %s", got[0].wxID, got[1].wxID)
				}
				if got[0].header.Get("Request-ID") == got[1].header.Get("Request-ID") {
					t.Fatal("the duplicate reuses the Request-ID: only the event id identifies a notification")
				}
			}
			ds := deliveriesOf(m.sim, no, "payment")
			waitFor(t, "the duplicate's delivery", func() bool {
				ds = deliveriesOf(m.sim, no, "payment")
				return len(ds) == 2 && ds[1].Delivered
			})
			if !ds[0].Delivered || ds[0].Duplicate || ds[0].Fault != FaultDuplicate || !ds[1].Duplicate || ds[0].ID != ds[1].ID {
				t.Fatalf("deliveries %+v", ds)
			}
		})
	}
}

// TestDelayedNotificationIsOvertakenByLaterOnes: delay on a notify
// operation holds that delivery delay_ms (on the simulator's clock), so
// that later ones arrive first: an Alipay TRADE_SUCCESS after its
// refund's notification, WeChat refund 2's notification before refund 1's.
func TestDelayedNotificationIsOvertakenByLaterOnes(t *testing.T) {
	const hour = 3600 * 1000
	t.Run("alipay payment after its refund", func(t *testing.T) {
		m := newMerchant(t, testConfig)
		ep := m.endpoint(ProviderAlipay, acknowledge(ProviderAlipay))
		no := "LATE-A-1"
		m.mustPrecreate(no, "5.00", ep.srv.URL, m.in(3*time.Hour))
		m.sim.SetFault(Fault{Operation: "alipay.notify", Mode: FaultDelay, DelayMS: hour})
		m.pay(no)
		held := m.waitDelivery("the held payment notification", func(d Delivery) bool {
			return d.OutTradeNo == no && d.Kind == "payment" && !d.NextAt.IsZero()
		})
		if r, err := m.aliRefund(no, "LATE-RF-1", "1.00"); err != nil || r.FundChange != "Y" {
			t.Fatalf("refund %+v %v", r, err)
		}
		first := ep.waitHeard(1)[0].ali
		if first.OutBizNo != "LATE-RF-1" || first.RefundFee != "1.00" {
			t.Fatalf("first to arrive: %+v", first)
		}
		if wait := held.NextAt.Sub(held.CreatedAt); held.Fault != FaultDelay || wait < time.Hour || wait > time.Hour+time.Minute {
			t.Fatalf("held delivery %+v", held)
		}
		if d := deliveriesOf(m.sim, no, "payment")[0]; len(d.Attempts) != 0 {
			t.Fatalf("the held notification was attempted before its time: %+v", d.Attempts)
		}
		m.sim.Advance(time.Hour)
		late := ep.waitHeard(2)[1].ali
		if late.TradeStatus != alipay.TradeStatusSuccess || late.RefundFee != "" || late.NotifyId != held.ID {
			t.Fatalf("late payment notification %+v", late)
		}
	})
	t.Run("wechat refund 1 after refund 2", func(t *testing.T) {
		m := newMerchant(t, testConfig)
		ep := m.endpoint(ProviderWechat, acknowledge(ProviderWechat))
		no := "LATE-W-1"
		m.mustPrepay(no, 500, ep.srv.URL, m.in(3*time.Hour))
		m.pay(no)
		ep.waitHeard(1)
		m.sim.SetFault(Fault{Operation: "wechat.notify", Mode: FaultDelay, DelayMS: hour})
		if _, err := m.wxRefund(no, "LATE-WR-1", 100, 500, ep.srv.URL); err != nil {
			t.Fatal(err)
		}
		m.waitDelivery("refund 1's held notification", func(d Delivery) bool { return d.OutRefundNo == "LATE-WR-1" })
		if _, err := m.wxRefund(no, "LATE-WR-2", 200, 500, ep.srv.URL); err != nil {
			t.Fatal(err)
		}
		if got := ep.waitHeard(2)[1].wx; got["out_refund_no"] != "LATE-WR-2" {
			t.Fatalf("second to arrive: %v", got)
		}
		m.sim.Advance(time.Hour)
		if got := ep.waitHeard(3)[2].wx; got["out_refund_no"] != "LATE-WR-1" || got["refund_status"] != "SUCCESS" {
			t.Fatalf("third to arrive: %v", got)
		}
	})
}

// TestScannedAlipayTradeThatClosesUnpaidNotifiesTradeClosed: a scanned
// trade that times out (nobody reading it) or is closed sends a verifiable
// TRADE_CLOSED with gmt_close and no payment fields; a QR code nobody
// scanned has no trade at Alipay and sends nothing.
func TestScannedAlipayTradeThatClosesUnpaidNotifiesTradeClosed(t *testing.T) {
	m := newMerchant(t, testConfig)
	ep := m.endpoint(ProviderAlipay, acknowledge(ProviderAlipay))
	m.mustPrecreate("CLOSE-TIMEOUT", "2.00", ep.srv.URL, m.in(30*time.Minute))
	m.mustPrecreate("CLOSE-CLOSED", "2.00", ep.srv.URL, m.in(time.Hour))
	m.mustPrecreate("CLOSE-UNSCANNED", "2.00", ep.srv.URL, m.in(30*time.Minute))
	for _, no := range []string{"CLOSE-TIMEOUT", "CLOSE-CLOSED"} {
		if err := m.sim.Scan(no); err != nil {
			t.Fatal(err)
		}
	}
	if r, err := m.ali.TradeClose(ctx, alipay.TradeClose{OutTradeNo: "CLOSE-CLOSED"}); err != nil || !r.IsSuccess() {
		t.Fatalf("close %+v %v", r, err)
	}
	// On the real clock too, without anyone reading the trade.
	m.mustPrecreate("CLOSE-SOON", "2.00", ep.srv.URL, m.in(2*time.Second))
	if err := m.sim.Scan("CLOSE-SOON"); err != nil {
		t.Fatal(err)
	}
	m.waitDelivery("CLOSE-SOON's TRADE_CLOSED", func(d Delivery) bool { return d.OutTradeNo == "CLOSE-SOON" && d.Kind == "close" })
	m.sim.Advance(31 * time.Minute)
	got := ep.waitHeard(3)
	seen := map[string]*alipay.Notification{}
	for _, h := range got {
		seen[h.ali.OutTradeNo] = h.ali
	}
	for _, no := range []string{"CLOSE-TIMEOUT", "CLOSE-CLOSED", "CLOSE-SOON"} {
		n := seen[no]
		if n == nil || n.TradeStatus != alipay.TradeStatusClosed || n.GmtClose == "" || n.GmtPayment != "" || n.ReceiptAmount != "" ||
			n.RefundFee != "" || n.TotalAmount != "2.00" {
			t.Fatalf("%s: %+v", no, n)
		}
		if ds := deliveriesOf(m.sim, no, "close"); len(ds) != 1 || ds[0].Event != "TRADE_CLOSED" {
			t.Fatalf("%s deliveries %+v", no, ds)
		}
	}
	if tr, _ := findTrade(m.sim, ProviderAlipay, "CLOSE-UNSCANNED"); tr.State != AlipayTradeClosed {
		t.Fatalf("unscanned QR: %s", tr.State)
	}
	if ds := deliveriesOf(m.sim, "CLOSE-UNSCANNED", "close"); len(ds) != 0 {
		t.Fatalf("a QR code nobody scanned notified %+v", ds)
	}
}

// TestFinishedAlipayTradeNotifiesTradeFinishedAndTakesNoRefund: POST
// /_sim/trades/{no}/finish moves a paid trade past its refund period:
// TRADE_FINISHED is notified and queried, and a refund is refused with
// ACQ.TRADE_HAS_FINISHED; only a paid Alipay trade can finish.
func TestFinishedAlipayTradeNotifiesTradeFinishedAndTakesNoRefund(t *testing.T) {
	m := newMerchant(t, testConfig)
	ep := m.endpoint(ProviderAlipay, acknowledge(ProviderAlipay))
	no := "FINISH-1"
	m.mustPrecreate(no, "3.00", ep.srv.URL, m.in(time.Hour))
	if status, body := do(t, "POST", m.srv.URL+"/_sim/trades/"+no+"/finish", ""); status != 409 {
		t.Fatalf("finishing an unpaid trade: %d %s", status, body)
	}
	m.pay(no)
	ep.waitHeard(1) // TRADE_SUCCESS first
	if status, body := do(t, "POST", m.srv.URL+"/_sim/trades/"+no+"/finish", ""); status != 200 {
		t.Fatalf("finish: %d %s", status, body)
	}
	got := ep.waitHeard(2)[1].ali
	if got.TradeStatus != alipay.TradeStatusFinished || got.GmtPayment == "" || got.GmtClose == "" || got.RefundFee != "" {
		t.Fatalf("finish notification %+v", got)
	}
	if q, err := m.ali.TradeQuery(ctx, alipay.TradeQuery{OutTradeNo: no}); err != nil || q.TradeStatus != alipay.TradeStatusFinished {
		t.Fatalf("query %+v %v", q, err)
	}
	r, err := m.aliRefund(no, "FIN-RF-1", "1.00")
	if err != nil || r.SubCode != "ACQ.TRADE_HAS_FINISHED" || r.RefundFee != "0.00" {
		t.Fatalf("refund of a finished trade %+v %v", r, err)
	}
	m.mustPrepay("FINISH-W-1", 100, ep.srv.URL, m.in(time.Hour))
	m.pay("FINISH-W-1")
	if status, body := do(t, "POST", m.srv.URL+"/_sim/trades/FINISH-W-1/finish", ""); status != 404 {
		t.Fatalf("finishing a WeChat trade: %d %s", status, body)
	}
}

// TestEachProviderRetriesOnItsOwnSchedule: with the providers' real
// schedules (NotifyDivisor 1) and the clock moved step by step, an Alipay
// notification the merchant never acknowledges is tried 8 times at 4m,
// 10m, 10m, 1h, 2h, 6h, 15h; a WeChat one 16 times at 15s … 6h; then
// they give up. NotifyDivisor compresses both schedules alike.
func TestEachProviderRetriesOnItsOwnSchedule(t *testing.T) {
	m := newMerchant(t, Config{NotifyDivisor: 1, WechatRefundDelay: time.Millisecond})
	refuse := func(int) (int, string) { return 500, "busy" }
	for _, tc := range []struct {
		provider string
		want     []time.Duration
	}{
		{ProviderAlipay, alipayNotifySchedule},
		{ProviderWechat, wechatNotifySchedule},
	} {
		t.Run(tc.provider, func(t *testing.T) {
			ep := m.endpoint(tc.provider, refuse)
			no := "SCHED-" + tc.provider
			if tc.provider == ProviderAlipay {
				m.mustPrecreate(no, "1.00", ep.srv.URL, m.in(time.Hour))
			} else {
				m.mustPrepay(no, 100, ep.srv.URL, m.in(time.Hour))
			}
			m.pay(no)
			var total time.Duration
			for i := 0; i <= len(tc.want); i++ {
				var d Delivery
				waitFor(t, "attempt", func() bool {
					d = deliveriesOf(m.sim, no, "payment")[0]
					return len(d.Attempts) == i+1 && (d.GaveUp || !d.NextAt.IsZero())
				})
				if i == len(tc.want) {
					if !d.GaveUp || d.Delivered {
						t.Fatalf("after %d attempts: %+v", i+1, d)
					}
					break
				}
				if gap := d.NextAt.Sub(d.Attempts[i].At); gap != tc.want[i] {
					t.Fatalf("attempt %d: next one in %s, want %s", i+1, gap, tc.want[i])
				}
				total += tc.want[i]
				m.sim.Advance(tc.want[i])
			}
			if len(tc.want)+1 != map[string]int{ProviderAlipay: 8, ProviderWechat: 16}[tc.provider] {
				t.Fatalf("%d tries", len(tc.want)+1)
			}
			t.Logf("%d tries over %s", len(tc.want)+1, total)
		})
	}
	t.Run("compressed", func(t *testing.T) {
		sim, _ := startSim(t, Config{NotifyDivisor: 1000})
		for provider, own := range map[string][]time.Duration{ProviderAlipay: alipayNotifySchedule, ProviderWechat: wechatNotifySchedule} {
			got := sim.NotifySchedule(provider)
			for i := range own {
				if got[i] != own[i]/1000 {
					t.Fatalf("%s delay %d: %s, want %s", provider, i, got[i], own[i]/1000)
				}
			}
		}
	})
}

// TestAlipayAcknowledgesOnlyTheExactBodySuccess: "success" with a newline,
// in capitals, padded, or with another status is not an acknowledgement;
// Alipay sends again until it reads exactly the 7 bytes.
func TestAlipayAcknowledgesOnlyTheExactBodySuccess(t *testing.T) {
	m := newMerchant(t, Config{NotifyRetry: []time.Duration{time.Millisecond, time.Millisecond, time.Millisecond, time.Millisecond, time.Millisecond}})
	answers := []struct {
		status int
		body   string
	}{{200, "success\n"}, {200, "SUCCESS"}, {200, " success"}, {201, "success"}, {200, "success"}}
	ep := m.endpoint(ProviderAlipay, func(n int) (int, string) { return answers[n].status, answers[n].body })
	m.mustPrecreate("ACK-1", "1.00", ep.srv.URL, m.in(time.Hour))
	m.pay("ACK-1")
	d := m.waitDelivery("the acknowledgement", func(d Delivery) bool { return d.OutTradeNo == "ACK-1" && (d.Delivered || d.GaveUp) })
	if !d.Delivered || len(d.Attempts) != len(answers) {
		t.Fatalf("delivered=%v after %d attempts: %+v", d.Delivered, len(d.Attempts), d.Attempts)
	}
}

// TestWechatNotificationCarriesARequestIDThatIsNewOnEveryAttempt: every
// POST carries WeChat's Request-ID header (40 hex digits and -0); a retry
// gets a new one, the body's event id stays.
func TestWechatNotificationCarriesARequestIDThatIsNewOnEveryAttempt(t *testing.T) {
	m := newMerchant(t, testConfig)
	ep := m.endpoint(ProviderWechat, func(n int) (int, string) {
		if n == 0 {
			return http.StatusInternalServerError, `{"code":"FAIL","message":"busy"}`
		}
		return http.StatusNoContent, ""
	})
	m.mustPrepay("REQID-1", 100, ep.srv.URL, m.in(time.Hour))
	m.pay("REQID-1")
	got := ep.waitHeard(2)
	format := regexp.MustCompile(`^[0-9A-F]{40}-0$`)
	a, b := got[0].header.Get("Request-ID"), got[1].header.Get("Request-ID")
	if !format.MatchString(a) || !format.MatchString(b) || a == b || got[0].wxID != got[1].wxID {
		t.Fatalf("Request-ID %q then %q, event id %s then %s", a, b, got[0].wxID, got[1].wxID)
	}
	d := m.waitDelivery("delivered", func(d Delivery) bool { return d.OutTradeNo == "REQID-1" && d.Delivered })
	if d.Attempts[0].RequestID != a || d.Attempts[1].RequestID != b {
		t.Fatalf("attempts %+v", d.Attempts)
	}
}
