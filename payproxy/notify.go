package payproxy

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/tollgate/tollgate/payproxy/provider"
)

// stored makes sure that what a notification changed is durable before
// the provider is told so (with wait_replicas, WAIT on a write of the
// order's record: also a retry that finds the change made but not yet
// confirmed), and queues the order's events still in its outbox.
func (p *PayProxy) stored(ctx context.Context, order string) error {
	if err := p.store.confirm(ctx, order); err != nil {
		return &storeFailure{err}
	}
	if _, err := p.flushOutbox(ctx, order); err != nil {
		p.logger.Warn("queueing the order's events failed; the poller will retry", zap.String("order_no", order), zap.Error(err))
		p.scheduleNow(ctx, order)
	}
	return nil
}

// errArchivedTrade: the notification is about an archived order and
// changes nothing (archivedNotification); it is acknowledged.
var errArchivedTrade = errors.New("archived order")

func (p *PayProxy) handleNotification(ctx context.Context, channel string, n *provider.Notification) (string, error) {
	order, err := p.store.orderOfTrade(ctx, n.TradeNo)
	if errors.Is(err, errNoRecord) && p.archivedLongAgo(n.TradeNo, time.Now()) {
		// Its order was archived and its marker has expired since: a
		// late notification (Alipay's TRADE_FINISHED months on) of a
		// trade the provider no longer lets anyone pay.
		p.logger.Info("notification of a trade archived long ago; nothing to change",
			zap.String("channel", channel), zap.String("trade_no", n.TradeNo), zap.Int64("amount_fen", n.AmountFen))
		return "archived", nil
	}
	if errors.Is(err, errNoRecord) {
		p.logger.Error("notification for an unknown trade", zap.String("channel", channel), zap.String("trade_no", n.TradeNo))
		return "unknown_trade", &apiError{http.StatusNotFound, "not_found", "no such trade"}
	}
	if err != nil {
		return "error", err
	}
	t, err := p.tradeOfNotification(ctx, order, channel, n)
	if errors.Is(err, errArchivedTrade) {
		return "archived", nil
	}
	if err != nil {
		return "unknown_trade", err
	}
	if t.Channel != channel {
		return "unknown_trade", &apiError{http.StatusNotFound, "not_found", "no such trade"}
	}
	if n.Kind == provider.NotifyRefund {
		if err := p.refundNotification(ctx, t, n); err != nil {
			return "refund", err
		}
		return "refund", p.stored(ctx, order)
	}
	if n.AmountFen != t.AmountFen {
		p.logger.Error("notification amount differs from the trade's; not marking it paid",
			zap.String("trade_no", t.TradeNo), zap.Int64("stored_fen", t.AmountFen), zap.Int64("notified_fen", n.AmountFen))
		return "amount_mismatch", errAmountMismatch
	}
	if err := p.apply(ctx, t, n.Status, n.AmountFen, "", "notification"); err != nil {
		return "error", err
	}
	if err := p.stored(ctx, order); err != nil {
		return "error", err
	}
	return "applied", nil
}

// maxPayTimeout is the longest a trade can stay payable: Alipay's
// timeout_express goes up to 15 days; pay_timeout is held to it.
const maxPayTimeout = 15 * 24 * time.Hour

// notifyRetryWindow bounds how long after a trade stops being payable
// a provider still notifies about it for the first time: both retry a
// notification for about a day (Alipay 25 h, WeChat 24 h); two days is a
// margin. payableLife is how long a trade may have been payable: not
// today's pay_timeout (a reload may have shortened it since the trade
// was made), the longest any can be. Tests shorten both (export_test.go).
var notifyRetryWindow, payableLife atomic.Int64

func init() {
	notifyRetryWindow.Store(int64(48 * time.Hour))
	payableLife.Store(int64(maxPayTimeout))
}

