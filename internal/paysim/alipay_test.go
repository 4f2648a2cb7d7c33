package paysim

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/smartwalle/alipay/v3"
)

// TestAlipayTradeLifecycle walks one trade through every state of
// PROVIDERS.md §5 with the unmodified SDK, which verifies every answer.
func TestAlipayTradeLifecycle(t *testing.T) {
	sim, srv := startSim(t, testConfig)
	c := alipayFor(t, sim, srv)
	ctx := context.Background()
	const no = "ORDER-A-1"
	pre := alipay.TradePreCreate{}
	pre.OutTradeNo, pre.Subject, pre.TotalAmount, pre.ProductCode = no, "parcel 1", "12.30", "FACE_TO_FACE_PAYMENT"
	pre.NotifyURL = "http://127.0.0.1:1/notify" // nothing listens; notifications are not this test's concern

	first, err := c.TradePreCreate(ctx, pre)
	if err != nil || !first.IsSuccess() || !strings.HasPrefix(first.QRCode, "https://qr.alipay.com/") || first.OutTradeNo != no {
		t.Fatalf("precreate: %+v, %v", first, err)
	}
	query := func() *alipay.TradeQueryRsp {
		t.Helper()
		q := alipay.TradeQuery{OutTradeNo: no}
		rsp, err := c.TradeQuery(ctx, q)
		if err != nil {
			t.Fatalf("query: %v", err)
		}
		return rsp
	}
	refund := func(amount, reqNo string) *alipay.TradeRefundRsp {
		t.Helper()
		rsp, err := c.TradeRefund(ctx, alipay.TradeRefund{OutTradeNo: no, RefundAmount: amount, OutRequestNo: reqNo})
		if err != nil {
			t.Fatalf("refund: %v", err)
		}
		return rsp
	}
	precreate := func(amount string) *alipay.TradePreCreateRsp {
		t.Helper()
		p := pre
		p.TotalAmount = amount
		rsp, err := c.TradePreCreate(ctx, p)
		if err != nil {
			t.Fatalf("precreate: %v", err)
		}
		return rsp
	}

	steps := []struct {
		name  string
		check func(t *testing.T)
	}{
		{"same out_trade_no and parameters give the same QR", func(t *testing.T) {
			if again := precreate("12.30"); !again.IsSuccess() || again.QRCode != first.QRCode {
				t.Fatalf("got %+v, want QR %s", again, first.QRCode)
			}
		}},
		{"a different amount is CONTEXT_INCONSISTENT", func(t *testing.T) {
			if r := precreate("12.31"); r.SubCode != "ACQ.CONTEXT_INCONSISTENT" || r.Code != "40004" {
				t.Fatalf("got %+v", r.Error)
			}
		}},
		{"query before the scan is TRADE_NOT_EXIST", func(t *testing.T) {
			if r := query(); r.SubCode != "ACQ.TRADE_NOT_EXIST" {
				t.Fatalf("got %+v", r.Error)
			}
		}},
		{"close before the scan is TRADE_NOT_EXIST", func(t *testing.T) {
			r, err := c.TradeClose(ctx, alipay.TradeClose{OutTradeNo: no})
			if err != nil || r.SubCode != "ACQ.TRADE_NOT_EXIST" {
				t.Fatalf("got %+v, %v", r, err)
			}
		}},
		{"after the scan the trade waits for payment", func(t *testing.T) {
			if err := sim.Scan(no); err != nil {
				t.Fatal(err)
			}
			r := query()
			if !r.IsSuccess() || r.TradeStatus != alipay.TradeStatusWaitBuyerPay || r.TradeNo == "" || r.TotalAmount != "12.30" {
				t.Fatalf("got %+v", r)
			}
		}},
		{"after payment the trade is TRADE_SUCCESS with the paid fields", func(t *testing.T) {
			if err := sim.Pay(no); err != nil {
				t.Fatal(err)
			}
			r := query()
			if r.TradeStatus != alipay.TradeStatusSuccess || r.BuyerPayAmount != "12.30" || r.ReceiptAmount != "12.30" || r.SendPayDate == "" || r.BuyerLogonId == "" {
				t.Fatalf("got %+v", r)
			}
		}},
		{"precreate of a paid trade is TRADE_HAS_SUCCESS", func(t *testing.T) {
			if r := precreate("12.30"); r.SubCode != "ACQ.TRADE_HAS_SUCCESS" {
				t.Fatalf("got %+v", r.Error)
			}
		}},
		{"close of a paid trade is TRADE_STATUS_ERROR", func(t *testing.T) {
			r, err := c.TradeClose(ctx, alipay.TradeClose{OutTradeNo: no})
			if err != nil || r.SubCode != "ACQ.TRADE_STATUS_ERROR" {
				t.Fatalf("got %+v, %v", r, err)
			}
		}},
		{"a partial refund without out_request_no is REFUND_AMT_NOT_EQUAL_TOTAL", func(t *testing.T) {
			if r := refund("1.00", ""); r.SubCode != "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL" {
				t.Fatalf("got %+v", r.Error)
			}
		}},
		{"a partial refund moves money", func(t *testing.T) {
			if r := refund("2.30", "R1"); !r.IsSuccess() || r.FundChange != "Y" || r.RefundFee != "2.30" {
				t.Fatalf("got %+v", r)
			}
		}},
		{"the same out_request_no again moves nothing", func(t *testing.T) {
			if r := refund("2.30", "R1"); !r.IsSuccess() || r.FundChange != "N" || r.RefundFee != "2.30" {
				t.Fatalf("got %+v", r)
			}
		}},
		{"refunding more than is left is REFUND_FEE_ERR", func(t *testing.T) {
			if r := refund("10.01", "R2"); r.SubCode != "ACQ.REASON_TRADE_REFUND_FEE_ERR" {
				t.Fatalf("got %+v", r.Error)
			}
		}},
		{"a partial refund keeps TRADE_SUCCESS", func(t *testing.T) {
			if r := query(); r.TradeStatus != alipay.TradeStatusSuccess {
				t.Fatalf("got %s", r.TradeStatus)
			}
		}},
		{"refund query of a known refund is REFUND_SUCCESS", func(t *testing.T) {
			r, err := c.TradeFastPayRefundQuery(ctx, alipay.TradeFastPayRefundQuery{OutTradeNo: no, OutRequestNo: "R1"})
			if err != nil || !r.IsSuccess() || r.RefundStatus != "REFUND_SUCCESS" || r.RefundAmount != "2.30" || r.TotalAmount != "12.30" {
				t.Fatalf("got %+v, %v", r, err)
			}
		}},
		{"refund query of an unknown refund succeeds without refund_status", func(t *testing.T) {
			r, err := c.TradeFastPayRefundQuery(ctx, alipay.TradeFastPayRefundQuery{OutTradeNo: no, OutRequestNo: "R9"})
			if err != nil || !r.IsSuccess() || r.RefundStatus != "" {
				t.Fatalf("got %+v, %v", r, err)
			}
		}},
		{"refunding the rest closes the trade", func(t *testing.T) {
			if r := refund("10.00", "R3"); r.FundChange != "Y" || r.RefundFee != "12.30" {
				t.Fatalf("got %+v", r)
			}
			if r := query(); r.TradeStatus != alipay.TradeStatusClosed {
				t.Fatalf("got %s", r.TradeStatus)
			}
		}},
		{"precreate of a closed trade is TRADE_HAS_CLOSE", func(t *testing.T) {
			if r := precreate("12.30"); r.SubCode != "ACQ.TRADE_HAS_CLOSE" {
				t.Fatalf("got %+v", r.Error)
			}
		}},
		{"refund of a closed trade is TRADE_HAS_CLOSE", func(t *testing.T) {
			if r := refund("0.01", "R4"); r.SubCode != "ACQ.TRADE_HAS_CLOSE" {
				t.Fatalf("got %+v", r.Error)
			}
		}},
	}
	for _, st := range steps {
		if !t.Run(st.name, st.check) {
			return // later steps depend on earlier ones
		}
	}
	calls := sim.Calls()
	if calls["alipay.trade.precreate"] != 5 || calls["alipay.trade.refund"] != 6 || calls["wechat.native.prepay"] != 0 {
		t.Fatalf("calls: %v", calls)
	}
}

