// Package alipay is payproxy's adapter for Alipay face-to-face payment
// (alipay.trade.precreate, RSA2, public-key mode) through the official
// smartwalle/alipay/v3 SDK. It is, with payproxy/wechat, the only code that
// imports a provider SDK, and the only code that sees yuan strings.
package alipay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	sdk "github.com/smartwalle/alipay/v3"

	"github.com/tollgate/tollgate/payproxy/provider"
)

// Config is what the adapter needs; payproxy reads the key files.
type Config struct {
	AppID         string
	PrivateKeyPEM string // the app's private key (PKCS#1 or PKCS#8)
	PublicKeyPEM  string // Alipay's public key
	Gateway       string // "" = Alipay's production gateway
	NotifyURL     string
	HTTPClient    *http.Client
}

// Adapter implements provider.Provider for Alipay.
type Adapter struct {
	cfg    Config
	client *sdk.Client
}

// productionGateway is Alipay's open API gateway.
const productionGateway = "https://openapi.alipay.com/gateway.do"

// New builds the SDK client. It does not touch the network.
//
// The SDK's "production" flag does one thing besides choosing the default
// gateway: an answer or a notification naming an alipay_cert_sn it has no
// key for makes it download that certificate (unverified, from the
// gateway, holding the lock every call needs) and make it its default
// verifier. payproxy uses public-key mode, with the one key it is given,
// so the client is built with the flag off and the gateway set explicitly:
// an unknown alipay_cert_sn is then only an error.
func New(cfg Config) (*Adapter, error) {
	gateway := cfg.Gateway
	if gateway == "" {
		gateway = productionGateway
	}
	opts := []sdk.OptionFunc{sdk.WithTimeLocation(chinaTZ), sdk.WithSandboxGateway(gateway)}
	if cfg.HTTPClient != nil {
		opts = append(opts, sdk.WithHTTPClient(cfg.HTTPClient))
	}
	c, err := sdk.New(cfg.AppID, cfg.PrivateKeyPEM, false, opts...)
	if err != nil {
		return nil, fmt.Errorf("alipay private_key: %w", err)
	}
	if err := c.LoadAliPayPublicKey(cfg.PublicKeyPEM); err != nil {
		return nil, fmt.Errorf("alipay alipay_public_key: %w", err)
	}
	return &Adapter{cfg: cfg, client: c}, nil
}

var chinaTZ = time.FixedZone("CST", 8*3600)

// Name implements provider.Provider.
func (a *Adapter) Name() string { return "alipay" }

// Create issues a face-to-face QR code. The deadline goes to Alipay as the
// absolute time_expire (Beijing time, to the second): a retry after a lost
// answer asks for the same deadline, where a relative timeout_express
// would move it with every retry.
func (a *Adapter) Create(ctx context.Context, req provider.CreateRequest) (string, error) {
	p := sdk.TradePreCreate{}
	p.NotifyURL = a.cfg.NotifyURL
	p.Subject = req.Subject
	p.OutTradeNo = req.TradeNo
	p.TotalAmount = FormatYuan(req.AmountFen)
	p.ProductCode = "FACE_TO_FACE_PAYMENT"
	p.TimeExpire = req.ExpiresAt.In(chinaTZ).Format(timeExpireLayout)
	rsp, err := a.client.TradePreCreate(ctx, p)
	if err != nil {
		return "", callError("precreate", err)
	}
	if !rsp.IsSuccess() {
		return "", businessError(rsp.Error)
	}
	return rsp.QRCode, nil
}

// timeExpireLayout is Alipay's time_expire format, in Beijing time.
const timeExpireLayout = "2006-01-02 15:04:05"

// Query maps Alipay's trade_status; ACQ.TRADE_NOT_EXIST (nobody scanned the
// QR code yet, so Alipay has no trade) is "not created", not an error.
func (a *Adapter) Query(ctx context.Context, tradeNo string) (provider.QueryResult, error) {
	rsp, err := a.client.TradeQuery(ctx, sdk.TradeQuery{OutTradeNo: tradeNo})
	if err != nil {
		return provider.QueryResult{}, callError("query", err)
	}
	if !rsp.IsSuccess() {
		if rsp.SubCode == "ACQ.TRADE_NOT_EXIST" {
			return provider.QueryResult{Status: provider.TradeNotCreated}, nil
		}
		return provider.QueryResult{}, businessError(rsp.Error)
	}
	res := provider.QueryResult{ProviderTradeID: rsp.TradeNo}
	if res.AmountFen, err = ParseYuan(rsp.TotalAmount); err != nil {
		return provider.QueryResult{}, fmt.Errorf("alipay query total_amount: %w", err)
	}
	switch rsp.TradeStatus {
	case sdk.TradeStatusSuccess, sdk.TradeStatusFinished:
		res.Status = provider.TradePaid
	case sdk.TradeStatusClosed:
		res.Status = provider.TradeClosed
	default:
		res.Status = provider.TradeWaiting
	}
	return res, nil
}

