package payproxy

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/tollgate/tollgate/payproxy/provider"
	"github.com/tollgate/tollgate/payproxy/reconcile"
)

// Refunds: the amount is reserved against the paid amount in Redis (one
// script) before the provider is called, so concurrent refunds never add
// up to more than was paid; refund_no is the idempotency key here and at
// the provider; success is only what the provider explicitly confirms.

var (
	errNotPaid        = &apiError{http.StatusConflict, "order_not_paid", "the order is not paid"}
	errRefundExceeds  = &apiError{http.StatusConflict, "refund_exceeds_paid", "refunds would exceed the paid amount"}
	errRefundMismatch = &apiError{http.StatusUnprocessableEntity, "idempotency_mismatch", "refund_no was already used with other parameters"}
	errRefundNotFound = &apiError{http.StatusNotFound, "not_found", "no such refund"}
)

// createRefund reserves and then executes a refund. It returns the refund
// record when there is one to show (also with a provider error, whose
// outcome the poller settles later).
func (p *PayProxy) createRefund(ctx context.Context, order, refundNo string, amount int64, reason string) (*refundRecord, error) {
	t, err := p.store.load(ctx, order)
	if errors.Is(err, errNoRecord) {
		return nil, p.noOrder(ctx, order)
	}
	if err != nil {
		return nil, err
	}
	created, err := p.claimRefundNo(ctx, order, refundNo)
	if err != nil {
		return nil, err
	}
	status, rec, err := p.store.reserveRefund(ctx, order, refundNo, amount, reason, time.Now())
	if err == nil && status != "created" && status != "replay" && created {
		// Leave nothing behind for a refused refund.
		_ = p.rdb.Del(ctx, refundIndexKey(refundNo)).Err()
	}
	switch {
	case err != nil:
		return nil, err
	case status == "not_found":
		return nil, errNotFound
	case status == "not_paid":
		return nil, errNotPaid
	case status == "exceeds":
		return nil, errRefundExceeds
	case status == "mismatch":
		return nil, errRefundMismatch
	case status == "replay":
		p.rebindRefundNo(ctx, order, refundNo)
		switch rec.State {
		case RefundProcessing:
			// Make sure it is polled even if the first request died
			// between its reservation and its scheduling.
			_ = p.store.schedule(ctx, order, time.Now().Add(time.Duration(p.PollInterval)))
		case RefundFailed, RefundAbnormal:
			// Asked again about a failed or abnormal refund: the provider
			// may have carried it out since (its signed query decides).
			_ = p.recheckRefund(ctx, t, rec)
		}
		return rec, nil
	}
	p.rebindRefundNo(ctx, order, refundNo)
	if err := p.store.schedule(ctx, order, time.Now().Add(time.Duration(p.PollInterval))); err != nil {
		p.logger.Warn("scheduling refund check failed", zap.String("refund_no", refundNo), zap.Error(err))
	}
	if _, err := p.executeRefund(ctx, t, rec); err != nil && !errors.Is(err, errRefundQueued) {
		return nil, p.providerFailure(ctx, t, err)
	}
	if cur, err := p.store.refund(ctx, order, refundNo); err == nil {
		rec = cur
	}
	return rec, nil
}

// claimRefundNo binds refund_no to the order (refund numbers are unique
// across orders, GET {prefix}/refunds/{refund_no} needs the order). It
// reports whether this call created the binding. One command (SET NX GET)
// both claims and reads the owner, so a concurrent undo cannot be mistaken
// for another order's claim.
func (p *PayProxy) claimRefundNo(ctx context.Context, order, refundNo string) (bool, error) {
	owner, err := p.rdb.SetArgs(ctx, refundIndexKey(refundNo), order, redis.SetArgs{Mode: "NX", Get: true}).Result()
	if errors.Is(err, redis.Nil) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	if owner != order {
		return false, errRefundMismatch
	}
	return false, nil
}

// rebindRefundNo writes the binding again once a refund is reserved: a
// concurrent request for the same refund_no that was refused may have
// removed it (its undo runs on another Cluster slot than the reservation,
// so the two cannot be one script).
func (p *PayProxy) rebindRefundNo(ctx context.Context, order, refundNo string) {
	if err := p.rdb.Set(ctx, refundIndexKey(refundNo), order, 0).Err(); err != nil {
		p.logger.Warn("rebinding refund number failed", zap.String("refund_no", refundNo), zap.Error(err))
	}
}

