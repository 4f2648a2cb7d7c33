package payproxy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/tollgate/tollgate/internal/paysim"
	"github.com/tollgate/tollgate/internal/testcaddy"
	"github.com/tollgate/tollgate/payproxy"
	"github.com/tollgate/tollgate/payproxy/alipay"
	"github.com/tollgate/tollgate/payproxy/bill"
)

var beijing = time.FixedZone("CST", 8*3600)

// withReconcile adds a reconcile block to the env's payproxy.
func withReconcile(e *env, at string, days int) {
	e.extra += fmt.Sprintf("\t\treconcile {\n\t\t\tat %s\n\t\t\ttimezone Asia/Shanghai\n\t\t\tdays %d\n\t\t}\n", at, days)
}

// reportState reads a stored report's state ("" when none).
func reportState(t testing.TB, admin, channel, date string) string {
	r := do(t, "GET", admin+"/tollgate/payproxy/reconcile/"+channel+"/"+date, nil)
	if r.Status != http.StatusOK {
		return ""
	}
	return decodeReport(t, r.Raw).State
}

// TestTwoInstancesDueAtTheSameMinuteRunOnce: two tollgate instances (this
// process and another one) share a Redis, both with reconcile due this
// very minute: each channel's bill is asked for once, its run counted
// once across both, and what is left is one plan for the day and the date
// due again only later in the day (its bill, of a day without trades, is
// not there yet).
func TestTwoInstancesDueAtTheSameMinuteRunOnce(t *testing.T) {
	if now := time.Now().In(beijing); now.Hour() == 23 && now.Minute() == 59 {
		time.Sleep(time.Until(now.Truncate(time.Minute).Add(time.Minute + time.Second)))
	}
	e := newEnv(t)
	withReconcile(e, time.Now().In(beijing).Format("15:04"), 1)
	inst := e.start()
	here := runsSince(t, inst.AdminURL())
	port2 := testcaddy.FreePort(t)
	proc := testcaddy.StartProcess(t, "", e.caddyfile(port2))
	there := runsSince(t, proc.AdminURL())
	runs := func(ch string) float64 { return here(ch, "pending") + there(ch, "pending") }
	eventually(t, 30*time.Second, "a run per channel", func() bool { return runs("alipay") >= 1 && runs("wechat") >= 1 })
	c := e.redis.Client()
	ctx := context.Background()
	now := time.Now().In(beijing)
	yesterday := now.AddDate(0, 0, -1).Format(time.DateOnly)
	for _, ch := range []string{"alipay", "wechat"} {
		if n := e.sim.Calls()[ch+".bill"]; n != 1 {
			t.Errorf("%s bill asked for %d times, want 1", ch, n)
		}
		if n := runs(ch); n != 1 {
			t.Errorf("%s: %v runs over both instances, want 1", ch, n)
		}
		if c.Exists(ctx, "tollgate:pay:{rc}:planned:"+ch+":"+now.Format(time.DateOnly)).Val() != 1 {
			t.Errorf("%s: no plan for the day", ch)
		}
		due := c.ZRangeWithScores(ctx, "tollgate:pay:{rc}:due:"+ch, 0, -1).Val()
		if late := now.Add(15 * time.Minute); now.Hour() < 23 && (len(due) != 1 || due[0].Member != yesterday || due[0].Score < float64(late.UnixMilli())) {
			t.Errorf("%s due set %v, want %s in about 20 minutes", ch, due, yesterday)
		}
		if got := reportState(t, inst.AdminURL(), ch, yesterday); got != "pending" {
			t.Errorf("%s report of %s: state %q, want pending", ch, yesterday, got)
		}
	}
}

