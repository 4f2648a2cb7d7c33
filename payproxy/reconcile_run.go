package payproxy

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/tollgate/tollgate/payproxy/bill"
	"github.com/tollgate/tollgate/payproxy/reconcile"
)

// The daily reconciliation runs once per day across every instance that
// shares the Redis. Each instance with a reconcile block looks every
// poll_interval whether the day's run time has come; the first to see it
// plans the run (SET NX of the day's plan) by putting the due dates into
// the channel's due set, and from there the dates are leased like the
// poller's orders (claimScript): each date is run by one instance, a
// crashed instance's lease runs out, and a date that must be retried (bill
// not ready, fetch failed) goes back into the set for later that day.
//
//	tollgate:pay:{rc}:due:<channel>             zset  bill date → when to run it (ms)
//	tollgate:pay:{rc}:planned:<channel>:<day>   string the day's run was planned (3 days)

func reconcileDueKey(channel string) string { return keyPrefix + "{rc}:due:" + channel }
func reconcilePlannedKey(channel, day string) string {
	return keyPrefix + "{rc}:planned:" + channel + ":" + day
}

// reconcileLease is how long a claimed date is this instance's: longer
// than a run of a few million lines.
const reconcileLease = 30 * time.Minute

// billTimeout bounds the download of one bill (a million lines is a few
// hundred MB for WeChat).
const billTimeout = 10 * time.Minute

// reconcileOffset moves the scheduler's clock (tests only, export_test.go).
var reconcileOffset atomic.Int64

// reconcileNow is the scheduler's clock.
func reconcileNow() time.Time { return time.Now().Add(time.Duration(reconcileOffset.Load())) }

// provisionReconcile sets up what runs on demand need, and the block.
func (p *PayProxy) provisionReconcile() {
	if p.Reconcile != nil {
		p.Reconcile.provision()
	}
	p.reconciler = &reconcile.Reconciler{Redis: p.rdb, Logger: p.logger, Now: reconcileNow}
}

// channels lists the route's channels, sorted.
func (p *PayProxy) channels() []string {
	out := make([]string, 0, len(p.providers))
	for ch := range p.providers {
		out = append(out, ch)
	}
	sort.Strings(out)
	return out
}

// runReconciler is the daily schedule of a route with a reconcile block.
func (p *PayProxy) runReconciler(ctx context.Context) {
	c := p.Reconcile
	if c.validate() != nil {
		return
	}
	t := time.NewTicker(time.Duration(p.PollInterval))
	defer t.Stop()
	planned := "" // the last day this instance saw planned
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := reconcileNow().In(c.loc)
		if day := now.Format(time.DateOnly); day != planned && !now.Before(reconcile.RunTime(now, c.hour, c.minute)) {
			if p.planReconcile(ctx, now) {
				planned = day
			}
		}
		for _, ch := range p.channels() {
			p.runDueDates(ctx, ch)
		}
	}
}

// planReconcile puts the day's dates into the due sets, once per day
// across the instances. It reports whether the day is planned for every
// channel (by this instance or another).
func (p *PayProxy) planReconcile(ctx context.Context, now time.Time) bool {
	day := now.Format(time.DateOnly)
	done := true
	for _, ch := range p.channels() {
		args := []any{int64((72 * time.Hour).Seconds()), now.UnixMilli()}
		for _, date := range reconcile.DueDates(now, p.Reconcile.Days) {
			args = append(args, date)
		}
		if err := planScript.Run(ctx, p.rdb, []string{reconcilePlannedKey(ch, day), reconcileDueKey(ch)}, args...).Err(); err != nil {
			p.logger.Warn("planning the daily reconciliation failed", zap.String("channel", ch), zap.Error(err))
			done = false
		}
	}
	return done
}

// planScript takes the day's plan and makes its dates due in one step (an
// instance that died between the two would leave the day planned with
// nothing due). Both keys are in the {rc} slot.
//
// KEYS: planned, due. ARGV: ttl_s, now_ms, date...
var planScript = redis.NewScript(`
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
for i = 3, #ARGV do
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[i])
end
return 1
`)

