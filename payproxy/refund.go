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
		return nil, errNotFound
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
	if err := p.executeRefund(ctx, t, rec); err != nil {
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

// executeRefund sends the refund and settles it when the provider's answer
// is final. A definite refusal fails it (releasing the reservation); an
// unknown outcome leaves it PROCESSING for the poller.
func (p *PayProxy) executeRefund(ctx context.Context, t *tradeRecord, r *refundRecord) error {
	prov := p.providers[t.Channel]
	if prov == nil {
		return &apiError{http.StatusConflict, "channel_unavailable", "the order's channel is no longer configured"}
	}
	var res provider.RefundResult
	err := p.call(ctx, t.Channel, "refund", func(ctx context.Context) error {
		var err error
		res, err = prov.Refund(ctx, provider.RefundRequest{
			TradeNo: t.TradeNo, RefundNo: r.RefundNo, AmountFen: r.AmountFen, TotalFen: t.AmountFen, Reason: r.Reason,
		})
		return err
	})
	if provider.IsDefinite(err) {
		return p.settle(ctx, t, r, RefundFailed)
	}
	if err != nil {
		return err
	}
	if res.Status == provider.RefundProcessing {
		return p.syncRefund(ctx, t, r, false)
	}
	return p.applyRefund(ctx, t, r, res)
}

// syncRefund asks the provider about a PROCESSING refund. resend allows
// sending the refund again when the provider never received it (the same
// refund number makes that safe).
func (p *PayProxy) syncRefund(ctx context.Context, t *tradeRecord, r *refundRecord, resend bool) error {
	prov := p.providers[t.Channel]
	if prov == nil {
		return nil
	}
	var res provider.RefundResult
	err := p.call(ctx, t.Channel, "refund_query", func(ctx context.Context) error {
		var err error
		res, err = prov.QueryRefund(ctx, t.TradeNo, r.RefundNo)
		return err
	})
	if err != nil {
		return err
	}
	if res.Status == provider.RefundNotFound {
		if resend && r.State == RefundProcessing {
			return p.executeRefund(ctx, t, r)
		}
		return nil
	}
	return p.applyRefund(ctx, t, r, res)
}

// recheckRefund asks the provider about a FAILED refund; a signed success
// is honoured (the refund is SUCCESS after all, its amount reserved again).
func (p *PayProxy) recheckRefund(ctx context.Context, t *tradeRecord, r *refundRecord) error {
	err := p.syncRefund(ctx, t, r, false)
	if err != nil {
		p.logger.Warn("checking a failed refund with the provider failed", zap.String("refund_no", r.RefundNo), zap.Error(err))
	}
	return err
}

// applyRefund settles a refund from the provider's signed answer. A
// success must be for the reserved amount: any other amount is logged
// and left for a person, never recorded as this refund.
func (p *PayProxy) applyRefund(ctx context.Context, t *tradeRecord, r *refundRecord, res provider.RefundResult) error {
	switch res.Status {
	case provider.RefundSucceeded:
		if res.AmountFen != r.AmountFen {
			p.logger.Error("the provider reports a refund amount different from the reserved one",
				zap.String("refund_no", r.RefundNo), zap.Int64("reserved_fen", r.AmountFen), zap.Int64("reported_fen", res.AmountFen))
			return errAmountMismatch
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
