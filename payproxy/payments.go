package payproxy

import (
	"context"
	"errors"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/tollgate/tollgate/payproxy/provider"
	"github.com/tollgate/tollgate/payproxy/reconcile"
)

// Every trade payproxy creates stays known: a trade replaced by another
// (another amount or channel, or after a close) is kept as a retired trade
// of its order, because a close may not take effect and a retired QR code
// may still be paid. Every verified payment of any of them is recorded: the
// first makes the order PAID (trade.paid); any later one is a duplicate
// (trade.duplicate_paid), refunded in full unless duplicate_refund is off.
// A trade is replaced only once the provider has confirmed its close with
// a signed query, never while it is PAID or may still be paid.

// errCloseUnconfirmed: the provider took the close but its query does not
// show the trade closed, so it may still be paid; it is not replaced.
var errCloseUnconfirmed = &apiError{http.StatusBadGateway, "provider_error",
	"the provider has not confirmed the close of the order's trade, which may still be paid; retry"}

// duplicateRefundNo is the refund number of a duplicate payment's full
// refund: derived from the trade, so every instance asks for the same one.
func duplicateRefundNo(tradeNo string) string { return "DUP_" + tradeNo }

// recordPayment records a payment the provider confirmed (a verified
// notification or a signed query, amount checked) for trade t, current or
// retired, and publishes what changed.
func (p *PayProxy) recordPayment(ctx context.Context, t *tradeRecord, providerTradeID string) error {
	refundNo := ""
	if p.DuplicateRefund != duplicateRefundOff {
		refundNo = duplicateRefundNo(t.TradeNo)
	}
	res, err := p.store.recordPayment(ctx, t, providerTradeID, refundNo, time.Now())
	if err != nil {
		return err
	}
	if res.result == paymentNew || res.result == paymentDuplicate {
		p.indexForReconcile(ctx, t.Channel, reconcile.Ref{TradeNo: t.TradeNo})
		// An order back from its archival (a payment of a trade its
		// marker did not hold) is off the due set: it must be archived
		// again. Any other order is due already, and keeps its time, or
		// parked (park.go): it is visited once more.
		if err := p.store.scheduleIfAbsent(ctx, t.OrderNo, p.soon()); err != nil {
			p.logger.Warn("scheduling order failed", zap.String("order_no", t.OrderNo), zap.Error(err))
		}
	}
	switch res.result {
	case paymentNew:
		t.State = StatePaid
		p.publish(ctx, t.OrderNo, res.ev)
		if res.displaced != "" {
			// The order's trade until now may still be paid: the poller
			// closes it (and a payment of it is a duplicate).
			p.logger.Info("a retired trade was paid; the order's open trade is retired",
				zap.String("order_no", t.OrderNo), zap.String("trade_no", t.TradeNo), zap.String("retired", res.displaced))
			p.scheduleNow(ctx, t.OrderNo)
		}
	case paymentDuplicate:
		t.State, t.Duplicate = StatePaid, true
		p.metrics.duplicatePayment(t.Channel)
		p.logger.Warn("duplicate payment of an order", zap.String("order_no", t.OrderNo),
			zap.String("trade_no", t.TradeNo), zap.Int64("amount_fen", t.AmountFen), zap.Bool("refund", refundNo != ""))
		p.publish(ctx, t.OrderNo, res.ev)
		if refundNo != "" {
			p.rebindRefundNo(ctx, t.OrderNo, refundNo)
			p.scheduleNow(ctx, t.OrderNo) // the poller sends the refund
		}
	case paymentUnknown:
		return errNoRecord
	}
	return nil
}

// scheduleNow makes the poller visit the order at its next round.
func (p *PayProxy) scheduleNow(ctx context.Context, order string) {
	if err := p.store.schedule(ctx, order, time.Now()); err != nil {
		p.logger.Warn("scheduling order failed; its next poll finds the work", zap.String("order_no", order), zap.Error(err))
	}
}

// apply moves a trade according to a status the provider reported (query
// or verified notification). A paid amount that differs from the stored
// one never marks the trade paid.
func (p *PayProxy) apply(ctx context.Context, t *tradeRecord, status provider.TradeStatus, amount int64, providerID, source string) error {
	switch status {
	case provider.TradePaid:
		if amount != t.AmountFen {
			p.logger.Error("provider reports a paid amount different from the trade's",
				zap.String("source", source), zap.String("trade_no", t.TradeNo),
				zap.Int64("stored_fen", t.AmountFen), zap.Int64("reported_fen", amount))
			return errAmountMismatch
		}
		if err := p.recordPayment(ctx, t, providerID); err != nil {
			p.logger.Error("recording payment failed", zap.String("trade_no", t.TradeNo), zap.Error(err))
			return &storeFailure{err}
		}
	case provider.TradeClosed:
		return p.recordClosed(ctx, t)
	case provider.TradePayFailed:
		return p.closePayFailed(ctx, t)
	}
	return nil
}

// closePayFailed closes a trade whose payment failed (WeChat PAYERROR) at
// the provider: the trade is not closed there until the merchant closes
// it, so it is recorded CLOSED only when the provider's query confirms.
// The order's current trade is closed under its lock (a create must not
// hand out a QR code being closed); if the lock is busy, or the provider
// does not confirm, the trade stays as it is and the poller tries again.
func (p *PayProxy) closePayFailed(ctx context.Context, t *tradeRecord) error {
	if !t.Retired {
		l, workCtx, err := p.tryLockOrder(ctx, t.OrderNo)
		if err != nil {
			return nil
		}
		defer l.Unlock()
		ctx = workCtx
		cur, err := p.store.load(ctx, t.OrderNo)
		if err != nil || cur.TradeNo != t.TradeNo || !cur.open() {
			return nil
		}
	}
	err := p.closeConfirmed(ctx, t)
	var sf *storeFailure
	if errors.As(err, &sf) {
		return err
	}
	if err != nil && !errors.Is(err, errOrderPaid) {
		p.logger.Warn("closing a trade whose payment failed", zap.String("trade_no", t.TradeNo), zap.Error(err))
	}
	return nil
}

