package paysim

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smartwalle/alipay/v3"
	"github.com/wechatpay-apiv3/wechatpay-go/core"
	"github.com/wechatpay-apiv3/wechatpay-go/core/auth/validators"
	"github.com/wechatpay-apiv3/wechatpay-go/core/auth/verifiers"
	"github.com/wechatpay-apiv3/wechatpay-go/core/notify"
	"github.com/wechatpay-apiv3/wechatpay-go/services/payments/native"
	"github.com/wechatpay-apiv3/wechatpay-go/services/refunddomestic"
)

// merchant is a merchant's side of both providers, calling the official
// SDKs the way payproxy's adapters do (payproxy/alipay, payproxy/wechat):
// Alipay in public-key mode with time_expire and FACE_TO_FACE_PAYMENT,
// WeChat in public-key mode through a host-rewriting client, notifications
// verified with DecodeNotification(r.PostForm) and ParseNotifyRequest, and
// WeChat error answers checked with the SDK's response validator.
type merchant struct {
	t       *testing.T
	sim     *Sim
	srv     *httptest.Server
	k       Keys
	ali     *alipay.Client
	wx      *native.NativeApiService
	refunds *refunddomestic.RefundsApiService
	notify  *notify.Handler
	answers *validators.WechatPayResponseValidator
}

func newMerchant(t *testing.T, cfg Config) *merchant {
	t.Helper()
	sim, srv := startSim(t, cfg)
	creds := wechatCredsFor(t, sim)
	client := newWechatClient(t, srv, creds, nil)
	verifier := verifiers.NewSHA256WithRSAPubkeyVerifier(creds.pubKeyID, *creds.pub)
	h, err := notify.NewRSANotifyHandler(sim.Keys().WechatAPIv3Key, verifier)
	if err != nil {
		t.Fatal(err)
	}
	return &merchant{
		t: t, sim: sim, srv: srv, k: sim.Keys(), ali: alipayFor(t, sim, srv),
		wx: &native.NativeApiService{Client: client}, refunds: &refunddomestic.RefundsApiService{Client: client},
		notify: h, answers: validators.NewWechatPayResponseValidator(verifier),
	}
}

var ctx = context.Background()

// precreate issues an Alipay QR code as payproxy does (absolute time_expire).
func (m *merchant) precreate(no, amount, notifyURL string, expires time.Time) (*alipay.TradePreCreateRsp, error) {
	p := alipay.TradePreCreate{}
	p.NotifyURL, p.Subject, p.OutTradeNo, p.TotalAmount = notifyURL, "parcel", no, amount
	p.ProductCode = "FACE_TO_FACE_PAYMENT"
	p.TimeExpire = expires.In(chinaTZ).Format("2006-01-02 15:04:05")
	return m.ali.TradePreCreate(ctx, p)
}

func (m *merchant) mustPrecreate(no, amount, notifyURL string, expires time.Time) string {
	m.t.Helper()
	r, err := m.precreate(no, amount, notifyURL, expires)
	if err != nil || !r.IsSuccess() {
		m.t.Fatalf("precreate %s: %+v %v", no, r, err)
	}
	return r.QRCode
}

// paidAlipay is a paid Alipay trade without a notify_url.
func (m *merchant) paidAlipay(no, amount string) {
	m.t.Helper()
	m.mustPrecreate(no, amount, "", m.in(time.Hour))
	m.pay(no)
}

// mustAliRefund refunds and wants fund_change=Y.
func (m *merchant) mustAliRefund(no, reqNo, amount string) {
	m.t.Helper()
	if r, err := m.aliRefund(no, reqNo, amount); err != nil || r.FundChange != "Y" {
		m.t.Fatalf("refund %s/%s: %+v %v", no, reqNo, r, err)
	}
}

func (m *merchant) aliRefund(no, reqNo, amount string) (*alipay.TradeRefundRsp, error) {
	return m.ali.TradeRefund(ctx, alipay.TradeRefund{OutTradeNo: no, RefundAmount: amount, OutRequestNo: reqNo, RefundReason: "r"})
}

func (m *merchant) aliRefundQuery(no, reqNo string) *alipay.TradeFastPayRefundQueryRsp {
	m.t.Helper()
	r, err := m.ali.TradeFastPayRefundQuery(ctx, alipay.TradeFastPayRefundQuery{OutTradeNo: no, OutRequestNo: reqNo})
	if err != nil || !r.IsSuccess() {
		m.t.Fatalf("refund query %s/%s: %+v %v", no, reqNo, r, err)
	}
	return r
}

// prepay creates a WeChat Native order of total fen as payproxy does.
func (m *merchant) prepay(no string, total int64, notifyURL string, expires time.Time) (*native.PrepayResponse, error) {
	r, _, err := m.wx.Prepay(ctx, native.PrepayRequest{
		Appid: core.String(m.k.WechatAppID), Mchid: core.String(m.k.WechatMchID), Description: core.String("parcel"),
		OutTradeNo: core.String(no), TimeExpire: &expires, NotifyUrl: core.String(notifyURL),
		Amount: &native.Amount{Total: core.Int64(total), Currency: core.String("CNY")},
	})
	return r, err
}