// TestABillNotReadyIsAskedForAgainLaterInTheDay: the daily run (the
// scheduler's clock moved to tomorrow 10:30, so that today, with its
// payments and refunds, is the day reconciled) meets bills that are not
// ready: the reports are pending, nothing compared; 20 minutes later (the
// clock moved again) the bills are there and the runs complete, each bill
// read whole and matching.
func TestABillNotReadyIsAskedForAgainLaterInTheDay(t *testing.T) {
	e := newEnv(t)
	e.options["poll_interval"] = "100ms"
	withReconcile(e, "10:30", 1)
	t.Cleanup(payproxy.ResetReconcileClock)
	inst := e.start()
	admin := inst.AdminURL()
	todaysRunDone(t, e, admin, 10, 30)
	runs := runsSince(t, admin)
	calls := e.sim.Calls()
	for _, ch := range []string{"alipay", "wechat"} {
		e.paidOrder("LATE_BILL_"+ch, ch, 2100)
		wantStatus(t, e.refund("LATE_BILL_"+ch, "LATE_RF_"+ch, 100), 200, "")
		e.settled("LATE_RF_" + ch)
		e.sim.SetFault(paysim.Fault{Operation: ch + ".bill", Mode: paysim.FaultBillNotReady})
	}
	now := time.Now().In(beijing)
	y, m, d := now.Date()
	payproxy.MoveReconcileClock(time.Until(time.Date(y, m, d+1, 10, 30, 1, 0, beijing)))
	for _, ch := range []string{"alipay", "wechat"} {
		eventually(t, 10*time.Second, ch+" pending", func() bool { return reportState(t, admin, ch, today()) == "pending" })
		rep := decodeReport(t, do(t, "GET", admin+"/tollgate/payproxy/reconcile/"+ch+"/"+today(), nil).Raw)
		if rep.Lines != 0 || !strings.Contains(rep.Error, "no bill") {
			t.Fatalf("pending report %+v", rep)
		}
	}
	payproxy.MoveReconcileClock(21 * time.Minute)
	for _, ch := range []string{"alipay", "wechat"} {
		eventually(t, 10*time.Second, ch+" done", func() bool { return reportState(t, admin, ch, today()) == "done" })
		rep := decodeReport(t, do(t, "GET", admin+"/tollgate/payproxy/reconcile/"+ch+"/"+today(), nil).Raw)
		if lines, _ := paysimTotals(e.sim, ch); rep.Lines != lines || rep.Matched != lines || len(rep.Differences) != 0 {
			t.Errorf("%s report %+v, paysim's bill has %d lines", ch, rep, lines)
		}
		for result, want := range map[string]float64{"pending": 1, "done": 1} {
			if v := runs(ch, result); v != want {
				t.Errorf("%s runs_total %s grew by %v, want %v", ch, result, v, want)
			}
		}
		if n := e.sim.Calls()[ch+".bill"] - calls[ch+".bill"]; n != 2 {
			t.Errorf("%s bill asked for %d times, want 2", ch, n)
		}
	}
}

// todaysRunDone waits, when the daily run's time (hour:minute, Beijing)
// has passed today, for the run an instance makes at once on starting
// (yesterday's bills), so that a test that moves the clock to tomorrow's
// run arms its faults for that run, not for this one: without it the
// test passed before 10:30 Beijing and failed after. That run is pending
// (yesterday had no trade, and its bill is "not there" until the day after
// tomorrow), so yesterday is due again later today: it is taken out of the
// due sets, or it would run first once the clock is moved.
func todaysRunDone(t *testing.T, e *env, admin string, hour, minute int) {
	t.Helper()
	now := time.Now().In(beijing)
	y, m, d := now.Date()
	if now.Before(time.Date(y, m, d, hour, minute, 0, 0, beijing)) {
		return
	}
	yesterday := now.AddDate(0, 0, -1).Format(time.DateOnly)
	for _, ch := range []string{"alipay", "wechat"} {
		eventually(t, 30*time.Second, ch+" run of "+yesterday, func() bool { return reportState(t, admin, ch, yesterday) != "" })
		// Its retry is due RetryInterval (20 min) on; while the run holds
		// the date its score is the lease's end (30 min on).
		c, due := e.redis.Client(), "tollgate:pay:{rc}:due:"+ch
		eventually(t, 10*time.Second, ch+" retry of "+yesterday+" scheduled", func() bool {
			score, err := c.ZScore(context.Background(), due, yesterday).Result()
			return err == nil && score < float64(time.Now().Add(25*time.Minute).UnixMilli())
		})
		must(t, c.ZRem(context.Background(), due, yesterday).Err())
	}
}

