package paysim

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/smartwalle/alipay/v3"
	"github.com/wechatpay-apiv3/wechatpay-go/core"
	"github.com/wechatpay-apiv3/wechatpay-go/services/payments/native"
)

// TestQRCodeCannotBeScannedAfterTwoHoursWhileItsTradeStaysOpen: an Alipay
// precreate QR and a WeChat code_url are scannable for 2 hours whatever
// the trade's timeout (here a day): within them, issuing the trade again
// answers the same code; after them a scan (the control API and the page)
// fails with qr_expired while the provider still shows the trade open,
// and issuing the trade again answers a fresh code that can be paid. A
// trade scanned in time can still be paid later.
func TestQRCodeCannotBeScannedAfterTwoHoursWhileItsTradeStaysOpen(t *testing.T) {
	m := newMerchant(t, testConfig)
	issue := map[string]func(no string) string{
		ProviderAlipay: func(no string) string { return m.mustPrecreate(no, "1.00", "", m.in(24*time.Hour)) },
		ProviderWechat: func(no string) string { return m.mustPrepay(no, 100, "http://127.0.0.1:1/n", m.in(24*time.Hour)) },
	}
	stillOpen := map[string]func(no string) bool{
		ProviderAlipay: func(no string) bool { // no trade at Alipay before a scan, and nothing closed
			q, err := m.ali.TradeQuery(ctx, alipay.TradeQuery{OutTradeNo: no})
			return err == nil && q.SubCode == "ACQ.TRADE_NOT_EXIST"
		},
		ProviderWechat: func(no string) bool {
			tx, _, err := m.wx.QueryOrderByOutTradeNo(ctx, native.QueryOrderByOutTradeNoRequest{OutTradeNo: core.String(no), Mchid: core.String(m.k.WechatMchID)})
			return err == nil && *tx.TradeState == "NOTPAY"
		},
	}
	for _, provider := range []string{ProviderAlipay, ProviderWechat} {
		t.Run(provider, func(t *testing.T) {
			no, early := "QR-"+provider, "QR-EARLY-"+provider
			first := issue[provider](no)
			issue[provider](early)
			if err := m.sim.Scan(early); err != nil {
				t.Fatal(err)
			}
			m.sim.Advance(time.Hour)
			if again := issue[provider](no); again != first {
				t.Fatalf("within the window the code changed: %s then %s", first, again)
			}
			m.sim.Advance(time.Hour)
			status, body := do(t, "POST", m.srv.URL+"/_sim/trades/"+no+"/pay?provider="+provider, "")
			if status != 409 || !strings.Contains(string(body), `"error": "qr_expired"`) {
				t.Fatalf("paying a dead QR code: %d %s", status, body)
			}
			if !stillOpen[provider](no) {
				t.Fatal("the trade is not open any more")
			}
			_, page := do(t, "GET", m.srv.URL+"/_sim/", "")
			if !strings.Contains(string(page), "QR code expired") || strings.Contains(string(page), "/_sim/trades/"+no+"/pay") {
				t.Fatal("the page still offers to pay a dead QR code")
			}
			fresh := issue[provider](no)
			if fresh == first {
				t.Fatal("issuing the trade again past its window answered the dead code")
			}
			m.pay(no)
			m.pay(early) // scanned within its window
		})
	}
}

// TestQRNotRenewedAnswersTheDeadCodeAgain: qr_not_renewed on a re-issue
// past the window answers the code already given, which still cannot be
// scanned: the merchant must open a new trade.
func TestQRNotRenewedAnswersTheDeadCodeAgain(t *testing.T) {
	m := newMerchant(t, testConfig)
	first := m.mustPrecreate("QRNR-A", "1.00", "", m.in(24*time.Hour))
	firstWx := m.mustPrepay("QRNR-W", 100, "http://127.0.0.1:1/n", m.in(24*time.Hour))
	m.sim.Advance(2 * time.Hour)
	m.sim.SetFault(Fault{Operation: "alipay.trade.precreate", Mode: FaultQRNotRenewed})
	m.sim.SetFault(Fault{Operation: "wechat.native.prepay", Mode: FaultQRNotRenewed})
	if again := m.mustPrecreate("QRNR-A", "1.00", "", m.in(24*time.Hour)); again != first {
		t.Fatalf("alipay: %s then %s", first, again)
	}
	if again := m.mustPrepay("QRNR-W", 100, "http://127.0.0.1:1/n", m.in(24*time.Hour)); again != firstWx {
		t.Fatalf("wechat: %s then %s", firstWx, again)
	}
	for _, no := range []string{"QRNR-A", "QRNR-W"} {
		if err := m.sim.Pay(no); err != ErrQRExpired {
			t.Fatalf("%s: %v", no, err)
		}
	}
}

// TestClockMovesForwardOnlyThroughTheControlAPI: POST /_sim/clock
// {"advance_ms"} moves the simulator's clock and answers its time; a
// zero, negative or oversized advance, or another field, is refused and
// moves nothing.
func TestClockMovesForwardOnlyThroughTheControlAPI(t *testing.T) {
	m := newMerchant(t, testConfig)
	before := m.sim.Now()
	status, body := do(t, "POST", m.srv.URL+"/_sim/clock", `{"advance_ms":7200000}`)
	var got map[string]string
	_ = json.Unmarshal(body, &got)
	now, err := time.Parse(time.RFC3339Nano, got["now"])
	if status != 200 || err != nil || now.Sub(before) < 2*time.Hour || now.Sub(before) > 2*time.Hour+time.Minute {
		t.Fatalf("%d %s", status, body)
	}
	for _, bad := range []string{`{"advance_ms":0}`, `{"advance_ms":-5}`, `{"advance_ms":99999999999999}`, `{"advance":"2h"}`, `nope`} {
		moved := m.sim.Now()
		status, body := do(t, "POST", m.srv.URL+"/_sim/clock", bad)
		var e map[string]string
		_ = json.Unmarshal(body, &e)
		if status != 400 || e["error"] != "invalid_request" || e["error_description"] == "" {
			t.Errorf("%s: %d %s", bad, status, body)
		}
		if m.sim.Now().Sub(moved) > time.Minute {
			t.Errorf("%s moved the clock", bad)
		}
	}
	if status, body := do(t, "GET", m.srv.URL+"/_sim/clock", ""); status != 200 || !strings.Contains(string(body), `"now"`) {
		t.Fatalf("GET: %d %s", status, body)
	}
}