func (m *merchant) mustPrepay(no string, total int64, notifyURL string, expires time.Time) string {
	m.t.Helper()
	r, err := m.prepay(no, total, notifyURL, expires)
	if err != nil {
		m.t.Fatalf("prepay %s: %v", no, err)
	}
	return *r.CodeUrl
}

func (m *merchant) wxRefund(no, refundNo string, refund, total int64, notifyURL string) (*refunddomestic.Refund, error) {
	r, _, err := m.refunds.Create(ctx, refunddomestic.CreateRequest{
		OutTradeNo: core.String(no), OutRefundNo: core.String(refundNo), NotifyUrl: core.String(notifyURL),
		Amount: &refunddomestic.AmountReq{Refund: core.Int64(refund), Total: core.Int64(total), Currency: core.String("CNY")},
	})
	return r, err
}

func (m *merchant) wxRefundStatus(refundNo string) refunddomestic.Status {
	m.t.Helper()
	r, _, err := m.refunds.QueryByOutRefundNo(ctx, refunddomestic.QueryByOutRefundNoRequest{OutRefundNo: core.String(refundNo)})
	if err != nil {
		m.t.Fatalf("refund query %s: %v", refundNo, err)
	}
	return *r.Status
}

// signedAPIError is the SDK's error for a non-2xx answer, with whether the
// provider signed it (what payproxy checks before believing a refusal).
func (m *merchant) signedAPIError(err error) (*core.APIError, bool) {
	m.t.Helper()
	var ae *core.APIError
	if !errors.As(err, &ae) {
		m.t.Fatalf("want a *core.APIError, got %v", err)
	}
	resp := &http.Response{Header: ae.Header, Body: io.NopCloser(strings.NewReader(ae.Body))}
	return ae, m.answers.Validate(ctx, resp) == nil
}

// heard is one notification a merchant endpoint verified.
type heard struct {
	header http.Header
	ali    *alipay.Notification
	wxID   string // WeChat event id
	wxType string
	wx     map[string]any // WeChat decrypted resource
}

// endpoint is a merchant's notify URL: it verifies every notification
// with the SDK, records the verified ones in arrival order, and answers
// what answer says for the n-th request (ok=true: the provider's success).
type endpoint struct {
	m      *merchant
	srv    *httptest.Server
	mu     sync.Mutex
	n      int
	got    []heard
	answer func(n int) (status int, body string)
}

// acknowledge answers as payproxy does: "success" (Alipay), 204 (WeChat).
func acknowledge(provider string) func(int) (int, string) {
	return func(int) (int, string) {
		if provider == ProviderAlipay {
			return 200, "success"
		}
		return 204, ""
	}
}

func (m *merchant) endpoint(provider string, answer func(n int) (int, string)) *endpoint {
	e := &endpoint{m: m, answer: answer}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := heard{header: r.Header.Clone()}
		var err error
		if provider == ProviderAlipay {
			if err = r.ParseForm(); err == nil {
				h.ali, err = m.ali.DecodeNotification(r.PostForm)
			}
		} else {
			h.wx = map[string]any{}
			var req *notify.Request
			if req, err = m.notify.ParseNotifyRequest(r.Context(), r, &h.wx); err == nil {
				h.wxID, h.wxType = req.ID, req.EventType
			}
		}
		e.mu.Lock()
		n := e.n
		e.n++
		if err == nil {
			e.got = append(e.got, h)
		}
		e.mu.Unlock()
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		status, body := e.answer(n)
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	m.t.Cleanup(e.srv.Close)
	return e
}

func (e *endpoint) heard() []heard {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]heard(nil), e.got...)
}

// waitHeard waits until the endpoint verified n notifications.
func (e *endpoint) waitHeard(n int) []heard {
	e.m.t.Helper()
	waitFor(e.m.t, "verified notifications", func() bool { return len(e.heard()) >= n })
	return e.heard()
}

// waitDelivery waits for the delivery of a trade matching pick.
func (m *merchant) waitDelivery(what string, pick func(Delivery) bool) Delivery {
	m.t.Helper()
	var found Delivery
	waitFor(m.t, what, func() bool {
		for _, d := range m.sim.Notifications() {
			if pick(d) {
				found = d
				return true
			}
		}
		return false
	})
	return found
}

// pay pays a trade as the buyer, failing the test on error.
func (m *merchant) pay(no string) {
	m.t.Helper()
	if err := m.sim.Pay(no); err != nil {
		m.t.Fatalf("pay %s: %v", no, err)
	}
}

// in returns a time d from the simulator's now.
func (m *merchant) in(d time.Duration) time.Time { return m.sim.Now().Add(d) }
