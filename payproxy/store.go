package payproxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/redisclient"
)

// Redis key layout (all under keyPrefix; {…} are Cluster hash tags):
//
//	tollgate:pay:{o:<order_no>}:trade    hash   the order's current trade
//	tollgate:pay:{o:<order_no>}:trades   hash   trade_no → JSON of each retired trade
//	tollgate:pay:{o:<order_no>}:refunds  hash   refund_no → refund JSON
//	tollgate:pay:{o:<order_no>}:outbox   hash   event id → event JSON not yet queued
//	tollgate:pay:{o:<order_no>}:checks   hash   when the poller looks again (recheck.go)
//	tollgate:pay:{o:<order_no>}:gap:<trade_no> string  a refund of the trade was just sent (Alipay's 3 s rule)
//	tollgate:pay:{o:<order_no>}:lock     string redsync lock
//	tollgate:pay:{o:<order_no>}:archived string an archived order: state and paid trades (retention); or,
//	                                      live, a settled order kept as this string alone (markerLua)
//	tollgate:pay:{ti:<bucket>}           hash   trade_no → order_no of orders with records (notifications; tradeBuckets)
//	tollgate:pay:{t:<trade_no>}          string trade_no → order_no of an archived order (expires with its marker),
//	                                            or written by a release before the buckets (no expiry until archived)
//	tollgate:pay:{r:<refund_no>}         string refund_no → order_no
//	tollgate:pay:{due}                   zset   order_no → next poll (ms); orders with records, not parked
//	tollgate:pay:{due}:parked            zset   bucket_end_ms → bucket_end_ms: the parked buckets (park.go)
//	tollgate:pay:{due}:parked:<end_ms>   list   order_no of compacted orders waiting for archival, due by end_ms
//	tollgate:pay:{wh}:queue              zset   event id → next delivery attempt (ms)
//	tollgate:pay:{wh}:events             hash   event id → event JSON
//	tollgate:pay:{wh}:attempts           hash   event id → failed attempts
//	tollgate:pay:{wh}:dead               list   dead letters (JSON)
//	tollgate:pay:{wh}:done:<event id>    string tombstone of a delivered/dead event (a day, or retention)
const keyPrefix = "tollgate:pay:"

func tradeKey(order string) string    { return keyPrefix + "{o:" + order + "}:trade" }
func tradesKey(order string) string   { return keyPrefix + "{o:" + order + "}:trades" }
func refundsKey(order string) string  { return keyPrefix + "{o:" + order + "}:refunds" }
func outboxKey(order string) string   { return keyPrefix + "{o:" + order + "}:outbox" }
func lockKey(order string) string     { return keyPrefix + "{o:" + order + "}:lock" }
func checksKey(order string) string   { return keyPrefix + "{o:" + order + "}:checks" }
func archivedKey(order string) string { return keyPrefix + "{o:" + order + "}:archived" }
func refundGapKey(order, tradeNo string) string {
	return keyPrefix + "{o:" + order + "}:gap:" + tradeNo
}
func tradeIndexKey(tn string) string { return keyPrefix + "{t:" + tn + "}" }
func tradeBucketKey(tn string) string {
	return keyPrefix + fmt.Sprintf("{ti:%04x}", crc32.ChecksumIEEE([]byte(tn))%tradeBuckets)
}
func refundIndexKey(r string) string { return keyPrefix + "{r:" + r + "}" }
func tombstoneKey(id string) string  { return keyPrefix + "{wh}:done:" + id }

