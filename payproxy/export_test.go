package payproxy

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/payproxy/bill"
	"github.com/tollgate/tollgate/payproxy/reconcile"
)

// MoveReconcileClock moves the reconciliation scheduler's clock by d, for
// tests of the daily run (the Caddy instances of a test run in-process).
func MoveReconcileClock(d time.Duration) { reconcileOffset.Add(int64(d)) }

// SetNotifyRetryWindow sets how long after a trade stops being payable a
// first notification of it may still come (archivedLongAgo), and returns
// the previous value: tests of notifications past an archival's marker
// cannot wait two days.
func SetNotifyRetryWindow(d time.Duration) time.Duration {
	return time.Duration(notifyRetryWindow.Swap(int64(d)))
}

// SetPayableLife sets the longest a trade may stay payable
// (archivedLongAgo; 15 days), and returns the previous value.
func SetPayableLife(d time.Duration) time.Duration {
	return time.Duration(payableLife.Swap(int64(d)))
}

// ResetReconcileClock puts the scheduler's clock back to the real time.
func ResetReconcileClock() { reconcileOffset.Store(0) }

// ReconcileWithBill runs a reconciliation on the running route that
// offers channel, with the bill open gives instead of the provider's
// download: for bills the simulator cannot make (bad only at their end).
func ReconcileWithBill(ctx context.Context, channel, date string, open func() (bill.Reader, error)) (*reconcile.Report, error) {
	routes := routesWithChannel(channel)
	if len(routes) == 0 {
		return nil, errNoChannel
	}
	job, err := routes[0].reconcileJob(channel, date, reconcileNow())
	if err != nil {
		return nil, err
	}
	job.Fetch = func(context.Context) (bill.Reader, error) { return open() }
	rep, _, err := routes[0].reconciler.Run(ctx, job)
	return rep, err
}

// LedgerRecord is what reconciliation reads of a payment of channel's
// trade tradeNo (reconcileLedger.Records) from the Redis rdb.
func LedgerRecord(ctx context.Context, rdb redis.UniversalClient, channel, tradeNo string) (reconcile.Record, error) {
	l := reconcileLedger{p: &PayProxy{rdb: rdb, store: &tradeStore{rdb: rdb}}, channel: channel}
	recs, err := l.Records(ctx, []reconcile.Ref{{TradeNo: tradeNo}})
	if err != nil {
		return reconcile.Record{}, err
	}
	return recs[0], nil
}