// TestACorruptBillIsAnErrorAndHealsNothing: a WeChat bill whose bytes do
// not have the signed answer's SHA1, and an Alipay zip that cannot be
// opened (paysim's corrupt_bill), each yield a report in state error,
// naming the reason, with nothing compared: the payment whose notification
// was lost stays unpaid, no event is sent, no difference is counted. Once
// the bill is good, the same run heals it.
func TestACorruptBillIsAnErrorAndHealsNothing(t *testing.T) {
	e := newEnv(t)
	e.options["poll_interval"] = "1h"
	inst := e.startWith(func(cf string) string { return deadNotify(t, e, cf) })
	admin := inst.AdminURL()
	runs := runsSince(t, admin)
	reasons := map[string]string{"alipay": "unreadable zip", "wechat": "SHA1"}
	for _, ch := range []string{"alipay", "wechat"} {
		t.Run(ch, func(t *testing.T) {
			order := "CORRUPT_" + strings.ToUpper(ch)
			r := e.create(order, ch, 1300)
			if err := e.sim.Pay(r.str("trade_no")); err != nil {
				t.Fatal(err)
			}
			e.sim.SetFault(paysim.Fault{Operation: ch + ".bill", Mode: paysim.FaultCorruptBill})
			before := e.redis.Dump()
			rep := runReconcile(t, admin, ch, today())
			if rep.State != "error" || !strings.Contains(rep.Error, reasons[ch]) || rep.Lines != 0 || rep.Matched != 0 ||
				len(rep.Differences) != 0 || rep.Healed != 0 || rep.Totals != (reconReport{}).Totals {
				t.Fatalf("report %+v", rep)
			}
			after := e.redis.Dump()
			for k, v := range after {
				if before[k] != v && !strings.Contains(k, ":report:") && !strings.Contains(k, "{rc}:due:") {
					t.Errorf("key %s changed: %s → %s", k, before[k], v)
				}
			}
			if got := e.get(order); got.str("state") == "PAID" {
				t.Fatalf("healed from a bad bill: %s", got.Raw)
			}
			if v := runs(ch, "error"); v != 1 {
				t.Errorf("runs_total error grew by %v", v)
			}
			if v := metric(t, admin, fmt.Sprintf(`tollgate_payproxy_reconcile_differences{channel="%s",kind="missing_locally"}`, ch)); v != 0 {
				t.Errorf("differences counted from a bad bill: %v", v)
			}
			if rep := runReconcile(t, admin, ch, today()); rep.State != "done" || rep.Healed != 1 {
				t.Fatalf("the good bill: %+v", rep)
			}
		})
	}
	e.quiesce()
	if d := e.hooks.discrepancies(); len(d) != 0 {
		t.Errorf("discrepancy events: %v", d)
	}
}

// TestReconcileAdminRefusesBadRequests: each bad request is refused with
// its status, error code and description, and Redis is left as it was.
func TestReconcileAdminRefusesBadRequests(t *testing.T) {
	e := newEnv(t)
	inst := e.startWith(func(cf string) string {
		return regexp.MustCompile(`(?s)\twechat \{.*?\n\t\t\}\n`).ReplaceAllString(cf, "")
	})
	admin := inst.AdminURL()
	e.paidOrder("ADMIN_BAD", "alipay", 100)
	e.quiesce()
	tomorrow := time.Now().In(beijing).AddDate(0, 0, 1).Format(time.DateOnly)
	cases := []struct {
		name, method, path string
		body               any
		status             int
		code, desc         string
	}{
		{"not JSON", "POST", "", "{date", 400, "invalid_request", `body must be {"date": "yyyy-MM-dd", "channel": "alipay"|"wechat"}`},
		{"unknown field", "POST", "", map[string]any{"date": today(), "channel": "alipay", "force": true}, 400, "invalid_request", `unknown field "force"`},
		{"unknown channel", "POST", "", map[string]string{"date": today(), "channel": "paypal"}, 400, "invalid_request", `channel must be "alipay" or "wechat"`},
		{"channel not offered", "POST", "", map[string]string{"date": today(), "channel": "wechat"}, 404, "not_found", "no running payproxy route offers wechat"},
		{"bad date", "POST", "", map[string]string{"date": "2026-02-30", "channel": "alipay"}, 400, "invalid_request", `date "2026-02-30" is not yyyy-MM-dd`},
		{"no date", "POST", "", map[string]string{"channel": "alipay"}, 400, "invalid_request", `date "" is not yyyy-MM-dd`},
		{"future date", "POST", "", map[string]string{"date": tomorrow, "channel": "alipay"}, 400, "invalid_request", "date " + tomorrow + " is after today"},
		{"no report", "GET", "/alipay/" + today(), nil, 404, "not_found", "no reconciliation report for alipay " + today()},
		{"bad date in path", "GET", "/alipay/yesterday", nil, 400, "invalid_request", `date "yesterday" is not yyyy-MM-dd`},
		{"bad channel in path", "GET", "/bank/" + today(), nil, 400, "invalid_request", `channel must be "alipay" or "wechat"`},
		{"wrong method", "PUT", "", nil, 405, "method_not_allowed", "use POST"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := e.redis.Dump()
			r := do(t, c.method, admin+"/tollgate/payproxy/reconcile"+c.path, c.body, "Origin", admin)
			if r.Status != c.status || r.str("error") != c.code || !strings.Contains(r.str("error_description"), c.desc) {
				t.Fatalf("got %d %s, want %d %s %q", r.Status, r.Raw, c.status, c.code, c.desc)
			}
			if after := e.redis.Dump(); !reflect.DeepEqual(before, after) {
				t.Fatalf("Redis changed")
			}
		})
	}
	if n := e.sim.Calls()["alipay.bill"]; n != 0 {
		t.Fatalf("the bill was asked for %d times", n)
	}
}

