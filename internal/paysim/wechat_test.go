package paysim

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wechatpay-apiv3/wechatpay-go/core"
	"github.com/wechatpay-apiv3/wechatpay-go/core/auth/verifiers"
	"github.com/wechatpay-apiv3/wechatpay-go/core/notify"
	"github.com/wechatpay-apiv3/wechatpay-go/services/payments"
	"github.com/wechatpay-apiv3/wechatpay-go/services/payments/native"
	"github.com/wechatpay-apiv3/wechatpay-go/services/refunddomestic"
)

func apiErr(t *testing.T, err error) *core.APIError {
	t.Helper()
	var ae *core.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("want *core.APIError, got %v", err)
	}
	return ae
}

// TestWechatTradeLifecycle walks Native prepay → query → pay → refund →
// settle with the unmodified SDK, which verifies every signed answer.
func TestWechatTradeLifecycle(t *testing.T) {
	sim, srv := startSim(t, testConfig)
	client := newWechatClient(t, srv, wechatCredsFor(t, sim), nil)
	nat := native.NativeApiService{Client: client}
	ref := refunddomestic.RefundsApiService{Client: client}
	k := sim.Keys()
	ctx := context.Background()
	const no = "WX-ORDER-0001"
	rc := newReceiver(t, func(int, *http.Request) (int, string) { return 204, "" })

	prepay := func(total int64, desc string) (*native.PrepayResponse, error) {
		resp, _, err := nat.Prepay(ctx, native.PrepayRequest{
			Appid: core.String(k.WechatAppID), Mchid: core.String(k.WechatMchID), Description: core.String(desc),
			OutTradeNo: core.String(no), NotifyUrl: core.String(rc.srv.URL + "/wx/notify"),
			Amount: &native.Amount{Total: core.Int64(total), Currency: core.String("CNY")},
		})
		return resp, err
	}
	query := func() (*payments.Transaction, error) {
		tx, _, err := nat.QueryOrderByOutTradeNo(ctx, native.QueryOrderByOutTradeNoRequest{OutTradeNo: core.String(no), Mchid: core.String(k.WechatMchID)})
		return tx, err
	}
	refund := func(outRefundNo string, amount int64) (*refunddomestic.Refund, error) {
		r, _, err := ref.Create(ctx, refunddomestic.CreateRequest{
			OutTradeNo: core.String(no), OutRefundNo: core.String(outRefundNo), Reason: core.String("damaged"),
			Amount: &refunddomestic.AmountReq{Refund: core.Int64(amount), Total: core.Int64(1230), Currency: core.String("CNY")},
		})
		return r, err
	}
	var codeURL string
	steps := []struct {
		name  string
		check func(t *testing.T)
	}{
		{"prepay answers a code_url", func(t *testing.T) {
			r, err := prepay(1230, "parcel 1")
			if err != nil || !strings.HasPrefix(*r.CodeUrl, "weixin://wxpay/bizpayurl?pr=") {
				t.Fatalf("%v %v", r, err)
			}
			codeURL = *r.CodeUrl
		}},
		{"the same parameters give the same code_url", func(t *testing.T) {
			if r, err := prepay(1230, "parcel 1"); err != nil || *r.CodeUrl != codeURL {
				t.Fatalf("%v %v", r, err)
			}
		}},
		{"other parameters with the same number are INVALID_REQUEST", func(t *testing.T) {
			_, err := prepay(1231, "parcel 1")
			if ae := apiErr(t, err); ae.StatusCode != 400 || ae.Code != "INVALID_REQUEST" {
				t.Fatal(ae)
			}
		}},
		{"query of an unpaid order is NOTPAY", func(t *testing.T) {
			tx, err := query()
			if err != nil || *tx.TradeState != "NOTPAY" || tx.TransactionId != nil || *tx.Amount.Total != 1230 {
				t.Fatalf("%v %v", tx, err)
			}
		}},
		{"a scan leaves it NOTPAY", func(t *testing.T) {
			_ = sim.Scan(no)
			if tx, err := query(); err != nil || *tx.TradeState != "NOTPAY" {
				t.Fatalf("%v %v", tx, err)
			}
		}},
		{"refund of an unpaid order is refused as an order that does not exist", func(t *testing.T) {
			_, err := refund("WR-0", 100)
			if ae := apiErr(t, err); ae.StatusCode != 404 || ae.Code != "RESOURCE_NOT_EXISTS" {
				t.Fatal(ae)
			}
		}},
		{"after payment the order is SUCCESS", func(t *testing.T) {
			if err := sim.Pay(no); err != nil {
				t.Fatal(err)
			}
			tx, err := query()
			if err != nil || *tx.TradeState != "SUCCESS" || tx.TransactionId == nil || *tx.TradeType != "NATIVE" || *tx.Amount.PayerTotal != 1230 || tx.SuccessTime == nil || *tx.Payer.Openid == "" {
				t.Fatalf("%v %v", tx, err)
			}
		}},
		{"prepay of a paid order is ORDERPAID", func(t *testing.T) {
			_, err := prepay(1230, "parcel 1")
			if ae := apiErr(t, err); ae.Code != "ORDERPAID" {
				t.Fatal(ae)
			}
		}},
		{"close of a paid order is refused", func(t *testing.T) {
			_, err := nat.CloseOrder(ctx, native.CloseOrderRequest{OutTradeNo: core.String(no), Mchid: core.String(k.WechatMchID)})
			if ae := apiErr(t, err); ae.Code != "ORDERPAID" {
				t.Fatal(ae)
			}
		}},
		{"refunding more than was paid is refused", func(t *testing.T) {
			_, err := refund("WR-X", 1231)
			if ae := apiErr(t, err); ae.StatusCode != 400 {
				t.Fatal(ae)
			}
		}},
		{"a refund starts PROCESSING and the order turns REFUND", func(t *testing.T) {
			r, err := refund("WR-1", 230)
			if err != nil || *r.Status != refunddomestic.STATUS_PROCESSING || *r.Amount.Refund != 230 || *r.OutRefundNo != "WR-1" {
				t.Fatalf("%v %v", r, err)
			}
			if tx, err := query(); err != nil || *tx.TradeState != "REFUND" {
				t.Fatalf("%v %v", tx, err)
			}
		}},
		{"the same out_refund_no is the same refund", func(t *testing.T) {
			a, _ := refund("WR-1", 230)
			b, err := refund("WR-1", 230)
			if err != nil || *a.RefundId != *b.RefundId {
				t.Fatalf("%v %v %v", a, b, err)
			}
			if n := len(sim.Refunds()); n != 1 {
				t.Fatalf("%d refunds", n)
			}
		}},
		{"the refund settles to SUCCESS and is notified", func(t *testing.T) {
			waitFor(t, "the refund to settle", func() bool {
				r, _, err := ref.QueryByOutRefundNo(ctx, refunddomestic.QueryByOutRefundNoRequest{OutRefundNo: core.String("WR-1")})
				return err == nil && *r.Status == refunddomestic.STATUS_SUCCESS && r.SuccessTime != nil
			})
			waitFor(t, "the refund notification", func() bool {
				ds := deliveriesOf(sim, no, "refund")
				return len(ds) == 1 && ds[0].Delivered && ds[0].Event == "REFUND.SUCCESS"
			})
		}},
		{"refunding the rest is allowed, one fen more is not", func(t *testing.T) {
			if _, err := refund("WR-2", 1001); err == nil {
				t.Fatal("over-refund accepted")
			}
			if r, err := refund("WR-3", 1000); err != nil || *r.Status != refunddomestic.STATUS_PROCESSING {
				t.Fatalf("%v %v", r, err)
			}
		}},
	}
	for _, st := range steps {
		if !t.Run(st.name, st.check) {
			return
		}
	}
}

