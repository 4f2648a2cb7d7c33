package payproxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"
	qrcode "github.com/skip2/go-qrcode"
	"go.uber.org/zap"

	"github.com/tollgate/tollgate/internal/httpjson"
	"github.com/tollgate/tollgate/payproxy/provider"
)

// The HTTP surface of the payment API: its routes, how a request is read
// (a bounded body, JSON, order numbers) and how a trade is answered. The
// work behind the endpoints is in create.go, status.go, refund.go and
// notify.go; errors and the answers they get are in errors.go.

// routes is the payment API: a ServeMux of the endpoints under the
// prefix, each with the operation a route must serve for it to answer.
// Every other method on an endpoint's path is answered 405 in the API's
// JSON with the one method allowed (ServeMux's own 405 is plain text, and
// its GET patterns take HEAD, which this API never served).
func (p *PayProxy) routes() *http.ServeMux {
	mux := http.NewServeMux()
	for _, rt := range []struct {
		pattern, op string
		serve       http.HandlerFunc
	}{
		{"POST /trades", opCreate, p.serveCreate},
		{"GET /trades/{order_no}", opStatus, p.serveGetTrade},
		{"POST /trades/{order_no}/close", opClose, p.serveClose},
		{"POST /refunds", opRefund, p.serveRefund},
		{"GET /refunds/{refund_no}", opRefund, p.serveGetRefund},
		{"POST /notify/{channel}", opNotify, p.serveNotify},
	} {
		method, path, _ := strings.Cut(rt.pattern, " ")
		mux.Handle(rt.pattern, p.endpoint(rt.op, rt.serve))
		refuse := p.endpoint(rt.op, methodNotAllowed(method))
		mux.Handle(path, refuse)
		if method == http.MethodGet {
			mux.Handle(http.MethodHead+" "+path, refuse)
		}
	}
	return mux
}

// routedRequest is r as the routes see it, rest being its path below the
// prefix. The routes match the decoded path split at every "/" (so an
// encoded slash separates segments, as it always has here), each segment
// as it is: escaped so that ServeMux neither cleans nor redirects the
// path, "." and ".." included. An empty segment, which ServeMux would
// clean away, is shown as "//", which no decoded segment can hold and no
// route accepts: "trades/" and "trades//close" have an empty order_no,
// refused like any invalid one.
func routedRequest(r *http.Request, rest string) *http.Request {
	segs := strings.Split(rest, "/")
	escaped := make([]string, len(segs))
	for i, seg := range segs {
		switch seg {
		case "":
			segs[i], escaped[i] = "//", "%2F%2F"
		case ".", "..":
			escaped[i] = strings.Repeat("%2E", len(seg))
		default:
			escaped[i] = url.PathEscape(seg)
		}
	}
	routed := new(http.Request)
	*routed = *r
	routed.URL = &url.URL{
		Path:     "/" + strings.Join(segs, "/"),
		RawPath:  "/" + strings.Join(escaped, "/"),
		RawQuery: r.URL.RawQuery,
	}
	return routed
}

// endpoint is serve behind what every endpoint checks first: the route
// serves op (an endpoint of another operation is answered 404 here, never
// passed on: the next handler, often a reverse_proxy, must not serve a
// payment path by accident), and the body is read, bounded.
func (p *PayProxy) endpoint(op string, serve http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !p.serves(op) {
			httpjson.API.Error(w, http.StatusNotFound, "not_found", "this route does not serve "+op)
			return
		}
		if err := boundBody(w, r); err != nil {
			w.Header().Set("Connection", "close")
			if prov := p.providers[r.PathValue("channel")]; op == opNotify && prov != nil {
				prov.Refuse(w, err.status, err.code, err.desc)
			} else {
				httpjson.API.Error(w, err.status, err.code, err.desc)
			}
			return
		}
		serve(w, r)
	}
}

// methodNotAllowed answers a method an endpoint does not take.
func methodNotAllowed(method string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Allow", method)
		httpjson.API.Error(w, http.StatusMethodNotAllowed, "method_not_allowed", "use "+method)
	}
}