// TestReconcileBlockAdaptsAndItsValuesAreChecked: the reconcile block
// adapts to JSON with its three values (none given: the block alone turns
// reconciliation on); a bad time, time zone or day count fails the config
// load, also when it comes as JSON.
func TestReconcileBlockAdaptsAndItsValuesAreChecked(t *testing.T) {
	h := handlerOf(t, ":8080 {\n payproxy {\n redis redis://127.0.0.1:6379/0\n reconcile {\n at 03:30\n timezone Asia/Shanghai\n days 3\n }\n }\n}")
	if got := fmt.Sprint(h["reconcile"]); got != "map[at:03:30 days:3 timezone:Asia/Shanghai]" {
		t.Fatalf("adapted reconcile: %s", got)
	}
	if h := handlerOf(t, ":8080 {\n payproxy {\n redis redis://127.0.0.1:6379/0\n reconcile\n }\n}"); fmt.Sprint(h["reconcile"]) != "map[]" {
		t.Fatalf("a bare reconcile adapted to %v", h["reconcile"])
	}
	for body, want := range map[string]string{
		"reconcile {\n colour blue\n }": `unrecognized reconcile subdirective "colour", at Caddyfile:5`,
		"reconcile {\n days three\n }":  `days: strconv.Atoi: parsing "three": invalid syntax, at Caddyfile:5`,
		"reconcile now":                 "wrong argument count",
	} {
		if _, _, err := testcaddy.Adapt(":8080 {\n payproxy {\n redis redis://x:1\n " + body + "\n }\n}"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", body, err, want)
		}
	}
	e := newEnv(t)
	for block, want := range map[string]string{
		"at 24:00":              `reconcile at "24:00": want HH:MM, 00:00 to 23:59`,
		"at 3:30":               `reconcile at "3:30": want HH:MM`,
		"timezone Mars/Olympus": `reconcile timezone Mars/Olympus: unknown time zone`,
		"days 91":               "reconcile days 91: must be 1 to 90",
		"days -1":               "reconcile days -1: must be 1 to 90",
	} {
		e.extra = "\t\treconcile {\n\t\t\t" + block + "\n\t\t}\n"
		if err := validateConfig(t, e.caddyfile(e.port)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: validate %v, want %q", block, err, want)
		}
	}
}

// validateConfig adapts a site and validates it as Caddy's JSON config.
func validateConfig(t *testing.T, site string) error {
	t.Helper()
	cfg, _, err := testcaddy.Adapt(testcaddy.Global(testcaddy.FreePort(t), "") + site)
	if err != nil {
		t.Fatal(err)
	}
	var conf caddy.Config
	if err := json.Unmarshal(cfg, &conf); err != nil {
		t.Fatal(err)
	}
	return caddy.Validate(&conf)
}

// badAtTheEnd is a bill whose lines read well and whose end is bad (its
// summary disagrees with its lines): the last Next fails.
type badAtTheEnd struct{ bill.Reader }

func (b badAtTheEnd) Next() (bill.Line, error) {
	l, err := b.Reader.Next()
	if err == io.EOF {
		return l, bill.Bad("the summary disagrees with the lines")
	}
	return l, err
}

