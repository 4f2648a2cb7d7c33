//go:build chaos

package chaos

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/paysim"
)

// payproxy's Redis layout (payproxy/store.go), read here from outside.
func tradeKey(order string) string   { return "tollgate:pay:{o:" + order + "}:trade" }
func tradesKey(order string) string  { return "tollgate:pay:{o:" + order + "}:trades" }
func refundsKey(order string) string { return "tollgate:pay:{o:" + order + "}:refunds" }
func tradeIndexKey(tn string) string { return "tollgate:pay:{t:" + tn + "}" }

// tradeBucketKey is the hash whose field tn indexes a trade of an order
// with records (payproxy/store.go); tradeIndexKey an archived order's.
func tradeBucketKey(tn string) string {
	return fmt.Sprintf("tollgate:pay:{ti:%04x}", crc32.ChecksumIEEE([]byte(tn))%65536)
}

const (
	queueKey = "tollgate:pay:{wh}:queue"
	deadKey  = "tollgate:pay:{wh}:dead"
)

// verdict is one invariant's result with the first few violations.
type verdict struct {
	ok      bool
	details []string
}

func (v *verdict) fail(format string, a ...any) {
	v.ok = false
	if len(v.details) < 8 {
		v.details = append(v.details, fmt.Sprintf(format, a...))
	}
}

// world state as the checks see it: paysim's records, Redis, the receiver.
type state struct {
	trades    []paysim.Trade
	refunds   []paysim.Refund
	events    map[string]hookEvent
	received  int
	badSig    int
	byOrder   map[string][]paysim.Trade
	redisDown error
}

func (w *world) observe() *state {
	st := &state{trades: w.sim.Trades(), refunds: w.sim.Refunds(), byOrder: map[string][]paysim.Trade{}}
	st.events, st.received, st.badSig = w.hooks.snapshot()
	for _, t := range st.trades {
		if order, ok := strings.CutPrefix(t.Subject, subjectPrefix); ok {
			st.byOrder[order] = append(st.byOrder[order], t)
		}
	}
	return st
}

func paidAtProvider(t paysim.Trade) bool { return !t.PaidAt.IsZero() }

// ofType counts the delivered events of one type.
func (st *state) ofType(typ string) int {
	n := 0
	for _, ev := range st.events {
		if ev.Type == typ {
			n++
		}
	}
	return n
}

// records is what tollgate holds for the run's orders, read with
// pipelines: thousands of orders cost a few round trips, so the checks fit
// their deadline on a loaded machine.
type records struct {
	orders  map[string]orderRecords
	indexes map[string]string // trade_no → order, from payproxy's index
	queued  int64
	dead    int64
}

// orderRecords is one order's hashes: its trade, its retired trades
// (trade_no → JSON) and its refunds (refund_no → JSON).
type orderRecords struct {
	trade, retired, refunds map[string]string
}

const readChunk = 500

func (w *world) read(ctx context.Context, rdb *redis.Client, st *state) (*records, error) {
	r := &records{orders: map[string]orderRecords{}, indexes: map[string]string{}}
	orders := make([]string, 0, len(st.byOrder))
	for o := range st.byOrder {
		orders = append(orders, o)
	}
	for start := 0; start < len(orders); start += readChunk {
		chunk := orders[start:min(start+readChunk, len(orders))]
		cmds := make([][3]*redis.MapStringStringCmd, len(chunk))
		markers := make([]*redis.StringCmd, len(chunk))
		_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, o := range chunk {
				cmds[i] = [3]*redis.MapStringStringCmd{p.HGetAll(ctx, tradeKey(o)), p.HGetAll(ctx, tradesKey(o)), p.HGetAll(ctx, refundsKey(o))}
				markers[i] = p.Get(ctx, "tollgate:pay:{o:"+o+"}:archived")
			}
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, err
		}
		for i, o := range chunk {
			trade := cmds[i][0].Val()
			if len(trade) == 0 {
				trade = liveTrade(markers[i].Val())
			}
			r.orders[o] = orderRecords{trade: trade, retired: cmds[i][1].Val(), refunds: cmds[i][2].Val()}
		}
	}
	for start := 0; start < len(st.trades); start += readChunk {
		chunk := st.trades[start:min(start+readChunk, len(st.trades))]
		cmds := make([][2]*redis.StringCmd, len(chunk))
		_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, t := range chunk {
				cmds[i] = [2]*redis.StringCmd{p.HGet(ctx, tradeBucketKey(t.OutTradeNo), t.OutTradeNo), p.Get(ctx, tradeIndexKey(t.OutTradeNo))}
			}
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, err
		}
		for i, t := range chunk {
			// The bucket wins (payproxy's ordersOfTrades).
			r.indexes[t.OutTradeNo] = cmp.Or(cmds[i][0].Val(), cmds[i][1].Val())
		}
	}
	var err error
	if r.queued, err = rdb.ZCard(ctx, queueKey).Result(); err != nil {
		return nil, err
	}
	r.dead, err = rdb.LLen(ctx, deadKey).Result()
	return r, err
}