// TestAlipayCloseCancelExpire covers the ways an unpaid trade ends.
func TestAlipayCloseCancelExpire(t *testing.T) {
	sim, srv := startSim(t, testConfig)
	c := alipayFor(t, sim, srv)
	ctx := context.Background()
	create := func(t *testing.T, no string, mutate func(*alipay.TradePreCreate)) {
		t.Helper()
		p := alipay.TradePreCreate{}
		p.OutTradeNo, p.Subject, p.TotalAmount, p.ProductCode = no, "s", "1.00", "FACE_TO_FACE_PAYMENT"
		if mutate != nil {
			mutate(&p)
		}
		if r, err := c.TradePreCreate(ctx, p); err != nil || !r.IsSuccess() {
			t.Fatalf("precreate: %+v %v", r, err)
		}
	}
	status := func(t *testing.T, no string) string {
		t.Helper()
		r, err := c.TradeQuery(ctx, alipay.TradeQuery{OutTradeNo: no})
		if err != nil {
			t.Fatal(err)
		}
		if r.SubCode != "" {
			return r.SubCode
		}
		return string(r.TradeStatus)
	}
	tests := []struct {
		name       string
		run        func(t *testing.T, no string)
		wantStatus string
		payErr     error
	}{
		{"close of a scanned trade closes it", func(t *testing.T, no string) {
			create(t, no, nil)
			_ = sim.Scan(no)
			r, err := c.TradeClose(ctx, alipay.TradeClose{OutTradeNo: no})
			if err != nil || !r.IsSuccess() || r.TradeNo == "" {
				t.Fatalf("close: %+v %v", r, err)
			}
		}, "TRADE_CLOSED", ErrTradeState},
		{"cancel before the scan closes the QR so a scan fails", func(t *testing.T, no string) {
			create(t, no, nil)
			r, err := c.TradeCancel(ctx, alipay.TradeCancel{OutTradeNo: no})
			if err != nil || !r.IsSuccess() || r.Action != "close" || r.RetryFlag != "N" {
				t.Fatalf("cancel: %+v %v", r, err)
			}
		}, "ACQ.TRADE_NOT_EXIST", ErrTradeState},
		{"cancel of a paid trade refunds it", func(t *testing.T, no string) {
			create(t, no, nil)
			_ = sim.Pay(no)
			r, err := c.TradeCancel(ctx, alipay.TradeCancel{OutTradeNo: no})
			if err != nil || !r.IsSuccess() || r.Action != "refund" {
				t.Fatalf("cancel: %+v %v", r, err)
			}
		}, "TRADE_CLOSED", ErrTradeState},
		{"the provider's timeout closes a scanned trade", func(t *testing.T, no string) {
			create(t, no, nil)
			_ = sim.Scan(no)
			if err := sim.Expire(no); err != nil {
				t.Fatal(err)
			}
		}, "TRADE_CLOSED", ErrTradeState},
		{"a time_expire in the past closes the trade at once", func(t *testing.T, no string) {
			create(t, no, func(p *alipay.TradePreCreate) {
				p.TimeExpire = time.Now().Add(-time.Minute).In(chinaTZ).Format(alipayTimeFormat)
			})
		}, "ACQ.TRADE_NOT_EXIST", ErrTradeState},
		{"a timeout_express in the future leaves the trade open", func(t *testing.T, no string) {
			create(t, no, func(p *alipay.TradePreCreate) { p.TimeoutExpress = "15m" })
			_ = sim.Scan(no)
		}, "WAIT_BUYER_PAY", nil},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			no := "EXP-" + string(rune('A'+i))
			tc.run(t, no)
			if got := status(t, no); got != tc.wantStatus {
				t.Fatalf("status %s, want %s", got, tc.wantStatus)
			}
			if err := sim.Pay(no); !errors.Is(err, tc.payErr) {
				t.Fatalf("pay: %v, want %v", err, tc.payErr)
			}
		})
	}
}