// TestABillBadOnlyAtItsEndHealsAndReportsNothing: differences are acted on
// only once the whole bill has proved good. Today's Alipay bill, every
// line of it read, turns out bad at its end: the report is an error, the
// payment whose notification was lost stays unpaid, the tampered amount
// is not reported (no event, no gauge), no temporary key is left.
func TestABillBadOnlyAtItsEndHealsAndReportsNothing(t *testing.T) {
	e := newEnv(t)
	e.options["poll_interval"] = "1h"
	inst := e.startWith(func(cf string) string { return deadNotify(t, e, cf) })
	r := e.create("BAD_END_LOST", "alipay", 800)
	must(t, e.sim.Pay(r.str("trade_no")))
	e.create("BAD_END_AMOUNT", "alipay", 900)
	tn := e.get("BAD_END_AMOUNT").str("trade_no")
	must(t, e.sim.Pay(tn))
	wantTradePaid := do(t, "GET", e.base+"/pay/trades/BAD_END_AMOUNT?sync=1", nil)
	if wantTradePaid.str("state") != "PAID" {
		t.Fatalf("sync: %s", wantTradePaid.Raw)
	}
	c, ctx := e.redis.Client(), context.Background()
	must(t, c.HSet(ctx, tradeHash("BAD_END_AMOUNT"), "amount_fen", 901).Err())
	path := filepath.Join(t.TempDir(), "bill.zip")
	f, err := os.Create(path)
	must(t, err)
	must(t, e.sim.WriteBill(f, "alipay", today()))
	must(t, f.Close())
	e.quiesce()
	events := len(e.hooks.all())
	rep, err := payproxy.ReconcileWithBill(ctx, "alipay", today(), func() (bill.Reader, error) {
		r, err := alipay.OpenBillFile(path)
		return badAtTheEnd{r}, err
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.State != "error" || !strings.Contains(rep.Error, "the summary disagrees") || len(rep.Differences) != 0 || rep.Lines != 0 || rep.Healed != 0 {
		t.Fatalf("report %+v", rep)
	}
	if got := e.get("BAD_END_LOST"); got.str("state") == "PAID" {
		t.Fatalf("healed from a bad bill: %s", got.Raw)
	}
	time.Sleep(300 * time.Millisecond) // a sender round, had anything been queued
	e.quiesce()
	if n := len(e.hooks.all()); n != events {
		t.Errorf("%d events sent from a bad bill", n-events)
	}
	if v := metric(t, inst.AdminURL(), `tollgate_payproxy_reconcile_differences{channel="alipay",kind="amount_mismatch"}`); v != 0 {
		t.Errorf("gauge %v", v)
	}
	if keys := c.Keys(ctx, "tollgate:pay:{rc:alipay}:*").Val(); len(keys) != 2 {
		t.Errorf("keys left: %v (want the day's index and the report)", keys)
	}
}

// TestReconcileMetricsAndScheduleSurviveReloads: the runs counter counts
// on across config reloads (registered once, shared by the configs) and
// the gauge keeps reading Redis; each reload leaves one scheduler.
func TestReconcileMetricsAndScheduleSurviveReloads(t *testing.T) {
	e := newEnv(t)
	withReconcile(e, "10:30", 1)
	inst := e.start()
	admin := inst.AdminURL()
	runs := runsSince(t, admin)
	e.paidOrder("RELOAD_RECON", "wechat", 500)
	must(t, e.redis.Client().HSet(context.Background(), tradeHash("RELOAD_RECON"), "amount_fen", 501).Err())
	runReconcile(t, admin, "wechat", today())
	for _, iv := range []string{"150ms", "250ms"} {
		e.options["poll_interval"] = iv
		inst.Reload(e.caddyfile(e.port))
	}
	runReconcile(t, admin, "wechat", today())
	if v := runs("wechat", "done"); v != 2 {
		t.Errorf("runs_total done grew by %v over two runs across reloads, want 2", v)
	}
	if v := metric(t, admin, `tollgate_payproxy_reconcile_differences{channel="wechat",kind="amount_mismatch"}`); v != 1 {
		t.Errorf("gauge = %v", v)
	}
	eventually(t, 5*time.Second, "one scheduler", func() bool { return countGoroutines("payproxy.(*PayProxy).runReconciler") == 1 })
}
