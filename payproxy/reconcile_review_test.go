package payproxy_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/paysim"
	"github.com/tollgate/tollgate/payproxy"
)

// TestANoBillAnswerNeverErasesADifferenceAlreadyFound: the provider took
// a payment tollgate has no record of (missing_locally, open, counted in
// the gauge). Two days later the daily re-check of that date meets a "no
// bill" answer (Alipay's isp.bill_not_exist, unsigned in reality; a hop
// or a late bill gives the same): the date must not become a done report
// with no line and no difference, and the open difference must stay
// counted — the money the provider holds for us is still unaccounted.
func TestANoBillAnswerNeverErasesADifferenceAlreadyFound(t *testing.T) {
	e := newEnv(t)
	inst := e.start()
	admin := inst.AdminURL()
	t.Cleanup(payproxy.ResetReconcileClock)
	c, ctx := e.redis.Client(), context.Background()

	gone := e.paidOrder("NOBILL_GONE", "alipay", 300)
	e.notified(gone)
	must(t, c.Del(ctx, tradeHash("NOBILL_GONE")).Err())
	must(t, c.HDel(ctx, tradeBucket(gone), gone).Err())
	first := runReconcile(t, admin, "alipay", today())
	if d, ok := diffOf(first, gone, ""); !ok || d.Kind != "missing_locally" || d.Healed {
		t.Fatalf("first run: %+v", first)
	}
	gauge := `tollgate_payproxy_reconcile_differences{channel="alipay",kind="missing_locally"}`
	if v := metric(t, admin, gauge); v != 1 {
		t.Fatalf("gauge %v after the first run, want 1", v)
	}

	// Two days later: the re-check of that date gets "no bill".
	payproxy.MoveReconcileClock(49 * time.Hour)
	e.sim.SetFault(paysim.Fault{Operation: "alipay.bill", Mode: paysim.FaultBillNotReady})
	again := runReconcile(t, admin, "alipay", today())
	if _, ok := diffOf(again, gone, ""); !ok && again.State == "done" {
		t.Errorf("a \"no bill\" answer replaced the report: state %q, %d lines, %d differences (the payment of %s is no longer reported)",
			again.State, again.Lines, len(again.Differences), gone)
	}
	if v := metric(t, admin, gauge); v != 1 {
		t.Errorf("%s = %v after the \"no bill\" re-check, want 1: the open difference is no longer counted", gauge, v)
	}
}

// TestABuyersSubjectCannotBlindTheDaysWechatReconciliation: the subject of
// a trade is the client's (POST /pay/trades "subject") and WeChat writes it
// as it is into the 商品名称 column of its bill, whose values are only
// prefixed with a backtick, never escaped. One paid trade whose subject
// holds ",`" must not make the whole day's WeChat bill unreadable: the
// same day, a payment whose notification was lost must still be found
// and healed by the reconciliation.
func TestABuyersSubjectCannotBlindTheDaysWechatReconciliation(t *testing.T) {
	e := newEnv(t)
	e.options["poll_interval"] = "1h"
	inst := e.startWith(func(cf string) string { return deadNotify(t, e, cf) })

	r := do(t, "POST", e.base+"/pay/trades", map[string]any{
		"order_no": "SUBJ_BLIND_1", "amount_fen": 1, "channel": "wechat", "subject": "运费,`SUCCESS,`x"})
	if r.Status != 200 {
		// Refusing such a subject is a fix as good as parsing it.
		t.Skipf("the subject is refused: %d %s", r.Status, r.Raw)
	}
	must(t, e.sim.Pay(r.str("trade_no")))
	if got := do(t, "GET", e.base+"/pay/trades/SUBJ_BLIND_1?sync=1", nil); got.str("state") != "PAID" {
		t.Fatalf("sync: %s", got.Raw)
	}
	lost := e.create("SUBJ_LOST_1", "wechat", 2300)
	wantStatus(t, lost, 200, "")
	must(t, e.sim.Pay(lost.str("trade_no")))

	rep := runReconcile(t, inst.AdminURL(), "wechat", today())
	if rep.State != "done" {
		t.Errorf("one buyer's subject made the day's WeChat bill unreadable: state %q, error %q", rep.State, rep.Error)
	}
	if got := e.get("SUBJ_LOST_1"); got.str("state") != "PAID" {
		t.Errorf("the payment whose notification was lost is not healed: %s", got.Raw)
	}
}

// TestAFailedRecheckKeepsTheDifferencesOfTheLastCompleteRun: a done
// report lists an open difference; a later re-check of the same date whose
// bill download fails (the connection reset) must not leave the date's
// report without it: GET /tollgate/payproxy/reconcile/{channel}/{date} is
// where ops find what to act on, and the gauge still counts it open.
func TestAFailedRecheckKeepsTheDifferencesOfTheLastCompleteRun(t *testing.T) {
	e := newEnv(t)
	inst := e.start()
	admin := inst.AdminURL()
	c, ctx := e.redis.Client(), context.Background()

	gone := e.paidOrder("RECHECK_GONE", "alipay", 300)
	e.notified(gone)
	must(t, c.Del(ctx, tradeHash("RECHECK_GONE")).Err())
	must(t, c.HDel(ctx, tradeBucket(gone), gone).Err())
	if rep := runReconcile(t, admin, "alipay", today()); len(rep.Differences) != 1 {
		t.Fatalf("first run: %+v", rep)
	}
	e.sim.SetFault(paysim.Fault{Operation: "alipay.bill", Mode: paysim.FaultReset})
	runReconcile(t, admin, "alipay", today())
	rep := decodeReport(t, do(t, "GET", admin+"/tollgate/payproxy/reconcile/alipay/"+today(), nil).Raw)
	gauge := metric(t, admin, `tollgate_payproxy_reconcile_differences{channel="alipay",kind="missing_locally"}`)
	if _, ok := diffOf(rep, gone, ""); !ok {
		t.Errorf("after a failed re-check the report is %q (%q) with %d differences, while the gauge counts %v open: the payment of %s is listed nowhere",
			rep.State, rep.Error, len(rep.Differences), gauge, gone)
	}
	if a := rep.LastAttempt; a == nil || a.State != "error" || !strings.Contains(a.Error, "fetching the bill") {
		t.Errorf("the failed re-check is not told beside the report: last_attempt %+v", a)
	}
	// The next completed run replaces the report and forgets the attempt.
	// (the reset fault was armed once, and is spent)
	if rep := runReconcile(t, admin, "alipay", today()); rep.State != "done" || rep.LastAttempt != nil {
		t.Errorf("after a completed re-check: state %q, last_attempt %+v", rep.State, rep.LastAttempt)
	}
}