func TestAlipayExpiryParsing(t *testing.T) {
	now := time.Date(2024, 5, 1, 10, 0, 0, 0, chinaTZ)
	tests := []struct {
		name, express, expire string
		want                  time.Time
		ok                    bool
	}{
		{"default is two hours", "", "", now.Add(2 * time.Hour), true},
		{"minutes", "90m", "", now.Add(90 * time.Minute), true},
		{"hours", "3h", "", now.Add(3 * time.Hour), true},
		{"days up to fifteen", "15d", "", now.Add(15 * 24 * time.Hour), true},
		{"1c closes at midnight", "1c", "", time.Date(2024, 5, 2, 0, 0, 0, 0, chinaTZ), true},
		{"absolute time_expire wins", "5m", "2024-05-01 12:00:00", time.Date(2024, 5, 1, 12, 0, 0, 0, chinaTZ), true},
		{"more than fifteen days is refused", "16d", "", time.Time{}, false},
		{"decimals are refused", "1.5h", "", time.Time{}, false},
		{"zero is refused", "0m", "", time.Time{}, false},
		{"a malformed time_expire is refused", "", "2024/05/01", time.Time{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parseAlipayExpiry(now, tc.express, tc.expire)
			if ok != tc.ok || (ok && !got.Equal(tc.want)) {
				t.Fatalf("got %v %v, want %v %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

// TestAlipayRefusesWrongKeys: a request signed with another key is refused
// with the gateway's unsigned isv.invalid-signature; a client holding the
// wrong Alipay public key refuses the simulator's answers.
func TestAlipayRefusesWrongKeys(t *testing.T) {
	sim, srv := startSim(t, testConfig)
	k := sim.Keys()
	other, err := generateKeyMaterial()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	pre := alipay.TradePreCreate{}
	pre.OutTradeNo, pre.Subject, pre.TotalAmount = "KEY-1", "s", "1.00"

	t.Run("request signed with the wrong app key", func(t *testing.T) {
		c := newAlipayClient(t, srv, k.AlipayAppID, string(privatePEM(other.alipayAppPriv)), k.AlipayPublicKeyPEM, nil)
		_, err := c.TradePreCreate(ctx, pre)
		var ae *alipay.Error
		if !errors.As(err, &ae) || ae.Code != "40002" || ae.SubCode != "isv.invalid-signature" {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("request with an unknown app_id", func(t *testing.T) {
		c := newAlipayClient(t, srv, "2021000000000001", k.AlipayAppPrivateKeyPEM, k.AlipayPublicKeyPEM, nil)
		_, err := c.TradePreCreate(ctx, pre)
		var ae *alipay.Error
		if !errors.As(err, &ae) || ae.SubCode != "isv.invalid-app-id" {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("answer checked with the wrong Alipay public key", func(t *testing.T) {
		c := newAlipayClient(t, srv, k.AlipayAppID, k.AlipayAppPrivateKeyPEM, string(publicPEM(&other.alipayPlatformPriv.PublicKey)), nil)
		if _, err := c.TradePreCreate(ctx, pre); err == nil || !strings.Contains(err.Error(), "verification error") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("answer changed by one byte after signing", func(t *testing.T) {
		tamper := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			resp, err := http.DefaultTransport.RoundTrip(r)
			if err != nil {
				return nil, err
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			b = bytes.Replace(b, []byte(`"code":`), []byte(`"code": `), 1)
			resp.Body = io.NopCloser(bytes.NewReader(b))
			resp.ContentLength = int64(len(b))
			return resp, nil
		})
		c := newAlipayClient(t, srv, k.AlipayAppID, k.AlipayAppPrivateKeyPEM, k.AlipayPublicKeyPEM, tamper)
		if _, err := c.TradePreCreate(ctx, pre); err == nil {
			t.Fatal("tampered answer accepted")
		}
	})
	if _, ok := findTrade(sim, ProviderAlipay, "KEY-1"); !ok {
		t.Fatal("the correctly signed requests should have created the trade")
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestAlipayAmounts: 2-decimal yuan strings in [0.01, 100000000], parsed
// exactly; anything else is refused and creates nothing.
func TestAlipayAmounts(t *testing.T) {
	sim, srv := startSim(t, testConfig)
	c := alipayFor(t, sim, srv)
	tests := []struct {
		amount string
		ok     bool
	}{
		{"0.01", true}, {"1", true}, {"1.5", true}, {"99999999.99", true}, {"100000000", true}, {"100000000.00", true},
		{"0", false}, {"0.00", false}, {"0.001", false}, {"1.234", false}, {"100000000.01", false}, {"1000000000", false},
		{"-1.00", false}, {"+1.00", false}, {"1e2", false}, {"1.", false}, {".5", false}, {"01.00", false}, {"1,00", false}, {" 1.00", false},
	}
	for i, tc := range tests {
		t.Run("total_amount "+tc.amount, func(t *testing.T) {
			p := alipay.TradePreCreate{}
			p.OutTradeNo, p.Subject, p.TotalAmount = "AMT-"+string(rune('a'+i)), "s", tc.amount
			r, err := c.TradePreCreate(context.Background(), p)
			if err != nil {
				t.Fatal(err)
			}
			if r.IsSuccess() != tc.ok {
				t.Fatalf("success=%v, want %v (%+v)", r.IsSuccess(), tc.ok, r.Error)
			}
			if !tc.ok && r.SubCode != "ACQ.INVALID_PARAMETER" {
				t.Fatalf("sub_code %s", r.SubCode)
			}
			if _, created := findTrade(sim, ProviderAlipay, p.OutTradeNo); created != tc.ok {
				t.Fatalf("trade created=%v", created)
			}
		})
	}
}

// TestAlipayNotifications: the SDK's own verifier accepts the simulator's
// notifications, rejects them after a one-byte change, and the simulator
// retries until it reads "success".
func TestAlipayNotifications(t *testing.T) {
	sim, srv := startSim(t, testConfig)
	c := alipayFor(t, sim, srv)
	verified := make(chan *alipay.Notification, 10)
	rc := newReceiver(t, func(n int, r *http.Request) (int, string) {
		if err := r.ParseForm(); err != nil {
			return 400, "fail"
		}
		nt, err := c.DecodeNotification(r.PostForm)
		if err != nil {
			return 400, "fail"
		}
		if n < 2 { // the merchant is down twice before it acknowledges
			return 500, "oops"
		}
		verified <- nt
		return 200, "success"
	})
	const no = "NOTIFY-A-1"
	p := alipay.TradePreCreate{}
	p.OutTradeNo, p.Subject, p.TotalAmount, p.NotifyURL = no, "parcel", "8.88", rc.srv.URL+"/alipay/notify"
	if r, err := c.TradePreCreate(context.Background(), p); err != nil || !r.IsSuccess() {
		t.Fatalf("precreate %+v %v", r, err)
	}
	if err := sim.Pay(no); err != nil {
		t.Fatal(err)
	}
	nt := <-verified
	if nt.OutTradeNo != no || nt.TradeStatus != alipay.TradeStatusSuccess || nt.TotalAmount != "8.88" || nt.AppId != sim.Keys().AlipayAppID || nt.NotifyType != "trade_status_sync" {
		t.Fatalf("notification %+v", nt)
	}
	waitFor(t, "the delivery to be marked delivered", func() bool {
		ds := deliveriesOf(sim, no, "payment")
		return len(ds) == 1 && ds[0].Delivered
	})
	d := deliveriesOf(sim, no, "payment")[0]
	if len(d.Attempts) != 3 || d.Attempts[0].Status != 500 || d.Attempts[2].Answer != "success" {
		t.Fatalf("attempts %+v", d.Attempts)
	}
	reqs := rc.requests()
	if len(reqs) != 3 || reqs[0].form.Get("notify_id") != reqs[2].form.Get("notify_id") {
		t.Fatal("retries must repeat the same notify_id")
	}

	t.Run("tampering is rejected by DecodeNotification", func(t *testing.T) {
		orig := reqs[0].form
		for _, field := range []string{"total_amount", "trade_status", "out_trade_no", "sign"} {
			v := url.Values{}
			for k, vs := range orig {
				v[k] = append([]string(nil), vs...)
			}
			b := []byte(v.Get(field))
			b[len(b)-2] ^= 1 // one byte
			v.Set(field, string(b))
			if _, err := c.DecodeNotification(v); err == nil {
				t.Fatalf("changed %s accepted", field)
			}
		}
		if _, err := c.DecodeNotification(orig); err != nil {
			t.Fatalf("the original must still verify: %v", err)
		}
	})

	t.Run("a refund notifies with refund_fee, a full refund with TRADE_CLOSED", func(t *testing.T) {
		for _, tc := range []struct{ amount, reqNo, status, fee string }{
			{"1.00", "RF-1", "TRADE_SUCCESS", "1.00"},
			{"7.88", "RF-2", "TRADE_CLOSED", "8.88"},
		} {
			r, err := c.TradeRefund(context.Background(), alipay.TradeRefund{OutTradeNo: no, RefundAmount: tc.amount, OutRequestNo: tc.reqNo})
			if err != nil || r.FundChange != "Y" {
				t.Fatalf("refund %+v %v", r, err)
			}
			nt := <-verified
			if string(nt.TradeStatus) != tc.status || nt.RefundFee != tc.fee || nt.OutBizNo != tc.reqNo || nt.GmtRefund == "" {
				t.Fatalf("refund notification %+v", nt)
			}
		}
	})
}