// TestWechatCloseAndNotFound covers close (204, signed) and the 404 answers.
func TestWechatCloseAndNotFound(t *testing.T) {
	sim, srv := startSim(t, testConfig)
	client := newWechatClient(t, srv, wechatCredsFor(t, sim), nil)
	nat := native.NativeApiService{Client: client}
	ref := refunddomestic.RefundsApiService{Client: client}
	k := sim.Keys()
	ctx := context.Background()
	mch := core.String(k.WechatMchID)
	mk := func(t *testing.T, no string, expire *time.Time) {
		t.Helper()
		_, _, err := nat.Prepay(ctx, native.PrepayRequest{
			Appid: core.String(k.WechatAppID), Mchid: mch, Description: core.String("d"), OutTradeNo: core.String(no),
			NotifyUrl: core.String("http://127.0.0.1:1/n"), Amount: &native.Amount{Total: core.Int64(100)}, TimeExpire: expire,
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	state := func(t *testing.T, no string) string {
		t.Helper()
		tx, _, err := nat.QueryOrderByOutTradeNo(ctx, native.QueryOrderByOutTradeNoRequest{OutTradeNo: core.String(no), Mchid: mch})
		if err != nil {
			return apiErr(t, err).Code
		}
		return *tx.TradeState
	}
	closeOrder := func(no string) (*core.APIResult, error) {
		return nat.CloseOrder(ctx, native.CloseOrderRequest{OutTradeNo: core.String(no), Mchid: mch})
	}
	past := time.Now().Add(-time.Minute)
	future := time.Now().Add(time.Hour)
	tests := []struct {
		name, no string
		run      func(t *testing.T, no string)
		want     string
	}{
		{"close of an open order is a signed 204", "WX-CLOSE-1", func(t *testing.T, no string) {
			mk(t, no, nil)
			res, err := closeOrder(no)
			if err != nil || res.Response.StatusCode != 204 {
				t.Fatalf("%v %v", res, err)
			}
		}, "CLOSED"},
		{"closing again is still 204", "WX-CLOSE-2", func(t *testing.T, no string) {
			mk(t, no, nil)
			for i := 0; i < 2; i++ {
				if _, err := closeOrder(no); err != nil {
					t.Fatal(err)
				}
			}
		}, "CLOSED"},
		{"close of an unknown order is 204 and creates nothing", "WX-CLOSE-3", func(t *testing.T, no string) {
			if _, err := closeOrder(no); err != nil {
				t.Fatal(err)
			}
		}, "ORDER_NOT_EXIST"},
		{"prepay of a closed order is ORDER_CLOSED", "WX-CLOSE-4", func(t *testing.T, no string) {
			mk(t, no, nil)
			_ = sim.Expire(no)
			_, _, err := nat.Prepay(ctx, native.PrepayRequest{
				Appid: core.String(k.WechatAppID), Mchid: mch, Description: core.String("d"), OutTradeNo: core.String(no),
				NotifyUrl: core.String("http://127.0.0.1:1/n"), Amount: &native.Amount{Total: core.Int64(100)},
			})
			if ae := apiErr(t, err); ae.Code != "ORDER_CLOSED" {
				t.Fatal(ae)
			}
		}, "CLOSED"},
		{"a time_expire in the past closes the order", "WX-EXP-1", func(t *testing.T, no string) { mk(t, no, &past) }, "CLOSED"},
		{"a time_expire in the future leaves it open", "WX-EXP-2", func(t *testing.T, no string) { mk(t, no, &future) }, "NOTPAY"},
		{"query of an unknown order is 404 ORDER_NOT_EXIST", "WX-NONE-1", func(t *testing.T, no string) {}, "ORDER_NOT_EXIST"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t, tc.no)
			if got := state(t, tc.no); got != tc.want {
				t.Fatalf("state %s, want %s", got, tc.want)
			}
		})
	}
	t.Run("refund query of an unknown refund is 404 RESOURCE_NOT_EXISTS", func(t *testing.T) {
		_, _, err := ref.QueryByOutRefundNo(ctx, refunddomestic.QueryByOutRefundNoRequest{OutRefundNo: core.String("nope")})
		if ae := apiErr(t, err); ae.StatusCode != 404 || ae.Code != "RESOURCE_NOT_EXISTS" {
			t.Fatal(ae)
		}
	})
	t.Run("refund of an unknown order is 404 RESOURCE_NOT_EXISTS", func(t *testing.T) {
		_, _, err := ref.Create(ctx, refunddomestic.CreateRequest{OutTradeNo: core.String("nope"), OutRefundNo: core.String("r"),
			Amount: &refunddomestic.AmountReq{Refund: core.Int64(1), Total: core.Int64(1), Currency: core.String("CNY")}})
		if ae := apiErr(t, err); ae.StatusCode != 404 || ae.Code != "RESOURCE_NOT_EXISTS" {
			t.Fatal(ae)
		}
	})
}

// TestWechatRefusesWrongKeys: requests signed with another merchant key or
// serial are 401 SIGN_ERROR; a client holding the wrong platform key or ID
// refuses the answers; a one-byte change of an answer is refused.
func TestWechatRefusesWrongKeys(t *testing.T) {
	sim, srv := startSim(t, testConfig)
	good := wechatCredsFor(t, sim)
	other, err := generateKeyMaterial()
	if err != nil {
		t.Fatal(err)
	}
	k := sim.Keys()
	prepay := func(c *core.Client, no string) error {
		_, _, err := (&native.NativeApiService{Client: c}).Prepay(context.Background(), native.PrepayRequest{
			Appid: core.String(k.WechatAppID), Mchid: core.String(k.WechatMchID), Description: core.String("d"),
			OutTradeNo: core.String(no), NotifyUrl: core.String("http://127.0.0.1:1/n"), Amount: &native.Amount{Total: core.Int64(1)},
		})
		return err
	}
	tamper := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := http.DefaultTransport.RoundTrip(r)
		if err != nil {
			return nil, err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		b = bytes.Replace(b, []byte(`"code_url":`), []byte(`"code_url": `), 1)
		resp.Body = io.NopCloser(bytes.NewReader(b))
		return resp, nil
	})
	tests := []struct {
		name     string
		creds    func(c wechatCreds) wechatCreds
		next     http.RoundTripper
		want401  bool
		created  bool
		errMatch string
	}{
		{"wrong merchant private key", func(c wechatCreds) wechatCreds { c.priv = other.wechatMchPriv; return c }, nil, true, false, ""},
		{"wrong merchant serial", func(c wechatCreds) wechatCreds { c.serial = "0123456789ABCDEF"; return c }, nil, true, false, ""},
		{"wrong platform public key", func(c wechatCreds) wechatCreds { c.pub = &other.wechatPlatformPriv.PublicKey; return c }, nil, false, true, "verif"},
		{"wrong platform public key id", func(c wechatCreds) wechatCreds { c.pubKeyID = "PUB_KEY_ID_0000"; return c }, nil, false, true, "does not match"},
		{"answer changed after signing", func(c wechatCreds) wechatCreds { return c }, tamper, false, true, "verif"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			no := "WX-KEY-" + strconv.Itoa(i) + "xx"
			err := prepay(newWechatClient(t, srv, tc.creds(good), tc.next), no)
			if err == nil {
				t.Fatal("accepted")
			}
			if tc.want401 {
				if ae := apiErr(t, err); ae.StatusCode != 401 || ae.Code != "SIGN_ERROR" {
					t.Fatal(ae)
				}
			} else if !strings.Contains(err.Error(), tc.errMatch) {
				t.Fatalf("error %v, want it to mention %q", err, tc.errMatch)
			}
			if _, created := findTrade(sim, ProviderWechat, no); created != tc.created {
				t.Fatalf("created=%v", created)
			}
		})
	}
}