// executeRefund sends the refund (sendRefund) and settles it when the
// provider's answer is final. It returns when the refund is due to be
// checked (or sent, if it had to wait for its trade's refund gap:
// errRefundQueued).
func (p *PayProxy) executeRefund(ctx context.Context, t *tradeRecord, r *refundRecord) (time.Time, error) {
	res, next, err := p.sendRefund(ctx, t, r, true)
	if errors.Is(err, errRefundQueued) {
		return next, err
	}
	return next, p.refundAnswered(ctx, t, r, res, err)
}

// sendRefund sends the refund with its own number (safe to repeat: the
// number is the provider's idempotency key). gapped: once its trade's
// refund gap allows (Alipay refuses a refund of a trade sooner than 3 s
// after the previous one); otherwise it leaves it for the poller at the
// gap's end (errRefundQueued). The refund's check schedule moves before
// the call, so that an instance dying during it leaves the refund due.
func (p *PayProxy) sendRefund(ctx context.Context, t *tradeRecord, r *refundRecord, gapped bool) (provider.RefundResult, time.Time, error) {
	if gap := p.refundGap(t.Channel); gap > 0 && gapped {
		wait, err := p.store.takeRefundSlot(ctx, t.OrderNo, t.TradeNo, time.Duration(p.ProviderTimeout)+gap)
		if err != nil {
			return provider.RefundResult{}, p.soon(), &storeFailure{err}
		}
		if wait > 0 {
			next := p.refundMarked(ctx, t.OrderNo, r.RefundNo, markWait, wait)
			p.scheduleAt(ctx, t.OrderNo, next)
			return provider.RefundResult{}, next, errRefundQueued
		}
		defer p.store.holdRefundSlot(ctx, t.OrderNo, t.TradeNo, gap)
	}
	next := p.refundMarked(ctx, t.OrderNo, r.RefundNo, markSent, 0)
	p.scheduleAt(ctx, t.OrderNo, next)
	prov := p.providers[t.Channel]
	if prov == nil {
		return provider.RefundResult{}, next, &apiError{http.StatusConflict, "channel_unavailable", "the order's channel is no longer configured"}
	}
	var res provider.RefundResult
	err := p.call(ctx, t.Channel, "refund", func(ctx context.Context) error {
		var err error
		res, err = prov.Refund(ctx, provider.RefundRequest{
			TradeNo: t.TradeNo, RefundNo: r.RefundNo, AmountFen: r.AmountFen, TotalFen: t.AmountFen, Reason: r.Reason,
		})
		return err
	})
	return res, next, err
}

// refundAnswered settles a refund from the answer to sending it. PROCESSING
// is left to the check schedule (no query at once: Alipay advises 10 s);
// an unknown outcome leaves it PROCESSING; a refusal is checked first
// (refundRefused), a conflict too (refundConflict).
func (p *PayProxy) refundAnswered(ctx context.Context, t *tradeRecord, r *refundRecord, res provider.RefundResult, err error) error {
	switch {
	case provider.IsCode(err, provider.CodeRefundConflict):
		return p.refundConflict(ctx, t, r)
	case provider.IsDefinite(err):
		return p.refundRefused(ctx, t, r, err)
	case err != nil:
		return err
	case res.Status == provider.RefundProcessing:
		return nil
	}
	return p.applyRefund(ctx, t, r, res)
}

// refundRefused: the provider signed a refusal of the refund. A refund
// number the provider holds is never FAILED, so its query decides: FAILED
// only if it does not know the number (or says it failed).
func (p *PayProxy) refundRefused(ctx context.Context, t *tradeRecord, r *refundRecord, refusal error) error {
	q, err := p.queryRefund(ctx, t, r)
	if err != nil {
		return err
	}
	switch q.Status {
	case provider.RefundNotFound, provider.RefundFailed:
		p.logger.Info("refund refused by the provider", zap.String("refund_no", r.RefundNo), zap.Error(refusal))
		return p.settle(ctx, t, r, RefundFailed)
	case provider.RefundProcessing, provider.RefundUnconfirmed:
		p.logger.Warn("the provider refused a refund it holds; it stays PROCESSING", zap.String("refund_no", r.RefundNo), zap.Error(refusal))
		return nil
	}
	return p.applyRefund(ctx, t, r, q)
}

