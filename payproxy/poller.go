package payproxy

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"
)

// The poller checks the orders that have work left: unpaid trades (query;
// close after pay_timeout, Alipay by cancel), processing refunds (send one
// not sent yet, query, re-send if never received) and outboxes not yet
// copied to the webhook queue. Orders live in the due set with their next
// check time; an instance leases a batch (claimScript), so each order is
// handled by one instance at a time, and a crashed instance's lease simply
// runs out. Each round leaves the order due at the earliest time one of
// its parts needs looking at again (recheck.go): poll_interval for an
// unpaid trade, later after failures, and each refund on its schedule; a
// settled order waiting only for its archival is parked out of the due
// set until then (park.go).

const pollBatch = 50

// pollBatches bounds the batches one wake-up leases: a full batch means
// more is due (every settled order comes back once more, to be archived
// after its retention), so the poller goes on, up to 20 batches (1 000
// orders) per poll_interval and instance.
const pollBatches = 20

func (p *PayProxy) runPoller(ctx context.Context) {
	p.startDueMigration(ctx) // orders the previous release took off the due set
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

// pollOnce handles leased batches while they come full, at most
// pollBatches.
func (p *PayProxy) pollOnce(ctx context.Context) {
	p.unpark(ctx, time.Now()) // the parked orders whose bucket has ended
	for range pollBatches {
		if p.pollBatch(ctx) < pollBatch || ctx.Err() != nil {
			return
		}
	}
}

// pollBatch handles one leased batch and returns its size.
func (p *PayProxy) pollBatch(ctx context.Context) int {
	lease := 2*time.Duration(p.ProviderTimeout) + time.Duration(p.PollInterval)
	now := time.Now()
	orders, err := claimScript.Run(ctx, p.rdb, []string{dueKey}, now.UnixMilli(), pollBatch, lease.Milliseconds()).StringSlice()
	if err != nil {
		if ctx.Err() == nil {
			p.logger.Debug("leasing due orders failed", zap.Error(err))
		}
		return 0
	}
	leaseScore := now.UnixMilli() + lease.Milliseconds()
	for _, order := range orders {
		if ctx.Err() != nil {
			return 0
		}
		if next, wait := p.pollOrder(ctx, order); wait {
			p.park(ctx, order, next, leaseScore)
		} else {
			p.reschedule(ctx, order, next, leaseScore)
		}
	}
	return len(orders)
}

// reschedule leaves the order due at next, or off the due set when
// nothing is left (zero), unless it was scheduled anew meanwhile.
func (p *PayProxy) reschedule(ctx context.Context, order string, next time.Time, leaseScore int64) {
	var err error
	if next.IsZero() {
		err = releaseScript.Run(ctx, p.rdb, []string{dueKey}, order, leaseScore).Err()
	} else {
		err = rescheduleScript.Run(ctx, p.rdb, []string{dueKey}, order, leaseScore, next.UnixMilli()).Err()
	}
	if err != nil && ctx.Err() == nil {
		p.logger.Warn("rescheduling order failed", zap.String("order_no", order), zap.Error(err))
	}
}

// pollOrder does the order's pending work that is due and returns when
// the order needs looking at again (zero: nothing left), and whether it
// is compacted and only waits for its archival then (parked).
func (p *PayProxy) pollOrder(ctx context.Context, order string) (time.Time, bool) {
	empty, err := p.flushOutbox(ctx, order)
	if err != nil {
		return p.soon(), false
	}
	t, err := p.store.load(ctx, order)
	if errors.Is(err, errNoRecord) {
		return time.Time{}, false
	}
	if err != nil {
		return p.soon(), false
	}
	checks, err := p.store.checks(ctx, order)
	if err != nil {
		return p.soon(), false
	}
	var next dueTime
	if !empty {
		next.at(p.soon())
	}
	if t.open() {
		next.at(p.pollTrade(ctx, t, checks))
	} else {
		p.tradeAnswered(ctx, t, checks) // settled meanwhile (a notification)
	}
	next.at(p.pollRetired(ctx, order, checks))
	next.at(p.pollRefunds(ctx, t, checks))
	if next.t.IsZero() {
		// Events published during this round must not be stranded.
		if n, err := p.rdb.HLen(ctx, outboxKey(order)).Result(); err != nil || n > 0 {
			next.at(p.soon())
		}
	}
	if next.t.IsZero() {
		// Nothing left to do: the order stays scheduled for its retention.
		return p.retain(ctx, order)
	}
	return next.t, false
}

// pollTrade queries an unpaid trade, and closes it once past its deadline.
// It returns when to look at it again (zero: it is settled).
func (p *PayProxy) pollTrade(ctx context.Context, t *tradeRecord, checks orderChecks) time.Time {
	if c, ok := checks.of(tradeField(t.TradeNo)); ok && !c.due(time.Now()) {
		return c.next()
	}
	if err := p.syncTrade(ctx, t); err != nil {
		return p.tradeFailed(ctx, t, err)
	}
	cur, err := p.store.load(ctx, t.OrderNo)
	if err != nil {
		return p.soon()
	}
	next := p.soon()
	switch {
	case cur.TradeNo != t.TradeNo || !cur.open():
		next = time.Time{}
	case !time.Now().Before(cur.ExpiresAt):
		next = p.expire(ctx, cur)
		if !next.IsZero() {
			return next // expire recorded its failure, if any
		}
	}
	p.tradeAnswered(ctx, t, checks)
	return next
}

// tradeAnswered forgets a trade's failed checks once a check went through.
func (p *PayProxy) tradeAnswered(ctx context.Context, t *tradeRecord, checks orderChecks) {
	if _, ok := checks.of(tradeField(t.TradeNo)); ok {
		p.store.forget(ctx, t.OrderNo, tradeField(t.TradeNo))
	}
}

// expire closes a trade past pay_timeout under the order's lock (a
// concurrent create must not hand out a QR code being closed). It returns
// when to look at it again (zero: closed or paid).
func (p *PayProxy) expire(ctx context.Context, t *tradeRecord) time.Time {
	l, workCtx, err := p.tryLockOrder(ctx, t.OrderNo)
	if err != nil {
		return p.soon()
	}
	defer l.Unlock()
	cur, err := p.store.load(workCtx, t.OrderNo)
	if err != nil {
		return p.soon()
	}
	if cur.TradeNo != t.TradeNo || !cur.open() {
		return time.Time{}
	}
	err = p.closeConfirmed(workCtx, cur)
	switch {
	case err == nil, errors.Is(err, errOrderPaid):
		return time.Time{}
	case isStoreFailure(err):
		return p.soon()
	}
	return p.tradeFailed(ctx, cur, err)
}

// pollRefunds checks the order's processing refunds that are due; it
// returns when the next one is (zero: none left).
func (p *PayProxy) pollRefunds(ctx context.Context, t *tradeRecord, checks orderChecks) time.Time {
	refunds, err := p.store.refunds(ctx, t.OrderNo)
	if err != nil {
		return p.soon()
	}
	var next dueTime
	var settled []string
	for _, r := range refunds {
		field := refundField(r.RefundNo)
		c, known := checks.of(field)
		if r.State != RefundProcessing {
			if known {
				settled = append(settled, field)
			}
			continue
		}
		if known && !c.due(time.Now()) {
			next.at(c.next())
			continue
		}
		rt := t
		if r.TradeNo != "" && r.TradeNo != t.TradeNo {
			// The refund of a retired trade (a duplicate payment).
			if rt, err = p.store.tradeOf(ctx, t.OrderNo, r.TradeNo); err != nil {
				next.at(p.soon())
				continue
			}
		}
		at := p.checkRefund(ctx, rt, r, c)
		if r.State == RefundProcessing {
			next.at(at)
		}
	}
	p.store.forget(ctx, t.OrderNo, settled...)
	return next.t
}

func isStoreFailure(err error) bool {
	var sf *storeFailure
	return errors.As(err, &sf)
}
