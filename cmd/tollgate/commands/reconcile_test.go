package commands_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/paysim"
	"github.com/tollgate/tollgate/internal/paysim/paysimtest"
	"github.com/tollgate/tollgate/internal/testcaddy"
	"github.com/tollgate/tollgate/internal/testredis"
)

// payWorld is a payproxy route (Alipay at paysim) in this process.
type payWorld struct {
	base, admin string
	sim         *paysim.Sim
}

func startPayWorld(t *testing.T) *payWorld {
	t.Helper()
	sim, simURL := paysimtest.Start(t, paysim.Config{})
	k := sim.Keys()
	port := testcaddy.FreePort(t)
	w := &payWorld{base: fmt.Sprintf("http://127.0.0.1:%d", port), sim: sim}
	inst := testcaddy.Start(t, "", fmt.Sprintf(`%s {
	payproxy {
		redis %s
		operations create status notify
		poll_interval 200ms
		alipay {
			app_id %s
			private_key %s
			alipay_public_key %s
			gateway %s/gateway.do
			notify_url %s/pay/notify/alipay
		}
	}
}
`, w.base, testredis.Start(t).URL(), k.AlipayAppID, k.AlipayPrivateKeyFile, k.AlipayPublicKeyFile, simURL, w.base))
	w.admin = "127.0.0.1:" + strconv.Itoa(inst.AdminPort)
	return w
}

// pay creates and pays an Alipay trade of order, and waits until it is PAID.
func (w *payWorld) pay(t *testing.T, order string, fen int64) {
	t.Helper()
	body := fmt.Sprintf(`{"order_no":%q,"amount_fen":%d,"channel":"alipay","subject":"parcel"}`, order, fen)
	resp, err := http.Post(w.base+"/pay/trades", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var trade struct {
		TradeNo string `json:"trade_no"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&trade)
	resp.Body.Close()
	if err := w.sim.Pay(trade.TradeNo); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get(w.base + "/pay/trades/" + order)
		if err != nil {
			t.Fatal(err)
		}
		var got struct{ State string }
		_ = json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		if got.State == "PAID" {
			return
		}
	}
	t.Fatalf("%s never PAID", order)
}

// TestPayproxyReconcilePrintsTheReportAndFailsUnlessDone: on a day without
// a bill the command prints the pending report and exits 1; once the day
// has a payment it prints the done report (and --json the admin API's
// JSON) and exits 0.
func TestPayproxyReconcilePrintsTheReportAndFailsUnlessDone(t *testing.T) {
	if out := ok(t, "help", "payproxy").stdout; !strings.Contains(out, "reconcile") {
		t.Fatalf("tollgate help payproxy lacks reconcile:\n%s", out)
	}
	w := startPayWorld(t)
	today := time.Now().In(time.FixedZone("CST", 8*3600)).Format(time.DateOnly)
	r := refused(t, "the reconciliation of alipay "+today+" is pending", "payproxy", "reconcile", "--address", w.admin, "--channel", "alipay", "--date", today)
	if !strings.HasPrefix(r.stdout, "alipay "+today+": pending; 0 lines") {
		t.Fatalf("pending report printed as:\n%s", r.stdout)
	}
	w.pay(t, "CLI_RECON_1", 1234)
	out := ok(t, "payproxy", "reconcile", "--address", w.admin, "--channel", "alipay", "--date", today).stdout
	want := "alipay " + today + ": done; 1 lines, 1 matched, 0 differences (0 healed, 0 open)\n" +
		"paid:     provider 12.34 yuan, tollgate 12.34 yuan\nrefunded: provider 0.00 yuan, tollgate 0.00 yuan\n"
	if out != want {
		t.Fatalf("printed:\n%s\nwant:\n%s", out, want)
	}
	var rep map[string]any
	raw := ok(t, "payproxy", "reconcile", "--json", "--address", w.admin, "--channel", "alipay", "--date", today).stdout
	if err := json.Unmarshal([]byte(raw), &rep); err != nil || rep["state"] != "done" || rep["lines"] != 1.0 {
		t.Fatalf("--json printed %s (%v)", raw, err)
	}
}

// TestPayproxyReconcileRefusesMissingFlagsAndNamesTheAPIsReason: without
// --channel or --date nothing is sent; the admin API's refusal (a date
// that is no day) is shown with its reason.
func TestPayproxyReconcileRefusesMissingFlagsAndNamesTheAPIsReason(t *testing.T) {
	w := startPayWorld(t)
	refused(t, "give --channel <alipay|wechat> and --date <yyyy-MM-dd>", "payproxy", "reconcile", "--address", w.admin, "--date", "2026-11-30")
	refused(t, "give --channel <alipay|wechat> and --date <yyyy-MM-dd>", "payproxy", "reconcile", "--address", w.admin, "--channel", "alipay")
	refused(t, `HTTP 400`, "payproxy", "reconcile", "--address", w.admin, "--channel", "alipay", "--date", "2026-13-01")
	refused(t, `is not yyyy-MM-dd`, "payproxy", "reconcile", "--address", w.admin, "--channel", "alipay", "--date", "2026-13-01")
	if n := w.sim.Calls()["alipay.bill"]; n != 0 {
		t.Fatalf("the bill was asked for %d times", n)
	}
}
