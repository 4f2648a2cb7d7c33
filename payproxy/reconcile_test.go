package payproxy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/paysim"
	"github.com/tollgate/tollgate/payproxy/reconcile"
)

// TestACleanDayOfMixedTrafficReconcilesWithoutDifferences: payments, a
// partial and a full refund, a closed trade on each channel, and a
// duplicate payment (an Alipay QR code whose cancel did not take effect,
// paid besides the order's WeChat trade) refunded in full: the day's
// reconciliation of each channel reads every line of paysim's bill, finds
// no difference, and its totals are paysim's on both sides. The report
// is the one GET answers; no reconcile.discrepancy event is sent; the gauge
// reads 0 for every kind and each run is counted done.
func TestACleanDayOfMixedTrafficReconcilesWithoutDifferences(t *testing.T) {
	e := newEnv(t)
	inst := e.start()
	runs := runsSince(t, inst.AdminURL())
	var refunds []string
	for _, ch := range []string{"alipay", "wechat"} {
		pre := "CLEAN_" + strings.ToUpper(ch) + "_"
		e.paidOrder(pre+"A", ch, 1000)
		e.paidOrder(pre+"B", ch, 2000)
		e.paidOrder(pre+"D", ch, 700)
		wantStatus(t, e.refund(pre+"A", pre+"RA", 300), 200, "")
		wantStatus(t, e.refund(pre+"B", pre+"RB", 2000), 200, "")
		refunds = append(refunds, pre+"RA", pre+"RB")
		wantStatus(t, e.create(pre+"C", ch, 500), 200, "")
		wantStatus(t, do(t, "POST", e.base+"/pay/trades/"+pre+"C/close", nil), 200, "")
	}
	const dupOrder = "CLEAN_DUP"
	first := e.create(dupOrder, "alipay", 800)
	e.sim.SetFault(paysim.Fault{Operation: "alipay.trade.cancel", Mode: paysim.FaultIgnore})
	second := e.create(dupOrder, "wechat", 800)
	wantStatus(t, second, 200, "")
	for _, tn := range []string{second.str("trade_no"), first.str("trade_no")} {
		if err := e.sim.Pay(tn); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, "trade.duplicate_paid", func() bool { return len(e.hooks.ofType("trade.duplicate_paid", dupOrder)) == 1 })
	refunds = append(refunds, "DUP_"+e.hooks.ofType("trade.duplicate_paid", dupOrder)[0].Data.TradeNo)
	e.settled(refunds...)

	for _, ch := range []string{"alipay", "wechat"} {
		t.Run(ch, func(t *testing.T) {
			rep := runReconcile(t, inst.AdminURL(), ch, today())
			lines, tot := paysimTotals(e.sim, ch)
			if rep.State != "done" || rep.Error != "" || len(rep.Differences) != 0 || rep.Healed != 0 {
				t.Fatalf("report: %+v", rep)
			}
			if rep.Channel != ch || rep.Date != today() || rep.Lines != lines || rep.Matched != lines || tot.Refunds == 0 {
				t.Fatalf("report %+v, paysim's bill has %d lines", rep, lines)
			}
			if rep.Totals.ProviderPaidFen != tot.PaymentFen || rep.Totals.LocalPaidFen != tot.PaymentFen ||
				rep.Totals.ProviderRefundedFen != tot.RefundFen || rep.Totals.LocalRefundedFen != tot.RefundFen {
				t.Fatalf("totals %+v, paysim's %+v", rep.Totals, tot)
			}
			for _, kind := range reconcile.Kinds {
				if v := metric(t, inst.AdminURL(), fmt.Sprintf(`tollgate_payproxy_reconcile_differences{channel="%s",kind="%s"}`, ch, kind)); v != 0 {
					t.Errorf("%s %s gauge %v, want 0", ch, kind, v)
				}
			}
			if v := runs(ch, "done"); v != 1 {
				t.Errorf("runs_total done grew by %v, want 1", v)
			}
		})
	}
	if n := len(e.hooks.discrepancies()); n != 0 {
		t.Fatalf("%d reconcile.discrepancy events on a clean day", n)
	}
}

