package payproxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/redisclient"
)

// Redis key layout (all under keyPrefix; {…} are Cluster hash tags):
//
//	tollgate:pay:{o:<order_no>}:trade    hash   the order's current trade
//	tollgate:pay:{o:<order_no>}:refunds  hash   refund_no → refund JSON
//	tollgate:pay:{o:<order_no>}:outbox   hash   event id → event JSON not yet queued
//	tollgate:pay:{o:<order_no>}:lock     string redsync lock
//	tollgate:pay:{t:<trade_no>}          string trade_no → order_no (notifications)
//	tollgate:pay:{r:<refund_no>}         string refund_no → order_no
//	tollgate:pay:{due}                   zset   order_no → next poll (ms); orders with work left
//	tollgate:pay:{wh}:queue              zset   event id → next delivery attempt (ms)
//	tollgate:pay:{wh}:events             hash   event id → event JSON
//	tollgate:pay:{wh}:attempts           hash   event id → failed attempts
//	tollgate:pay:{wh}:dead               list   dead letters (JSON)
//	tollgate:pay:{wh}:done:<event id>    string tombstone of a delivered/dead event (7 days)
const keyPrefix = "tollgate:pay:"

func tradeKey(order string) string   { return keyPrefix + "{o:" + order + "}:trade" }
func refundsKey(order string) string { return keyPrefix + "{o:" + order + "}:refunds" }
func outboxKey(order string) string  { return keyPrefix + "{o:" + order + "}:outbox" }
func lockKey(order string) string    { return keyPrefix + "{o:" + order + "}:lock" }
func tradeIndexKey(tn string) string { return keyPrefix + "{t:" + tn + "}" }
func refundIndexKey(r string) string { return keyPrefix + "{r:" + r + "}" }
func tombstoneKey(id string) string  { return keyPrefix + "{wh}:done:" + id }

// tombstoneTTL is how long a delivered event id is remembered (in seconds).
const tombstoneTTL = 7 * 24 * 3600

const (
	dueKey      = keyPrefix + "{due}"
	queueKey    = keyPrefix + "{wh}:queue"
	eventsKey   = keyPrefix + "{wh}:events"
	attemptsKey = keyPrefix + "{wh}:attempts"
	deadKey     = keyPrefix + "{wh}:dead"
)

// Trade states.
const (
	StatePaying  = "PAYING"
	StatePaid    = "PAID"
	StateClosed  = "CLOSED"
	StateUnknown = "UNKNOWN"
)

// Refund states.
const (
	RefundProcessing = "PROCESSING"
	RefundSuccess    = "SUCCESS"
	RefundFailed     = "FAILED"
)

// tradeRecord is the order's current trade as stored in Redis.
type tradeRecord struct {
	OrderNo         string
	TradeNo         string
	Channel         string
	AmountFen       int64
	Subject         string
	State           string
	QRCode          string
	CreatedAt       time.Time
	ExpiresAt       time.Time
	RefundedFen     int64
	ProviderTradeID string
}

// live reports whether the trade may still be paid through its QR code.
func (t *tradeRecord) live(now time.Time) bool {
	return (t.State == StatePaying || t.State == StateUnknown) && now.Before(t.ExpiresAt)
}

// refundRecord is one refund as stored (JSON written by the Lua scripts).
type refundRecord struct {
	RefundNo  string `json:"refund_no"`
	AmountFen int64  `json:"amount_fen"`
	State     string `json:"state"`
	Reason    string `json:"reason"`
	CreatedAt int64  `json:"created_at"`
}

// tradeStore reads and changes trade records; every change is a script.
type tradeStore struct {
	rdb redis.UniversalClient
	// durability, when the redis URL asks for replicas (wait_replicas),
	// makes every change of a trade or refund wait until that many
	// replicas have it, so a failover cannot lose a trade number that was
	// handed to the provider or a refund that was reserved.
	durability redisclient.Durability
}

// errNoRecord means the order has no trade.
var errNoRecord = errors.New("no such trade")