// TestWechatAmounts: integer fen in [1, 10^10]; a decimal, a string, zero,
// a negative or too large total is PARAM_ERROR and creates nothing. The
// SDK's typed request cannot express 1.5, so the generic signed Post is used.
func TestWechatAmounts(t *testing.T) {
	sim, srv := startSim(t, testConfig)
	client := newWechatClient(t, srv, wechatCredsFor(t, sim), nil)
	k := sim.Keys()
	tests := []struct {
		name  string
		total any
		ok    bool
	}{
		{"one fen", 1, true}, {"the maximum", int64(10000000000), true},
		{"zero", 0, false}, {"negative", -1, false}, {"above the maximum", int64(10000000001), false},
		{"a decimal", 1.5, false}, {"a string", "100", false}, {"an exponent", 1e2, true}, // 1e2 marshals as 100
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			no := "WX-AMT-" + strconv.Itoa(i) + "xx"
			_, err := client.Post(context.Background(), "https://api.mch.weixin.qq.com/v3/pay/transactions/native", map[string]any{
				"appid": k.WechatAppID, "mchid": k.WechatMchID, "description": "d", "out_trade_no": no,
				"notify_url": "http://127.0.0.1:1/n", "amount": map[string]any{"total": tc.total, "currency": "CNY"},
			})
			if tc.ok != (err == nil) {
				t.Fatalf("err %v, want ok=%v", err, tc.ok)
			}
			if !tc.ok {
				if ae := apiErr(t, err); ae.StatusCode != 400 || ae.Code != "PARAM_ERROR" {
					t.Fatal(ae)
				}
			}
			if _, created := findTrade(sim, ProviderWechat, no); created != tc.ok {
				t.Fatalf("created=%v", created)
			}
		})
	}
}

