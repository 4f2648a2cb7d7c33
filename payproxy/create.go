package payproxy

import (
	"context"
	"crypto/rand"
	"errors"
	"net/http"
	"time"

	"github.com/tollgate/tollgate/payproxy/provider"
)

// Creating a trade: one per order whatever the number of concurrent or
// retried requests (the stored record decides, under the order lock),
// issued at the provider under a trade number it treats as idempotent.

// wanted is a validated trade request.
type wanted struct {
	order, channel, subject string
	amount                  int64
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

// reusable reports whether the stored trade answers this request as is:
// live, the same channel and amount, and its QR code within qr_lifetime.
func (p *PayProxy) reusable(t *tradeRecord, wt *wanted, now time.Time) bool {
	return t.State == StatePaying && sameTrade(t, wt, now) && p.qrFresh(t, now) && !p.closing(t, now)
}

// sameTrade reports whether the stored trade, still live, is the one the
// request asks for (its channel and amount).
func sameTrade(t *tradeRecord, wt *wanted, now time.Time) bool {
	return t.live(now) && t.Channel == wt.channel && t.AmountFen == wt.amount
}

// createTrade returns the order's one trade, creating it at the provider
// only when the stored record says there is none that fits.
func (p *PayProxy) createTrade(ctx context.Context, wt *wanted) (*tradeRecord, lockState, error) {
	// Fast path without the lock: a live identical trade is the answer.
	// Waiters for the lock check it again now and then, so that once the
	// holder has created the trade a storm is answered at once instead of
	// taking the lock one request after another.
	var fast *tradeRecord
	var fastErr error
	answered := func() bool {
		var done bool
		fast, done, fastErr = p.createFastPath(ctx, wt)
		return done
	}
	if answered() {
		return fast, lockNone, fastErr
	}
	wait := 2*time.Duration(p.ProviderTimeout) + time.Duration(p.LockTTL)
	l, workCtx, err := p.lockOrder(ctx, wt.order, wait, answered)
	if errors.Is(err, errLockNotNeeded) {
		return fast, lockNone, fastErr
	}
	if errors.Is(err, errLockBusy) {
		return nil, lockTimeout, errLockTimeout
	}
	if err != nil {
		return nil, lockNone, err
	}
	defer l.Unlock()
	t, err := p.createLocked(workCtx, wt)
	if l.lost(workCtx) {
		return nil, lockLost, errLockLostResp
	}
	return t, lockHeld, err
}

// createFastPath answers a create from the stored record alone when it
// can (done): a live identical trade, a paid order, or Redis failing.
func (p *PayProxy) createFastPath(ctx context.Context, wt *wanted) (t *tradeRecord, done bool, err error) {
	t, err = p.store.load(ctx, wt.order)
	switch {
	case err == nil && (t.State == StatePaid || p.reusable(t, wt, time.Now())):
		t, err = answerFromRecord(ctx, p.store, t)
		return t, true, err
	case err != nil && !errors.Is(err, errNoRecord):
		return nil, true, err
	}
	return nil, false, nil
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
		if answer, done, err := p.reuse(ctx, t, wt, now); done {
			return answer, err
		}
		if err := p.underTradeCap(ctx, wt.order); err != nil {
			return nil, err
		}
		if t.open() {
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

// maxTrades bounds the trades one order may have had: each change of
// channel or amount, an expired trade or a QR code the provider would not
// renew makes one, kept in the order's record for late notifications and
// reconciliation. A real order needs a handful; a client switching
// channels in a loop would otherwise grow the record (read whole by every
// poll) and cost the providers three calls per request without end.
const maxTrades = 20

// underTradeCap refuses another trade for an order that has had maxTrades.
// It runs under the order's lock, before the provider is called; the
// allocation's compare-and-set keeps a lock lost meanwhile to one more.
func (p *PayProxy) underTradeCap(ctx context.Context, order string) error {
	n, err := p.store.retiredCount(ctx, order)
	if err != nil {
		return err
	}
	if n+1 >= maxTrades {
		return errTooManyTrades
	}
	return nil
}

// reuse answers a create with the order's stored trade when it can
// (done): a paid order, a live identical trade with a fresh QR code, one
// whose first code is still to be asked for, or one whose code the
// provider renews (qr.go). Otherwise the caller replaces the trade.
func (p *PayProxy) reuse(ctx context.Context, t *tradeRecord, wt *wanted, now time.Time) (*tradeRecord, bool, error) {
	switch {
	case t.State == StatePaid || p.reusable(t, wt, now):
		answer, err := answerFromRecord(ctx, p.store, t)
		return answer, true, err
	case p.closing(t, now):
		// A close of it started (and did not end in a recorded CLOSED):
		// never hand it out again; it is retired and replaced.
		return nil, false, nil
	case t.State == StateUnknown && sameTrade(t, wt, now) && p.qrFresh(t, now):
		answer, err := p.issue(ctx, t)
		return answer, true, err
	case t.State == StatePaying && sameTrade(t, wt, now):
		return p.renew(ctx, t)
	}
	return nil, false, nil
}

// issue asks the provider for the QR code of a stored trade. Retrying with
// the same trade number returns the same QR code at both providers (while
// it can be scanned).
func (p *PayProxy) issue(ctx context.Context, t *tradeRecord) (*tradeRecord, error) {
	qr, err := p.askQR(ctx, t)
	if err != nil {
		return nil, p.providerFailure(ctx, t, err)
	}
	return p.recordQR(ctx, t, qr, t.CreatedAt)
}

// askQR is the provider's create call for a stored trade.
func (p *PayProxy) askQR(ctx context.Context, t *tradeRecord) (string, error) {
	prov := p.providers[t.Channel]
	if prov == nil {
		return "", &apiError{http.StatusConflict, "channel_unavailable", "the order's trade uses a channel that is no longer configured"}
	}
	var qr string
	err := p.call(ctx, t.Channel, "create", func(ctx context.Context) error {
		var err error
		qr, err = prov.Create(ctx, provider.CreateRequest{
			TradeNo: t.TradeNo, AmountFen: t.AmountFen, Subject: t.Subject, ExpiresAt: t.ExpiresAt,
		})
		return err
	})
	return qr, err
}

// recordQR stores the provider's code for the trade, issued at issuedAt
// at the earliest, and answers the trade.
func (p *PayProxy) recordQR(ctx context.Context, t *tradeRecord, qr string, issuedAt time.Time) (*tradeRecord, error) {
	st, err := p.store.issued(ctx, t.OrderNo, t.TradeNo, qr, issuedAt)
	if err != nil {
		return nil, err
	}
	if st == "stale" {
		// The order's record names another trade now: another writer got
		// past the lock (see createLocked). Never answer this one.
		return nil, errChanged
	}
	if t.QRCode != qr {
		t.QRIssuedAt = issuedAt
	}
	t.State, t.QRCode = st, qr
	if st == StatePaid {
		return t, errOrderPaid
	}
	return t, nil
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