// maxBody bounds every request body payproxy reads: its JSON requests and
// the providers' notifications are a few KiB.
const maxBody = 64 << 10

var errBodyTooLarge = &apiError{http.StatusRequestEntityTooLarge, "request_too_large", "the request body is over 64 KiB"}

// boundBody reads the request's body, at most maxBody bytes, before
// anything else does (the WeChat SDK reads a notification whole): a
// declared or actual body over the limit is refused without reading
// further, so a huge body costs no memory.
func boundBody(w http.ResponseWriter, r *http.Request) *apiError {
	if r.ContentLength > maxBody {
		return errBodyTooLarge
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return errBodyTooLarge
	}
	if err != nil {
		return badRequest("reading the body: %v", err)
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	return nil
}

func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body) // bounded by boundBody
	if err := dec.Decode(v); err != nil {
		return badRequest("body is not valid JSON: %v", err)
	}
	if dec.More() {
		return badRequest("body has trailing data")
	}
	return nil
}

func (p *PayProxy) serveCreate(w http.ResponseWriter, r *http.Request) {
	wt, err := p.parseCreate(r)
	if err == nil {
		err = p.resolveAmount(r, wt)
	}
	if err != nil {
		p.fail(w, err)
		return
	}
	if wt.subject == "" {
		wt.subject = "Order " + wt.order
	}
	t, lock, err := p.createTrade(r.Context(), wt)
	setLockPlaceholder(r, lock)
	if t != nil {
		setPlaceholders(r, wt.order, t.TradeNo)
	} else {
		setPlaceholders(r, wt.order, "")
	}
	if err != nil {
		p.fail(w, err)
		return
	}
	writeTrade(w, r, t)
}

// createRequest is the body of POST {prefix}/trades.
type createRequest struct {
	OrderNo   string          `json:"order_no"`
	AmountFen json.RawMessage `json:"amount_fen"`
	Channel   string          `json:"channel"`
	Subject   string          `json:"subject"`
}

func (p *PayProxy) parseCreate(r *http.Request) (*wanted, error) {
	var req createRequest
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	if _, ok := p.providers[req.Channel]; !ok {
		return nil, badRequest("unknown channel %q", req.Channel)
	}
	if !validOrderFor(req.Channel, req.OrderNo) {
		return nil, badRequest("order_no is not a valid %s order number", req.Channel)
	}
	amount, present, err := parseFen(req.AmountFen)
	if err != nil {
		return nil, badRequest("%v", err)
	}
	if !present && p.OrderSource == "" {
		return nil, badRequest("amount_fen is required")
	}
	if present {
		if err := checkFen(req.Channel, amount); err != nil {
			return nil, badRequest("%v", err)
		}
	}
	if utf8.RuneCountInString(req.Subject) > 127 {
		return nil, badRequest("subject is longer than 127 characters")
	}
	return &wanted{order: req.OrderNo, channel: req.Channel, subject: req.Subject, amount: amount}, nil
}

// Order and refund numbers: the provider's out_trade_no rules per channel
// (Alipay: letters, digits, underscore, ≤64; WeChat: 6–32 of
// [0-9A-Za-z_-|*]); lookups accept the union.
var (
	alipayOrderRE = regexp.MustCompile(`^[0-9A-Za-z_]{1,64}$`)
	wechatOrderRE = regexp.MustCompile(`^[0-9A-Za-z_\-|*]{6,32}$`)
	anyOrderRE    = regexp.MustCompile(`^[0-9A-Za-z_\-|*]{1,64}$`)
	refundNoRE    = regexp.MustCompile(`^[0-9A-Za-z_\-|*@]{1,64}$`)
)

func validOrderFor(channel, order string) bool {
	if channel == "alipay" {
		return alipayOrderRE.MatchString(order)
	}
	return wechatOrderRE.MatchString(order)
}