// recordClosed records a close the provider confirmed and publishes
// trade.closed once.
func (p *PayProxy) recordClosed(ctx context.Context, t *tradeRecord) error {
	changed, ev, err := p.store.markClosed(ctx, t, time.Now())
	if err != nil {
		return &storeFailure{err}
	}
	if changed {
		t.State = StateClosed
		p.publish(ctx, t.OrderNo, ev)
	}
	return nil
}

// retire closes the order's trade before a different one replaces it (or
// because the client asked): see closeConfirmed.
func (p *PayProxy) retire(ctx context.Context, t *tradeRecord) error { return p.closeConfirmed(ctx, t) }

// closeConfirmed closes t at the provider and then asks the provider's
// signed query what became of it: CLOSED is recorded (nil); paid is
// recorded as a payment (errOrderPaid); still open means the close did not
// take effect (errCloseUnconfirmed). A trade the provider does not know
// (an Alipay QR code nobody scanned, cancelled; a WeChat prepay that never
// arrived) counts as closed only when the provider accepted the close: a
// close answered TRADE_NOT_FOUND confirms nothing.
func (p *PayProxy) closeConfirmed(ctx context.Context, t *tradeRecord) error {
	err := p.closeAtProvider(ctx, t)
	if err != nil && !provider.IsCode(err, provider.CodeTradePaid) && !provider.IsCode(err, provider.CodeTradeNotFound) &&
		!provider.IsCode(err, provider.CodeTradeClosed) {
		return describeProviderError(err)
	}
	accepted := err == nil || provider.IsCode(err, provider.CodeTradeClosed)
	q, err := p.queryTrade(ctx, t)
	if err != nil {
		return describeProviderError(err)
	}
	switch {
	case q.Status == provider.TradePaid:
		if err := p.apply(ctx, t, q.Status, q.AmountFen, q.ProviderTradeID, "query"); err != nil {
			return err
		}
		return errOrderPaid
	case q.Status == provider.TradeClosed, q.Status == provider.TradeNotCreated && accepted:
		return p.recordClosed(ctx, t)
	}
	p.logger.Warn("the provider did not confirm a close", zap.String("trade_no", t.TradeNo), zap.String("status", string(q.Status)))
	return errCloseUnconfirmed
}

func (p *PayProxy) closeAtProvider(ctx context.Context, t *tradeRecord) error {
	prov := p.providers[t.Channel]
	if prov == nil {
		return &apiError{http.StatusConflict, "channel_unavailable", "the order's trade uses a channel that is no longer configured"}
	}
	if !t.Retired {
		// Before the provider is asked: from here on, a create reading the
		// record without the lock waits for it instead of answering with
		// this trade's code.
		if err := p.store.markClosing(ctx, t.OrderNo, t.TradeNo, time.Now()); err != nil {
			return &storeFailure{err}
		}
	}
	return p.call(ctx, t.Channel, "close", func(ctx context.Context) error { return prov.Close(ctx, t.TradeNo) })
}

// closing reports whether a close of t may be under way: one started less
// than a close's whole time ago (the provider's close and query, and the
// lock's life). A close that failed stops counting after that, and the
// trade is answered again.
func (p *PayProxy) closing(t *tradeRecord, now time.Time) bool {
	window := 2*time.Duration(p.ProviderTimeout) + time.Duration(p.LockTTL)
	return !t.ClosingAt.IsZero() && now.Sub(t.ClosingAt) < window
}

// pollRetired checks the order's retired trades that may still be paid: a
// payment is recorded (a duplicate if the order is paid), and each is
// closed at the provider until a signed query confirms it. It returns when
// the next one needs looking at again (zero: none open).
func (p *PayProxy) pollRetired(ctx context.Context, order string, checks orderChecks) time.Time {
	trades, err := p.store.retired(ctx, order)
	if err != nil {
		return p.soon()
	}
	var next dueTime
	for _, t := range trades {
		if !t.open() {
			p.tradeAnswered(ctx, t, checks)
			continue
		}
		if c, ok := checks.of(tradeField(t.TradeNo)); ok && !c.due(time.Now()) {
			next.at(c.next())
			continue
		}
		next.at(p.checkRetired(ctx, t, checks))
	}
	return next.t
}

// checkRetired queries an open retired trade and closes it; it returns
// when to look at it again (zero: closed or paid).
func (p *PayProxy) checkRetired(ctx context.Context, t *tradeRecord, checks orderChecks) time.Time {
	if err := p.syncTrade(ctx, t); err != nil {
		return p.tradeFailed(ctx, t, err)
	}
	cur, err := p.store.tradeOf(ctx, t.OrderNo, t.TradeNo)
	switch {
	case errors.Is(err, errNoRecord):
		return time.Time{}
	case err != nil:
		return p.soon()
	case cur.open():
		err = p.closeConfirmed(ctx, cur)
	}
	switch {
	case err == nil, errors.Is(err, errOrderPaid):
		p.tradeAnswered(ctx, t, checks)
		return time.Time{}
	case isStoreFailure(err):
		return p.soon()
	}
	return p.tradeFailed(ctx, cur, err)
}