// Close stops an unpaid trade. A QR code nobody scanned has no trade on
// Alipay's side, so it is cancelled (alipay.trade.cancel); a scanned one is
// closed (alipay.trade.close), never cancelled, because cancelling a paid
// trade refunds it.
func (a *Adapter) Close(ctx context.Context, tradeNo string) error {
	q, err := a.client.TradeQuery(ctx, sdk.TradeQuery{OutTradeNo: tradeNo})
	if err != nil {
		return callError("query before close", err)
	}
	switch {
	case !q.IsSuccess() && q.SubCode == "ACQ.TRADE_NOT_EXIST":
		return a.cancel(ctx, tradeNo)
	case !q.IsSuccess():
		return businessError(q.Error)
	case q.TradeStatus == sdk.TradeStatusSuccess || q.TradeStatus == sdk.TradeStatusFinished:
		return &provider.Error{Code: provider.CodeTradePaid, ProviderCode: string(q.TradeStatus), Message: "trade is paid"}
	case q.TradeStatus == sdk.TradeStatusClosed:
		return nil
	}
	rsp, err := a.client.TradeClose(ctx, sdk.TradeClose{OutTradeNo: tradeNo})
	if err != nil {
		return callError("close", err)
	}
	if !rsp.IsSuccess() {
		return a.explainCloseFailure(ctx, tradeNo, rsp.Error)
	}
	return nil
}

func (a *Adapter) cancel(ctx context.Context, tradeNo string) error {
	rsp, err := a.client.TradeCancel(ctx, sdk.TradeCancel{OutTradeNo: tradeNo})
	if err != nil {
		return callError("cancel", err)
	}
	if !rsp.IsSuccess() {
		return businessError(rsp.Error)
	}
	if rsp.Action == "refund" {
		// Paid between our query and the cancel: Alipay refunded it in full.
		return &provider.Error{Code: provider.CodeTradeClosed, ProviderCode: "action=refund", Message: "paid then refunded by cancel"}
	}
	return nil
}

// explainCloseFailure re-queries after a refused close: the trade was most
// likely paid in between.
func (a *Adapter) explainCloseFailure(ctx context.Context, tradeNo string, e sdk.Error) error {
	q, err := a.Query(ctx, tradeNo)
	if err == nil && q.Status == provider.TradePaid {
		return &provider.Error{Code: provider.CodeTradePaid, ProviderCode: e.SubCode, Message: "trade is paid"}
	}
	if err == nil && q.Status == provider.TradeClosed {
		return nil
	}
	return businessError(e)
}

// Refund sends alipay.trade.refund. A 10000 answer is not yet a success for
// payproxy (fund_change=Y can come from an answer that moved nothing):
// only the refund query's REFUND_SUCCESS is. Its refund_fee, the trade's
// cumulative refunded amount, is passed on: it can confirm a refund the
// query answers in the older shape.
func (a *Adapter) Refund(ctx context.Context, req provider.RefundRequest) (provider.RefundResult, error) {
	rsp, err := a.client.TradeRefund(ctx, sdk.TradeRefund{
		OutTradeNo: req.TradeNo, RefundAmount: FormatYuan(req.AmountFen),
		OutRequestNo: req.RefundNo, RefundReason: req.Reason,
	})
	if err != nil {
		return provider.RefundResult{}, callError("refund", err)
	}
	if !rsp.IsSuccess() {
		return provider.RefundResult{}, refundError(rsp.Error)
	}
	res := provider.RefundResult{Status: provider.RefundProcessing, AmountFen: req.AmountFen}
	if total, err := ParseYuan(rsp.RefundFee); err == nil {
		res.RefundedTotalFen, res.HasRefundedTotal = total, true
	}
	return res, nil
}

// QueryRefund: REFUND_SUCCESS is the only success. No refund_status and
// no refund data means Alipay never received the refund (or it failed),
// which is NOT a success. The refund's data without refund_status (the
// older documented shape, which the old documentation calls a success and
// the current one does not) is unconfirmed: neither success nor failure.
func (a *Adapter) QueryRefund(ctx context.Context, tradeNo, refundNo string) (provider.RefundResult, error) {
	rsp, err := a.client.TradeFastPayRefundQuery(ctx, sdk.TradeFastPayRefundQuery{OutTradeNo: tradeNo, OutRequestNo: refundNo})
	if err != nil {
		return provider.RefundResult{}, callError("refund query", err)
	}
	if !rsp.IsSuccess() {
		return provider.RefundResult{}, businessError(rsp.Error)
	}
	status := provider.RefundSucceeded
	switch {
	case rsp.RefundStatus == "" && rsp.RefundAmount == "":
		return provider.RefundResult{Status: provider.RefundNotFound}, nil
	case rsp.RefundStatus == "":
		status = provider.RefundUnconfirmed
	case rsp.RefundStatus != "REFUND_SUCCESS":
		return provider.RefundResult{Status: provider.RefundNotFound}, nil
	}
	fen, err := ParseYuan(rsp.RefundAmount)
	if err != nil {
		return provider.RefundResult{}, fmt.Errorf("alipay refund query refund_amount: %w", err)
	}
	return provider.RefundResult{Status: status, AmountFen: fen}, nil
}

