// Package wechat is payproxy's adapter for WeChat Pay API v3 Native
// payment (public-key mode) through the official wechatpay-go SDK. With
// payproxy/alipay it is the only code that imports a provider SDK.
package wechat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/wechatpay-apiv3/wechatpay-go/core"
	"github.com/wechatpay-apiv3/wechatpay-go/core/auth/validators"
	"github.com/wechatpay-apiv3/wechatpay-go/core/auth/verifiers"
	"github.com/wechatpay-apiv3/wechatpay-go/core/notify"
	"github.com/wechatpay-apiv3/wechatpay-go/core/option"
	"github.com/wechatpay-apiv3/wechatpay-go/services/payments/native"
	"github.com/wechatpay-apiv3/wechatpay-go/services/refunddomestic"
	"github.com/wechatpay-apiv3/wechatpay-go/utils"

	"github.com/tollgate/tollgate/payproxy/provider"
)

// Config is what the adapter needs; payproxy reads the key files.
type Config struct {
	MchID                string
	AppID                string
	SerialNo             string // merchant API certificate serial
	PrivateKeyPEM        string
	APIv3Key             string // exactly 32 bytes
	PlatformPublicKeyPEM string
	PlatformPublicKeyID  string
	BaseURL              string // "" = https://api.mch.weixin.qq.com
	NotifyURL            string
	HTTPClient           *http.Client
}

// Adapter implements provider.Provider for WeChat Pay.
type Adapter struct {
	cfg      Config
	native   native.NativeApiService
	refunds  refunddomestic.RefundsApiService
	notifier *notify.Handler
	// answers checks the signature of error answers, which the SDK hands
	// back as *core.APIError without looking at it.
	answers *validators.WechatPayResponseValidator
}

// New builds the SDK client in public-key mode. It never uses
// WithWechatPayAutoAuthCipher, which downloads certificates synchronously
// with its own HTTP client and starts a process-global ticker.
func New(cfg Config) (*Adapter, error) {
	if len(cfg.APIv3Key) != 32 {
		return nil, fmt.Errorf("wechat apiv3_key must be exactly 32 bytes, got %d", len(cfg.APIv3Key))
	}
	priv, err := utils.LoadPrivateKey(cfg.PrivateKeyPEM)
	if err != nil {
		return nil, fmt.Errorf("wechat private_key: %w", err)
	}
	pub, err := utils.LoadPublicKey(cfg.PlatformPublicKeyPEM)
	if err != nil {
		return nil, fmt.Errorf("wechat platform_public_key: %w", err)
	}
	httpClient, err := rewritingClient(cfg.HTTPClient, cfg.BaseURL)
	if err != nil {
		return nil, err
	}
	client, err := core.NewClient(context.Background(),
		option.WithWechatPayPublicKeyAuthCipher(cfg.MchID, cfg.SerialNo, priv, cfg.PlatformPublicKeyID, pub),
		option.WithHTTPClient(httpClient))
	if err != nil {
		return nil, fmt.Errorf("wechat client: %w", err)
	}
	verifier := verifiers.NewSHA256WithRSAPubkeyVerifier(cfg.PlatformPublicKeyID, *pub)
	h, err := notify.NewRSANotifyHandler(cfg.APIv3Key, verifier)
	if err != nil {
		return nil, fmt.Errorf("wechat notify handler: %w", err)
	}
	return &Adapter{
		cfg:      cfg,
		native:   native.NativeApiService{Client: client},
		refunds:  refunddomestic.RefundsApiService{Client: client},
		notifier: h,
		answers:  validators.NewWechatPayResponseValidator(verifier),
	}, nil
}

// rewritingClient points the SDK, whose host is a compile-time constant,
// at baseURL by rewriting each request's scheme and host. The request
// signature covers only the method and path, so it stays valid.
func rewritingClient(base *http.Client, baseURL string) (*http.Client, error) {
	c := &http.Client{}
	if base != nil {
		*c = *base
	}
	if baseURL == "" {
		return c, nil
	}
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("wechat base_url %q: want http(s)://host[:port]", baseURL)
	}
	next := c.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	c.Transport = &hostRewriter{scheme: u.Scheme, host: u.Host, prefix: strings.TrimRight(u.Path, "/"), next: next}
	return c, nil
}