// TestWechatNotifications: wechatpay-go's own notify handler accepts the
// payment and refund notifications and rejects tampered, stale, wrongly
// keyed and SIGNTEST ones.
func TestWechatNotifications(t *testing.T) {
	sim, srv := startSim(t, testConfig)
	creds := wechatCredsFor(t, sim)
	k := sim.Keys()
	handler, err := notify.NewRSANotifyHandler(k.WechatAPIv3Key, verifiers.NewSHA256WithRSAPubkeyVerifier(creds.pubKeyID, *creds.pub))
	if err != nil {
		t.Fatal(err)
	}
	parse := func(header http.Header, body []byte, h *notify.Handler) (*notify.Request, map[string]any, error) {
		r := httptest.NewRequest(http.MethodPost, "/wx/notify", bytes.NewReader(body))
		r.Header = header.Clone()
		content := map[string]any{}
		req, err := h.ParseNotifyRequest(context.Background(), r, &content)
		return req, content, err
	}
	rc := newReceiver(t, func(n int, r *http.Request) (int, string) {
		if n == 0 { // down once
			return 503, `{"code":"FAIL","message":"busy"}`
		}
		tx := new(payments.Transaction)
		if _, err := handler.ParseNotifyRequest(r.Context(), r, tx); err != nil {
			return 401, `{"code":"FAIL","message":"bad signature"}`
		}
		return 200, ""
	})
	client := newWechatClient(t, srv, creds, nil)
	const no = "WX-NOTIFY-01"
	_, _, err = (&native.NativeApiService{Client: client}).Prepay(context.Background(), native.PrepayRequest{
		Appid: core.String(k.WechatAppID), Mchid: core.String(k.WechatMchID), Description: core.String("parcel"),
		OutTradeNo: core.String(no), NotifyUrl: core.String(rc.srv.URL + "/wx/notify"), Amount: &native.Amount{Total: core.Int64(888)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Pay(no); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the payment notification to be acknowledged", func() bool {
		ds := deliveriesOf(sim, no, "payment")
		return len(ds) == 1 && ds[0].Delivered
	})
	if d := deliveriesOf(sim, no, "payment")[0]; len(d.Attempts) != 2 || d.Attempts[0].Status != 503 || d.Attempts[1].Status != 200 {
		t.Fatalf("attempts %+v", d.Attempts)
	}
	got := rc.requests()[1]
	req, content, err := parse(got.header, got.body, handler)
	if err != nil {
		t.Fatal(err)
	}
	if req.EventType != "TRANSACTION.SUCCESS" || req.Resource.OriginalType != "transaction" || content["out_trade_no"] != no ||
		content["trade_state"] != "SUCCESS" || content["mchid"] != k.WechatMchID || content["amount"].(map[string]any)["total"] != float64(888) {
		t.Fatalf("%+v %v", req, content)
	}
	if got.header.Get("Wechatpay-Serial") != k.WechatPlatformPublicKeyID {
		t.Fatalf("serial %s", got.header.Get("Wechatpay-Serial"))
	}

	otherKey, _ := notify.NewRSANotifyHandler(strings.Repeat("k", 32), verifiers.NewSHA256WithRSAPubkeyVerifier(creds.pubKeyID, *creds.pub))
	staleHeader := got.header.Clone()
	ts := strconv.FormatInt(time.Now().Add(-6*time.Minute).Unix(), 10)
	nonce := "stale-nonce-0123456789"
	staleHeader.Set("Wechatpay-Timestamp", ts)
	staleHeader.Set("Wechatpay-Nonce", nonce)
	staleHeader.Set("Wechatpay-Signature", signSHA256RSA(sim.km.wechatPlatformPriv, wechatMessage(ts, nonce, got.body)))
	tampered := bytes.Replace(got.body, []byte(`"summary":`), []byte(`"summary": `), 1)
	rejections := []struct {
		name   string
		header http.Header
		body   []byte
		h      *notify.Handler
		want   string
	}{
		{"one byte changed in the body", got.header, tampered, handler, "invalid notification"},
		{"a correctly signed but stale timestamp", staleHeader, got.body, handler, "expires"},
		{"the wrong APIv3 key", got.header, got.body, otherKey, "decrypt error"},
	}
	for _, tc := range rejections {
		t.Run("rejects "+tc.name, func(t *testing.T) {
			if _, _, err := parse(tc.header, tc.body, tc.h); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}

	t.Run("the SIGNTEST probe is refused and not retried", func(t *testing.T) {
		if err := sim.SendWechatSignTest(no); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the probe", func() bool {
			ds := deliveriesOf(sim, no, "signtest")
			return len(ds) == 1 && len(ds[0].Attempts) == 1
		})
		d := deliveriesOf(sim, no, "signtest")[0]
		if !d.Delivered || d.Attempts[0].Status != 401 {
			t.Fatalf("%+v", d)
		}
		reqs := rc.requests()
		probe := reqs[len(reqs)-1]
		if !strings.HasPrefix(probe.header.Get("Wechatpay-Signature"), "WECHATPAY/SIGNTEST/") {
			t.Fatal("not a probe")
		}
		if _, _, err := parse(probe.header, probe.body, handler); err == nil {
			t.Fatal("probe accepted")
		}
	})

	t.Run("the refund notification decrypts to the refund", func(t *testing.T) {
		_, _, err := (&refunddomestic.RefundsApiService{Client: client}).Create(context.Background(), refunddomestic.CreateRequest{
			OutTradeNo: core.String(no), OutRefundNo: core.String("WXR-1"),
			Amount: &refunddomestic.AmountReq{Refund: core.Int64(88), Total: core.Int64(888), Currency: core.String("CNY")},
		})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the refund notification", func() bool {
			ds := deliveriesOf(sim, no, "refund")
			return len(ds) == 1 && ds[0].Delivered
		})
		reqs := rc.requests()
		last := reqs[len(reqs)-1]
		req, content, err := parse(last.header, last.body, handler)
		if err != nil {
			t.Fatal(err)
		}
		if req.EventType != "REFUND.SUCCESS" || req.Resource.AssociatedData != "refund" || content["out_refund_no"] != "WXR-1" ||
			content["refund_status"] != "SUCCESS" || content["amount"].(map[string]any)["refund"] != float64(88) {
			t.Fatalf("%+v %v", req, content)
		}
	})
}
