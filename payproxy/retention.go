package payproxy

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/tollgate/tollgate/payproxy/provider"
	"github.com/tollgate/tollgate/payproxy/reconcile"
)

// Retention keeps payproxy's Redis a working set, not an archive. Every
// order stays scheduled while it has records: once the poller finds
// nothing left to do for it, retainScript compacts it and the order is
// due again when its retention has passed since its last change (parked
// meanwhile out of the due set, park.go); the poller (one instance at a
// time per order, through its lease, in its batches) then writes trade.archived, and at a later visit, once the
// backend has acknowledged it, removes the order's records, then the
// indexes of its refunds and its entries in reconciliation's index, which
// live on other Cluster slots (its trades' indexes expire with the
// :archived marker). An instance that dies in between leaves the order
// due: the next round takes the step again. Only the indexes of that one
// order may stay, if it dies after the records went (they name an order
// that holds no record: a notification of it finds the order archived,
// or, past the marker, a trade made longer than retention ago).

// What retainScript found.
const (
	retainGone      = "gone"      // no record: nothing to keep
	retainOpen      = "open"      // work left (or a person's): look again later
	retainWait      = "wait"      // settled and compacted; archived at the due time
	retainEmitted   = "emitted"   // trade.archived written into the outbox
	retainArchiving = "archiving" // trade.archived not delivered yet
	retainArchived  = "archived"  // delivered; records removed
)

// retain compacts a settled order, or archives it once its retention has
// passed, and returns when the poller should look at it again (zero:
// archived or gone), and whether the order is compacted and only waits
// for that time (retainWait: the poller parks it, park.go).
func (p *PayProxy) retain(ctx context.Context, order string) (time.Time, bool) {
	return p.retainWaiting(ctx, order, time.Now())
}

// retainAt is retain at the time now (the footprint benchmark archives a
// million orders without waiting for their retention; retainAndPark also
// parks the order as the poller does).
func (p *PayProxy) retainAt(ctx context.Context, order string, now time.Time) time.Time {
	next, _ := p.retainWaiting(ctx, order, now)
	return next
}

// retainWaiting is retain at the time now.
func (p *PayProxy) retainWaiting(ctx context.Context, order string, now time.Time) (time.Time, bool) {
	retention := time.Duration(p.Retention)
	delivery, err := p.archivalDelivery(ctx, order)
	var vals []string
	if err == nil {
		vals, err = p.store.durability.Run(ctx, p.rdb, retainScript,
			[]string{tradeKey(order), tradesKey(order), refundsKey(order), checksKey(order), outboxKey(order), archivedKey(order)},
			now.UnixMilli(), retention.Milliseconds(), now.UTC().Format(time.RFC3339), delivery, order).StringSlice()
	}
	if err != nil || len(vals) == 0 {
		if ctx.Err() == nil {
			p.logger.Warn("retaining order failed", zap.String("order_no", order), zap.Error(err))
		}
		return p.soon(), false
	}
	if vals[0] == retainWait {
		ms, err := strconv.ParseInt(vals[1], 10, 64)
		if err != nil {
			return now.Add(retention), true
		}
		return time.UnixMilli(ms), true
	}
	return p.retainNext(ctx, order, now, vals), false
}

// retainNext is when to look at the order again after retainScript's
// answer vals (other than a wait).
func (p *PayProxy) retainNext(ctx context.Context, order string, now time.Time, vals []string) time.Time {
	retention := time.Duration(p.Retention)
	switch vals[0] {
	case retainGone:
		return time.Time{}
	case retainEmitted:
		p.publish(ctx, order, &event{ID: vals[1], Body: vals[2]})
		return p.soon()
	case retainArchiving:
		// The backend is slow or down: look again in a while (the event
		// retries on its own schedule).
		return now.Add(min(time.Minute, max(retention, time.Duration(p.PollInterval))))
	case retainArchived:
		return p.archived(ctx, order, vals[1:])
	}
	// An ABNORMAL refund waits for a person, an event for its queue: the
	// order is looked at again after another retention (a change
	// schedules it sooner).
	return now.Add(retention)
}

// archivalDelivery tells retainScript what became of the order's
// trade.archived, if it is archiving: "delivered:<id>" (acknowledged by
// the backend, or no webhook to deliver it to), "lost:<id>" (neither
// queued nor delivered: dead-lettered and its tombstone expired, or
// never queued; it is written anew), else "" (on its way, or dead: the
// dead letter can still be replayed).
func (p *PayProxy) archivalDelivery(ctx context.Context, order string) (string, error) {
	id, err := p.rdb.HGet(ctx, tradeKey(order), "archiving").Result()
	if errors.Is(err, redis.Nil) || id == "" {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if p.Webhook == nil {
		return "delivered:" + id, nil
	}
	var tomb *redis.StringCmd
	var queued *redis.BoolCmd
	_, err = p.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		tomb = pipe.Get(ctx, tombstoneKey(id))
		queued = pipe.HExists(ctx, eventsKey, id)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return "", err
	}
	switch {
	case tomb.Val() == "1": // ackEventScript's: delivered
		return "delivered:" + id, nil
	case tomb.Val() == "" && !queued.Val():
		if n, err := p.rdb.HLen(ctx, outboxKey(order)).Result(); err != nil || n > 0 {
			return "", err // still in the outbox: the poller flushes it first
		}
		return "lost:" + id, nil
	}
	return "", nil
}