// tradeBuckets is how many hashes hold the live trade indexes. A key of
// its own costs a trade index ~130 bytes, mostly Redis's per-key
// overhead; a field of a small (listpack) hash ~50. 65 536 buckets (4 hex
// digits, spread over every Cluster slot) hold ~17 fields each at a
// million live orders and stay under hash-max-listpack-entries (512, the
// default) up to ~30 million, so a bucket stays listpack-encoded (compact,
// and an HGET scans at most a few hundred short entries) at any size a
// single deployment keeps inside its retention (a field stays under
// hash-max-listpack-value, 64 bytes: trade numbers have 28 characters,
// order numbers at most 64, api.go). Fewer buckets would pass
// 512 sooner (a hashtable-encoded hash saves little over keys); more
// would spread each bucket's own overhead over fewer fields.
const tradeBuckets = 1 << 16

// tombstoneTTL is how long a delivered event id is remembered (in
// seconds). A tombstone only stops a flush of the order's outbox that read
// the event before it was cleared from queueing it again: such a flush
// ends within a poll or two, so a day is ample; a retention shorter than
// that bounds it too (a tombstone must not outlive its order by much: it
// is a key per event), never under a minute.
func (p *PayProxy) tombstoneTTL() int64 {
	ttl := min(24*time.Hour, max(time.Minute, time.Duration(p.Retention)))
	return int64(ttl / time.Second)
}

// The dead-letter list's bounds: a dead letter is kept 30 days (ops have
// had the critical alert TollgateWebhookDeadLetters all along), and at
// most 10 000 are (a backend down for days must not fill Redis). What is
// dropped is counted (webhook_dead_letters_dropped_total) and logged.
const (
	deadLetterMaxAge = 30 * 24 * time.Hour
	deadLetterCap    = 10000
)

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
	// RefundAbnormal: the provider could not return the money and a
	// person must act; the amount stays reserved, nobody polls it.
	RefundAbnormal = "ABNORMAL"
)

// tradeRecord is one trade of an order: its current one, or (Retired) one
// it had before and keeps so that a late payment of it is recorded.
type tradeRecord struct {
	OrderNo   string
	TradeNo   string
	Channel   string
	AmountFen int64
	Subject   string
	State     string
	QRCode    string
	// QRIssuedAt: when the provider issued QRCode at the earliest (zero:
	// the first code, issued after CreatedAt; see qr.go).
	QRIssuedAt      time.Time
	CreatedAt       time.Time
	ExpiresAt       time.Time
	RefundedFen     int64
	ProviderTradeID string
	// Retired: no longer the order's trade (kept in its :trades hash).
	Retired bool
	// Duplicate: paid after another trade of the order was.
	Duplicate bool
	// ClosingAt: when a close of this trade started (zero: none). See
	// closingScript and PayProxy.closing.
	ClosingAt time.Time
}

// open reports whether the trade may still be paid (not PAID, and no
// close of it confirmed).
func (t *tradeRecord) open() bool { return t.State == StatePaying || t.State == StateUnknown }

// retiredTrade is a retired trade as the scripts store it (JSON).
type retiredTrade struct {
	TradeNo         string `json:"trade_no"`
	Channel         string `json:"channel"`
	AmountFen       int64  `json:"amount_fen"`
	Subject         string `json:"subject"`
	State           string `json:"state"`
	CreatedAt       int64  `json:"created_at"`
	ExpiresAt       int64  `json:"expires_at"`
	RefundedFen     int64  `json:"refunded_fen"`
	ProviderTradeID string `json:"provider_trade_id"`
	Duplicate       bool   `json:"duplicate"`
}