// orderOf is the request's {order_no} once it is valid and the caller may
// see and change it (authorize); false when the request has been answered.
func (p *PayProxy) orderOf(w http.ResponseWriter, r *http.Request) (string, bool) {
	order := r.PathValue("order_no")
	if !anyOrderRE.MatchString(order) {
		p.fail(w, badRequest("invalid order_no"))
		return "", false
	}
	setPlaceholders(r, order, "")
	if err := p.authorize(r, order); err != nil {
		p.fail(w, err)
		return "", false
	}
	return order, true
}

func (p *PayProxy) serveGetTrade(w http.ResponseWriter, r *http.Request) {
	order, ok := p.orderOf(w, r)
	if !ok {
		return
	}
	t, err := p.store.load(r.Context(), order)
	if errors.Is(err, errNoRecord) {
		p.fail(w, errNotFound)
		return
	}
	if err != nil {
		p.fail(w, err)
		return
	}
	setPlaceholders(r, "", t.TradeNo)
	if r.URL.Query().Get("sync") == "1" && (t.State == StatePaying || t.State == StateUnknown) {
		if err := p.syncTrade(r.Context(), t); err != nil {
			p.fail(w, p.providerFailure(r.Context(), t, err))
			return
		}
		if t, err = p.store.load(r.Context(), order); err != nil {
			p.fail(w, err)
			return
		}
	}
	writeTrade(w, r, p.shownTrade(t, time.Now()))
}

func (p *PayProxy) serveClose(w http.ResponseWriter, r *http.Request) {
	order, ok := p.orderOf(w, r)
	if !ok {
		return
	}
	t, err := p.closeTrade(r.Context(), order)
	if err != nil {
		p.fail(w, err)
		return
	}
	setPlaceholders(r, "", t.TradeNo)
	setLockPlaceholder(r, lockHeld)
	httpjson.API.Write(w, http.StatusOK, viewOf(t))
}

func (p *PayProxy) serveRefund(w http.ResponseWriter, r *http.Request) {
	var req refundRequest
	if err := decodeBody(r, &req); err != nil {
		p.fail(w, err)
		return
	}
	amount, present, err := parseFen(req.AmountFen)
	switch {
	case !anyOrderRE.MatchString(req.OrderNo):
		err = badRequest("invalid order_no")
	case !refundNoRE.MatchString(req.RefundNo):
		err = badRequest("invalid refund_no")
	case err != nil:
		err = badRequest("%v", err)
	case !present || amount <= 0:
		err = badRequest("amount_fen must be a positive integer")
	case utf8.RuneCountInString(req.Reason) > 80:
		err = badRequest("reason is longer than 80 characters")
	}
	if err != nil {
		p.fail(w, err)
		return
	}
	setPlaceholders(r, req.OrderNo, "")
	rec, err := p.createRefund(r.Context(), req.OrderNo, req.RefundNo, amount, req.Reason)
	if rec != nil {
		httpjson.API.Write(w, http.StatusOK, refundView{req.OrderNo, rec.RefundNo, rec.AmountFen, rec.State})
		return
	}
	p.fail(w, err)
}

// refundRequest is the body of POST {prefix}/refunds.
type refundRequest struct {
	OrderNo   string          `json:"order_no"`
	RefundNo  string          `json:"refund_no"`
	AmountFen json.RawMessage `json:"amount_fen"`
	Reason    string          `json:"reason"`
}

func (p *PayProxy) serveGetRefund(w http.ResponseWriter, r *http.Request) {
	refundNo := r.PathValue("refund_no")
	if !refundNoRE.MatchString(refundNo) {
		p.fail(w, badRequest("invalid refund_no"))
		return
	}
	order, err := p.rdb.Get(r.Context(), refundIndexKey(refundNo)).Result()
	if errors.Is(err, redis.Nil) {
		p.fail(w, errRefundNotFound)
		return
	}
	if err != nil {
		p.fail(w, err)
		return
	}
	setPlaceholders(r, order, "")
	rec, err := p.store.refund(r.Context(), order, refundNo)
	if errors.Is(err, errNoRecord) {
		p.fail(w, errRefundNotFound)
		return
	}
	if err != nil {
		p.fail(w, err)
		return
	}
	httpjson.API.Write(w, http.StatusOK, refundView{order, rec.RefundNo, rec.AmountFen, rec.State})
}