// archived finishes an archival: the indexes of the order's trades and
// refunds expire with its :archived marker, its entries in
// reconciliation's per-day index go.
// vals is {trade_no..., "", refund_no..., "", indexed...}.
func (p *PayProxy) archived(ctx context.Context, order string, vals []string) time.Time {
	parts := splitEmpty(vals)
	for len(parts) < 3 {
		parts = append(parts, nil)
	}
	// A notification that brought the order back meanwhile gave its
	// indexes back too (reindex): they are not the archival's any more.
	if n, err := p.rdb.Exists(ctx, tradeKey(order)).Result(); err == nil && n == 1 {
		return time.Time{}
	}
	if err := p.indexesArchived(ctx, order, parts[0], parts[1], parts[2]); err != nil && ctx.Err() == nil {
		p.logger.Warn("removing an archived order's indexes failed", zap.String("order_no", order), zap.Error(err))
	}
	p.logger.Debug("order archived", zap.String("order_no", order))
	return time.Time{}
}

// splitEmpty splits vals at each empty string.
func splitEmpty(vals []string) [][]string {
	parts := [][]string{nil}
	for _, v := range vals {
		if v == "" {
			parts = append(parts, nil)
			continue
		}
		parts[len(parts)-1] = append(parts[len(parts)-1], v)
	}
	return parts
}

// indexesArchived gives the trade and refund indexes the marker's
// lifetime (a late notification finds the order; another order cannot
// claim one of its refund numbers while it may come back), removes the
// reconciliation index's entries ("<channel> <ms> <member>"), one command
// per key in a pipeline (they live on different Cluster slots: a
// multi-key command would be CROSSSLOT). A trade's index moves out of its
// bucket, which has no expiry of its own, into a key that expires
// (tradeIndexesArchived).
func (p *PayProxy) indexesArchived(ctx context.Context, order string, trades, refunds, indexed []string) error {
	var moved []*redis.Cmd
	cmds, err := p.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for _, no := range trades {
			moved = append(moved, archiveTradeIndexScript.Eval(ctx, pipe, []string{tradeIndexKey(no)},
				order, time.Duration(p.Retention).Milliseconds()))
		}
		for _, no := range refunds {
			pipe.PExpire(ctx, refundIndexKey(no), time.Duration(p.Retention))
		}
		for _, e := range indexed {
			f := strings.SplitN(e, " ", 3)
			ms, err := strconv.ParseInt(f[min(1, len(f)-1)], 10, 64)
			if len(f) != 3 || err != nil {
				continue // written by retainScript: never malformed
			}
			reconcile.Unindex(ctx, pipe, f[0], f[2], time.UnixMilli(ms))
		}
		return nil
	})
	if err := p.tradeIndexesArchived(ctx, order, trades, moved); err != nil {
		return err
	}
	if err != nil {
		return fmt.Errorf("archiving %d indexes: %w", len(cmds), err)
	}
	return nil
}

// tradeIndexesArchived removes the archived order's trades from their
// buckets once their keys of their own are written (moved: each one's
// archiveTradeIndexScript), never before, and only those whose key was
// answered: an instance that dies between the two steps, or a key that
// failed, leaves both, naming the same order (the bucket's field stays,
// as the index of an order that died mid-archival does), never neither.
// A key that names another order is left alone and logged (the field,
// this order's, goes all the same).
func (p *PayProxy) tradeIndexesArchived(ctx context.Context, order string, trades []string, moved []*redis.Cmd) error {
	_, err := p.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, no := range trades {
			n, err := moved[i].Int()
			if err != nil {
				continue
			}
			if n == 0 {
				p.logger.Warn("an archived order's trade index names another order; left alone",
					zap.String("order_no", order), zap.String("trade_no", no))
			}
			unbucketTradeScript.Eval(ctx, pipe, []string{tradeBucketKey(no)}, order, no)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("removing %d trade indexes from their buckets: %w", len(trades), err)
	}
	return nil
}

// noOrder is the answer for an order with no record: 409 order_archived
// while its archival marker lives, else 404.
func (p *PayProxy) noOrder(ctx context.Context, order string) error {
	_, err := p.store.archived(ctx, order)
	switch {
	case err == nil:
		return errOrderArchived
	case errors.Is(err, errNoRecord):
		return errNotFound
	}
	return err
}

// archivedNotification tells whether a verified notification is about an
// order archived since, and handles it: a payment of a trade it held
// paid, or a refund's it held settled, changes nothing. Two are news: a
// payment of another of its trades (recorded as a trade with no record
// is, tradeOfNotification, once adoptScript has restored the order), and
// a refund it held FAILED (the provider may say it succeeded: the order
// is restored from its marker and the notification handled as before the
// archival). An order with no marker answers errNoRecord.
func (p *PayProxy) archivedNotification(ctx context.Context, order string, n *provider.Notification) (bool, error) {
	a, err := p.store.archived(ctx, order)
	if err != nil {
		return false, err
	}
	if n.Kind == provider.NotifyRefund && a.Refunds[n.RefundNo] == RefundFailed {
		// Restored, the order is off the due set: scheduled first, so
		// that it is archived again (and its events queued) whatever
		// happens next.
		if err := p.store.schedule(ctx, order, p.soon()); err != nil {
			return false, err
		}
		if err := p.store.restore(ctx, order, time.Now()); err != nil {
			return false, err
		}
		// Again: a poller round between the two found no record and
		// took the order off the due set.
		return false, p.store.schedule(ctx, order, p.soon())
	}
	if n.Kind == provider.NotifyRefund || a.heldPaid(n.TradeNo) {
		p.logger.Info("notification for an archived order; nothing to change",
			zap.String("order_no", order), zap.String("trade_no", n.TradeNo))
		return true, nil
	}
	return false, nil
}
