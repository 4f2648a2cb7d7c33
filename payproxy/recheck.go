package payproxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/tollgate/tollgate/payproxy/provider"
)

// When the poller looks at something again. An unpaid trade is queried
// every poll_interval; one whose check failed (no answer, an unsigned or
// system error, a 429) waits poll_interval·2^n after n failures in a row,
// up to tradeBackoffCap·poll_interval, or longer if the provider's
// Retry-After asks (up to the same bound). A processing refund is checked
// on the refund_checks schedule, counted from when it was sent; every
// check moves one step on, failed or not, so a refund the provider keeps
// answering PROCESSING, or keeps failing to answer, is asked less and
// less often. What the poller keeps for this is in the order's :checks
// hash, shared by every instance.

// defaultRefundChecks: Alipay advises querying a refund at least 10 s
// after it ("建议商户在退款发起后间隔10秒以上再发起退款查询请求"), WeChat at 1 min
// and then less often ("建议查询退款状态在提交退款申请后1分钟发起"; its support
// pages give 1, 5, 10, 20, 30 min).
var defaultRefundChecks = []time.Duration{
	10 * time.Second, time.Minute, 5 * time.Minute, 10 * time.Minute, 20 * time.Minute, 30 * time.Minute,
}

// tradeBackoffCap bounds a failing trade's re-check delay, in poll
// intervals (2m40s with the default 5s).
const tradeBackoffCap = 32

// defaultAlipayRefundGap: "同一笔交易的退款至少间隔3s后发起" (Alipay's refund API).
const defaultAlipayRefundGap = 3 * time.Second

// checkState is one entry of the :checks hash: a refund's sends and checks
// (field r:<refund_no>) or a trade's failed checks in a row (t:<trade_no>),
// with when the entry last moved (At) and when it is due again (Next),
// both Unix ms.
type checkState struct {
	Sends  int   `json:"sends,omitempty"`
	Checks int   `json:"checks,omitempty"`
	Fails  int   `json:"fails,omitempty"`
	At     int64 `json:"at"`
	Next   int64 `json:"next"`
}

// due reports whether the entry's time has come.
func (c checkState) due(now time.Time) bool { return c.Next <= now.UnixMilli() }

func (c checkState) next() time.Time { return time.UnixMilli(c.Next) }

// How an entry moves (checkScript's modes).
const (
	markSent    = "sent"    // a refund sent: next check after the current step
	markChecked = "checked" // a refund checked: one step on
	markFailed  = "failed"  // a trade's check failed: one more failure
	markWait    = "wait"    // a refund waits for its trade's refund gap
	markSoon    = "soon"    // a refund to check within the first step
)

func refundField(refundNo string) string { return "r:" + refundNo }
func tradeField(tradeNo string) string   { return "t:" + tradeNo }

// orderChecks is an order's :checks hash, decoded.
type orderChecks map[string]checkState

func (c orderChecks) of(field string) (checkState, bool) {
	s, ok := c[field]
	return s, ok
}

// checks reads the order's :checks hash.
func (s *tradeStore) checks(ctx context.Context, order string) (orderChecks, error) {
	m, err := s.rdb.HGetAll(ctx, checksKey(order)).Result()
	if err != nil {
		return nil, fmt.Errorf("loading checks of order %s: %w", order, err)
	}
	out := make(orderChecks, len(m))
	for k, raw := range m {
		var c checkState
		if json.Unmarshal([]byte(raw), &c) == nil {
			out[k] = c
		}
	}
	return out, nil
}

// mark moves one entry (checkScript) and returns when it is due again:
// now plus the step the mode picks from delays, or floor if that is later.
func (s *tradeStore) mark(ctx context.Context, order, field, mode string, floor time.Duration, delays []time.Duration) (time.Time, error) {
	now := time.Now()
	args := []any{field, mode, now.UnixMilli(), floor.Milliseconds()}
	for _, d := range delays {
		args = append(args, d.Milliseconds())
	}
	next, err := checkScript.Run(ctx, s.rdb, []string{checksKey(order)}, args...).Int64()
	if err != nil {
		return now, fmt.Errorf("recording check %s of order %s: %w", field, order, err)
	}
	return time.UnixMilli(next), nil
}

// forget removes entries that are no longer needed.
func (s *tradeStore) forget(ctx context.Context, order string, fields ...string) {
	if len(fields) > 0 {
		_ = s.rdb.HDel(ctx, checksKey(order), fields...).Err()
	}
}