// refundView is the JSON of a refund.
type refundView struct {
	OrderNo   string `json:"order_no"`
	RefundNo  string `json:"refund_no"`
	AmountFen int64  `json:"amount_fen"`
	State     string `json:"state"`
}

// serveNotify handles POST {prefix}/notify/{alipay|wechat}. A notification
// is forged until the adapter has verified its signature (and, for WeChat,
// decrypted it); then its merchant, trade number and amount are checked
// against the stored trade. Only then does it drive the same idempotent
// transition as the poller. Anything but the provider's success answer
// makes the provider retry.
func (p *PayProxy) serveNotify(w http.ResponseWriter, r *http.Request) {
	channel := r.PathValue("channel")
	prov := p.providers[channel]
	if prov == nil {
		httpjson.API.Error(w, http.StatusNotFound, "not_found", "channel not configured")
		return
	}
	n, err := prov.ParseNotification(r)
	if errors.Is(err, provider.ErrRefusedNotification) {
		p.metrics.notification(channel, "refused")
		p.logger.Warn("notification refused", zap.String("channel", channel), zap.Error(err))
		prov.Refuse(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	if err != nil {
		p.metrics.notification(channel, "invalid_signature")
		p.logger.Warn("notification refused", zap.String("channel", channel), zap.Error(err))
		prov.Refuse(w, http.StatusUnauthorized, "invalid_signature", "notification could not be verified")
		return
	}
	setPlaceholders(r, "", n.TradeNo)
	result, err := p.handleNotification(r.Context(), channel, n)
	p.metrics.notification(channel, result)
	if err != nil {
		status, code, desc := p.answerOf(err)
		prov.Refuse(w, status, code, desc)
		return
	}
	prov.Acknowledge(w)
}

// tradeView is the JSON of a trade.
type tradeView struct {
	OrderNo   string `json:"order_no"`
	TradeNo   string `json:"trade_no"`
	Channel   string `json:"channel"`
	AmountFen int64  `json:"amount_fen"`
	State     string `json:"state"`
	QRCode    string `json:"qr_code"`
	ExpiresAt string `json:"expires_at"`
}

func viewOf(t *tradeRecord) tradeView {
	v := tradeView{
		OrderNo: t.OrderNo, TradeNo: t.TradeNo, Channel: t.Channel, AmountFen: t.AmountFen,
		State: t.State, QRCode: t.QRCode,
	}
	if !t.ExpiresAt.IsZero() { // a settled order's compact record has none
		v.ExpiresAt = t.ExpiresAt.UTC().Format(time.RFC3339)
	}
	return v
}

// writeTrade answers a trade as JSON, or as a PNG of its QR code when the
// client asks for image/png.
func writeTrade(w http.ResponseWriter, r *http.Request, t *tradeRecord) {
	if strings.Contains(r.Header.Get("Accept"), "image/png") && t.QRCode != "" {
		png, err := qrcode.Encode(t.QRCode, qrcode.Medium, 256)
		if err == nil {
			w.Header().Set("Content-Type", "image/png")
			w.Header().Set("Cache-Control", "no-store")
			w.Header().Set("X-Tollgate-Trade-No", t.TradeNo)
			_, _ = w.Write(png)
			return
		}
	}
	httpjson.API.Write(w, http.StatusOK, viewOf(t))
}

// setPlaceholders sets {http.payproxy.order_no} and
// {http.payproxy.trade_no}, each when known.
func setPlaceholders(r *http.Request, order, tradeNo string) {
	setPlaceholder(r, "http.payproxy.order_no", order)
	setPlaceholder(r, "http.payproxy.trade_no", tradeNo)
}

// setLockPlaceholder sets {http.payproxy.lock}.
func setLockPlaceholder(r *http.Request, lock lockState) {
	setPlaceholder(r, "http.payproxy.lock", lock.String())
}

func setPlaceholder(r *http.Request, name, value string) {
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if ok && value != "" {
		repl.Set(name, value)
	}
}