func (r *retiredTrade) record(order string) *tradeRecord {
	return &tradeRecord{
		OrderNo: order, TradeNo: r.TradeNo, Channel: r.Channel, AmountFen: r.AmountFen, Subject: r.Subject,
		State: r.State, CreatedAt: time.UnixMilli(r.CreatedAt), ExpiresAt: time.UnixMilli(r.ExpiresAt),
		RefundedFen: r.RefundedFen, ProviderTradeID: r.ProviderTradeID, Retired: true, Duplicate: r.Duplicate,
	}
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
	// TradeNo is the refunded trade ("" in records older than retired
	// trades: the order's current one).
	TradeNo string `json:"trade_no,omitempty"`
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

// load reads the order's current trade: its record, or the live marker
// of a settled order (markerLua), read together in one MULTI (one slot):
// a script of another instance expanding the marker between two reads
// would otherwise leave neither, and the poller would release an order
// that has records.
func (s *tradeStore) load(ctx context.Context, order string) (*tradeRecord, error) {
	var rec *redis.MapStringStringCmd
	var marker *redis.StringCmd
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		rec, marker = p.HGetAll(ctx, tradeKey(order)), p.Get(ctx, archivedKey(order))
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("loading trade of order %s: %w", order, err)
	}
	m := rec.Val()
	if len(m) == 0 || m["trade_no"] == "" {
		return liveRecord(order, marker.Val())
	}
	num := func(k string) int64 { n, _ := strconv.ParseInt(m[k], 10, 64); return n }
	var qrIssued, closing, expires time.Time
	if ms := num("qr_issued_at"); ms > 0 {
		qrIssued = time.UnixMilli(ms)
	}
	if ms := num("closing_at"); ms > 0 {
		closing = time.UnixMilli(ms)
	}
	if ms := num("expires_at"); ms > 0 {
		expires = time.UnixMilli(ms) // none in a compacted record (retention.go)
	}
	return &tradeRecord{
		OrderNo: order, TradeNo: m["trade_no"], Channel: m["channel"], AmountFen: num("amount_fen"),
		Subject: m["subject"], State: m["state"], QRCode: m["qr_code"], QRIssuedAt: qrIssued,
		CreatedAt: time.UnixMilli(num("created_at")), ExpiresAt: expires,
		RefundedFen: num("refunded_fen"), ProviderTradeID: m["provider_trade_id"], ClosingAt: closing,
	}, nil
}

// liveRecord reads a settled order kept as a live marker (markerLua) as
// its trade: what the compacted record would have said.
func liveRecord(order, marker string) (*tradeRecord, error) {
	a := &archivedOrder{}
	if marker == "" {
		return nil, errNoRecord
	}
	if err := json.Unmarshal([]byte(marker), a); err != nil {
		return nil, fmt.Errorf("decoding the record of order %s: %w", order, err)
	}
	if !a.Live {
		return nil, errNoRecord
	}
	return &tradeRecord{OrderNo: order, TradeNo: a.TradeNo, Channel: a.Channel, AmountFen: a.AmountFen,
		State: a.State, RefundedFen: a.RefundedFen, CreatedAt: time.UnixMilli(0)}, nil
}

// markClosing records that a close of the order's current trade tradeNo
// starts now (nothing if the record names another trade).
func (s *tradeStore) markClosing(ctx context.Context, order, tradeNo string, now time.Time) error {
	if err := closingScript.Run(ctx, s.rdb, []string{tradeKey(order)}, tradeNo, now.UnixMilli()).Err(); err != nil {
		return fmt.Errorf("marking trade %s of order %s closing: %w", tradeNo, order, err)
	}
	return nil
}

// tradeOf returns the order's trade tradeNo: its current one or a retired
// one.
func (s *tradeStore) tradeOf(ctx context.Context, order, tradeNo string) (*tradeRecord, error) {
	t, err := s.load(ctx, order)
	if err == nil && t.TradeNo == tradeNo {
		return t, nil
	}
	if err != nil && !errors.Is(err, errNoRecord) {
		return nil, err
	}
	raw, err := s.rdb.HGet(ctx, tradesKey(order), tradeNo).Result()
	if errors.Is(err, redis.Nil) {
		return nil, errNoRecord
	}
	if err != nil {
		return nil, fmt.Errorf("loading trade %s of order %s: %w", tradeNo, order, err)
	}
	var r retiredTrade
	if err := json.Unmarshal([]byte(raw), &r); err != nil {
		return nil, fmt.Errorf("decoding trade %s: %w", tradeNo, err)
	}
	return r.record(order), nil
}