func (s *tradeStore) load(ctx context.Context, order string) (*tradeRecord, error) {
	m, err := s.rdb.HGetAll(ctx, tradeKey(order)).Result()
	if err != nil {
		return nil, fmt.Errorf("loading trade of order %s: %w", order, err)
	}
	if len(m) == 0 || m["trade_no"] == "" {
		return nil, errNoRecord
	}
	num := func(k string) int64 { n, _ := strconv.ParseInt(m[k], 10, 64); return n }
	return &tradeRecord{
		OrderNo: m["order_no"], TradeNo: m["trade_no"], Channel: m["channel"], AmountFen: num("amount_fen"),
		Subject: m["subject"], State: m["state"], QRCode: m["qr_code"],
		CreatedAt: time.UnixMilli(num("created_at")), ExpiresAt: time.UnixMilli(num("expires_at")),
		RefundedFen: num("refunded_fen"), ProviderTradeID: m["provider_trade_id"],
	}, nil
}

// orderOfTrade finds the order a provider's out_trade_no belongs to.
func (s *tradeStore) orderOfTrade(ctx context.Context, tradeNo string) (string, error) {
	o, err := s.rdb.Get(ctx, tradeIndexKey(tradeNo)).Result()
	if errors.Is(err, redis.Nil) {
		return "", errNoRecord
	}
	return o, err
}

// allocate stores a new trade (state UNKNOWN) before the provider is
// called, so that a retry after a lost answer reuses its number, and puts
// the order into the due set. One round trip: the commands of a pipeline
// run in order, so the index exists before the trade (an orphan index is
// harmless; a trade without one would make its notifications unknown).
func (s *tradeStore) allocate(ctx context.Context, t *tradeRecord, expectTradeNo string, pollAt time.Time) (bool, error) {
	var alloc *redis.Cmd
	err := s.durability.Pipelined(ctx, s.rdb, func(pipe redis.Pipeliner) {
		pipe.Set(ctx, tradeIndexKey(t.TradeNo), t.OrderNo, 0)
		alloc = allocScript.Eval(ctx, pipe, []string{tradeKey(t.OrderNo)},
			t.OrderNo, t.TradeNo, t.Channel, t.AmountFen, t.Subject,
			t.CreatedAt.UnixMilli(), t.ExpiresAt.UnixMilli(), expectTradeNo)
		pipe.ZAdd(ctx, dueKey, redis.Z{Score: float64(pollAt.UnixMilli()), Member: t.OrderNo})
	})
	if err != nil {
		return false, fmt.Errorf("allocating trade for order %s: %w", t.OrderNo, err)
	}
	n, err := alloc.Int()
	if err != nil {
		return false, fmt.Errorf("allocating trade for order %s: %w", t.OrderNo, err)
	}
	return n == 1, nil
}

func (s *tradeStore) issued(ctx context.Context, order, tradeNo, qr string) (string, error) {
	st, err := s.durability.Run(ctx, s.rdb, issuedScript, []string{tradeKey(order)}, tradeNo, qr).Text()
	if err != nil {
		return "", fmt.Errorf("recording QR code of trade %s: %w", tradeNo, err)
	}
	return st, nil
}

// confirm makes sure, when durability asks for replicas, that what was
// just read of the order has reached them before it is answered: the
// record may come from a write that failed its own confirmation (the
// client got a 503 and retried). It writes one field of the record and
// WAITs: replication is one ordered stream, so the replicas that have
// this write have every earlier one. Without durability it does nothing.
func (s *tradeStore) confirm(ctx context.Context, order string) error {
	if s.durability.Replicas == 0 {
		return nil
	}
	err := s.durability.Pipelined(ctx, s.rdb, func(p redis.Pipeliner) {
		p.HSet(ctx, tradeKey(order), "confirmed_at", time.Now().UnixMilli())
	})
	if err != nil {
		return fmt.Errorf("confirming the trade of order %s: %w", order, err)
	}
	return nil
}

