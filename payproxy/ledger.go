package payproxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/tollgate/tollgate/payproxy/provider"
	"github.com/tollgate/tollgate/payproxy/reconcile"
)

// reconcileLedger is the trade ledger of one channel as reconciliation
// reads and heals it (reconcile.Ledger). Reads are batched pipelines;
// healing goes through the same signed queries and scripts as the poller
// and the notifications, so a healed payment or refund is recorded once,
// with its events, whoever gets there first.
type reconcileLedger struct {
	p       *PayProxy
	channel string
}

// Records looks up a batch of payments and refunds in two round trips: the
// trade and refund indexes first, then the records of the orders they name
// (a third for the few trades that are not their order's current one).
func (l reconcileLedger) Records(ctx context.Context, refs []reconcile.Ref) ([]reconcile.Record, error) {
	orders, err := l.orders(ctx, refs)
	if err != nil {
		return nil, err
	}
	cur := make([]*redis.Cmd, len(refs))
	refunds := make([]*redis.StringCmd, len(refs))
	// An order's trade and its live marker (markerLua) are read by one
	// script, so that a script expanding the marker in between cannot
	// hide the payment; a pipeline (a Cluster client splits it by slot),
	// not a MULTI, which a Cluster refuses over a batch's many slots.
	cmds, err := l.p.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, r := range refs {
			switch {
			case orders[i] == "":
			case r.Refund:
				refunds[i] = p.HGet(ctx, refundsKey(orders[i]), r.RefundNo)
			default:
				cur[i] = tradeOrLiveScript.Eval(ctx, p, []string{tradeKey(orders[i]), archivedKey(orders[i])})
			}
		}
		return nil
	})
	if err := pipeErr(cmds, err); err != nil {
		return nil, fmt.Errorf("reading trade records: %w", err)
	}
	out := make([]reconcile.Record, len(refs))
	var retired []int
	for i, r := range refs {
		out[i] = reconcile.Record{Ref: r, OrderNo: orders[i]}
		switch {
		case orders[i] == "":
		case r.Refund:
			readRefund(&out[i], refunds[i])
		case !readTrade(&out[i], cur[i]):
			retired = append(retired, i)
		}
	}
	return out, l.readRetired(ctx, out, retired)
}

// readRetired fills the records at idx from their orders' retired trades.
func (l reconcileLedger) readRetired(ctx context.Context, out []reconcile.Record, idx []int) error {
	if len(idx) == 0 {
		return nil
	}
	cmds := make([]*redis.StringCmd, len(idx))
	all, err := l.p.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for k, i := range idx {
			cmds[k] = p.HGet(ctx, tradesKey(out[i].OrderNo), out[i].TradeNo)
		}
		return nil
	})
	if err := pipeErr(all, err); err != nil {
		return fmt.Errorf("reading retired trades: %w", err)
	}
	for k, i := range idx {
		var a retiredTrade
		if raw := cmds[k].Val(); raw != "" && json.Unmarshal([]byte(raw), &a) == nil {
			out[i].Found, out[i].State, out[i].Channel, out[i].AmountFen = true, a.State, a.Channel, a.AmountFen
		}
	}
	return nil
}

// orders resolves each ref's order through the trade or refund index.
func (l reconcileLedger) orders(ctx context.Context, refs []reconcile.Ref) ([]string, error) {
	var trades []string
	refunds := make([]*redis.StringCmd, len(refs))
	cmds, err := l.p.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, r := range refs {
			if r.Refund {
				refunds[i] = p.Get(ctx, refundIndexKey(r.RefundNo))
			} else {
				trades = append(trades, r.TradeNo)
			}
		}
		return nil
	})
	if err := pipeErr(cmds, err); err != nil {
		return nil, fmt.Errorf("reading refund indexes: %w", err)
	}
	ofTrades, err := ordersOfTrades(ctx, l.p.rdb, trades)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(refs))
	for i, r := range refs {
		if r.Refund {
			out[i] = refunds[i].Val()
		} else {
			out[i], ofTrades = ofTrades[0], ofTrades[1:]
		}
	}
	return out, nil
}

// readTrade fills rec from the order's current trade (tradeOrLiveScript's
// answer: its fields, or its live marker), if it is rec's.
func readTrade(rec *reconcile.Record, cur *redis.Cmd) bool {
	v, err := cur.StringSlice()
	if err != nil || len(v) != 5 {
		return false
	}
	if v[0] == "" {
		t, err := liveRecord(rec.OrderNo, v[4])
		if err != nil || t.TradeNo != rec.TradeNo {
			return false
		}
		rec.Found, rec.State, rec.Channel, rec.AmountFen = true, t.State, t.Channel, t.AmountFen
		return true
	}
	if v[0] != rec.TradeNo {
		return false
	}
	rec.Found, rec.State, rec.Channel = true, v[1], v[3]
	rec.AmountFen, _ = strconv.ParseInt(v[2], 10, 64)
	return true
}