// liveTrade reads a settled order kept as its live marker (payproxy's
// markerLua: [state, trade_no, channel, amount_fen, refunded_fen, paid_at,
// seq, last]; an archival's has nine elements) as the trade hash it
// stands for; nil if the marker is none or an archival's.
func liveTrade(marker string) map[string]string {
	var a []any
	if json.Unmarshal([]byte(marker), &a) != nil || len(a) != 8 {
		return nil
	}
	return map[string]string{"state": fmt.Sprint(a[0]), "trade_no": fmt.Sprint(a[1]), "channel": fmt.Sprint(a[2]),
		"amount_fen": fmt.Sprint(a[3]), "refunded_fen": fmt.Sprint(a[4])}
}

// recorded tells how tollgate holds a trade the buyer paid at the
// provider: as the order's trade, PAID (event trade.paid), or as a
// duplicate, a retired trade PAID (event trade.duplicate_paid); "" if it
// does not hold the payment.
func (o orderRecords) recorded(tradeNo string) string {
	if o.trade["trade_no"] == tradeNo {
		if o.trade["state"] == "PAID" {
			return "trade.paid"
		}
		return ""
	}
	var r struct {
		State     string `json:"state"`
		Duplicate bool   `json:"duplicate"`
	}
	if json.Unmarshal([]byte(o.retired[tradeNo]), &r) == nil && r.State == "PAID" && r.Duplicate {
		return "trade.duplicate_paid"
	}
	return ""
}

// unsettled lists what is still in motion: payments not yet recorded in
// tollgate or not yet delivered, refunds still PROCESSING, queued events.
func (w *world) unsettled(ctx context.Context, rdb *redis.Client) []string {
	st := w.observe()
	recs, err := w.read(ctx, rdb, st)
	if err != nil {
		return []string{"redis: " + err.Error()}
	}
	var out []string
	for _, t := range st.trades {
		if !paidAtProvider(t) {
			continue
		}
		order := strings.TrimPrefix(t.Subject, subjectPrefix)
		typ := recs.orders[order].recorded(t.OutTradeNo)
		if typ == "" {
			out = append(out, fmt.Sprintf("order %s: %s paid at %s, not recorded", order, t.OutTradeNo, t.Provider))
		} else if _, ok := st.events["evt_"+t.OutTradeNo+"_"+typ]; !ok {
			out = append(out, fmt.Sprintf("order %s: %s of %s not delivered", order, typ, t.OutTradeNo))
		}
	}
	for order, o := range recs.orders {
		for no, raw := range o.refunds {
			if strings.Contains(raw, `"PROCESSING"`) {
				out = append(out, fmt.Sprintf("order %s: refund %s still PROCESSING", order, no))
			}
		}
	}
	if recs.queued > 0 {
		out = append(out, fmt.Sprintf("webhook queue holds %d events", recs.queued))
	}
	return out
}

