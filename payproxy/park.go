package payproxy

import (
	"context"
	"strconv"
	"time"

	"go.uber.org/zap"
)

// Parking. A settled order waits a retention (30 days by default) for
// its archival; in the due zset it would cost ~118 bytes of Redis the
// whole time (a skiplist entry), most of a settled order's budget. So a
// poller round that compacted the order and found it waiting
// (retainWait) parks it instead: parkScript moves it from the due zset
// into a list, ~22 bytes an entry, one list per bucket of due times
// (tollgate:pay:{due}:parked:<bucket_end_ms>), the buckets registered in
// the small zset tollgate:pay:{due}:parked. Each wake-up the poller first
// unparks (unparkScript) the orders of the buckets that have ended back
// into the due zset, due now, and handles them as any other: retention
// archives them. All of it is on the {due} slot.
//
// Nothing else changes: an order parked and then scheduled anew (a
// refund, a notification, the due migration) is handled by its zset
// entry; its list entry, unparked at its bucket's end, collapses into
// that entry (ZADD NX), or brings the order to one more round, which
// parks it again if it still waits. An order's list entries are thus at
// most one more than the times it was scheduled anew within a retention,
// and all come back by its due time's bucket end.
const parkedKey = dueKey + ":parked"

func parkedListKey(bucketEnd int64) string {
	return parkedKey + ":" + strconv.FormatInt(bucketEnd, 10)
}

// parkWidth is the width of a bucket of due times. An order is unparked
// at the end of its due time's bucket: at most a width after it is due.
// retention/32 keeps that under 3 % of retention and the buckets that
// exist at once (those ending within a retention, plus the ended ones a
// lagging poller has not emptied yet) near 33; an hour caps the delay for
// long retentions (720h: ~720 buckets, each a list key and a registry
// entry, ~100 kB in all whatever the number of orders), and 100 ms keeps
// a retention of seconds (tests) from making a bucket per millisecond
// while its orders are still archived within about a poll of their due
// time.
func (p *PayProxy) parkWidth() time.Duration {
	return min(time.Hour, max(time.Duration(p.Retention)/32, 100*time.Millisecond))
}

// bucketEnd is the end of the bucket holding due (ms, a multiple of the
// width, never before due).
func (p *PayProxy) bucketEnd(due time.Time) int64 {
	w := p.parkWidth().Milliseconds()
	return (due.UnixMilli() + w - 1) / w * w
}

// park parks order, due at due, if its due-zset score is still the lease
// the poller holds (see parkScript).
func (p *PayProxy) park(ctx context.Context, order string, due time.Time, leaseScore int64) {
	if err := p.parkLeased(ctx, order, due, strconv.FormatInt(leaseScore, 10)); err != nil && ctx.Err() == nil {
		p.logger.Warn("parking order failed", zap.String("order_no", order), zap.Error(err))
	}
}

// retainAndPark is retainAt, and parks the order as the poller does when
// it is compacted and waiting (the footprint benchmark's: it holds no
// lease, so whatever the order's due-zset score).
func (p *PayProxy) retainAndPark(ctx context.Context, order string, now time.Time) (time.Time, error) {
	next, wait := p.retainWaiting(ctx, order, now)
	if !wait {
		return next, nil
	}
	return next, p.parkUnleased(ctx, order, next)
}

// parkUnleased parks order, due at due, whatever its due-zset score (for
// an order retainAt found compacted and waiting, by a caller holding no
// lease).
func (p *PayProxy) parkUnleased(ctx context.Context, order string, due time.Time) error {
	return p.parkLeased(ctx, order, due, "")
}

func (p *PayProxy) parkLeased(ctx context.Context, order string, due time.Time, lease string) error {
	end := p.bucketEnd(due)
	return parkScript.Run(ctx, p.rdb, []string{dueKey, parkedKey, parkedListKey(end)}, order, lease, end).Err()
}

// unpark moves the parked orders whose bucket has ended back into the due
// zset, at most what one wake-up leases (pollBatch*pollBatches): a
// backlog is unparked over the following wake-ups.
func (p *PayProxy) unpark(ctx context.Context, now time.Time) {
	err := unparkScript.Run(ctx, p.rdb, []string{dueKey, parkedKey}, now.UnixMilli(), pollBatch*pollBatches).Err()
	if err != nil && ctx.Err() == nil {
		p.logger.Debug("unparking orders failed", zap.Error(err))
	}
}
