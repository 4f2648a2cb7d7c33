package payproxy_test

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/paysim"
)

// A precreate QR code / WeChat code_url can be scanned for two hours
// after the provider issued it, whatever the trade's own timeout. These
// tests run trades of 24 h, move paysim's clock past the two hours
// (Advance: what POST /_sim/clock does), and run payproxy with a short
// qr_lifetime so that it too counts the QR code as too old.

const qrTestLifetime = 500 * time.Millisecond

// newQREnv is an env with trades of 24 h and QR codes handed out for
// qrTestLifetime after they were issued.
func newQREnv(t *testing.T) *env {
	e := newEnv(t)
	e.options["pay_timeout"] = "24h"
	e.options["qr_lifetime"] = qrTestLifetime.String()
	e.start()
	return e
}

// simTrade is the provider's record of a trade.
func (e *env) simTrade(t *testing.T, tradeNo string) paysim.Trade {
	t.Helper()
	for _, tr := range e.sim.Trades() {
		if tr.OutTradeNo == tradeNo {
			return tr
		}
	}
	t.Fatalf("the provider holds no trade %s", tradeNo)
	return paysim.Trade{}
}

// wantScannable fails unless qr is the trade's code at the provider and
// its scan window is still open there.
func (e *env) wantScannable(t *testing.T, tradeNo, qr string) {
	t.Helper()
	tr := e.simTrade(t, tradeNo)
	if tr.QRCode != qr || !e.sim.Now().Before(tr.QRExpiresAt) {
		t.Fatalf("payproxy handed out %s for trade %s: the provider's code is %s, scannable until %s (provider time %s)",
			qr, tradeNo, tr.QRCode, tr.QRExpiresAt.Format(time.RFC3339), e.sim.Now().Format(time.RFC3339))
	}
}

// createPastScanWindow creates the order's trade and checks its code is
// scannable, then moves the provider's clock past the code's scan window
// (the trade still open: a scan of the code fails at the provider) and
// waits until payproxy's qr_lifetime has passed too. It returns the
// create's answer.
func (e *env) createPastScanWindow(t *testing.T, order, channel string, amount int64) response {
	t.Helper()
	first := e.create(order, channel, amount)
	handedOut := time.Now()
	wantStatus(t, first, http.StatusOK, "")
	tradeNo := first.str("trade_no")
	e.wantScannable(t, tradeNo, first.str("qr_code"))
	e.sim.Advance(2*time.Hour + time.Minute)
	if err := e.sim.Scan(tradeNo); !errors.Is(err, paysim.ErrQRExpired) {
		t.Fatalf("scanning the old code after two hours: %v, want %v", err, paysim.ErrQRExpired)
	}
	eventually(t, 5*time.Second, "qr_lifetime passed", func() bool { return time.Since(handedOut) > qrTestLifetime })
	return first
}

// TestQRCodePastItsScanWindowIsRenewedOnTheSameTrade: a client comes back
// for an unpaid order of a 24 h trade after the QR code's two hours: the
// status shows no QR code, and the create hands out a fresh one the
// provider issued for the same trade (the provider renews a code past its
// window); the buyer pays with it, and the payment is recorded once.
func TestQRCodePastItsScanWindowIsRenewedOnTheSameTrade(t *testing.T) {
	e := newQREnv(t)
	for _, ch := range []string{"alipay", "wechat"} {
		t.Run(ch, func(t *testing.T) {
			order := "QR_RENEW_" + ch
			first := e.createPastScanWindow(t, order, ch, 900)
			tradeNo := first.str("trade_no")
			if st := e.get(order); st.str("state") != "PAYING" || st.str("qr_code") != "" {
				t.Fatalf("status of an order whose QR code is past qr_lifetime: %s", st.Raw)
			}
			again := e.create(order, ch, 900)
			wantStatus(t, again, http.StatusOK, "")
			if again.str("trade_no") != tradeNo {
				t.Fatalf("a new trade %s replaced %s, though the provider renewed the code", again.str("trade_no"), tradeNo)
			}
			if again.str("qr_code") == first.str("qr_code") {
				t.Fatalf("the same QR code was handed out again past its scan window: %s", again.Raw)
			}
			e.wantScannable(t, tradeNo, again.str("qr_code"))
			if st := e.get(order); st.str("qr_code") != again.str("qr_code") {
				t.Fatalf("status after the renewal: %s", st.Raw)
			}
			e.wantProviderTrades(t, order, 1)

			if err := e.sim.Pay(tradeNo); err != nil {
				t.Fatal(err)
			}
			eventually(t, 10*time.Second, "PAID", func() bool { return e.get(order).str("state") == "PAID" })
			e.checkOrder(t, order)
		})
	}
}

// TestQRCodeTheProviderWillNotRenewIsReplacedByANewTradeAfterAConfirmedClose:
// the provider answers the old, dead code for the open trade
// (qr_not_renewed): payproxy closes that trade, confirms the close with a
// signed query, and hands out a new trade's QR code; the buyer pays the
// new one, the old one stays closed, the payment is recorded once. While
// the close is not confirmed (the provider ignores it), no new trade is
// made and no dead code is handed out: the client gets 502 provider_error
// and the retry goes through (WeChat, whose trade exists from the prepay;
// an Alipay code nobody scanned has no trade to query, and its close is
// confirmed by Alipay's answer).
func TestQRCodeTheProviderWillNotRenewIsReplacedByANewTradeAfterAConfirmedClose(t *testing.T) {
	e := newQREnv(t)
	for _, ch := range []string{"alipay", "wechat"} {
		t.Run(ch, func(t *testing.T) {
			order := "QR_NORENEW_" + ch
			oldTrade := e.createPastScanWindow(t, order, ch, 700).str("trade_no")
			e.sim.SetFault(paysim.Fault{Operation: createOp[ch], Mode: paysim.FaultQRNotRenewed, Count: 100})
			defer e.sim.SetFault(paysim.Fault{Operation: createOp[ch], Mode: "none"})
			if ch == "wechat" {
				e.sim.SetFault(paysim.Fault{Operation: closeOp[ch], Mode: paysim.FaultIgnore})
				r := e.create(order, ch, 700)
				if r.Status == http.StatusOK {
					t.Fatalf("a create answered while the old trade's close was not confirmed: %s", r.Raw)
				}
				wantStatus(t, r, http.StatusBadGateway, "provider_error")
				e.wantProviderTrades(t, order, 1)
			}

			again := e.create(order, ch, 700)
			wantStatus(t, again, http.StatusOK, "")
			newTrade := again.str("trade_no")
			if newTrade == oldTrade {
				t.Fatalf("the old trade's dead code was handed out again: %s", again.Raw)
			}
			e.wantScannable(t, newTrade, again.str("qr_code"))
			if st := e.simTrade(t, oldTrade).State; st != paysim.AlipayTradeClosed && st != paysim.WechatClosed {
				t.Fatalf("the replaced trade is %s at the provider, want closed", st)
			}

			if err := e.sim.Pay(newTrade); err != nil {
				t.Fatal(err)
			}
			eventually(t, 10*time.Second, "PAID", func() bool { return e.get(order).str("state") == "PAID" })
			if err := e.sim.Pay(oldTrade); err == nil {
				t.Fatalf("the replaced trade could still be paid")
			}
			e.checkOrder(t, order)
		})
	}
}