func readRefund(rec *reconcile.Record, cmd *redis.StringCmd) {
	var r refundRecord
	if raw := cmd.Val(); raw != "" && json.Unmarshal([]byte(raw), &r) == nil {
		rec.Found, rec.State, rec.AmountFen, rec.TradeNo = true, r.State, r.AmountFen, r.TradeNo
	}
}

// Heal implements reconcile.Ledger.
func (l reconcileLedger) Heal(ctx context.Context, d reconcile.Difference) (bool, error) {
	if d.RefundNo != "" {
		return l.healRefund(ctx, d)
	}
	return l.healPayment(ctx, d)
}

// healPayment records a payment the provider's signed query shows, for
// the bill's amount and the trade's: as the order's payment or as a
// duplicate one (refunded per duplicate_refund), with its events. A trade
// whose index names an order that holds no record of it is kept first
// (the instance that created it died before storing it).
func (l reconcileLedger) healPayment(ctx context.Context, d reconcile.Difference) (bool, error) {
	order, err := l.p.store.orderOfTrade(ctx, d.TradeNo)
	if errors.Is(err, errNoRecord) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	q, err := l.p.queryTrade(ctx, &tradeRecord{TradeNo: d.TradeNo, Channel: l.channel})
	if err != nil {
		return false, indefinite(err)
	}
	if q.Status != provider.TradePaid || q.AmountFen != d.ProviderFen {
		l.p.logger.Warn("reconciliation: the provider's query does not confirm the bill's payment; not healed",
			zap.String("trade_no", d.TradeNo), zap.String("status", string(q.Status)),
			zap.Int64("queried_fen", q.AmountFen), zap.Int64("bill_fen", d.ProviderFen))
		return false, nil
	}
	t, err := l.p.store.tradeOf(ctx, order, d.TradeNo)
	if errors.Is(err, errNoRecord) {
		if err := l.p.store.adopt(ctx, order, d.TradeNo, l.channel, q.AmountFen, time.Now()); err != nil {
			return false, err
		}
		t, err = l.p.store.tradeOf(ctx, order, d.TradeNo)
	}
	if err != nil || t.Channel != l.channel {
		return false, err
	}
	var sf *storeFailure
	if err := l.p.apply(ctx, t, q.Status, q.AmountFen, q.ProviderTradeID, "reconcile"); errors.As(err, &sf) {
		return false, err
	}
	t, err = l.p.store.tradeOf(ctx, order, d.TradeNo)
	return err == nil && t.State == StatePaid, err
}

// healRefund settles a refund the provider's signed refund query shows
// done, for its reserved amount (refund.succeeded). A refund unknown here
// is never created from a bill.
func (l reconcileLedger) healRefund(ctx context.Context, d reconcile.Difference) (bool, error) {
	t, r, err := l.refundOf(ctx, d.RefundNo)
	if err != nil || t == nil {
		return false, err
	}
	err = l.p.syncRefund(ctx, t, r)
	var sf *storeFailure
	if errors.As(err, &sf) {
		return false, err
	}
	if err != nil && !errors.Is(err, errAmountMismatch) {
		return false, indefinite(err)
	}
	cur, err := l.p.store.refund(ctx, t.OrderNo, d.RefundNo)
	return err == nil && cur.State == RefundSuccess, err
}

// refundOf loads a refund and the trade it refunds; nil without error
// when tollgate has no such refund of this channel.
func (l reconcileLedger) refundOf(ctx context.Context, refundNo string) (*tradeRecord, *refundRecord, error) {
	order, err := l.p.rdb.Get(ctx, refundIndexKey(refundNo)).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	r, err := l.p.store.refund(ctx, order, refundNo)
	if errors.Is(err, errNoRecord) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	var t *tradeRecord
	if r.TradeNo != "" {
		t, err = l.p.store.tradeOf(ctx, order, r.TradeNo)
	} else {
		t, err = l.p.store.load(ctx, order)
	}
	if errors.Is(err, errNoRecord) || (err == nil && t.Channel != l.channel) {
		return nil, nil, nil
	}
	return t, r, err
}

