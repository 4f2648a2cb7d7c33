package paysim

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/smartwalle/alipay/v3"
	"github.com/wechatpay-apiv3/wechatpay-go/core"
	"github.com/wechatpay-apiv3/wechatpay-go/services/payments/native"
	"github.com/wechatpay-apiv3/wechatpay-go/services/refunddomestic"
)

// TestIgnoredCloseAnswersSuccessAndTheTradeCanStillBePaid: ignore answers
// the operation's signed success and changes nothing, so a QR code whose
// close (or cancel) was "accepted" is still paid by the buyer.
func TestIgnoredCloseAnswersSuccessAndTheTradeCanStillBePaid(t *testing.T) {
	sim, srv := startSim(t, testConfig)
	ali := alipayFor(t, sim, srv)
	wxc := newWechatClient(t, srv, wechatCredsFor(t, sim), nil)
	wx := &native.NativeApiService{Client: wxc}
	k := sim.Keys()
	ctx := context.Background()

	t.Run("wechat close", func(t *testing.T) {
		no := "IGN-W-0001"
		prepay(t, wx, k, no, "http://127.0.0.1:1/n")
		sim.SetFault(Fault{Operation: "wechat.close", Mode: FaultIgnore})
		if _, err := wx.CloseOrder(ctx, native.CloseOrderRequest{OutTradeNo: core.String(no), Mchid: core.String(k.WechatMchID)}); err != nil {
			t.Fatalf("ignored close must look like a success: %v", err)
		}
		if tr, _ := findTrade(sim, ProviderWechat, no); tr.State != WechatNotPay {
			t.Fatalf("state %s after an ignored close", tr.State)
		}
		if err := sim.Pay(no); err != nil {
			t.Fatalf("a trade whose close was ignored cannot be paid: %v", err)
		}
	})
	for _, method := range []string{"alipay.trade.cancel", "alipay.trade.close"} {
		t.Run(method, func(t *testing.T) {
			no := "IGN-" + strings.ReplaceAll(method, ".", "-")
			precreateAlipay(t, ali, no, "1.00", "")
			if method == "alipay.trade.close" {
				if err := sim.Scan(no); err != nil {
					t.Fatal(err)
				}
			}
			sim.SetFault(Fault{Operation: method, Mode: FaultIgnore})
			var code, action string
			if method == "alipay.trade.cancel" {
				r, err := ali.TradeCancel(ctx, alipay.TradeCancel{OutTradeNo: no})
				if err != nil {
					t.Fatal(err)
				}
				code, action = string(r.Code), r.Action
			} else {
				r, err := ali.TradeClose(ctx, alipay.TradeClose{OutTradeNo: no})
				if err != nil {
					t.Fatal(err)
				}
				code, action = string(r.Code), "close"
			}
			if code != "10000" || action != "close" {
				t.Fatalf("ignored %s answered %s %s", method, code, action)
			}
			if err := sim.Pay(no); err != nil {
				t.Fatalf("a trade whose %s was ignored cannot be paid: %v", method, err)
			}
		})
	}
	t.Run("wechat refund moves no money", func(t *testing.T) {
		no := "IGN-W-0002"
		prepay(t, wx, k, no, "http://127.0.0.1:1/n")
		if err := sim.Pay(no); err != nil {
			t.Fatal(err)
		}
		sim.SetFault(Fault{Operation: "wechat.refund", Mode: FaultIgnore})
		rs := refunddomestic.RefundsApiService{Client: wxc}
		r, _, err := rs.Create(ctx, refunddomestic.CreateRequest{OutTradeNo: core.String(no), OutRefundNo: core.String("IGN-RF-1"),
			Amount: &refunddomestic.AmountReq{Refund: core.Int64(50), Total: core.Int64(100), Currency: core.String("CNY")}})
		if err != nil || *r.Status != refunddomestic.STATUS_PROCESSING {
			t.Fatalf("ignored refund: %v %v", r, err)
		}
		if n := len(sim.Refunds()); n != 0 {
			t.Fatalf("an ignored refund was stored (%d)", n)
		}
	})
}

