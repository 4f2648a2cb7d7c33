package payproxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2"
	qrcode "github.com/skip2/go-qrcode"
	"go.uber.org/zap"

	"github.com/tollgate/tollgate/payproxy/provider"
)

// route dispatches a request under the prefix; false = not ours. An
// endpoint of an operation this route does not serve is answered 404 here,
// never passed on: the next handler (often a reverse_proxy) must not serve
// a payment path by accident.
func (p *PayProxy) route(w http.ResponseWriter, r *http.Request, rest string) bool {
	parts := strings.Split(rest, "/")
	var op, method string
	var h http.HandlerFunc
	switch {
	case rest == "trades":
		op, method, h = opCreate, http.MethodPost, p.serveCreate
	case len(parts) == 2 && parts[0] == "trades":
		op, method, h = opStatus, http.MethodGet, func(w http.ResponseWriter, r *http.Request) { p.serveGetTrade(w, r, parts[1]) }
	case len(parts) == 3 && parts[0] == "trades" && parts[2] == "close":
		op, method, h = opClose, http.MethodPost, func(w http.ResponseWriter, r *http.Request) { p.serveClose(w, r, parts[1]) }
	case rest == "refunds":
		op, method, h = opRefund, http.MethodPost, p.serveRefund
	case len(parts) == 2 && parts[0] == "refunds":
		op, method, h = opRefund, http.MethodGet, func(w http.ResponseWriter, r *http.Request) { p.serveGetRefund(w, r, parts[1]) }
	case len(parts) == 2 && parts[0] == "notify":
		op, method, h = opNotify, http.MethodPost, func(w http.ResponseWriter, r *http.Request) { p.serveNotify(w, r, parts[1]) }
	default:
		return false
	}
	if !p.serves(op) {
		writeError(w, http.StatusNotFound, "not_found", "this route does not serve "+op)
		return true
	}
	if err := boundBody(w, r); err != nil {
		w.Header().Set("Connection", "close")
		if prov := p.providers[parts[len(parts)-1]]; op == opNotify && prov != nil {
			prov.Refuse(w, err.status, err.code, err.desc)
		} else {
			writeError(w, err.status, err.code, err.desc)
		}
		return true
	}
	p.only(w, r, method, h)
	return true
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

func (p *PayProxy) only(w http.ResponseWriter, r *http.Request, method string, h http.HandlerFunc) {
	if r.Method != method {
		w.Header().Set("Allow", method)
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "use "+method)
		return
	}
	h(w, r)
}

// apiError is an error answer of the documented JSON shape.
type apiError struct {
	status int
	code   string
	desc   string
}

func (e *apiError) Error() string { return e.code + ": " + e.desc }

func badRequest(format string, a ...any) *apiError {
	return &apiError{http.StatusBadRequest, "invalid_request", fmt.Sprintf(format, a...)}
}

var (
	errNotFound     = &apiError{http.StatusNotFound, "not_found", "no such order"}
	errOrderPaid    = &apiError{http.StatusConflict, "order_paid", "the order is already paid"}
	errRedisDown    = &apiError{http.StatusServiceUnavailable, "redis_unavailable", "the trade store is unavailable"}
	errLockTimeout  = &apiError{http.StatusServiceUnavailable, "lock_timeout", "another request for this order is still running; retry"}
	errLockLostResp = &apiError{http.StatusServiceUnavailable, "lock_lost", "the order lock was lost during the provider call; the trade state is UNKNOWN, retry"}
	errChanged      = &apiError{http.StatusConflict, "conflict", "the order changed meanwhile; retry"}
)

func writeError(w http.ResponseWriter, status int, code, desc string) {
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1") // every 503 here is worth retrying shortly, as jwt_refresh's
	}
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// fail writes err as the documented JSON error; unexpected errors are
// Redis failures (503), logged without secrets.
func (p *PayProxy) fail(w http.ResponseWriter, err error) {
	status, code, desc := p.answerOf(err)
	writeError(w, status, code, desc)
}

// answerOf is the status, error code and description err is answered with.
func (p *PayProxy) answerOf(err error) (int, string, string) {
	var ae *apiError
	var oe *orderSourceError
	switch {
	case errors.As(err, &ae):
		return ae.status, ae.code, ae.desc
	case errors.As(err, &oe):
		return oe.status, oe.code, oe.desc
	}
	p.logger.Error("payment request failed", zap.Error(err))
	return errRedisDown.status, errRedisDown.code, errRedisDown.desc
}

// storeFailure is a Redis failure met on the way to or from the provider:
// answered as Redis down (503), never taken for the provider's answer.
type storeFailure struct{ err error }