// Confirmed implements reconcile.Ledger: the provider's signed query says
// the payment is paid, or the refund done, for the recorded amount.
func (l reconcileLedger) Confirmed(ctx context.Context, rec reconcile.Record) (bool, error) {
	if !rec.Refund {
		q, err := l.p.queryTrade(ctx, &tradeRecord{TradeNo: rec.TradeNo, Channel: l.channel})
		if err != nil {
			return false, indefinite(err)
		}
		return q.Status == provider.TradePaid && q.AmountFen == rec.AmountFen, nil
	}
	t, _, err := l.refundOf(ctx, rec.RefundNo)
	if err != nil || t == nil {
		return false, err
	}
	prov := l.p.providers[l.channel]
	var res provider.RefundResult
	err = l.p.call(ctx, l.channel, "refund_query", func(ctx context.Context) error {
		var err error
		res, err = prov.QueryRefund(ctx, t.TradeNo, rec.RefundNo)
		return err
	})
	if err != nil {
		return false, indefinite(err)
	}
	return res.Status == provider.RefundSucceeded && res.AmountFen == rec.AmountFen, nil
}

// indefinite keeps an error that leaves the provider's answer unknown; a
// signed refusal is an answer (nothing confirmed), not an error.
func indefinite(err error) error {
	if provider.IsDefinite(err) {
		return nil
	}
	return err
}

// discrepancyData is the data of a reconcile.discrepancy event.
type discrepancyData struct {
	Channel     string `json:"channel"`
	Date        string `json:"date"`
	Kind        string `json:"kind"`
	OrderNo     string `json:"order_no"`
	TradeNo     string `json:"trade_no"`
	RefundNo    string `json:"refund_no,omitempty"`
	ProviderFen int64  `json:"provider_fen"`
	LocalFen    int64  `json:"local_fen"`
}

// discrepancySentTTL is how long a sent discrepancy is remembered: the
// reports' horizon, so re-checks and runs on demand never send it again.
const discrepancySentTTL = 90 * 24 * 3600

// discrepancyScript queues a reconcile.discrepancy event once per
// difference: its id is derived from the difference, and a marker (kept as
// long as the reports) stops every later run from queueing it again.
//
// KEYS: events, queue, tombstone, marker. ARGV: id, json, now_ms, marker_ttl_s.
var discrepancyScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[4]) == 1 or redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
redis.call('SET', KEYS[4], '1', 'EX', ARGV[4])
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1]) end
return 1
`)

// Publish implements reconcile.Ledger. Without a webhook there are no
// events.
func (l reconcileLedger) Publish(ctx context.Context, date string, d reconcile.Difference) error {
	if l.p.Webhook == nil {
		return nil
	}
	subject := l.channel + "_" + date + "_" + d.Kind + "_" + d.TradeNo
	if d.RefundNo != "" {
		subject += "_" + d.RefundNo
	}
	const typ = "reconcile.discrepancy"
	id := "evt_" + subject + "_" + typ
	body, err := json.Marshal(struct {
		ID        string          `json:"id"`
		Type      string          `json:"type"`
		CreatedAt string          `json:"created_at"`
		Data      discrepancyData `json:"data"`
	}{id, typ, time.Now().UTC().Format(time.RFC3339), discrepancyData{
		Channel: l.channel, Date: date, Kind: d.Kind, OrderNo: d.OrderNo, TradeNo: d.TradeNo, RefundNo: d.RefundNo,
		ProviderFen: d.ProviderFen, LocalFen: d.LocalFen,
	}})
	if err != nil {
		return err
	}
	err = discrepancyScript.Run(ctx, l.p.rdb, []string{eventsKey, queueKey, tombstoneKey(id), keyPrefix + "{wh}:rcsent:" + id},
		id, body, time.Now().UnixMilli(), discrepancySentTTL).Err()
	if err != nil {
		return fmt.Errorf("queueing event %s: %w", id, err)
	}
	l.p.wakeSender()
	return nil
}

// indexForReconcile adds a payment recorded PAID, or a refund recorded
// SUCCESS, to the channel's per-day index. It is a command of its own (the
// index is on another Cluster slot than the order); if it fails, the
// record is still compared with every bill line that names it, and only
// the check for its absence from the bill is lost.
func (p *PayProxy) indexForReconcile(ctx context.Context, channel string, ref reconcile.Ref) {
	_, err := p.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		reconcile.Index(ctx, pipe, channel, ref, time.Now())
		return nil
	})
	if err != nil {
		p.logger.Warn("indexing a payment or refund for reconciliation failed",
			zap.String("trade_no", ref.TradeNo), zap.String("refund_no", ref.RefundNo), zap.Error(err))
	}
}

var _ reconcile.Ledger = reconcileLedger{}