// refundConflict: the provider holds the refund number with other
// parameters and says it carried it out (Alipay
// ACQ.DISCORDANT_REPEAT_REQUEST: "通过退款查询接口获取退款执行结果"). Never
// FAILED: its query decides; a success for another amount makes the refund
// ABNORMAL (applyRefund), for a person.
func (p *PayProxy) refundConflict(ctx context.Context, t *tradeRecord, r *refundRecord) error {
	q, err := p.queryRefund(ctx, t, r)
	if err != nil {
		return err
	}
	switch q.Status {
	case provider.RefundSucceeded, provider.RefundUnconfirmed:
		if q.AmountFen != r.AmountFen || q.Status == provider.RefundSucceeded {
			return p.applyRefund(ctx, t, r, provider.RefundResult{Status: provider.RefundSucceeded, AmountFen: q.AmountFen})
		}
	case provider.RefundAbnormal:
		return p.applyRefund(ctx, t, r, q)
	}
	p.logger.Warn("the provider holds this refund number with other parameters; it stays PROCESSING until its query says more",
		zap.String("refund_no", r.RefundNo), zap.String("query", string(q.Status)))
	return nil
}

// queryRefund asks the provider about a refund (a signed answer).
func (p *PayProxy) queryRefund(ctx context.Context, t *tradeRecord, r *refundRecord) (provider.RefundResult, error) {
	prov := p.providers[t.Channel]
	if prov == nil {
		return provider.RefundResult{}, &apiError{http.StatusConflict, "channel_unavailable", "the order's channel is no longer configured"}
	}
	var res provider.RefundResult
	err := p.call(ctx, t.Channel, "refund_query", func(ctx context.Context) error {
		var err error
		res, err = prov.QueryRefund(ctx, t.TradeNo, r.RefundNo)
		return err
	})
	return res, err
}

// checkRefund is the poller's look at a processing refund that is due:
// send it if it was never sent; otherwise ask the provider, send it again
// (same number) if the provider never received it, and confirm an
// unconfirmed one. It returns when the refund is due again.
func (p *PayProxy) checkRefund(ctx context.Context, t *tradeRecord, r *refundRecord, c checkState) time.Time {
	if c.Sends == 0 {
		next, err := p.executeRefund(ctx, t, r)
		p.refundCheckFailed(r, err)
		return next
	}
	res, err := p.queryRefund(ctx, t, r)
	delays := p.refundDelays()
	next := p.refundMarked(ctx, t.OrderNo, r.RefundNo, markChecked, retryFloor(err, delays[len(delays)-1]))
	switch {
	case err != nil:
	case res.Status == provider.RefundNotFound:
		next, err = p.executeRefund(ctx, t, r)
	case res.Status == provider.RefundUnconfirmed:
		next, err = p.confirmRefund(ctx, t, r, res, next)
	default:
		err = p.applyRefund(ctx, t, r, res)
	}
	p.refundCheckFailed(r, err)
	return next
}

func (p *PayProxy) refundCheckFailed(r *refundRecord, err error) {
	if err != nil && !errors.Is(err, errRefundQueued) {
		p.logger.Debug("refund check", zap.String("refund_no", r.RefundNo), zap.Error(err))
	}
}

// confirmRefund settles a refund whose query holds its data without saying
// it succeeded (Alipay's older answer), from another signed source: the
// refund sent again with the same number and amount is answered with the
// trade's cumulative refunded amount (refund_fee), which confirms it when
// it covers exactly the refunds of the trade known to have succeeded plus
// every processing one sent so far. Anything else leaves it PROCESSING:
// never FAILED, and never SUCCESS from the ambiguous answer alone. The
// repeat is not held to the refund gap: the provider holds the number,
// and a repeat it refused would only leave the refund unconfirmed a while.
func (p *PayProxy) confirmRefund(ctx context.Context, t *tradeRecord, r *refundRecord, q provider.RefundResult, next time.Time) (time.Time, error) {
	if q.AmountFen != r.AmountFen {
		return next, p.applyRefund(ctx, t, r, provider.RefundResult{Status: provider.RefundSucceeded, AmountFen: q.AmountFen})
	}
	res, next, err := p.sendRefund(ctx, t, r, false)
	if err != nil || !res.HasRefundedTotal {
		if err == nil || errors.Is(err, errRefundQueued) {
			return next, err
		}
		return next, p.refundAnswered(ctx, t, r, res, err)
	}
	succeeded, processing, err := p.refundedOfTrade(ctx, t)
	if err != nil {
		return next, err
	}
	if processing > 0 && res.RefundedTotalFen-succeeded == processing {
		p.logger.Info("refund confirmed by the trade's refunded total", zap.String("refund_no", r.RefundNo),
			zap.Int64("refunded_total_fen", res.RefundedTotalFen))
		return next, p.settle(ctx, t, r, RefundSuccess)
	}
	p.logger.Info("refund not confirmed yet: the trade's refunded total does not cover it", zap.String("refund_no", r.RefundNo),
		zap.Int64("refunded_total_fen", res.RefundedTotalFen), zap.Int64("succeeded_fen", succeeded), zap.Int64("processing_fen", processing))
	return next, nil
}

