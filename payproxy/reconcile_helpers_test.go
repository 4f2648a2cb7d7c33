package payproxy_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/paysim"
	"github.com/tollgate/tollgate/internal/testcaddy"
	"github.com/tollgate/tollgate/payproxy/bill"
	"github.com/tollgate/tollgate/payproxy/bill/billtest"
	"github.com/tollgate/tollgate/payproxy/reconcile"
)

// reconReport is the report JSON, decoded strictly: a field the issue does
// not name fails the decoding.
type reconReport = reconcile.Report

type reconDiff = reconcile.Difference

func decodeReport(t testing.TB, raw []byte) reconReport {
	t.Helper()
	var rep reconReport
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("report %s: %v", raw, err)
	}
	var shape map[string]json.RawMessage
	_ = json.Unmarshal(raw, &shape)
	for _, k := range []string{"channel", "date", "state", "error", "lines", "matched", "healed", "totals", "differences"} {
		if _, ok := shape[k]; !ok {
			t.Fatalf("report %s lacks %q", raw, k)
		}
	}
	if string(shape["differences"]) == "null" {
		t.Fatalf("report %s: differences is null, want a list", raw)
	}
	return rep
}

// runReconcile runs POST /tollgate/payproxy/reconcile on the admin API.
func runReconcile(t testing.TB, admin, channel, date string) reconReport {
	t.Helper()
	r := do(t, "POST", admin+"/tollgate/payproxy/reconcile", map[string]string{"date": date, "channel": channel}, "Origin", admin)
	if r.Status != 200 {
		t.Fatalf("reconcile %s %s: %d %s", channel, date, r.Status, r.Raw)
	}
	rep := decodeReport(t, r.Raw)
	if got := do(t, "GET", admin+"/tollgate/payproxy/reconcile/"+channel+"/"+date, nil); got.Status != 200 || !bytes.Equal(got.Raw, r.Raw) {
		t.Fatalf("GET of the report: %d %s\nthe POST answered %s", got.Status, got.Raw, r.Raw)
	}
	return rep
}

// today is today's bill day (Beijing).
func today() string { return billtest.Today() }

// deadNotify points the providers' notify_url at a port nobody listens
// on: every notification is lost.
func deadNotify(t *testing.T, e *env, cf string) string {
	dead := fmt.Sprintf("http://127.0.0.1:%d", testcaddy.FreePort(t))
	return strings.ReplaceAll(cf, "notify_url "+e.base+"/pay/notify/", "notify_url "+dead+"/pay/notify/")
}

// startWith runs Caddy with the env's Caddyfile changed by mutate.
func (e *env) startWith(mutate func(string) string) *testcaddy.Instance {
	e.t.Helper()
	inst := testcaddy.Start(e.t, "", mutate(e.caddyfile(e.port)))
	if err := testcaddy.WaitListening(fmt.Sprintf("127.0.0.1:%d", e.port), 5*time.Second); err != nil {
		e.t.Fatal(err)
	}
	return inst
}

// paysimTotals are the totals of paysim's bill of today for channel.
func paysimTotals(sim *paysim.Sim, channel string) (int, bill.Totals) {
	lines, tot := billtest.FromPaysim(sim, channel)
	return len(lines), tot
}

// discrepancies are the reconcile.discrepancy events received, by id.
func (h *hookReceiver) discrepancies() map[string]int {
	out := map[string]int{}
	for _, ev := range h.all() {
		if ev.Type == "reconcile.discrepancy" {
			out[ev.ID]++
		}
	}
	return out
}

// metric reads one sample of the admin endpoint's /metrics (-1: absent).
func metric(t testing.TB, admin, series string) float64 {
	t.Helper()
	for _, line := range strings.Split(string(do(t, "GET", admin+"/metrics", nil).Raw), "\n") {
		if strings.HasPrefix(line, series+" ") {
			var v float64
			fmt.Sscan(line[len(series)+1:], &v)
			return v
		}
	}
	return -1
}

// diffOf finds the difference of a trade (and refund) in a report.
func diffOf(rep reconReport, tradeNo, refundNo string) (reconDiff, bool) {
	for _, d := range rep.Differences {
		if d.TradeNo == tradeNo && d.RefundNo == refundNo {
			return d, true
		}
	}
	return reconDiff{}, false
}

// settled waits until every refund at paysim and here has ended.
func (e *env) settled(refunds ...string) {
	e.t.Helper()
	eventually(e.t, 15*time.Second, "refunds settled", func() bool {
		for _, rf := range e.sim.Refunds() {
			if rf.Status == "PROCESSING" {
				return false
			}
		}
		for _, no := range refunds {
			if do(e.t, "GET", e.base+"/pay/refunds/"+no, nil).str("state") != "SUCCESS" {
				return false
			}
		}
		return true
	})
}

// runsSince snapshots tollgate_payproxy_reconcile_runs_total of an admin
// endpoint; the func returned gives how much a series grew since. The
// counter is one per process (it survives reloads), so tests in this
// process count from their own start.
func runsSince(t testing.TB, admin string) func(channel, result string) float64 {
	series := func(ch, result string) string {
		return fmt.Sprintf(`tollgate_payproxy_reconcile_runs_total{channel="%s",result="%s"}`, ch, result)
	}
	base := map[string]float64{}
	for _, ch := range []string{"alipay", "wechat"} {
		for _, result := range []string{"done", "pending", "error"} {
			base[series(ch, result)] = max(0, metric(t, admin, series(ch, result)))
		}
	}
	return func(ch, result string) float64 {
		return max(0, metric(t, admin, series(ch, result))) - base[series(ch, result)]
	}
}

// notified waits until every notification paysim made about the trade is
// acknowledged: none is still on its way to change the record a test is
// about to tamper with.
func (e *env) notified(tradeNo string) {
	e.t.Helper()
	eventually(e.t, 10*time.Second, "notifications of "+tradeNo+" acknowledged", func() bool {
		for _, d := range e.sim.Notifications() {
			if d.OutTradeNo == tradeNo && !d.Delivered {
				return false
			}
		}
		return true
	})
}