// archivedLongAgo tells whether tn is a trade number payproxy made
// (newTradeNo) so long ago that, with no index and no marker left, its
// order must have been archived and nothing about it can be news: longer
// than retention, and than the longest payable life plus the providers'
// notification retries — so a short retention never makes a payment
// acknowledged unrecorded.
func (p *PayProxy) archivedLongAgo(tn string, now time.Time) bool {
	if len(tn) != len(newTradeNo(now)) || !strings.HasPrefix(tn, "TG") {
		return false
	}
	created, err := time.Parse("20060102150405", tn[2:16])
	age := max(time.Duration(p.Retention), time.Duration(payableLife.Load()+notifyRetryWindow.Load()))
	return err == nil && created.Add(age).Before(now)
}

// tradeOfNotification finds the trade a verified notification is about:
// the order's current trade or a retired one. A paid trade that the
// order's index names but no record holds (lost in a failover, or
// replaced by a version that did not keep retired trades) is taken from
// the notification, so that the payment is still recorded.
func (p *PayProxy) tradeOfNotification(ctx context.Context, order, channel string, n *provider.Notification) (*tradeRecord, error) {
	t, err := p.store.tradeOf(ctx, order, n.TradeNo)
	if errors.Is(err, errNoRecord) {
		known, aerr := p.archivedNotification(ctx, order, n)
		switch {
		case errors.Is(aerr, errNoRecord) && p.archivedLongAgo(n.TradeNo, time.Now()):
			// An index an archival left behind (its instance died before
			// expiring it), past the marker: as with no index at all.
			return nil, errArchivedTrade
		case aerr != nil && !errors.Is(aerr, errNoRecord):
			return nil, aerr
		case known:
			return nil, errArchivedTrade
		}
		t, err = p.store.tradeOf(ctx, order, n.TradeNo) // restored, if news
	}
	if !errors.Is(err, errNoRecord) || n.Kind != provider.NotifyTrade || n.Status != provider.TradePaid {
		if errors.Is(err, errNoRecord) {
			return nil, &apiError{http.StatusNotFound, "not_found", "no such trade"}
		}
		return t, err
	}
	p.logger.Error("payment of a trade with no record; keeping it from the notification",
		zap.String("order_no", order), zap.String("trade_no", n.TradeNo))
	if err := p.store.adopt(ctx, order, n.TradeNo, channel, n.AmountFen, time.Now()); err != nil {
		return nil, err
	}
	return p.store.tradeOf(ctx, order, n.TradeNo)
}

// refundNotification settles a refund from a WeChat refund notification,
// or, for Alipay (whose notification does not carry refund_status), asks
// the refund query, the only thing that confirms an Alipay refund.
func (p *PayProxy) refundNotification(ctx context.Context, t *tradeRecord, n *provider.Notification) error {
	r, err := p.store.refund(ctx, t.OrderNo, n.RefundNo)
	if errors.Is(err, errNoRecord) {
		p.logger.Warn("refund notification for an unknown refund", zap.String("refund_no", n.RefundNo))
		return nil
	}
	if err != nil {
		return err
	}
	switch {
	case r.State == RefundFailed:
		// Failed here, but the provider writes about it: its signed query
		// decides, and a success is honoured.
		return p.recheckRefund(ctx, t, r)
	case r.State != RefundProcessing && r.State != RefundAbnormal:
		return nil
	case n.RefundState == provider.RefundProcessing:
		// An Alipay refund's notification (Alipay notifies a refund once
		// it is done; or a WeChat one without a final status): the refund
		// query decides, at once, or if it cannot tell yet, within the
		// first step of refund_checks.
		if err := p.syncRefund(ctx, t, r); err != nil {
			p.logger.Warn("refund query after notification failed; the poller retries", zap.Error(err))
		}
		if r.State == RefundProcessing {
			p.scheduleAt(ctx, t.OrderNo, p.refundMarked(ctx, t.OrderNo, r.RefundNo, markSoon, 0))
		}
		return nil
	}
	return p.applyRefund(ctx, t, r, provider.RefundResult{Status: n.RefundState, AmountFen: n.RefundFen})
}