func (e *storeFailure) Error() string { return e.err.Error() }
func (e *storeFailure) Unwrap() error { return e.err }

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
	return tradeView{
		OrderNo: t.OrderNo, TradeNo: t.TradeNo, Channel: t.Channel, AmountFen: t.AmountFen,
		State: t.State, QRCode: t.QRCode, ExpiresAt: t.ExpiresAt.UTC().Format(time.RFC3339),
	}
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
	writeJSON(w, http.StatusOK, viewOf(t))
}

func setPlaceholders(r *http.Request, order, tradeNo, lock string) {
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !ok {
		return
	}
	if order != "" {
		repl.Set("http.payproxy.order_no", order)
	}
	if tradeNo != "" {
		repl.Set("http.payproxy.trade_no", tradeNo)
	}
	if lock != "" {
		repl.Set("http.payproxy.lock", lock)
	}
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

// createRequest is the body of POST {prefix}/trades.
type createRequest struct {
	OrderNo   string          `json:"order_no"`
	AmountFen json.RawMessage `json:"amount_fen"`
	Channel   string          `json:"channel"`
	Subject   string          `json:"subject"`
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

// wanted is a validated trade request.
type wanted struct {
	order, channel, subject string
	amount                  int64
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

// resolveAmount applies order_source: the backend's amount wins, and a
// different amount in the request is a conflict.
func (p *PayProxy) resolveAmount(r *http.Request, wt *wanted) error {
	if p.OrderSource == "" {
		return nil
	}
	fen, subject, err := p.fetchOrder(r.Context(), r, wt.order)
	if err != nil {
		return err
	}
	if wt.amount != 0 && wt.amount != fen {
		return &apiError{http.StatusConflict, "amount_mismatch", "amount_fen differs from the order's amount"}
	}
	if err := checkFen(wt.channel, fen); err != nil {
		return &apiError{http.StatusBadGateway, "order_source_unavailable", err.Error()}
	}
	wt.amount = fen
	if subject != "" {
		wt.subject = subject
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
	if t != nil {
		setPlaceholders(r, wt.order, t.TradeNo, lock)
	} else {
		setPlaceholders(r, wt.order, "", lock)
	}
	if err != nil {
		p.fail(w, err)
		return
	}
	writeTrade(w, r, t)
}

// reusable reports whether the stored trade answers this request as is.
func reusable(t *tradeRecord, wt *wanted, now time.Time) bool {
	return t.State == StatePaying && t.live(now) && t.Channel == wt.channel && t.AmountFen == wt.amount
}

// createTrade returns the order's one trade, creating it at the provider
// only when the stored record says there is none that fits.
func (p *PayProxy) createTrade(ctx context.Context, wt *wanted) (*tradeRecord, string, error) {
	// Fast path without the lock: a live identical trade is the answer.
	// Waiters for the lock check it again now and then, so that once the
	// holder has created the trade a storm is answered at once instead of
	// taking the lock one request after another.
	var fast *tradeRecord
	var fastErr error
	answered := func() bool {
		var done bool
		fast, fastErr, done = p.createFastPath(ctx, wt)
		return done
	}
	if answered() {
		return fast, "none", fastErr
	}
	wait := 2*time.Duration(p.ProviderTimeout) + time.Duration(p.LockTTL)
	l, workCtx, err := p.lockOrder(ctx, wt.order, wait, answered)
	if errors.Is(err, errLockNotNeeded) {
		return fast, "none", fastErr
	}
	if errors.Is(err, errLockBusy) {
		return nil, "timeout", errLockTimeout
	}
	if err != nil {
		return nil, "none", err
	}
	defer l.Unlock()
	t, err := p.createLocked(workCtx, wt)
	if l.lost(workCtx) {
		return nil, "lost", errLockLostResp
	}
	return t, "held", err
}

// createFastPath answers a create from the stored record alone when it
// can (done): a live identical trade, a paid order, or Redis failing.
func (p *PayProxy) createFastPath(ctx context.Context, wt *wanted) (t *tradeRecord, err error, done bool) {
	t, err = p.store.load(ctx, wt.order)
	switch {
	case err == nil && (t.State == StatePaid || reusable(t, wt, time.Now())):
		t, err = answerFromRecord(ctx, p.store, t)
		return t, err, true
	case err != nil && !errors.Is(err, errNoRecord):
		return nil, err, true
	}
	return nil, nil, false
}

// answerFromRecord answers a create with the stored trade as read (a live
// identical trade, or a paid order), once it is durable (confirm).
func answerFromRecord(ctx context.Context, store *tradeStore, t *tradeRecord) (*tradeRecord, error) {
	if err := store.confirm(ctx, t.OrderNo); err != nil {
		return nil, err
	}
	if t.State == StatePaid {
		return t, errOrderPaid
	}
	return t, nil
}

// createLocked takes the decision under the lock. The lock keeps the
// stored record still; should another writer change it all the same (a
// lock that expired unnoticed, or instances locking on different servers
// while a reload changes lock_redis), allocate's compare-and-set refuses
// and the decision is taken once more from the new record, which usually
// holds the other writer's identical trade: the client gets that trade
// instead of a 409.
func (p *PayProxy) createLocked(ctx context.Context, wt *wanted) (*tradeRecord, error) {
	t, err := p.decide(ctx, wt)
	if errors.Is(err, errChanged) {
		t, err = p.decide(ctx, wt)
	}
	return t, err
}

// decide is the decision the issue describes, from the stored record.
func (p *PayProxy) decide(ctx context.Context, wt *wanted) (*tradeRecord, error) {
	now := time.Now()
	t, err := p.store.load(ctx, wt.order)
	if err != nil && !errors.Is(err, errNoRecord) {
		return nil, err
	}
	expect := ""
	if t != nil {
		expect = t.TradeNo
		switch {
		case t.State == StatePaid || reusable(t, wt, now):
			return answerFromRecord(ctx, p.store, t)
		case t.State == StateUnknown && t.live(now) && t.Channel == wt.channel && t.AmountFen == wt.amount:
			return p.issue(ctx, t)
		case t.State == StatePaying || t.State == StateUnknown:
			if err := p.retire(ctx, t); err != nil {
				return nil, err
			}
		}
	}
	nt := &tradeRecord{
		OrderNo: wt.order, TradeNo: newTradeNo(now), Channel: wt.channel, AmountFen: wt.amount,
		Subject: wt.subject, State: StateUnknown, CreatedAt: now, ExpiresAt: now.Add(time.Duration(p.PayTimeout)),
	}
	ok, err := p.store.allocate(ctx, nt, expect, now.Add(time.Duration(p.PollInterval)))
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errChanged
	}
	return p.issue(ctx, nt)
}

// issue asks the provider for the QR code of a stored trade. Retrying with
// the same trade number returns the same QR code at both providers.
func (p *PayProxy) issue(ctx context.Context, t *tradeRecord) (*tradeRecord, error) {
	prov := p.providers[t.Channel]
	if prov == nil {
		return nil, &apiError{http.StatusConflict, "channel_unavailable", "the order's trade uses a channel that is no longer configured"}
	}
	var qr string
	err := p.call(ctx, t.Channel, "create", func(ctx context.Context) error {
		var err error
		qr, err = prov.Create(ctx, provider.CreateRequest{
			TradeNo: t.TradeNo, AmountFen: t.AmountFen, Subject: t.Subject, ExpiresAt: t.ExpiresAt,
		})
		return err
	})
	if err != nil {
		return nil, p.providerFailure(ctx, t, err)
	}
	st, err := p.store.issued(ctx, t.OrderNo, t.TradeNo, qr)
	if err != nil {
		return nil, err
	}
	if st == "stale" {
		// The order's record names another trade now: another writer got
		// past the lock (see createLocked). Never answer this one.
		return nil, errChanged
	}
	t.State, t.QRCode = st, qr
	if st == StatePaid {
		return t, errOrderPaid
	}
	return t, nil
}

// providerFailure maps a failed provider call. Only a signed answer is
// the provider's: an "already paid" one is settled by a signed query (the
// order becomes paid only if the query says so, with the trade's amount),
// a signed refusal is a 502 provider_rejected, and everything else (no
// answer, an unsigned one, a system error) leaves the state UNKNOWN: a 502
// (or 504 on timeout), never a guess.
func (p *PayProxy) providerFailure(ctx context.Context, t *tradeRecord, err error) error {
	if provider.IsCode(err, provider.CodeTradePaid) {
		return p.confirmPaid(ctx, t)
	}
	return describeProviderError(err)
}

func describeProviderError(err error) error {
	var sf *storeFailure
	var ae *apiError
	if errors.As(err, &sf) || errors.As(err, &ae) {
		return err
	}
	if isTimeout(err) {
		return &apiError{http.StatusGatewayTimeout, "provider_timeout", "the payment provider did not answer in time; the trade state is UNKNOWN, retry"}
	}
	var pe *provider.Error
	if errors.As(err, &pe) {
		return &apiError{http.StatusBadGateway, "provider_rejected", "the payment provider refused: " + pe.ProviderCode}
	}
	return errProviderUnknown
}

var errProviderUnknown = &apiError{http.StatusBadGateway, "provider_error", "the payment provider failed; the trade state is UNKNOWN, retry"}

// confirmPaid checks an "already paid" answer with a signed query: only a
// query that says paid, for the trade's amount, records the payment.
func (p *PayProxy) confirmPaid(ctx context.Context, t *tradeRecord) error {
	q, err := p.queryTrade(ctx, t)
	if err != nil {
		return describeProviderError(err)
	}
	if q.Status != provider.TradePaid {
		p.logger.Warn("the provider answered already paid but its query does not say paid",
			zap.String("trade_no", t.TradeNo), zap.String("status", string(q.Status)))
		return errProviderUnknown
	}
	if err := p.apply(ctx, t, q.Status, q.AmountFen, q.ProviderTradeID, "query"); err != nil {
		return err
	}
	return errOrderPaid
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// call runs one provider operation with provider_timeout and metrics.
func (p *PayProxy) call(ctx context.Context, channel, op string, fn func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(p.ProviderTimeout))
	defer cancel()
	start := time.Now()
	err := fn(ctx)
	outcome := "ok"
	switch {
	case err == nil:
	case provider.IsDefinite(err):
		outcome = "rejected"
	case isTimeout(err):
		outcome = "timeout"
	default:
		outcome = "error"
	}
	p.metrics.provider(channel, op, outcome, time.Since(start))
	if err != nil && outcome != "rejected" {
		p.logger.Warn("provider call failed", zap.String("channel", channel), zap.String("operation", op), zap.Error(err))
	}
	return err
}

// newTradeNo is the out_trade_no sent to the provider: "TG", the UTC time
// to the second and 12 random letters or digits (28 characters, valid for
// both providers and unique without coordination).
func newTradeNo(now time.Time) string {
	const alphabet = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return "TG" + now.UTC().Format("20060102150405") + string(b)
}

func (p *PayProxy) serveGetTrade(w http.ResponseWriter, r *http.Request, order string) {
	if !anyOrderRE.MatchString(order) {
		p.fail(w, badRequest("invalid order_no"))
		return
	}
	setPlaceholders(r, order, "", "")
	if err := p.authorize(r, order); err != nil {
		p.fail(w, err)
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
	setPlaceholders(r, "", t.TradeNo, "")
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
	writeTrade(w, r, t)
}

// syncTrade asks the provider and applies what it says (no lock needed:
// the transition is idempotent and tied to the trade number).
func (p *PayProxy) syncTrade(ctx context.Context, t *tradeRecord) error {
	if p.providers[t.Channel] == nil {
		return nil
	}
	q, err := p.queryTrade(ctx, t)
	if err != nil {
		return err
	}
	return p.apply(ctx, t, q.Status, q.AmountFen, q.ProviderTradeID, "query")
}

// queryTrade asks the trade's provider for its state (a signed answer).
func (p *PayProxy) queryTrade(ctx context.Context, t *tradeRecord) (provider.QueryResult, error) {
	prov := p.providers[t.Channel]
	if prov == nil {
		return provider.QueryResult{}, &apiError{http.StatusConflict, "channel_unavailable", "the order's trade uses a channel that is no longer configured"}
	}
	var q provider.QueryResult
	err := p.call(ctx, t.Channel, "query", func(ctx context.Context) error {
		var err error
		q, err = prov.Query(ctx, t.TradeNo)
		return err
	})
	return q, err
}

var errAmountMismatch = &apiError{http.StatusBadRequest, "amount_mismatch", "the amount differs from the stored trade"}

func (p *PayProxy) serveClose(w http.ResponseWriter, r *http.Request, order string) {
	if !anyOrderRE.MatchString(order) {
		p.fail(w, badRequest("invalid order_no"))
		return
	}
	setPlaceholders(r, order, "", "")
	if err := p.authorize(r, order); err != nil {
		p.fail(w, err)
		return
	}
	t, err := p.closeTrade(r.Context(), order)
	if err != nil {
		p.fail(w, err)
		return
	}
	setPlaceholders(r, "", t.TradeNo, "held")
	writeJSON(w, http.StatusOK, viewOf(t))
}

func (p *PayProxy) closeTrade(ctx context.Context, order string) (*tradeRecord, error) {
	if _, err := p.store.load(ctx, order); err != nil {
		if errors.Is(err, errNoRecord) {
			return nil, errNotFound
		}
		return nil, err
	}
	l, workCtx, err := p.lockOrder(ctx, order, 2*time.Duration(p.ProviderTimeout)+time.Duration(p.LockTTL), nil)
	if errors.Is(err, errLockBusy) {
		return nil, errLockTimeout
	}
	if err != nil {
		return nil, err
	}
	defer l.Unlock()
	t, err := p.store.load(workCtx, order)
	if err != nil {
		return nil, err
	}
	switch t.State {
	case StatePaid:
		return t, errOrderPaid
	case StateClosed:
		return t, nil
	}
	if err := p.retire(workCtx, t); err != nil {
		if l.lost(workCtx) {
			return nil, errLockLostResp
		}
		return nil, err
	}
	return p.store.load(workCtx, order)
}