// takeRefundSlot claims the right to send a refund of tradeNo now, for
// hold (the call's longest duration plus the gap); a claim someone else
// holds returns how long it still lasts.
func (s *tradeStore) takeRefundSlot(ctx context.Context, order, tradeNo string, hold time.Duration) (time.Duration, error) {
	key := refundGapKey(order, tradeNo)
	ok, err := s.rdb.SetNX(ctx, key, "1", hold).Result()
	if err != nil {
		return 0, fmt.Errorf("taking the refund slot of trade %s: %w", tradeNo, err)
	}
	if ok {
		return 0, nil
	}
	left, err := s.rdb.PTTL(ctx, key).Result()
	if err != nil {
		return 0, fmt.Errorf("reading the refund slot of trade %s: %w", tradeNo, err)
	}
	return max(left, time.Millisecond), nil
}

// holdRefundSlot keeps the slot for gap from now: the next refund of the
// trade reaches the provider at least gap after this one was answered
// (and so after the provider took it, however long the call was).
func (s *tradeStore) holdRefundSlot(ctx context.Context, order, tradeNo string, gap time.Duration) {
	_ = s.rdb.Set(context.WithoutCancel(ctx), refundGapKey(order, tradeNo), "1", gap).Err()
}

// refundDelays is the refund_checks schedule.
func (p *PayProxy) refundDelays() []time.Duration {
	out := make([]time.Duration, len(p.RefundChecks))
	for i, d := range p.RefundChecks {
		out[i] = time.Duration(d)
	}
	return out
}

// tradeDelays is a failing trade's backoff: poll_interval·2, ·4, … up to
// tradeBackoffCap·poll_interval.
func (p *PayProxy) tradeDelays() []time.Duration {
	base := time.Duration(p.PollInterval)
	var out []time.Duration
	for d := 2 * base; ; d *= 2 {
		if d >= tradeBackoffCap*base {
			return append(out, tradeBackoffCap*base)
		}
		out = append(out, d)
	}
}

// retryFloor is the wait a failed call's answer asked for (provider.Busy's
// Retry-After), at most limit: an answer no provider signed must not stop
// the checks for long.
func retryFloor(err error, limit time.Duration) time.Duration {
	wait, _ := provider.IsBusy(err)
	return min(wait, limit)
}

// tradeFailed records a failed check of trade t and returns when to try
// again.
func (p *PayProxy) tradeFailed(ctx context.Context, t *tradeRecord, err error) time.Time {
	delays := p.tradeDelays()
	next, merr := p.store.mark(ctx, t.OrderNo, tradeField(t.TradeNo), markFailed, retryFloor(err, delays[len(delays)-1]), delays)
	if merr != nil {
		return p.soon()
	}
	return next
}

// refundMarked moves a refund's entry and returns when it is due again.
func (p *PayProxy) refundMarked(ctx context.Context, order, refundNo, mode string, floor time.Duration) time.Time {
	delays := p.refundDelays()
	next, err := p.store.mark(ctx, order, refundField(refundNo), mode, floor, delays)
	if err != nil {
		p.logger.Debug("recording a refund check failed", zap.String("refund_no", refundNo), zap.Error(err))
		return p.soon()
	}
	return next
}

// refundGap is the shortest time between two refunds of one trade the
// channel takes (Alipay's 3 s rule); 0 for none.
func (p *PayProxy) refundGap(channel string) time.Duration {
	if channel == "alipay" && p.Alipay != nil {
		return time.Duration(p.Alipay.RefundGap)
	}
	return 0
}

// scheduleAt makes the poller visit the order by when.
func (p *PayProxy) scheduleAt(ctx context.Context, order string, when time.Time) {
	if err := p.store.schedule(ctx, order, when); err != nil {
		p.logger.Warn("scheduling order failed; its next poll finds the work", zap.String("order_no", order), zap.Error(err))
	}
}

// soon is the next poll: poll_interval from now.
func (p *PayProxy) soon() time.Time { return time.Now().Add(time.Duration(p.PollInterval)) }

// dueTime is the earliest of several times (zero: none yet).
type dueTime struct{ t time.Time }

func (d *dueTime) at(t time.Time) {
	if !t.IsZero() && (d.t.IsZero() || t.Before(d.t)) {
		d.t = t
	}
}

// errRefundQueued: the refund was not sent because another refund of its
// trade was sent less than the provider's gap ago; the poller sends it.
var errRefundQueued = errors.New("refund queued behind another refund of the trade")