// retiredCount is how many trades the order has retired (HLEN: no read of
// the trades themselves).
func (s *tradeStore) retiredCount(ctx context.Context, order string) (int64, error) {
	n, err := s.rdb.HLen(ctx, tradesKey(order)).Result()
	if err != nil {
		return 0, fmt.Errorf("counting the trades of order %s: %w", order, err)
	}
	return n, nil
}

// retired returns the order's retired trades.
func (s *tradeStore) retired(ctx context.Context, order string) ([]*tradeRecord, error) {
	m, err := s.rdb.HGetAll(ctx, tradesKey(order)).Result()
	if err != nil {
		return nil, fmt.Errorf("loading retired trades of order %s: %w", order, err)
	}
	out := make([]*tradeRecord, 0, len(m))
	for _, raw := range m {
		var r retiredTrade
		if json.Unmarshal([]byte(raw), &r) == nil {
			out = append(out, r.record(order))
		}
	}
	return out, nil
}

// orderOfTrade finds the order a provider's out_trade_no belongs to.
func (s *tradeStore) orderOfTrade(ctx context.Context, tradeNo string) (string, error) {
	orders, err := ordersOfTrades(ctx, s.rdb, []string{tradeNo})
	if err != nil {
		return "", err
	}
	if orders[0] == "" {
		return "", errNoRecord
	}
	return orders[0], nil
}

// pipeErr is a pipeline's failure: the first error of its commands that
// is not redis.Nil (a missing key is an answer, and the pipeline's own
// error is only its first command's, which may be such a Nil), else err.
func pipeErr(cmds []redis.Cmder, err error) error {
	for _, c := range cmds {
		if e := c.Err(); e != nil && !errors.Is(e, redis.Nil) {
			return e
		}
	}
	if errors.Is(err, redis.Nil) {
		return nil
	}
	return err
}

// ordersOfTrades resolves trade numbers to the orders their indexes name
// ("": none): their bucket fields (orders with records) first, then, for
// those with none, their keys of their own (an archived order's, expiring
// with its marker, or one a release before the buckets wrote). In that
// order on purpose: an archival writes the key before it removes the
// field (tradeIndexesArchived), so the key read after a missing field
// finds it; read at once — on a Cluster, two masters — both could miss.
func ordersOfTrades(ctx context.Context, rdb redis.UniversalClient, tradeNos []string) ([]string, error) {
	out := make([]string, len(tradeNos))
	fields := make([]*redis.StringCmd, len(tradeNos))
	cmds, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, tn := range tradeNos {
			fields[i] = p.HGet(ctx, tradeBucketKey(tn), tn)
		}
		return nil
	})
	if err := pipeErr(cmds, err); err != nil {
		return nil, fmt.Errorf("reading trade indexes: %w", err)
	}
	keys := map[int]*redis.StringCmd{}
	cmds, err = rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, tn := range tradeNos {
			if out[i] = fields[i].Val(); out[i] == "" {
				keys[i] = p.Get(ctx, tradeIndexKey(tn))
			}
		}
		return nil
	})
	if err := pipeErr(cmds, err); err != nil {
		return nil, fmt.Errorf("reading trade indexes: %w", err)
	}
	for i, c := range keys {
		out[i] = c.Val()
	}
	return out, nil
}

