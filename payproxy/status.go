package payproxy

import (
	"context"
	"errors"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/tollgate/tollgate/payproxy/provider"
)

// A trade's status (as stored, or asked of the provider with ?sync=1) and
// its close; and call, which every provider call of payproxy goes through.

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