// runDueDates runs the channel's due dates, one lease at a time.
func (p *PayProxy) runDueDates(ctx context.Context, channel string) {
	for ctx.Err() == nil {
		now := reconcileNow()
		dates, err := claimScript.Run(ctx, p.rdb, []string{reconcileDueKey(channel)}, now.UnixMilli(), 1, reconcileLease.Milliseconds()).StringSlice()
		if err != nil || len(dates) == 0 {
			return
		}
		leaseScore := now.UnixMilli() + reconcileLease.Milliseconds()
		_, retry, err := p.reconcileDate(ctx, channel, dates[0])
		switch {
		case err != nil:
			// Interrupted (a reload) or Redis failed: due again at once,
			// for this or another instance.
			p.scheduleReconcile(context.WithoutCancel(ctx), channel, dates[0], reconcileNow())
			return
		case retry:
			if next, ok := reconcile.NextRetry(reconcileNow().In(p.reconcileLocation())); ok {
				p.scheduleReconcile(ctx, channel, dates[0], next)
				continue
			}
			fallthrough
		default:
			_ = releaseScript.Run(ctx, p.rdb, []string{reconcileDueKey(channel)}, dates[0], leaseScore).Err()
		}
	}
}

// scheduleReconcile makes a date due at when.
func (p *PayProxy) scheduleReconcile(ctx context.Context, channel, date string, when time.Time) {
	err := p.rdb.ZAdd(ctx, reconcileDueKey(channel), redis.Z{Score: float64(when.UnixMilli()), Member: date}).Err()
	if err != nil {
		p.logger.Warn("scheduling a reconciliation failed", zap.String("channel", channel), zap.String("date", date), zap.Error(err))
	}
}

// reconcileDate runs one channel's reconciliation of one date and counts
// it; retry asks for another run later.
func (p *PayProxy) reconcileDate(ctx context.Context, channel, date string) (*reconcile.Report, bool, error) {
	job, err := p.reconcileJob(channel, date, reconcileNow())
	if err != nil {
		return nil, false, err
	}
	rep, retry, err := p.reconciler.Run(ctx, job)
	result := reconcile.StateError
	if err == nil {
		result = rep.State
	}
	p.metrics.reconcileRun(channel, result)
	if err != nil {
		p.logger.Warn("reconciliation failed", zap.String("channel", channel), zap.String("date", date), zap.Error(err))
		return rep, retry, err
	}
	level := p.logger.Info
	if rep.State != reconcile.StateDone || len(rep.Differences) > rep.Healed {
		level = p.logger.Warn
	}
	level("reconciliation", zap.String("channel", channel), zap.String("date", date), zap.String("state", rep.State),
		zap.String("error", rep.Error), zap.Int("lines", rep.Lines), zap.Int("matched", rep.Matched),
		zap.Int("differences", len(rep.Differences)), zap.Int("healed", rep.Healed))
	return rep, retry, nil
}

// billFetcher is what both adapters offer for their trade bill.
type billFetcher interface {
	FetchBill(ctx context.Context, date string) (bill.Reader, error)
}

// errNoChannel means the route does not offer the channel.
var errNoChannel = errors.New("channel not configured")

// reconcileJob is the reconciliation of channel's bill of date, as seen
// at now.
func (p *PayProxy) reconcileJob(channel, date string, now time.Time) (reconcile.Job, error) {
	f, ok := p.providers[channel].(billFetcher)
	if !ok {
		return reconcile.Job{}, errNoChannel
	}
	start, end, err := reconcile.Day(date, p.reconcileLocation())
	if err != nil {
		return reconcile.Job{}, err
	}
	return reconcile.Job{
		Channel: channel, Date: date, Start: start, End: end,
		Fetch: func(ctx context.Context) (bill.Reader, error) {
			ctx, cancel := context.WithTimeout(ctx, billTimeout)
			defer cancel() // the bill is on disk once FetchBill returns
			r, err := f.FetchBill(ctx, date)
			if err != nil && !errors.Is(err, bill.ErrNotReady) {
				err = fmt.Errorf("%s bill of %s: %w", channel, date, err)
			}
			return r, err
		},
		NoBillIsEmpty: reconcile.NoBillIsEmpty(start, now),
		Ledger:        reconcileLedger{p: p, channel: channel},
	}, nil
}