// transition moves a trade to PAID or CLOSED and puts its event into the
// outbox, once. It reports whether this call made the change.
func (s *tradeStore) transition(ctx context.Context, t *tradeRecord, to, providerTradeID string, now time.Time) (bool, *event, error) {
	typ := "trade.paid"
	if to == StateClosed {
		typ = "trade.closed"
	}
	ev := newEvent(typ, t.TradeNo, now, eventData{
		OrderNo: t.OrderNo, TradeNo: t.TradeNo, Channel: t.Channel, AmountFen: t.AmountFen, State: to,
	})
	res, err := s.durability.Run(ctx, s.rdb, transitionScript, []string{tradeKey(t.OrderNo), outboxKey(t.OrderNo)},
		t.TradeNo, to, now.UnixMilli(), ev.ID, ev.Body, providerTradeID).Text()
	if err != nil {
		return false, nil, fmt.Errorf("moving trade %s to %s: %w", t.TradeNo, to, err)
	}
	if res != "changed" {
		return false, nil, nil
	}
	return true, ev, nil
}

// reserveRefund runs refundReserveScript.
func (s *tradeStore) reserveRefund(ctx context.Context, order, refundNo string, amount int64, reason string, now time.Time) (string, *refundRecord, error) {
	vals, err := s.durability.Run(ctx, s.rdb, refundReserveScript, []string{tradeKey(order), refundsKey(order)},
		refundNo, amount, reason, now.UnixMilli()).StringSlice()
	if err != nil || len(vals) != 2 {
		return "", nil, fmt.Errorf("reserving refund %s: %w", refundNo, err)
	}
	var rec *refundRecord
	if vals[1] != "" {
		rec = &refundRecord{}
		if err := json.Unmarshal([]byte(vals[1]), rec); err != nil {
			return "", nil, fmt.Errorf("decoding refund %s: %w", refundNo, err)
		}
	}
	return vals[0], rec, nil
}

// settleRefund ends a PROCESSING refund once.
func (s *tradeStore) settleRefund(ctx context.Context, t *tradeRecord, r *refundRecord, to string, now time.Time) (bool, *event, error) {
	typ := "refund.succeeded"
	if to == RefundFailed {
		typ = "refund.failed"
	}
	ev := newEvent(typ, t.TradeNo+"_"+r.RefundNo, now, eventData{
		OrderNo: t.OrderNo, TradeNo: t.TradeNo, Channel: t.Channel, AmountFen: r.AmountFen, State: to, RefundNo: r.RefundNo,
	})
	res, err := s.durability.Run(ctx, s.rdb, refundSettleScript,
		[]string{tradeKey(t.OrderNo), refundsKey(t.OrderNo), outboxKey(t.OrderNo)},
		r.RefundNo, to, now.UnixMilli(), ev.ID, ev.Body).Text()
	if err != nil {
		return false, nil, fmt.Errorf("settling refund %s: %w", r.RefundNo, err)
	}
	return res == "changed", ev, nil
}

func (s *tradeStore) refund(ctx context.Context, order, refundNo string) (*refundRecord, error) {
	raw, err := s.rdb.HGet(ctx, refundsKey(order), refundNo).Result()
	if errors.Is(err, redis.Nil) {
		return nil, errNoRecord
	}
	if err != nil {
		return nil, fmt.Errorf("loading refund %s: %w", refundNo, err)
	}
	r := &refundRecord{}
	if err := json.Unmarshal([]byte(raw), r); err != nil {
		return nil, fmt.Errorf("decoding refund %s: %w", refundNo, err)
	}
	return r, nil
}

func (s *tradeStore) refunds(ctx context.Context, order string) ([]*refundRecord, error) {
	m, err := s.rdb.HGetAll(ctx, refundsKey(order)).Result()
	if err != nil {
		return nil, fmt.Errorf("loading refunds of order %s: %w", order, err)
	}
	out := make([]*refundRecord, 0, len(m))
	for _, raw := range m {
		r := &refundRecord{}
		if json.Unmarshal([]byte(raw), r) == nil {
			out = append(out, r)
		}
	}
	return out, nil
}

// schedule (re)adds an order to the due set at when.
func (s *tradeStore) schedule(ctx context.Context, order string, when time.Time) error {
	if err := s.rdb.ZAdd(ctx, dueKey, redis.Z{Score: float64(when.UnixMilli()), Member: order}).Err(); err != nil {
		return fmt.Errorf("scheduling order %s: %w", order, err)
	}
	return nil
}
