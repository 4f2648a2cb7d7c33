//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/paysim"
)

// payproxy's Redis layout (payproxy/store.go), read here from outside.
func tradeKey(order string) string   { return "tollgate:pay:{o:" + order + "}:trade" }
func refundsKey(order string) string { return "tollgate:pay:{o:" + order + "}:refunds" }
func tradeIndexKey(tn string) string { return "tollgate:pay:{t:" + tn + "}" }

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

// unsettled lists what is still in motion: payments not yet PAID in
// tollgate or not yet delivered, refunds still PROCESSING, queued events.
func (w *world) unsettled(ctx context.Context, rdb *redis.Client) []string {
	st := w.observe()
	var out []string
	for _, t := range st.trades {
		if !paidAtProvider(t) {
			continue
		}
		order := strings.TrimPrefix(t.Subject, subjectPrefix)
		rec, err := rdb.HGetAll(ctx, tradeKey(order)).Result()
		if err != nil {
			return []string{"redis: " + err.Error()}
		}
		if rec["trade_no"] != t.OutTradeNo || rec["state"] != "PAID" {
			out = append(out, fmt.Sprintf("order %s: paid at %s as %s, tollgate has %s %s", order, t.Provider, t.OutTradeNo, rec["trade_no"], rec["state"]))
		} else if _, ok := st.events["evt_"+t.OutTradeNo+"_trade.paid"]; !ok {
			out = append(out, fmt.Sprintf("order %s: trade.paid of %s not delivered", order, t.OutTradeNo))
		}
	}
	for order := range st.byOrder {
		refs, err := rdb.HGetAll(ctx, refundsKey(order)).Result()
		if err != nil {
			return []string{"redis: " + err.Error()}
		}
		for no, raw := range refs {
			if strings.Contains(raw, `"PROCESSING"`) {
				out = append(out, fmt.Sprintf("order %s: refund %s still PROCESSING", order, no))
			}
		}
	}
	if n, err := rdb.ZCard(ctx, queueKey).Result(); err != nil || n > 0 {
		out = append(out, fmt.Sprintf("webhook queue holds %d events (%v)", n, err))
	}
	return out
}

// settle waits, at most limit, until nothing is in motion; it returns what
// was still unsettled at the end and how long it took.
func (w *world) settle(limit time.Duration) ([]string, time.Duration) {
	rdb := w.redis.Client()
	start := time.Now()
	for i := 0; ; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
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
	oneTrade, paidDelivered, refundsLE verdict
	dead                               int64
}

func (w *world) check(l *load, unsettled []string) checks {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rdb := w.redis.Client()
	st := w.observe()
	c := checks{oneTrade: verdict{ok: true}, paidDelivered: verdict{ok: true}, refundsLE: verdict{ok: true}}
	w.checkOneTrade(ctx, rdb, l, st, &c.oneTrade)
	w.checkPaid(ctx, rdb, st, unsettled, &c.paidDelivered)
	w.checkRefunds(ctx, rdb, st, &c.refundsLE)
	c.dead, _ = rdb.LLen(ctx, deadKey).Result()
	return c
}

// checkOneTrade: at most one trade per order at the provider (grouped by
// the subject the client sent, independent of payproxy's records), the
// clients were only ever answered that trade, and payproxy's index maps it
// back to the order.
func (w *world) checkOneTrade(ctx context.Context, rdb *redis.Client, l *load, st *state, v *verdict) {
	for order, ts := range st.byOrder {
		if len(ts) > 1 {
			nos := make([]string, 0, len(ts))
			for _, t := range ts {
				nos = append(nos, t.Provider+":"+t.OutTradeNo+"("+t.State+")")
			}
			v.fail("order %s has %d trades at the provider: %s", order, len(ts), strings.Join(nos, " "))
		}
		for _, t := range ts {
			if idx, err := rdb.Get(ctx, tradeIndexKey(t.OutTradeNo)).Result(); err != nil || idx != order {
				v.fail("trade %s of order %s: payproxy's index says %q (%v)", t.OutTradeNo, order, idx, err)
			}
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for order, nos := range l.answered {
		if len(nos) > 1 {
			v.fail("order %s: clients were answered %d different trades", order, len(nos))
		}
	}
}

// checkPaid: every payment made at the provider is PAID in tollgate and its
// trade.paid event (signature verified) reached the receiver, with the
// amount that was paid; no event ever came with a bad signature.
func (w *world) checkPaid(ctx context.Context, rdb *redis.Client, st *state, unsettled []string, v *verdict) {
	for _, t := range st.trades {
		if !paidAtProvider(t) {
			continue
		}
		order := strings.TrimPrefix(t.Subject, subjectPrefix)
		rec, err := rdb.HGetAll(ctx, tradeKey(order)).Result()
		if err != nil {
			v.fail("redis: %v", err)
			return
		}
		if rec["trade_no"] != t.OutTradeNo || rec["state"] != "PAID" {
			v.fail("order %s paid at %s (%s) but tollgate has %q in state %q", order, t.Provider, t.OutTradeNo, rec["trade_no"], rec["state"])
			continue
		}
		ev, ok := st.events["evt_"+t.OutTradeNo+"_trade.paid"]
		if !ok {
			v.fail("order %s: trade.paid of %s never delivered", order, t.OutTradeNo)
		} else if ev.Data.AmountFen != t.TotalFen || ev.Data.OrderNo != order {
			v.fail("order %s: trade.paid says %s %d fen, paid %d", order, ev.Data.OrderNo, ev.Data.AmountFen, t.TotalFen)
		}
	}
	if st.badSig > 0 {
		v.fail("%d webhook deliveries had a bad signature or body", st.badSig)
	}
	if !v.ok && len(unsettled) > 0 {
		v.fail("still unsettled at the deadline: %d items, e.g. %s", len(unsettled), unsettled[0])
	}
}

// checkRefunds: per order, what paysim refunded never exceeds what was paid
// there; payproxy's own refunded_fen never exceeds the trade's amount.
func (w *world) checkRefunds(ctx context.Context, rdb *redis.Client, st *state, v *verdict) {
	tradeOrder := map[string]string{}
	paid := map[string]int64{}
	for order, ts := range st.byOrder {
		for _, t := range ts {
			tradeOrder[t.Provider+":"+t.OutTradeNo] = order
			if paidAtProvider(t) {
				paid[order] += t.TotalFen
			}
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
		refunded[tradeOrder[r.Provider+":"+r.OutTradeNo]] += r.AmountFen
	}
	orders := make([]string, 0, len(refunded))
	for o := range refunded {
		orders = append(orders, o)
	}
	sort.Strings(orders)
	for _, o := range orders {
		if refunded[o] > paid[o] {
			v.fail("order %s: refunded %d fen at the provider, paid %d", o, refunded[o], paid[o])
		}
	}
	for order := range st.byOrder {
		rec, err := rdb.HMGet(ctx, tradeKey(order), "amount_fen", "refunded_fen").Result()
		if err != nil || len(rec) != 2 {
			continue
		}
		amt, _ := strconv.ParseInt(fmt.Sprint(rec[0]), 10, 64)
		ref, _ := strconv.ParseInt(fmt.Sprint(rec[1]), 10, 64)
		if ref > amt {
			v.fail("order %s: tollgate's refunded_fen %d > amount %d", order, ref, amt)
		}
	}
}