// TestUnsignedErrorIsAProviderShapedAnswerNobodySigned: the SDKs see an
// error body of the given status and code without a valid signature, and
// nothing changes at the provider.
func TestUnsignedErrorIsAProviderShapedAnswerNobodySigned(t *testing.T) {
	sim, srv := startSim(t, testConfig)
	ali := alipayFor(t, sim, srv)
	wx := &native.NativeApiService{Client: newWechatClient(t, srv, wechatCredsFor(t, sim), nil)}
	k := sim.Keys()
	ctx := context.Background()

	sim.SetFault(Fault{Operation: "wechat.native.prepay", Mode: FaultUnsignedError, Status: 400, Code: "ORDERPAID"})
	_, _, err := wx.Prepay(ctx, native.PrepayRequest{Appid: core.String(k.WechatAppID), Mchid: core.String(k.WechatMchID),
		Description: core.String("d"), OutTradeNo: core.String("UNS-W-0001"), NotifyUrl: core.String("http://127.0.0.1:1/n"),
		Amount: &native.Amount{Total: core.Int64(100)}})
	var ae *core.APIError
	if !errors.As(err, &ae) || ae.StatusCode != 400 || ae.Code != "ORDERPAID" || ae.Header.Get("Wechatpay-Signature") != "" {
		t.Fatalf("want an unsigned 400 ORDERPAID, got %v", err)
	}
	if _, made := findTrade(sim, ProviderWechat, "UNS-W-0001"); made {
		t.Fatal("unsigned_error created the trade")
	}

	sim.SetFault(Fault{Operation: "alipay.trade.precreate", Mode: FaultUnsignedError, Status: 408, Code: "ACQ.TRADE_HAS_SUCCESS"})
	p := alipay.TradePreCreate{}
	p.OutTradeNo, p.Subject, p.TotalAmount = "UNS-A-0001", "s", "1.00"
	_, err = ali.TradePreCreate(ctx, p)
	var aerr *alipay.Error
	if !errors.As(err, &aerr) || aerr.SubCode != "ACQ.TRADE_HAS_SUCCESS" {
		t.Fatalf("want the SDK to refuse an unsigned ACQ.TRADE_HAS_SUCCESS, got %v", err)
	}
	if _, made := findTrade(sim, ProviderAlipay, "UNS-A-0001"); made {
		t.Fatal("unsigned_error created the trade")
	}

	sim.SetFault(Fault{Operation: "wechat.refund", Mode: FaultUnsignedError, Status: 408})
	status, body := do(t, "GET", srv.URL+"/_sim/faults", "")
	if status != 200 || !strings.Contains(string(body), `"mode": "unsigned_error"`) || !strings.Contains(string(body), `"status": 408`) {
		t.Fatalf("GET /_sim/faults: %d %s", status, body)
	}
	if status, body := do(t, "POST", srv.URL+"/_sim/faults", `{"operation":"wechat.refund","mode":"unsigned_error","status":99}`); status != 400 {
		t.Fatalf("a status outside 200-599 was accepted: %d %s", status, body)
	}
}

// TestPayErrorTradeStaysOpenUntilTheMerchantClosesIt: a WeChat payment
// that failed reads PAYERROR; the merchant's close makes it CLOSED.
func TestPayErrorTradeStaysOpenUntilTheMerchantClosesIt(t *testing.T) {
	sim, srv := startSim(t, testConfig)
	wx := &native.NativeApiService{Client: newWechatClient(t, srv, wechatCredsFor(t, sim), nil)}
	k := sim.Keys()
	ctx := context.Background()
	no := "PAYERR-0001"
	prepay(t, wx, k, no, "http://127.0.0.1:1/n")
	if status, body := do(t, "POST", srv.URL+"/_sim/trades/"+no+"/payerror", ""); status != 200 || !strings.Contains(string(body), `"state": "PAYERROR"`) {
		t.Fatalf("payerror: %d %s", status, body)
	}
	tx, _, err := wx.QueryOrderByOutTradeNo(ctx, native.QueryOrderByOutTradeNoRequest{OutTradeNo: core.String(no), Mchid: core.String(k.WechatMchID)})
	if err != nil || *tx.TradeState != "PAYERROR" {
		t.Fatalf("query: %v %v", tx, err)
	}
	if _, err := wx.CloseOrder(ctx, native.CloseOrderRequest{OutTradeNo: core.String(no), Mchid: core.String(k.WechatMchID)}); err != nil {
		t.Fatal(err)
	}
	if tr, _ := findTrade(sim, ProviderWechat, no); tr.State != WechatClosed {
		t.Fatalf("after the close: %s", tr.State)
	}
}