// settle waits, at most limit, until nothing is in motion; it returns what
// was still unsettled at the end and how long it took.
func (w *world) settle(limit time.Duration) ([]string, time.Duration) {
	rdb := w.redis.Client()
	start := time.Now()
	for i := 0; ; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		left := w.unsettled(ctx, rdb)
		cancel()
		if len(left) > 0 && i%40 == 0 {
			// Say what is still moving, so that a slow settle can be explained.
			w.t.Logf("settling (%s): %d unsettled, e.g. %s", time.Since(start).Round(time.Second), len(left), strings.Join(left[:min(3, len(left))], "; "))
		}
		if len(left) == 0 || time.Since(start) > limit {
			return left, time.Since(start).Round(time.Second)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// checks evaluates the state invariants over everything the run did so
// far (they must hold for every past phase too).
type checks struct {
	oneTrade, paidRecorded, refundsLE, noFailedDone verdict
	noSuccessUndone, forward                        verdict
	dead                                            int64
}

func (w *world) check(l *load, unsettled []string) checks {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st := w.observe()
	c := checks{oneTrade: verdict{ok: true}, paidRecorded: verdict{ok: true}, refundsLE: verdict{ok: true}, noFailedDone: verdict{ok: true},
		noSuccessUndone: verdict{ok: true}, forward: verdict{ok: true}}
	recs, err := w.read(ctx, w.redis.Client(), st)
	if err != nil {
		for _, v := range []*verdict{&c.oneTrade, &c.paidRecorded, &c.refundsLE, &c.noFailedDone, &c.noSuccessUndone, &c.forward} {
			v.fail("reading tollgate's records: %v", err)
		}
		return c
	}
	checkOneTrade(l, st, recs, &c.oneTrade)
	checkPaymentsRecorded(st, recs, unsettled, &c.paidRecorded)
	checkRefunds(st, recs, &c.refundsLE)
	checkNoFailedRefundDone(st, recs, &c.noFailedDone)
	checkNoSuccessRefundUndone(st, recs, &c.noSuccessUndone)
	checkNothingMovedBack(st, recs, &c.forward)
	c.dead = recs.dead
	return c
}

// checkOneTrade: at most one trade per order and request (channel and
// amount) at the provider, grouped by the subject the client sent,
// independent of payproxy's records; the clients were only ever answered
// that trade; and payproxy's index maps every trade back to its order.
func checkOneTrade(l *load, st *state, recs *records, v *verdict) {
	for order, ts := range st.byOrder {
		byRequest := map[string][]string{}
		for _, t := range ts {
			key := fmt.Sprintf("%s|%d", t.Provider, t.TotalFen)
			byRequest[key] = append(byRequest[key], t.OutTradeNo+"("+t.State+")")
			if idx := recs.indexes[t.OutTradeNo]; idx != order {
				v.fail("trade %s of order %s: payproxy's index says %q", t.OutTradeNo, order, idx)
			}
		}
		for key, nos := range byRequest {
			if len(nos) > 1 {
				v.fail("order %s has %d trades for %s at the provider: %s", order, len(nos), key, strings.Join(nos, " "))
			}
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for key, nos := range l.answered {
		if len(nos) > 1 {
			v.fail("order %s: clients were answered %d different trades", key, len(nos))
		}
	}
}

// checkPaymentsRecorded: every provider payment is recorded and reached
// the backend. Each trade the buyer paid at the provider is in tollgate
// either as its order's trade, PAID, with trade.paid delivered, or as a
// duplicate of an order paid by another trade, with trade.duplicate_paid
// delivered and refunded in full at the provider (refund DUP_<trade>); an
// order tollgate holds PAID was paid at the provider by that trade (no
// unsigned answer made a payment); no event came with a bad signature.
func checkPaymentsRecorded(st *state, recs *records, unsettled []string, v *verdict) {
	refunded := map[string]paysim.Refund{}
	for _, r := range st.refunds {
		refunded[r.Provider+":"+r.OutTradeNo+":"+r.OutRefundNo] = r
	}
	paid := map[string]bool{}
	for _, t := range st.trades {
		if !paidAtProvider(t) {
			continue
		}
		paid[t.OutTradeNo] = true
		order := strings.TrimPrefix(t.Subject, subjectPrefix)
		typ := recs.orders[order].recorded(t.OutTradeNo)
		if typ == "" {
			v.fail("order %s: %s paid at %s is not recorded by tollgate", order, t.OutTradeNo, t.Provider)
			continue
		}
		ev, ok := st.events["evt_"+t.OutTradeNo+"_"+typ]
		switch {
		case !ok:
			v.fail("order %s: %s of %s never delivered", order, typ, t.OutTradeNo)
		case ev.Data.AmountFen != t.TotalFen || ev.Data.OrderNo != order:
			v.fail("order %s: %s says %s %d fen, paid %d", order, typ, ev.Data.OrderNo, ev.Data.AmountFen, t.TotalFen)
		}
		if typ == "trade.duplicate_paid" {
			if r, ok := refunded[t.Provider+":"+t.OutTradeNo+":DUP_"+t.OutTradeNo]; !ok || r.AmountFen != t.TotalFen {
				v.fail("order %s: duplicate payment %s (%d fen) not refunded in full at the provider", order, t.OutTradeNo, t.TotalFen)
			}
		}
	}
	for order, o := range recs.orders {
		if o.trade["state"] == "PAID" && !paid[o.trade["trade_no"]] {
			v.fail("order %s is PAID in tollgate by %s, which nobody paid at the provider", order, o.trade["trade_no"])
		}
	}
	if st.badSig > 0 {
		v.fail("%d webhook deliveries had a bad signature or body", st.badSig)
	}
	if !v.ok && len(unsettled) > 0 {
		v.fail("still unsettled at the deadline: %d items, e.g. %s", len(unsettled), unsettled[0])
	}
}

// checkRefunds: per trade, what paysim refunded never exceeds what was
// paid for it (nothing for an unpaid trade), paysim never holds a refund
// twice, and payproxy's own refunded_fen never exceeds the trade's amount.
func checkRefunds(st *state, recs *records, v *verdict) {
	total := map[string]int64{}
	for _, t := range st.trades {
		if paidAtProvider(t) {
			total[t.Provider+":"+t.OutTradeNo] = t.TotalFen
		}
	}
	refunded := map[string]int64{}
	seen := map[string]bool{}
	for _, r := range st.refunds {
		key := r.Provider + ":" + r.OutTradeNo + ":" + r.OutRefundNo
		if seen[key] {
			v.fail("paysim holds refund %s twice", key)
		}
		seen[key] = true
		refunded[r.Provider+":"+r.OutTradeNo] += r.AmountFen
	}
	trades := make([]string, 0, len(refunded))
	for tr := range refunded {
		trades = append(trades, tr)
	}
	sort.Strings(trades)
	for _, tr := range trades {
		if refunded[tr] > total[tr] {
			v.fail("trade %s: refunded %d fen at the provider, paid %d", tr, refunded[tr], total[tr])
		}
	}
	for order, o := range recs.orders {
		amt, _ := strconv.ParseInt(o.trade["amount_fen"], 10, 64)
		ref, _ := strconv.ParseInt(o.trade["refunded_fen"], 10, 64)
		if ref > amt {
			v.fail("order %s: tollgate's refunded_fen %d > amount %d", order, ref, amt)
		}
	}
}

// storedRefund is a refund record as the checks read it.
type storedRefund struct {
	State     string `json:"state"`
	AmountFen int64  `json:"amount_fen"`
}

// eachRefund calls fn for every refund tollgate holds in state, with the
// refunds of that number the provider holds for the order's trades.
func eachRefund(st *state, recs *records, state string, fn func(order, no string, r storedRefund, held []paysim.Refund)) {
	atProvider := map[string]paysim.Refund{}
	for _, r := range st.refunds {
		atProvider[r.OutTradeNo+":"+r.OutRefundNo] = r
	}
	for order, o := range recs.orders {
		for no, raw := range o.refunds {
			var r storedRefund
			if json.Unmarshal([]byte(raw), &r) != nil || r.State != state {
				continue
			}
			var held []paysim.Refund
			for _, t := range st.byOrder[order] {
				if p, ok := atProvider[t.OutTradeNo+":"+no]; ok {
					held = append(held, p)
				}
			}
			fn(order, no, r, held)
		}
	}
}

// checkNoFailedRefundDone: no refund FAILED that the provider completed —
// a refund tollgate holds FAILED is unknown to the provider or refused
// there (an unsigned or lost answer never makes one FAILED).
func checkNoFailedRefundDone(st *state, recs *records, v *verdict) {
	eachRefund(st, recs, "FAILED", func(order, no string, _ storedRefund, held []paysim.Refund) {
		for _, p := range held {
			if p.Status != "CLOSED" {
				v.fail("order %s: refund %s is FAILED in tollgate, %s at %s", order, no, p.Status, p.Provider)
			}
		}
	})
}

// checkNoSuccessRefundUndone: no refund SUCCESS that the provider did not
// complete — a refund tollgate holds SUCCESS is held by the provider, for
// one of its order's trades, completed (Alipay REFUND_SUCCESS, WeChat
// SUCCESS) and for the same amount.
func checkNoSuccessRefundUndone(st *state, recs *records, v *verdict) {
	eachRefund(st, recs, "SUCCESS", func(order, no string, r storedRefund, held []paysim.Refund) {
		for _, p := range held {
			if (p.Status == "REFUND_SUCCESS" || p.Status == "SUCCESS") && p.AmountFen == r.AmountFen {
				return
			}
		}
		v.fail("order %s: refund %s (%d fen) is SUCCESS in tollgate, the provider did not complete it: %+v", order, no, r.AmountFen, held)
	})
}

// checkNothingMovedBack: no state moved backwards by a late, repeated or
// reordered notification or answer — a trade paid at the provider is never
// reported closed (trade.closed) after its payment was reported, nor
// recorded CLOSED, also after a full refund made it read TRADE_CLOSED; a
// refund reported succeeded is never reported failed afterwards (by the
// order's seq). A trade.closed before the payment is moving forward: under
// ignore on an Alipay cancel of a code nobody scanned, Alipay's signed
// acceptance is the only evidence there is (no trade to query), and a
// later payment of that code is recorded as README documents.
func checkNothingMovedBack(st *state, recs *records, v *verdict) {
	for _, t := range st.trades {
		if !paidAtProvider(t) {
			continue
		}
		closed, wasClosed := st.events["evt_"+t.OutTradeNo+"_trade.closed"]
		for _, typ := range []string{"trade.paid", "trade.duplicate_paid"} {
			if paid, ok := st.events["evt_"+t.OutTradeNo+"_"+typ]; ok && wasClosed && paid.Data.Seq < closed.Data.Seq {
				v.fail("trade %s was paid at %s and reported closed (seq %d) after %s (seq %d)", t.OutTradeNo, t.Provider, closed.Data.Seq, typ, paid.Data.Seq)
			}
		}
		order := strings.TrimPrefix(t.Subject, subjectPrefix)
		if o := recs.orders[order]; o.trade["trade_no"] == t.OutTradeNo && o.trade["state"] == "CLOSED" {
			v.fail("order %s: trade %s paid at %s is CLOSED in tollgate", order, t.OutTradeNo, t.Provider)
		}
	}
	for id, ev := range st.events {
		base, failed := strings.CutSuffix(id, "_refund.failed")
		if !failed {
			continue
		}
		if ok, found := st.events[base+"_refund.succeeded"]; found && ok.Data.Seq < ev.Data.Seq {
			v.fail("order %s: refund %s failed (seq %d) after it succeeded (seq %d)", ev.Data.OrderNo, ev.Data.RefundNo, ev.Data.Seq, ok.Data.Seq)
		}
	}
}