// TestDifferencesLeftByProviderFaultsAreFoundAndHealedOnce: what the
// providers' misbehaviours leave behind when nothing else catches it (the
// notifications are lost and the poller does not run):
//   - a payment whose notification never came: missing_locally, healed
//     PAID by the signed query (trade.paid);
//   - a refund whose answer was dropped (drop_response): missing_locally,
//     healed SUCCESS by the signed refund query (refund.succeeded);
//   - an Alipay QR code closed here (its cancel answered, without effect:
//     ignore) and then paid: state_mismatch, healed PAID.
//
// A second run finds them all matched; the webhook got each healing event
// once and no reconcile.discrepancy.
func TestDifferencesLeftByProviderFaultsAreFoundAndHealedOnce(t *testing.T) {
	e := newEnv(t)
	e.options["poll_interval"] = "1h"
	inst := e.startWith(func(cf string) string { return deadNotify(t, e, cf) })
	admin := inst.AdminURL()
	type expect struct{ kind, order, tradeNo, refundNo string }
	var want []expect
	for _, ch := range []string{"alipay", "wechat"} {
		order := "LOST_" + strings.ToUpper(ch)
		r := e.create(order, ch, 1200)
		wantStatus(t, r, 200, "")
		if err := e.sim.Pay(r.str("trade_no")); err != nil {
			t.Fatal(err)
		}
		want = append(want, expect{reconcile.MissingLocally, order, r.str("trade_no"), ""})

		// A paid order (known PAID by a client's ?sync=1) refunded with
		// the answer lost.
		order = "DROP_" + strings.ToUpper(ch)
		r = e.create(order, ch, 900)
		if err := e.sim.Pay(r.str("trade_no")); err != nil {
			t.Fatal(err)
		}
		if got := do(t, "GET", e.base+"/pay/trades/"+order+"?sync=1", nil); got.str("state") != "PAID" {
			t.Fatalf("sync: %s", got.Raw)
		}
		e.sim.SetFault(paysim.Fault{Operation: map[string]string{"alipay": "alipay.trade.refund", "wechat": "wechat.refund"}[ch], Mode: paysim.FaultDropResponse})
		wantStatus(t, e.refund(order, "RDROP_"+ch, 400), http.StatusBadGateway, "provider_error")
		want = append(want, expect{reconcile.MissingLocally, order, r.str("trade_no"), "RDROP_" + ch})
	}
	order := "CLOSED_PAID"
	r := e.create(order, "alipay", 1500)
	e.sim.SetFault(paysim.Fault{Operation: "alipay.trade.cancel", Mode: paysim.FaultIgnore})
	if got := do(t, "POST", e.base+"/pay/trades/"+order+"/close", nil); got.str("state") != "CLOSED" {
		t.Fatalf("close: %s", got.Raw)
	}
	if err := e.sim.Pay(r.str("trade_no")); err != nil {
		t.Fatal(err)
	}
	want = append(want, expect{reconcile.StateMismatch, order, r.str("trade_no"), ""})
	eventually(t, 10*time.Second, "paysim's WeChat refund done", func() bool {
		for _, rf := range e.sim.Refunds() {
			if rf.Status == "PROCESSING" {
				return false
			}
		}
		return true
	})
	for _, w := range want {
		if w.refundNo != "" {
			if got := do(t, "GET", e.base+"/pay/refunds/"+w.refundNo, nil); got.str("state") != "PROCESSING" {
				t.Fatalf("refund %s before the run: %s", w.refundNo, got.Raw)
			}
		} else if got := e.get(w.order); got.str("state") == "PAID" {
			t.Fatalf("%s before the run: %s", w.order, got.Raw)
		}
	}

	reports := map[string]reconReport{}
	for _, ch := range []string{"alipay", "wechat"} {
		reports[ch] = runReconcile(t, admin, ch, today())
	}
	for _, w := range want {
		ch := "alipay"
		if strings.Contains(w.order, "WECHAT") {
			ch = "wechat"
		}
		d, ok := diffOf(reports[ch], w.tradeNo, w.refundNo)
		if !ok || d.Kind != w.kind || !d.Healed || d.OrderNo != w.order || d.ProviderFen == 0 || d.LocalFen != 0 {
			t.Errorf("%s %s: difference %+v (found %v), want %s healed\nreport %+v", w.order, w.refundNo, d, ok, w.kind, reports[ch])
		}
		if w.refundNo != "" {
			if got := do(t, "GET", e.base+"/pay/refunds/"+w.refundNo, nil); got.str("state") != "SUCCESS" {
				t.Errorf("refund %s after the run: %s", w.refundNo, got.Raw)
			}
		} else if got := e.get(w.order); got.str("state") != "PAID" || got.str("trade_no") != w.tradeNo {
			t.Errorf("%s after the run: %s", w.order, got.Raw)
		}
	}
	for ch, rep := range reports {
		if rep.State != "done" || rep.Healed != len(rep.Differences) || rep.Matched+len(rep.Differences) != rep.Lines ||
			rep.Totals.LocalPaidFen != rep.Totals.ProviderPaidFen || rep.Totals.LocalRefundedFen != rep.Totals.ProviderRefundedFen {
			t.Errorf("%s report: %+v", ch, rep)
		}
	}
	for _, ch := range []string{"alipay", "wechat"} {
		if rep := runReconcile(t, admin, ch, today()); len(rep.Differences) != 0 || rep.Matched != rep.Lines {
			t.Errorf("%s second run: %+v", ch, rep)
		}
	}
	time.Sleep(500 * time.Millisecond) // deliveries of the second run, if any
	e.quiesce()
	for _, w := range want {
		typ, order := "trade.paid", w.order
		if w.refundNo != "" {
			typ = "refund.succeeded"
		}
		if n := len(e.hooks.ofType(typ, order)); n != 1 {
			t.Errorf("%s: %d %s events, want 1", order, n, typ)
		}
	}
	if d := e.hooks.discrepancies(); len(d) != 0 {
		t.Errorf("reconcile.discrepancy events for healed differences: %v", d)
	}
}