// allocate stores a new trade (state UNKNOWN) before the provider is
// called, so that a retry after a lost answer reuses its number, and puts
// the order into the due set. The index (trade_no → order, a field of
// its bucket) is written first and on its own: on a Cluster it lives on
// another master than the trade, and a pipeline sends to both at once, so the trade could exist
// (and be answered, and be paid) while its index, which its notifications
// need, did not. An orphan index is harmless. With wait_replicas the WAIT
// after the trade covers the index too: replication is one stream per
// master, and the trade's write comes later.
func (s *tradeStore) allocate(ctx context.Context, t *tradeRecord, expectTradeNo string, pollAt time.Time) (bool, error) {
	if err := s.rdb.HSet(ctx, tradeBucketKey(t.TradeNo), t.TradeNo, t.OrderNo).Err(); err != nil {
		return false, fmt.Errorf("indexing trade %s: %w", t.TradeNo, err)
	}
	var alloc *redis.Cmd
	err := s.durability.Pipelined(ctx, s.rdb, func(pipe redis.Pipeliner) {
		alloc = allocScript.Eval(ctx, pipe, []string{tradeKey(t.OrderNo), tradesKey(t.OrderNo), archivedKey(t.OrderNo)},
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
	if n != 1 {
		// Refused (2: archived paid; 0: the record changed meanwhile): the
		// number written into the index above names no trade and was never
		// sent to a provider; no archival would ever remove it.
		err := unbucketTradeScript.Run(ctx, s.rdb, []string{tradeBucketKey(t.TradeNo)}, t.OrderNo, t.TradeNo).Err()
		if err != nil {
			return false, fmt.Errorf("unindexing trade %s: %w", t.TradeNo, err)
		}
	}
	if n == 2 {
		return false, errOrderPaid
	}
	return n == 1, nil
}

// issued records the QR code the provider answered for the order's trade
// tradeNo, issued at issuedAt at the earliest, and returns the trade's
// state ("stale" if the order's trade is another one now).
func (s *tradeStore) issued(ctx context.Context, order, tradeNo, qr string, issuedAt time.Time) (string, error) {
	st, err := s.durability.Run(ctx, s.rdb, issuedScript, []string{tradeKey(order)}, tradeNo, qr, issuedAt.UnixMilli()).Text()
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
		confirmScript.Eval(ctx, p, []string{tradeKey(order)}, time.Now().UnixMilli())
	})
	if err != nil {
		return fmt.Errorf("confirming the trade of order %s: %w", order, err)
	}
	return nil
}

// tradeEvent is the event of a trade's change.
func tradeEvent(typ string, t *tradeRecord, state string, now time.Time) *event {
	return newEvent(typ, t.TradeNo, now, eventData{
		OrderNo: t.OrderNo, TradeNo: t.TradeNo, Channel: t.Channel, AmountFen: t.AmountFen, State: state,
	})
}

// scriptEvent runs a script that answers {result, event_json, ...} and
// returns the result and the event as the script wrote it.
func (s *tradeStore) scriptEvent(ctx context.Context, script *redis.Script, keys []string, id string, args ...any) ([]string, *event, error) {
	vals, err := s.durability.Run(ctx, s.rdb, script, keys, args...).StringSlice()
	if err != nil {
		return nil, nil, err
	}
	if len(vals) < 2 {
		return nil, nil, fmt.Errorf("unexpected script answer %q", vals)
	}
	body := vals[len(vals)-1]
	if body == "" {
		return vals, nil, nil
	}
	return vals, &event{ID: id, Body: body}, nil
}

// markClosed records a close of the order's current trade that the
// provider confirmed, with its trade.closed event, once.
func (s *tradeStore) markClosed(ctx context.Context, t *tradeRecord, now time.Time) (bool, *event, error) {
	if t.Retired {
		return s.closeRetired(ctx, t, now)
	}
	ev := tradeEvent("trade.closed", t, StateClosed, now)
	vals, out, err := s.scriptEvent(ctx, closeScript, []string{tradeKey(t.OrderNo), outboxKey(t.OrderNo)}, ev.ID,
		t.TradeNo, now.UnixMilli(), ev.ID, ev.Body)
	if err != nil {
		return false, nil, fmt.Errorf("closing trade %s: %w", t.TradeNo, err)
	}
	return vals[0] == "changed", out, nil
}

// closeRetired records the confirmed close of a retired trade.
func (s *tradeStore) closeRetired(ctx context.Context, t *tradeRecord, now time.Time) (bool, *event, error) {
	ev := tradeEvent("trade.closed", t, StateClosed, now)
	vals, out, err := s.scriptEvent(ctx, closeRetiredScript,
		[]string{tradesKey(t.OrderNo), tradeKey(t.OrderNo), outboxKey(t.OrderNo)}, ev.ID,
		t.TradeNo, now.UnixMilli(), ev.ID, ev.Body)
	if err != nil {
		return false, nil, fmt.Errorf("closing retired trade %s: %w", t.TradeNo, err)
	}
	return vals[0] == "changed", out, nil
}

// What recordPayment did.
const (
	paymentNew       = "paid"      // the order is PAID by this trade
	paymentDuplicate = "duplicate" // the order was already paid
	paymentSame      = "same"      // recorded before
	paymentUnknown   = "unknown"   // not a trade of this order
)

// payment is the outcome of recordPayment.
type payment struct {
	result    string
	displaced string // the trade a paid retired trade replaced, still open
	ev        *event
}

// recordPayment records a verified payment of trade t (see
// recordPaymentScript); dupRefundNo, when not "", reserves the full refund
// of a duplicate under that number in the same step.
func (s *tradeStore) recordPayment(ctx context.Context, t *tradeRecord, providerTradeID, dupRefundNo string, now time.Time) (payment, error) {
	paid := tradeEvent("trade.paid", t, StatePaid, now)
	dup := tradeEvent("trade.duplicate_paid", t, StatePaid, now)
	vals, err := s.durability.Run(ctx, s.rdb, recordPaymentScript,
		[]string{tradeKey(t.OrderNo), tradesKey(t.OrderNo), outboxKey(t.OrderNo), refundsKey(t.OrderNo), archivedKey(t.OrderNo)},
		t.TradeNo, now.UnixMilli(), providerTradeID, paid.ID, paid.Body, dup.ID, dup.Body, dupRefundNo, t.OrderNo).StringSlice()
	if err != nil {
		return payment{}, fmt.Errorf("recording the payment of trade %s: %w", t.TradeNo, err)
	}
	if len(vals) != 3 {
		return payment{}, fmt.Errorf("recording the payment of trade %s: unexpected answer %q", t.TradeNo, vals)
	}
	p := payment{result: vals[0], displaced: vals[1]}
	switch p.result {
	case paymentNew:
		p.ev = &event{ID: paid.ID, Body: vals[2]}
	case paymentDuplicate:
		p.ev = &event{ID: dup.ID, Body: vals[2]}
	}
	return p, nil
}

// adopt keeps a trade the order's index names but no record holds, so
// that its verified payment can be recorded (an archived order first
// gets its records back, adoptScript).
func (s *tradeStore) adopt(ctx context.Context, order, tradeNo, channel string, amount int64, now time.Time) error {
	restored, err := s.durability.Run(ctx, s.rdb, adoptScript,
		[]string{tradeKey(order), tradesKey(order), archivedKey(order), refundsKey(order)},
		tradeNo, channel, amount, now.UnixMilli(), order).StringSlice()
	if err != nil {
		return fmt.Errorf("keeping trade %s of order %s: %w", tradeNo, order, err)
	}
	if len(restored) > 0 {
		// Back from its archival, the order is off the due set; the
		// notification may yet be refused (another amount): it must be
		// archived again whatever happens next.
		if err := s.scheduleIfAbsent(ctx, order, now); err != nil {
			return err
		}
	}
	return s.reindex(ctx, order, restored)
}

// reindex gives the trades and refunds of an order restored from its
// marker (restored: trade numbers, "", refund numbers) their indexes
// back, without expiry (archival made them expire with the marker): a
// trade's as a field of its bucket again (reindexTradeScript), a
// refund's as its key (reindexScript), never taking over one that names
// another order. One command per key (other Cluster slots).
func (s *tradeStore) reindex(ctx context.Context, order string, restored []string) error {
	if len(restored) == 0 {
		return nil
	}
	trades, refunds := restored, []string(nil)
	if i := slices.Index(restored, ""); i >= 0 {
		trades, refunds = restored[:i], restored[i+1:]
	}
	if err := s.tradesUnclaimed(ctx, order, trades); err != nil {
		return err
	}
	var cmds []*redis.Cmd
	_, err := s.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for _, no := range trades {
			cmds = append(cmds, reindexTradeScript.Eval(ctx, pipe, []string{tradeBucketKey(no)}, order, no))
		}
		for _, no := range refunds {
			cmds = append(cmds, reindexScript.Eval(ctx, pipe, []string{refundIndexKey(no)}, order))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("indexing restored order %s: %w", order, err)
	}
	for i, no := range slices.Concat(trades, refunds) {
		if n, _ := cmds[i].Int(); n == 0 {
			return fmt.Errorf("indexing restored order %s: the index of %s names another order", order, no)
		}
	}
	return nil
}

// tradesUnclaimed refuses to index trades whose key of their own (an
// archived order's, or one a release before the buckets wrote) names
// another order: the bucket would win over it. It is read before the
// bucket is written and on another slot: only an archival of another
// order holding the same trade number, between the two, could write such
// a key, and no order is given another's trade number (allocate makes
// them, adopt takes the order from the index).
func (s *tradeStore) tradesUnclaimed(ctx context.Context, order string, trades []string) error {
	if len(trades) == 0 {
		return nil
	}
	cmds := make([]*redis.StringCmd, len(trades))
	_, err := s.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, no := range trades {
			cmds[i] = pipe.Get(ctx, tradeIndexKey(no))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("indexing restored order %s: %w", order, err)
	}
	for i, c := range cmds {
		if o := c.Val(); o != "" && o != order {
			return fmt.Errorf("indexing restored order %s: %s names another order", order, tradeIndexKey(trades[i]))
		}
	}
	return nil
}

// reserveRefund runs refundReserveScript.
func (s *tradeStore) reserveRefund(ctx context.Context, order, refundNo string, amount int64, reason string, now time.Time) (string, *refundRecord, error) {
	vals, err := s.durability.Run(ctx, s.rdb, refundReserveScript, []string{tradeKey(order), refundsKey(order), archivedKey(order)},
		refundNo, amount, reason, now.UnixMilli(), order).StringSlice()
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

// settleRefund ends a refund once (see refundSettleScript).
func (s *tradeStore) settleRefund(ctx context.Context, t *tradeRecord, r *refundRecord, to string, now time.Time) (bool, *event, error) {
	typ := map[string]string{RefundSuccess: "refund.succeeded", RefundFailed: "refund.failed", RefundAbnormal: "refund.abnormal"}[to]
	ev := newEvent(typ, t.TradeNo+"_"+r.RefundNo, now, eventData{
		OrderNo: t.OrderNo, TradeNo: t.TradeNo, Channel: t.Channel, AmountFen: r.AmountFen, State: to, RefundNo: r.RefundNo,
	})
	vals, out, err := s.scriptEvent(ctx, refundSettleScript,
		[]string{tradeKey(t.OrderNo), refundsKey(t.OrderNo), outboxKey(t.OrderNo), tradesKey(t.OrderNo)}, ev.ID,
		r.RefundNo, to, now.UnixMilli(), ev.ID, ev.Body)
	if err != nil {
		return false, nil, fmt.Errorf("settling refund %s: %w", r.RefundNo, err)
	}
	return vals[0] == "changed", out, nil
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

// schedule makes the order due at when, unless it is due earlier already:
// it never puts off work another caller (or the poller's lease) scheduled.
func (s *tradeStore) schedule(ctx context.Context, order string, when time.Time) error {
	if err := s.rdb.ZAddLT(ctx, dueKey, redis.Z{Score: float64(when.UnixMilli()), Member: order}).Err(); err != nil {
		return fmt.Errorf("scheduling order %s: %w", order, err)
	}
	return nil
}

// scheduleIfAbsent makes the order due at when unless it is in the due
// set already.
func (s *tradeStore) scheduleIfAbsent(ctx context.Context, order string, when time.Time) error {
	if err := s.rdb.ZAddNX(ctx, dueKey, redis.Z{Score: float64(when.UnixMilli()), Member: order}).Err(); err != nil {
		return fmt.Errorf("scheduling order %s: %w", order, err)
	}
	return nil
}

// archivedOrder is what an archived order leaves for another retention
// (retainScript's :archived marker; markerLua spells it).
type archivedOrder struct {
	State                  string
	TradeNo, Channel       string
	AmountFen, RefundedFen int64
	// Live: the order is inside its retention, kept as this record alone.
	Live bool
	// Others: its retired trades' states; Refunds: its refunds' states.
	Others  map[string]string
	Refunds map[string]string
}

// UnmarshalJSON reads the marker's array.
func (a *archivedOrder) UnmarshalJSON(raw []byte) error {
	var f []json.RawMessage
	if err := json.Unmarshal(raw, &f); err != nil || len(f) < 8 {
		return fmt.Errorf("bad archival marker %.80q: %v", raw, err)
	}
	_ = json.Unmarshal(f[0], &a.State)
	_ = json.Unmarshal(f[1], &a.TradeNo)
	_ = json.Unmarshal(f[2], &a.Channel)
	_ = json.Unmarshal(f[3], &a.AmountFen)
	_ = json.Unmarshal(f[4], &a.RefundedFen)
	// Eight elements: a live marker (markerLua); an archival's has nine.
	if a.Live = len(f) == 8; a.Live {
		return nil
	}
	a.Others, a.Refunds = map[string]string{}, map[string]string{}
	var others, refunds map[string][]json.RawMessage
	if json.Unmarshal(f[7], &others) == nil {
		for no, o := range others {
			if len(o) > 2 {
				var st string
				_ = json.Unmarshal(o[2], &st)
				a.Others[no] = st
			}
		}
	}
	if json.Unmarshal(f[8], &refunds) == nil {
		for no, r := range refunds {
			if len(r) > 2 {
				var st string
				_ = json.Unmarshal(r[2], &st)
				a.Refunds[no] = st
			}
		}
	}
	return nil
}

// heldPaid tells whether the order held trade tn paid when archived.
func (a *archivedOrder) heldPaid(tn string) bool {
	return (tn == a.TradeNo && a.State == StatePaid) || a.Others[tn] == StatePaid
}

// restore gives an archived order its records back from its marker
// (restoreScript), and their indexes.
func (s *tradeStore) restore(ctx context.Context, order string, now time.Time) error {
	restored, err := s.durability.Run(ctx, s.rdb, restoreScript,
		[]string{tradeKey(order), tradesKey(order), archivedKey(order), refundsKey(order)}, order, now.UnixMilli()).StringSlice()
	if err != nil {
		return fmt.Errorf("restoring archived order %s: %w", order, err)
	}
	return s.reindex(ctx, order, restored)
}

// archived returns the order's archival marker (errNoRecord: none).
func (s *tradeStore) archived(ctx context.Context, order string) (*archivedOrder, error) {
	raw, err := s.rdb.Get(ctx, archivedKey(order)).Result()
	if errors.Is(err, redis.Nil) {
		return nil, errNoRecord
	}
	if err != nil {
		return nil, fmt.Errorf("loading the archival of order %s: %w", order, err)
	}
	a := &archivedOrder{}
	if err := json.Unmarshal([]byte(raw), a); err != nil {
		return nil, fmt.Errorf("decoding the archival of order %s: %w", order, err)
	}
	return a, nil
}