type hostRewriter struct {
	scheme, host, prefix string
	next                 http.RoundTripper
}

func (h *hostRewriter) RoundTrip(r *http.Request) (*http.Response, error) {
	r2 := r.Clone(r.Context())
	r2.URL.Scheme, r2.URL.Host, r2.Host = h.scheme, h.host, h.host
	if h.prefix != "" {
		r2.URL.Path = h.prefix + r2.URL.Path
		r2.URL.RawPath = ""
	}
	return h.next.RoundTrip(r2)
}

// Name implements provider.Provider.
func (a *Adapter) Name() string { return "wechat" }

// Create calls the Native prepay API; time_expire carries pay_timeout.
func (a *Adapter) Create(ctx context.Context, req provider.CreateRequest) (string, error) {
	exp := req.ExpiresAt
	rsp, _, err := a.native.Prepay(ctx, native.PrepayRequest{
		Appid: core.String(a.cfg.AppID), Mchid: core.String(a.cfg.MchID),
		Description: core.String(req.Subject), OutTradeNo: core.String(req.TradeNo),
		TimeExpire: &exp, NotifyUrl: core.String(a.cfg.NotifyURL),
		Amount: &native.Amount{Total: core.Int64(req.AmountFen), Currency: core.String("CNY")},
	})
	if err != nil {
		return "", a.answerError(ctx, "prepay", err)
	}
	if rsp.CodeUrl == nil {
		return "", errors.New("wechat prepay: answer without code_url")
	}
	return *rsp.CodeUrl, nil
}

// Query maps trade_state; an order WeChat does not know (the prepay never
// arrived) is "not created", which the poller closes at its deadline.
func (a *Adapter) Query(ctx context.Context, tradeNo string) (provider.QueryResult, error) {
	tx, _, err := a.native.QueryOrderByOutTradeNo(ctx, native.QueryOrderByOutTradeNoRequest{
		OutTradeNo: core.String(tradeNo), Mchid: core.String(a.cfg.MchID),
	})
	if err != nil {
		err = a.answerError(ctx, "query", err)
		if provider.IsCode(err, provider.CodeTradeNotFound) {
			return provider.QueryResult{Status: provider.TradeNotCreated}, nil
		}
		return provider.QueryResult{}, err
	}
	res := provider.QueryResult{Status: provider.TradeWaiting}
	if tx.Amount != nil && tx.Amount.Total != nil {
		res.AmountFen = *tx.Amount.Total
	}
	if tx.TransactionId != nil {
		res.ProviderTradeID = *tx.TransactionId
	}
	switch str(tx.TradeState) {
	case "SUCCESS", "REFUND":
		res.Status = provider.TradePaid
	case "CLOSED", "REVOKED":
		res.Status = provider.TradeClosed
	case "PAYERROR":
		res.Status = provider.TradePayFailed
	}
	return res, nil
}

// Close closes an unpaid order. WeChat answers 204 even for unknown or
// closed orders; a refusal is explained by querying.
func (a *Adapter) Close(ctx context.Context, tradeNo string) error {
	_, err := a.native.CloseOrder(ctx, native.CloseOrderRequest{OutTradeNo: core.String(tradeNo), Mchid: core.String(a.cfg.MchID)})
	if err == nil {
		return nil
	}
	err = a.answerError(ctx, "close", err)
	if !provider.IsDefinite(err) {
		return err
	}
	q, qerr := a.Query(ctx, tradeNo)
	switch {
	case qerr != nil:
		return err
	case q.Status == provider.TradePaid:
		return &provider.Error{Code: provider.CodeTradePaid, ProviderCode: "SUCCESS", Message: "trade is paid"}
	case q.Status == provider.TradeClosed:
		return nil
	}
	return err
}