// Keys of the ledger, as payproxy lays them out (README: Redis).
func tradeHash(order string) string { return "tollgate:pay:{o:" + order + "}:trade" }
func refundHash(order string) string {
	return "tollgate:pay:{o:" + order + "}:refunds"
}

// TestTamperedRecordsAreReportedAndOnlyConfirmedOnesHealed: Redis is
// changed behind payproxy's back, and each change is found:
//   - a paid trade's amount changed: amount_mismatch, not healed (money is
//     never changed on a mismatch);
//   - an unpaid trade marked PAID (and indexed for the day):
//     missing_at_provider, not healed (the signed query says unpaid);
//   - a done refund marked FAILED (its amount released): state_mismatch,
//     healed SUCCESS by the signed refund query (amount reserved again);
//   - a paid trade's record and index deleted: missing_locally, not healed
//     (nothing says which order it was);
//   - a paid trade's record deleted, its index kept (an instance died
//     between the two writes): missing_locally, healed from the signed
//     query.
//
// Open differences are sent as reconcile.discrepancy once each, across
// two runs, and counted in the gauge by kind.
func TestTamperedRecordsAreReportedAndOnlyConfirmedOnesHealed(t *testing.T) {
	e := newEnv(t)
	inst := e.start()
	admin := inst.AdminURL()
	c := e.redis.Client()
	ctx := context.Background()

	amountTrade := e.paidOrder("T_AMOUNT", "alipay", 1000)
	must(t, c.HSet(ctx, tradeHash("T_AMOUNT"), "amount_fen", 1100).Err())

	fake := e.create("T_FAKE_PAID", "alipay", 600).str("trade_no")
	must(t, c.HSet(ctx, tradeHash("T_FAKE_PAID"), "state", "PAID", "paid_at", time.Now().UnixMilli()).Err())
	must(t, c.ZAdd(ctx, reconcile.IndexKey("alipay", time.Now(), "p"+fake), redisZ(time.Now(), "p"+fake)).Err())

	refundTrade := e.paidOrder("T_REFUND", "alipay", 800)
	wantStatus(t, e.refund("T_REFUND", "T_RF", 500), 200, "")
	e.settled("T_RF")
	eventually(t, 10*time.Second, "the refund's notification", func() bool { return len(e.deliveries(refundTrade, "refund")) == 1 })
	for _, tn := range []string{amountTrade, refundTrade} {
		e.notified(tn)
	}
	var rf map[string]any
	must(t, json.Unmarshal([]byte(c.HGet(ctx, refundHash("T_REFUND"), "T_RF").Val()), &rf))
	rf["state"] = "FAILED"
	body, _ := json.Marshal(rf)
	must(t, c.HSet(ctx, refundHash("T_REFUND"), "T_RF", body).Err())
	must(t, c.HIncrBy(ctx, tradeHash("T_REFUND"), "refunded_fen", -500).Err())

	goneTrade := e.paidOrder("T_GONE", "alipay", 300)
	e.notified(goneTrade)
	must(t, c.Del(ctx, tradeHash("T_GONE")).Err())
	must(t, c.HDel(ctx, tradeBucket(goneTrade), goneTrade).Err())
	orphanTrade := e.paidOrder("T_ORPHAN", "alipay", 400)
	e.notified(orphanTrade)
	must(t, c.Del(ctx, tradeHash("T_ORPHAN")).Err())
	e.quiesce()
	before := len(e.hooks.all())

	rep := runReconcile(t, admin, "alipay", today())
	want := []reconDiff{
		{Kind: "amount_mismatch", OrderNo: "T_AMOUNT", TradeNo: amountTrade, ProviderFen: 1000, LocalFen: 1100},
		{Kind: "missing_at_provider", OrderNo: "T_FAKE_PAID", TradeNo: fake, LocalFen: 600},
		{Kind: "state_mismatch", OrderNo: "T_REFUND", TradeNo: refundTrade, RefundNo: "T_RF", ProviderFen: 500, Healed: true},
		{Kind: "missing_locally", TradeNo: goneTrade, ProviderFen: 300},
		{Kind: "missing_locally", OrderNo: "T_ORPHAN", TradeNo: orphanTrade, ProviderFen: 400, Healed: true},
	}
	for _, w := range want {
		if got, ok := diffOf(rep, w.TradeNo, w.RefundNo); !ok || got != w {
			t.Errorf("difference %+v, want %+v", got, w)
		}
	}
	if len(rep.Differences) != len(want) || rep.Healed != 2 || rep.State != "done" {
		t.Fatalf("report %+v", rep)
	}
	if got := do(t, "GET", e.base+"/pay/refunds/T_RF", nil); got.str("state") != "SUCCESS" {
		t.Errorf("T_RF after the run: %s", got.Raw)
	}
	if n, _ := c.HGet(ctx, tradeHash("T_REFUND"), "refunded_fen").Int64(); n != 500 {
		t.Errorf("T_REFUND refunded_fen %d after healing, want 500", n)
	}
	if got := e.get("T_ORPHAN"); got.str("state") != "PAID" || got.str("trade_no") != orphanTrade {
		t.Errorf("T_ORPHAN after the run: %s", got.Raw)
	}
	if got := e.get("T_AMOUNT"); got.num("amount_fen") != 1100 || got.str("state") != "PAID" {
		t.Errorf("a mismatched amount was changed: %s", got.Raw)
	}
	if got := e.get("T_FAKE_PAID"); got.str("state") != "PAID" {
		t.Errorf("an unconfirmed record was changed: %s", got.Raw)
	}

	// Run again: the open ones are found again, the events are not sent
	// again.
	again := runReconcile(t, admin, "alipay", today())
	if len(again.Differences) != 3 || again.Healed != 0 {
		t.Fatalf("second run: %+v", again)
	}
	e.quiesce()
	open := map[string]string{"amount_mismatch": amountTrade, "missing_at_provider": fake, "missing_locally": goneTrade}
	got := e.hooks.discrepancies()
	for kind, tn := range open {
		id := "evt_alipay_" + today() + "_" + kind + "_" + tn + "_reconcile.discrepancy"
		if got[id] != 1 {
			t.Errorf("event %s received %d times, want once (received: %v)", id, got[id], got)
		}
		series := fmt.Sprintf(`tollgate_payproxy_reconcile_differences{channel="alipay",kind="%s"}`, kind)
		if v := metric(t, admin, series); v != 1 {
			t.Errorf("%s = %v, want 1", series, v)
		}
	}
	if len(got) != len(open) {
		t.Errorf("discrepancy events %v", got)
	}
	for _, ev := range e.hooks.all()[before:] {
		if ev.Type == "refund.succeeded" && ev.Data.RefundNo != "T_RF" || ev.Type == "trade.paid" && ev.Data.OrderNo != "T_ORPHAN" {
			t.Errorf("unexpected event %+v", ev)
		}
	}
	if v := metric(t, admin, `tollgate_payproxy_reconcile_differences{channel="alipay",kind="state_mismatch"}`); v != 0 {
		t.Errorf("healed state_mismatch counted open: %v", v)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func redisZ(at time.Time, member string) redis.Z {
	return redis.Z{Score: float64(at.UnixMilli()), Member: member}
}

// TestRecordsTheBillLacksAreCheckedWithTheProvider: tollgate's payments
// and refunds of the day are found through the per-day index payproxy
// writes when it records them. Today's Alipay bill is made to list other
// trades (a synthetic day of paysim's): the bill's lines are unknown here
// (missing_locally, not healed: no trade of tollgate's), and each of
// tollgate's own records of the day, absent from the bill, is checked with
// a signed query: the provider confirms every one (it would be on a
// neighbouring day's bill), so none is reported.
func TestRecordsTheBillLacksAreCheckedWithTheProvider(t *testing.T) {
	e := newEnv(t)
	inst := e.start()
	e.paidOrder("ABSENT_A", "alipay", 500)
	e.paidOrder("ABSENT_B", "alipay", 600)
	wantStatus(t, e.refund("ABSENT_B", "ABSENT_RF", 200), 200, "")
	e.settled("ABSENT_RF")
	must(t, e.sim.AddSyntheticDay(paysim.SyntheticDay{Channel: "alipay", Date: today(), Lines: 1}))
	calls := e.sim.Calls()
	rep := runReconcile(t, inst.AdminURL(), "alipay", today())
	if rep.Lines != 1 || len(rep.Differences) != 1 || rep.Differences[0].Kind != "missing_locally" || rep.Differences[0].Healed {
		t.Fatalf("report %+v", rep)
	}
	after := e.sim.Calls()
	if q := after["alipay.trade.query"] - calls["alipay.trade.query"]; q != 2 {
		t.Errorf("%d signed trade queries, want one per payment of the day", q)
	}
	if q := after["alipay.trade.fastpay.refund.query"] - calls["alipay.trade.fastpay.refund.query"]; q != 1 {
		t.Errorf("%d signed refund queries, want one", q)
	}
	if rep.Totals.LocalPaidFen != 0 || rep.Totals.LocalRefundedFen != 0 {
		t.Errorf("totals %+v: the records confirmed elsewhere are not the day's", rep.Totals)
	}
}

// TestARefundDoneHereThatTheProviderHasNotCompletedIsNeverHealed: a WeChat
// refund the provider still processes is on the bill as PROCESSING; while
// tollgate has it PROCESSING too they agree. Recorded SUCCESS here behind
// payproxy's back, it is a state_mismatch that is reported and left as it
// is (money is never moved back on an unconfirmed mismatch); once the
// provider completes it, the two agree again.
func TestARefundDoneHereThatTheProviderHasNotCompletedIsNeverHealed(t *testing.T) {
	e := newEnvWithSim(t, paysim.Config{WechatRefundDelay: time.Hour})
	inst := e.start()
	admin := inst.AdminURL()
	tradeNo := e.paidOrder("SLOW_RF", "wechat", 900)
	wantStatus(t, e.refund("SLOW_RF", "SLOW_RF_1", 300), 200, "")
	if rep := runReconcile(t, admin, "wechat", today()); len(rep.Differences) != 0 || rep.Matched != 2 {
		t.Fatalf("both processing: %+v", rep)
	}
	c, ctx := e.redis.Client(), context.Background()
	var rf map[string]any
	must(t, json.Unmarshal([]byte(c.HGet(ctx, refundHash("SLOW_RF"), "SLOW_RF_1").Val()), &rf))
	rf["state"] = "SUCCESS"
	body, _ := json.Marshal(rf)
	must(t, c.HSet(ctx, refundHash("SLOW_RF"), "SLOW_RF_1", body).Err())
	rep := runReconcile(t, admin, "wechat", today())
	want := reconDiff{Kind: "state_mismatch", OrderNo: "SLOW_RF", TradeNo: tradeNo, RefundNo: "SLOW_RF_1", ProviderFen: 300, LocalFen: 300}
	if d, ok := diffOf(rep, tradeNo, "SLOW_RF_1"); !ok || d != want || len(rep.Differences) != 1 {
		t.Fatalf("report %+v, want %+v", rep, want)
	}
	if v := metric(t, admin, `tollgate_payproxy_reconcile_differences{channel="wechat",kind="state_mismatch"}`); v != 1 {
		t.Errorf("gauge %v", v)
	}
	must(t, e.sim.RefundSucceed("SLOW_RF_1"))
	if rep := runReconcile(t, admin, "wechat", today()); len(rep.Differences) != 0 || rep.Matched != 2 {
		t.Fatalf("once done at the provider: %+v", rep)
	}
	if v := metric(t, admin, `tollgate_payproxy_reconcile_differences{channel="wechat",kind="state_mismatch"}`); v != 0 {
		t.Errorf("gauge %v after the difference went away", v)
	}
}
