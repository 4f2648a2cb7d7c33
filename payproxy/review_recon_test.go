package payproxy_test

import (
	"context"
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
	must(t, c.Del(ctx, tradeHash("NOBILL_GONE"), "tollgate:pay:{t:"+gone+"}").Err())
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