// Refund creates a domestic refund; WeChat usually answers PROCESSING.
func (a *Adapter) Refund(ctx context.Context, req provider.RefundRequest) (provider.RefundResult, error) {
	cr := refunddomestic.CreateRequest{
		OutTradeNo: core.String(req.TradeNo), OutRefundNo: core.String(req.RefundNo),
		NotifyUrl: core.String(a.cfg.NotifyURL),
		Amount: &refunddomestic.AmountReq{
			Refund: core.Int64(req.AmountFen), Total: core.Int64(req.TotalFen), Currency: core.String("CNY"),
		},
	}
	if req.Reason != "" {
		cr.Reason = core.String(req.Reason)
	}
	rsp, _, err := a.refunds.Create(ctx, cr)
	if err != nil {
		err = a.answerError(ctx, "refund", err)
		var pe *provider.Error
		if errors.As(err, &pe) && pe.Code == provider.CodeRejected {
			pe.Code = provider.CodeRefundRejected
		}
		return provider.RefundResult{}, err
	}
	return refundResult(rsp), nil
}

// QueryRefund looks a refund up by its number.
func (a *Adapter) QueryRefund(ctx context.Context, _, refundNo string) (provider.RefundResult, error) {
	rsp, _, err := a.refunds.QueryByOutRefundNo(ctx, refunddomestic.QueryByOutRefundNoRequest{OutRefundNo: core.String(refundNo)})
	if err != nil {
		err = a.answerError(ctx, "refund query", err)
		if provider.IsCode(err, provider.CodeTradeNotFound) {
			return provider.RefundResult{Status: provider.RefundNotFound}, nil
		}
		return provider.RefundResult{}, err
	}
	return refundResult(rsp), nil
}

func refundResult(r *refunddomestic.Refund) provider.RefundResult {
	res := provider.RefundResult{Status: provider.RefundProcessing}
	if r.Amount != nil && r.Amount.Refund != nil {
		res.AmountFen = *r.Amount.Refund
	}
	if r.Status != nil {
		switch *r.Status {
		case refunddomestic.STATUS_SUCCESS:
			res.Status = provider.RefundSucceeded
		case refunddomestic.STATUS_CLOSED:
			res.Status = provider.RefundFailed
		case refunddomestic.STATUS_ABNORMAL:
			res.Status = provider.RefundAbnormal
		}
	}
	return res
}

// resource is the decrypted plaintext of payment and refund notifications.
type resource struct {
	Mchid        string `json:"mchid"`
	Appid        string `json:"appid"`
	OutTradeNo   string `json:"out_trade_no"`
	TradeState   string `json:"trade_state"`
	OutRefundNo  string `json:"out_refund_no"`
	RefundStatus string `json:"refund_status"`
	Amount       struct {
		Total  int64 `json:"total"`
		Refund int64 `json:"refund"`
	} `json:"amount"`
}

// ParseNotification verifies the headers' signature (5-minute window) and
// decrypts the resource with the APIv3 key, then checks mchid and appid.
// The SDK panics on a correctly signed body without "resource": recovered.
func (a *Adapter) ParseNotification(r *http.Request) (n *provider.Notification, err error) {
	var res resource
	req, err := a.parse(r, &res)
	if err != nil {
		return nil, err
	}
	if res.Mchid != a.cfg.MchID {
		return nil, errors.New("wechat notification for another mchid")
	}
	out := &provider.Notification{ID: req.ID, TradeNo: res.OutTradeNo, AmountFen: res.Amount.Total, Merchant: res.Mchid}
	if strings.HasPrefix(req.EventType, "REFUND.") {
		out.Kind, out.RefundNo, out.RefundFen = provider.NotifyRefund, res.OutRefundNo, res.Amount.Refund
		switch res.RefundStatus {
		case "SUCCESS":
			out.RefundState = provider.RefundSucceeded
		case "CLOSED":
			out.RefundState = provider.RefundFailed
		case "ABNORMAL":
			out.RefundState = provider.RefundAbnormal
		default:
			out.RefundState = provider.RefundProcessing
		}
		return out, nil
	}
	if res.Appid != a.cfg.AppID {
		return nil, errors.New("wechat notification for another appid")
	}
	out.Kind = provider.NotifyTrade
	switch res.TradeState {
	case "SUCCESS", "REFUND":
		out.Status = provider.TradePaid
	case "CLOSED", "REVOKED":
		out.Status = provider.TradeClosed
	case "PAYERROR":
		out.Status = provider.TradePayFailed
	default:
		out.Status = provider.TradeWaiting
	}
	return out, nil
}