// refundedOfTrade sums the trade's refunds payproxy holds SUCCESS, and
// those it holds PROCESSING that were sent (one waiting for the refund gap
// cannot be in the provider's total).
func (p *PayProxy) refundedOfTrade(ctx context.Context, t *tradeRecord) (succeeded, processing int64, err error) {
	refunds, err := p.store.refunds(ctx, t.OrderNo)
	if err != nil {
		return 0, 0, &storeFailure{err}
	}
	checks, err := p.store.checks(ctx, t.OrderNo)
	if err != nil {
		return 0, 0, &storeFailure{err}
	}
	for _, r := range refunds {
		if r.TradeNo != t.TradeNo && (r.TradeNo != "" || t.Retired) {
			continue
		}
		switch c, known := checks.of(refundField(r.RefundNo)); {
		case r.State == RefundSuccess:
			succeeded += r.AmountFen
		case r.State == RefundProcessing && (!known || c.Sends > 0):
			processing += r.AmountFen
		}
	}
	return succeeded, processing, nil
}

// syncRefund asks the provider about a refund and applies a definite
// answer; one it does not know is left as it is, an unconfirmed one to
// the poller (which confirms it).
func (p *PayProxy) syncRefund(ctx context.Context, t *tradeRecord, r *refundRecord) error {
	res, err := p.queryRefund(ctx, t, r)
	if err != nil {
		return err
	}
	switch res.Status {
	case provider.RefundNotFound:
		return nil
	case provider.RefundUnconfirmed:
		p.scheduleNow(ctx, t.OrderNo)
		return nil
	}
	return p.applyRefund(ctx, t, r, res)
}

// recheckRefund asks the provider about a FAILED refund; a signed success
// is honoured (the refund is SUCCESS after all, its amount reserved again).
func (p *PayProxy) recheckRefund(ctx context.Context, t *tradeRecord, r *refundRecord) error {
	err := p.syncRefund(ctx, t, r)
	if err != nil {
		p.logger.Warn("checking a failed refund with the provider failed", zap.String("refund_no", r.RefundNo), zap.Error(err))
	}
	return err
}

// applyRefund settles a refund from the provider's signed answer. A
// success must be for the reserved amount: a success for any other amount
// (the provider holds the number with another amount) is never recorded
// as this refund: it is logged and the refund made ABNORMAL, its amount
// still reserved, for a person.
func (p *PayProxy) applyRefund(ctx context.Context, t *tradeRecord, r *refundRecord, res provider.RefundResult) error {
	switch res.Status {
	case provider.RefundSucceeded:
		if res.AmountFen != r.AmountFen {
			p.logger.Error("the provider reports a refund amount different from the reserved one; the refund is ABNORMAL, a person must resolve it",
				zap.String("refund_no", r.RefundNo), zap.Int64("reserved_fen", r.AmountFen), zap.Int64("reported_fen", res.AmountFen))
			return p.settle(ctx, t, r, RefundAbnormal)
		}
		return p.settle(ctx, t, r, RefundSuccess)
	case provider.RefundFailed:
		return p.settle(ctx, t, r, RefundFailed)
	case provider.RefundAbnormal:
		if r.State == RefundProcessing {
			p.logger.Error("refund ABNORMAL at the provider: a person must resolve it on the merchant platform",
				zap.String("order_no", t.OrderNo), zap.String("refund_no", r.RefundNo))
		}
		return p.settle(ctx, t, r, RefundAbnormal)
	}
	return nil
}

// settle records a refund's outcome and publishes its event once; a
// failed write is returned, so that a notification is not acknowledged.
func (p *PayProxy) settle(ctx context.Context, t *tradeRecord, r *refundRecord, to string) error {
	changed, ev, err := p.store.settleRefund(ctx, t, r, to, time.Now())
	if err != nil {
		p.logger.Error("settling refund failed", zap.String("refund_no", r.RefundNo), zap.Error(err))
		return &storeFailure{err}
	}
	if changed {
		r.State = to
		if to == RefundSuccess {
			p.indexForReconcile(ctx, t.Channel, reconcile.Ref{Refund: true, TradeNo: t.TradeNo, RefundNo: r.RefundNo})
		}
		p.publish(ctx, t.OrderNo, ev)
	}
	return nil
}