// TestAbnormalRefundWaitsForAPerson: a WeChat refund made ABNORMAL reads so
// in the refund query, REFUND.ABNORMAL is sent, the refund delay does not
// settle it, and succeed resolves it with REFUND.SUCCESS.
func TestAbnormalRefundWaitsForAPerson(t *testing.T) {
	cfg := Config{NotifyRetry: testConfig.NotifyRetry, WechatRefundDelay: 500 * time.Millisecond}
	sim, srv := startSim(t, cfg)
	wxc := newWechatClient(t, srv, wechatCredsFor(t, sim), nil)
	wx := &native.NativeApiService{Client: wxc}
	rs := refunddomestic.RefundsApiService{Client: wxc}
	k := sim.Keys()
	ctx := context.Background()
	rc := newReceiver(t, func(int, *http.Request) (int, string) { return 204, "" })
	no := "ABN-0001"
	prepay(t, wx, k, no, rc.srv.URL)
	if err := sim.Pay(no); err != nil {
		t.Fatal(err)
	}
	if _, _, err := rs.Create(ctx, refunddomestic.CreateRequest{OutTradeNo: core.String(no), OutRefundNo: core.String("ABN-RF-1"),
		Amount: &refunddomestic.AmountReq{Refund: core.Int64(100), Total: core.Int64(100), Currency: core.String("CNY")}}); err != nil {
		t.Fatal(err)
	}
	if status, body := do(t, "POST", srv.URL+"/_sim/refunds/ABN-RF-1/abnormal", ""); status != 200 {
		t.Fatalf("abnormal: %d %s", status, body)
	}
	waitFor(t, "REFUND.ABNORMAL", func() bool {
		for _, d := range deliveriesOf(sim, no, "refund") {
			if d.Event == "REFUND.ABNORMAL" && d.Delivered {
				return true
			}
		}
		return false
	})
	time.Sleep(2 * cfg.WechatRefundDelay) // past the delay that settles a PROCESSING refund
	if r, _, err := rs.QueryByOutRefundNo(ctx, refunddomestic.QueryByOutRefundNoRequest{OutRefundNo: core.String("ABN-RF-1")}); err != nil || *r.Status != refunddomestic.STATUS_ABNORMAL {
		t.Fatalf("query after the refund delay: %v %v", r, err)
	}
	if status, body := do(t, "POST", srv.URL+"/_sim/refunds/ABN-RF-1/succeed", ""); status != 200 {
		t.Fatalf("succeed: %d %s", status, body)
	}
	if r, _, err := rs.QueryByOutRefundNo(ctx, refunddomestic.QueryByOutRefundNoRequest{OutRefundNo: core.String("ABN-RF-1")}); err != nil || *r.Status != refunddomestic.STATUS_SUCCESS {
		t.Fatalf("query after succeed: %v %v", r, err)
	}
	if status, _ := do(t, "POST", srv.URL+"/_sim/refunds/NOPE/abnormal", ""); status != 404 {
		t.Fatalf("unknown refund: %d", status)
	}
}

// prepay creates a WeChat Native trade of 1.00 yuan.
func prepay(t *testing.T, wx *native.NativeApiService, k Keys, no, notifyURL string) {
	t.Helper()
	if _, _, err := wx.Prepay(context.Background(), native.PrepayRequest{Appid: core.String(k.WechatAppID), Mchid: core.String(k.WechatMchID),
		Description: core.String("d"), OutTradeNo: core.String(no), NotifyUrl: core.String(notifyURL),
		Amount: &native.Amount{Total: core.Int64(100)}}); err != nil {
		t.Fatal(err)
	}
}