func (a *Adapter) parse(r *http.Request, content any) (req *notify.Request, err error) {
	defer func() {
		if p := recover(); p != nil {
			req, err = nil, fmt.Errorf("wechat notification: malformed signed body (%v)", p)
		}
	}()
	req, err = a.notifier.ParseNotifyRequest(r.Context(), r, content)
	if err != nil {
		return nil, fmt.Errorf("wechat notification: %w", err)
	}
	return req, nil
}

// Acknowledge answers 204, which WeChat takes as received.
func (a *Adapter) Acknowledge(w http.ResponseWriter) { w.WriteHeader(http.StatusNoContent) }

// Refuse answers a notification with WeChat's failure shape,
// {"code":"FAIL","message":…} (4xx/5xx: WeChat retries), with tollgate's
// error code and description alongside.
func (a *Adapter) Refuse(w http.ResponseWriter, status int, code, description string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{
		"code": "FAIL", "message": description, "error": code, "error_description": description,
	})
}

// answerError turns the SDK's *core.APIError for a non-2xx answer into a
// definite provider.Error, but only when WeChat Pay signed that answer: the
// SDK returns APIError before it checks any signature, so a 4xx from a proxy
// or any other hop would otherwise read as the provider's refusal. Unsigned
// answers, 5xx, 429 and transport errors leave the outcome unknown; a 429
// (FREQUENCY_LIMITED, signed or not) or a 5xx with Retry-After is
// provider.Busy, carrying the wait it asked for.
func (a *Adapter) answerError(ctx context.Context, op string, err error) error {
	var ae *core.APIError
	if !errors.As(err, &ae) {
		return fmt.Errorf("wechat %s: %w", op, err)
	}
	if busy := busyAnswer(ae); busy != nil {
		busy.Err = fmt.Errorf("wechat %s: %w", op, err)
		return busy
	}
	signed := &http.Response{Header: ae.Header, Body: io.NopCloser(strings.NewReader(ae.Body))}
	if verr := a.answers.Validate(ctx, signed); verr != nil {
		return fmt.Errorf("wechat %s: unsigned answer %d %s, outcome unknown: %v", op, ae.StatusCode, ae.Code, verr)
	}
	if ae.StatusCode >= 500 {
		return fmt.Errorf("wechat %s: %w", op, err)
	}
	code := provider.CodeRejected
	switch ae.Code {
	case "ORDERPAID", "TRADE_PAID":
		code = provider.CodeTradePaid
	case "ORDER_CLOSED":
		code = provider.CodeTradeClosed
	case "ORDER_NOT_EXIST", "RESOURCE_NOT_EXISTS":
		code = provider.CodeTradeNotFound
	}
	return &provider.Error{Code: code, ProviderCode: ae.Code, Message: ae.Message}
}

// busyAnswer is a 429, or a 5xx that says when to come back, as
// provider.Busy with its Retry-After; nil for anything else.
func busyAnswer(ae *core.APIError) *provider.Busy {
	wait := provider.ParseRetryAfter(ae.Header.Get("Retry-After"), time.Now())
	if ae.StatusCode == http.StatusTooManyRequests || (ae.StatusCode >= 500 && wait > 0) {
		return &provider.Busy{RetryAfter: wait}
	}
	return nil
}

func str[T ~string](p *T) string {
	if p == nil {
		return ""
	}
	return string(*p)
}

var _ provider.Provider = (*Adapter)(nil)