// ParseNotification verifies the RSA2 signature over the POST form only
// (query-string parameters are not signed by Alipay), then checks app_id.
// A notification naming an alipay_cert_sn (certificate mode) is refused
// before the SDK sees it: payproxy verifies with its configured public key
// only, and a notification must never make it fetch or switch keys.
// Refund notifications (refund_fee present) only tell payproxy to query.
func (a *Adapter) ParseNotification(r *http.Request) (*provider.Notification, error) {
	if err := r.ParseForm(); err != nil {
		return nil, fmt.Errorf("alipay notification form: %w", err)
	}
	if _, ok := r.Form["alipay_cert_sn"]; ok {
		return nil, fmt.Errorf("%w: alipay_cert_sn is not accepted (public-key mode)", provider.ErrRefusedNotification)
	}
	n, err := a.client.DecodeNotification(r.PostForm)
	if err != nil {
		return nil, fmt.Errorf("alipay notification signature: %w", err)
	}
	if n.AppId != a.cfg.AppID {
		return nil, errors.New("alipay notification for another app_id")
	}
	out := &provider.Notification{Kind: provider.NotifyTrade, ID: n.NotifyId, TradeNo: n.OutTradeNo, Merchant: n.AppId}
	if out.AmountFen, err = ParseYuan(n.TotalAmount); err != nil {
		return nil, fmt.Errorf("alipay notification total_amount: %w", err)
	}
	if n.RefundFee != "" || n.OutBizNo != "" && n.GmtRefund != "" {
		out.Kind, out.RefundNo, out.RefundState = provider.NotifyRefund, n.OutBizNo, provider.RefundProcessing
		return out, nil
	}
	switch n.TradeStatus {
	case sdk.TradeStatusSuccess, sdk.TradeStatusFinished:
		out.Status = provider.TradePaid
	case sdk.TradeStatusClosed:
		out.Status = provider.TradeClosed
	default:
		out.Status = provider.TradeWaiting
	}
	return out, nil
}

// Acknowledge answers the plain "success" Alipay waits for.
func (a *Adapter) Acknowledge(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte("success"))
}

// Refuse answers a notification with a failure: Alipay retries anything but
// a plain "success". The body is tollgate's JSON error.
func (a *Adapter) Refuse(w http.ResponseWriter, status int, code, description string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": description})
}

// businessError turns a signed non-10000 answer into a definite
// provider.Error, except system errors (20000, ACQ.SYSTEM_ERROR), whose
// outcome is unknown, and rate limits (40005), which are never a refusal
// whatever their signature: provider.Busy.
func businessError(e sdk.Error) error {
	if rateLimited(e) {
		return &provider.Busy{Err: fmt.Errorf("alipay rate limit %s %s: %s", e.Code, e.SubCode, e.SubMsg)}
	}
	if e.Code == "20000" || e.SubCode == "ACQ.SYSTEM_ERROR" {
		return fmt.Errorf("alipay system error %s %s: %s", e.Code, e.SubCode, e.SubMsg)
	}
	code := provider.CodeRejected
	switch e.SubCode {
	case "ACQ.TRADE_HAS_SUCCESS":
		code = provider.CodeTradePaid
	case "ACQ.TRADE_HAS_CLOSE":
		code = provider.CodeTradeClosed
	case "ACQ.TRADE_NOT_EXIST":
		code = provider.CodeTradeNotFound
	}
	return &provider.Error{Code: code, ProviderCode: e.SubCode, Message: e.SubMsg}
}

// refundError is businessError for a refund: a refusal is
// CodeRefundRejected, except ACQ.DISCORDANT_REPEAT_REQUEST ("退款请求号对应的
// 退款已经执行成功，且本次请求的退款金额与之前请求的金额不一致"): Alipay holds the
// number with another amount and carried it out, so it is a conflict to
// look into, never a refusal.
func refundError(e sdk.Error) error {
	err := businessError(e)
	var pe *provider.Error
	if errors.As(err, &pe) && pe.Code == provider.CodeRejected {
		pe.Code = provider.CodeRefundRejected
		if e.SubCode == "ACQ.DISCORDANT_REPEAT_REQUEST" {
			pe.Code = provider.CodeRefundConflict
		}
	}
	return err
}

// rateLimited: Alipay's call limit, 40005 ("调用频次超限", the SDK's
// CodeCallLimited) with isv.app-call-limited or isv.method-call-limited.
func rateLimited(e sdk.Error) bool {
	return e.Code == sdk.CodeCallLimited || strings.HasSuffix(e.SubCode, "call-limited")
}

// callError wraps an error of the SDK call op. An unsigned gateway answer
// comes as *sdk.Error: its rate limit is provider.Busy, anything else an
// unknown outcome.
func callError(op string, err error) error {
	var ge *sdk.Error
	if errors.As(err, &ge) && rateLimited(*ge) {
		return &provider.Busy{Err: fmt.Errorf("alipay %s: %w", op, err)}
	}
	return fmt.Errorf("alipay %s: %w", op, err)
}

var _ provider.Provider = (*Adapter)(nil)
