package payproxy

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"
)

// The poller checks, every poll_interval, the orders that have work left:
// unpaid trades (query; close after pay_timeout, Alipay by cancel),
// processing refunds (refund query, re-send if never received), and
// outboxes not yet copied to the webhook queue. Orders live in the due set
// with their next check time; an instance leases a batch (claimScript), so
// each order is handled by one instance at a time, and a crashed
// instance's lease simply runs out.

const pollBatch = 50

func (p *PayProxy) runPoller(ctx context.Context) {
	t := time.NewTicker(time.Duration(p.PollInterval))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.pollOnce(ctx)
		}
	}
}

// pollOnce handles one leased batch.
func (p *PayProxy) pollOnce(ctx context.Context) {
	lease := 2*time.Duration(p.ProviderTimeout) + time.Duration(p.PollInterval)
	now := time.Now()
	orders, err := claimScript.Run(ctx, p.rdb, []string{dueKey}, now.UnixMilli(), pollBatch, lease.Milliseconds()).StringSlice()
	if err != nil {
		if ctx.Err() == nil {
			p.logger.Debug("leasing due orders failed", zap.Error(err))
		}
		return
	}
	leaseScore := now.UnixMilli() + lease.Milliseconds()
	for _, order := range orders {
		if ctx.Err() != nil {
			return
		}
		pending := p.pollOrder(ctx, order)
		p.reschedule(ctx, order, pending, leaseScore)
	}
}

func (p *PayProxy) reschedule(ctx context.Context, order string, pending bool, leaseScore int64) {
	var err error
	if pending {
		err = p.store.schedule(ctx, order, time.Now().Add(time.Duration(p.PollInterval)))
	} else {
		err = releaseScript.Run(ctx, p.rdb, []string{dueKey}, order, leaseScore).Err()
	}
	if err != nil && ctx.Err() == nil {
		p.logger.Warn("rescheduling order failed", zap.String("order_no", order), zap.Error(err))
	}
}

// pollOrder does the order's pending work and reports whether some is left.
func (p *PayProxy) pollOrder(ctx context.Context, order string) bool {
	empty, err := p.flushOutbox(ctx, order)
	if err != nil {
		return true
	}
	t, err := p.store.load(ctx, order)
	if errors.Is(err, errNoRecord) {
		return false
	}
	if err != nil {
		return true
	}
	pending := !empty
	if t.open() {
		pending = p.pollTrade(ctx, t) || pending
	}
	if p.pollRetired(ctx, order) {
		pending = true
	}
	if p.pollRefunds(ctx, t) {
		pending = true
	}
	if !pending {
		// Events published during this round must not be stranded.
		if n, err := p.rdb.HLen(ctx, outboxKey(order)).Result(); err != nil || n > 0 {
			pending = true
		}
	}
	return pending
}

// pollTrade queries an unpaid trade, and closes it once past its deadline.
// It reports whether the trade still needs polling.
func (p *PayProxy) pollTrade(ctx context.Context, t *tradeRecord) bool {
	if err := p.syncTrade(ctx, t); err != nil {
		return true
	}
	cur, err := p.store.load(ctx, t.OrderNo)
	if err != nil || cur.TradeNo != t.TradeNo {
		return err != nil
	}
	if cur.State != StatePaying && cur.State != StateUnknown {
		return false
	}
	if time.Now().Before(cur.ExpiresAt) {
		return true
	}
	return p.expire(ctx, cur)
}

// expire closes a trade past pay_timeout under the order's lock (a
// concurrent create must not hand out a QR code being closed). It reports
// whether work is left.
func (p *PayProxy) expire(ctx context.Context, t *tradeRecord) bool {
	l, workCtx, err := p.tryLockOrder(ctx, t.OrderNo)
	if err != nil {
		return true
	}
	defer l.Unlock()
	cur, err := p.store.load(workCtx, t.OrderNo)
	if err != nil || cur.TradeNo != t.TradeNo || !cur.open() {
		return err != nil
	}
	err = p.closeConfirmed(workCtx, cur)
	return err != nil && !errors.Is(err, errOrderPaid)
}

// pollRefunds checks the order's processing refunds; true if some remain.
func (p *PayProxy) pollRefunds(ctx context.Context, t *tradeRecord) bool {
	refunds, err := p.store.refunds(ctx, t.OrderNo)
	if err != nil {
		return true
	}
	pending := false
	for _, r := range refunds {
		if r.State != RefundProcessing {
			continue
		}
		rt := t
		if r.TradeNo != "" && r.TradeNo != t.TradeNo {
			// The refund of a retired trade (a duplicate payment).
			if rt, err = p.store.tradeOf(ctx, t.OrderNo, r.TradeNo); err != nil {
				pending = true
				continue
			}
		}
		_ = p.syncRefund(ctx, rt, r, true)
		if r.State == RefundProcessing {
			pending = true
		}
	}
	return pending
}
