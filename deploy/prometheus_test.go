package deploy_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/paysim"
	"github.com/tollgate/tollgate/internal/paysim/paysimtest"
	"github.com/tollgate/tollgate/internal/testcaddy"
	"github.com/tollgate/tollgate/internal/testredis"

	_ "github.com/tollgate/tollgate"
)

// TestDeadLetterAlertFiresInARealPrometheusAndResolvesAfterAReplay: a real
// Prometheus evaluates alerts.yml against a real tollgate whose webhook
// receiver refuses everything. One paid order's event is dead-lettered
// after max_attempts 1 and the alert fires; every dashboard query runs
// against the same Prometheus. Then the operator's path: list the dead
// letter with `tollgate payproxy dead-letters`, fix the receiver, replay it
// with --replay, and the alert resolves.
func TestDeadLetterAlertFiresInARealPrometheusAndResolvesAfterAReplay(t *testing.T) {
	w := startPayWorld(t)
	admin := "127.0.0.1:" + strconv.Itoa(w.caddy.AdminPort)
	prom := startPrometheus(t, admin)

	w.paidOrder("DEADLETTER_1")
	waitFor(t, 20*time.Second, "one dead letter in the admin API", func() bool {
		var dead []json.RawMessage
		return getJSON(w.caddy.AdminURL()+"/tollgate/payproxy/dead_letters", &dead) == nil && len(dead) == 1
	})
	waitFor(t, 60*time.Second, "alert TollgateWebhookDeadLetters firing", func() bool {
		return prom.alertState("TollgateWebhookDeadLetters") == "firing"
	})
	if v := prom.value(t, `tollgate_payproxy_webhook_dead_letters`); v != "1" {
		t.Fatalf("tollgate_payproxy_webhook_dead_letters = %q, want 1", v)
	}
	runDashboard(t, prom)

	// The operator lists it, refuses nothing by mistake, and replays it.
	table := cli(t, 0, "payproxy", "dead-letters", "--address", admin).stdout
	id := regexp.MustCompile(`(?m)^(evt_\S+)\s+trade\.paid\s+DEADLETTER_1\s+\S+\s+1\s+`).FindStringSubmatch(table)
	if id == nil {
		t.Fatalf("dead-letters printed:\n%s", table)
	}
	before := w.redis.Dump()
	for want, args := range map[string][]string{
		"no dead letter with id":                       {"--replay", "evt_no_such_event"},
		"give --replay <id> or --replay-all, not both": {"--replay", id[1], "--replay-all"},
	} {
		if r := cli(t, 1, append([]string{"payproxy", "dead-letters", "--address", admin}, args...)...); !strings.Contains(r.stderr, want) {
			t.Errorf("dead-letters %v: %s, want %q", args, r.stderr, want)
		}
	}
	if after := w.redis.Dump(); !maps.Equal(before, after) {
		t.Fatalf("a refused replay changed Redis:\nbefore %v\nafter  %v", before, after)
	}
	w.receiver.up.Store(true)
	if out := cli(t, 0, "payproxy", "dead-letters", "--address", admin, "--replay", id[1]).stdout; out != "replayed 1\n" {
		t.Fatalf("--replay printed %q", out)
	}
	waitFor(t, 20*time.Second, "the replayed event at the receiver", func() bool { return w.receiver.got(id[1]) })
	if r := cli(t, 0, "payproxy", "dead-letters", "--address", admin); r.stdout != "" || !strings.Contains(r.stderr, "no dead letters") {
		t.Fatalf("dead-letters after the replay: %+v", r)
	}
	waitFor(t, 60*time.Second, "alert TollgateWebhookDeadLetters resolved", func() bool {
		return prom.alertState("TollgateWebhookDeadLetters") == "" && prom.value(t, `tollgate_payproxy_webhook_dead_letters`) == "0"
	})
}

// runDashboard runs every dashboard query against prom, and checks that
// every tollgate metric the scrape carried has a panel.
func runDashboard(t *testing.T, prom *prometheus) {
	t.Helper()
	exprs := dashboardExprs(t)
	for _, expr := range exprs {
		if err := prom.query(promQL(expr), nil); err != nil {
			t.Errorf("dashboard query %q: %v", expr, err)
		}
	}
	var families []struct {
		Metric map[string]string `json:"metric"`
	}
	if err := prom.query(`count by (__name__) ({__name__=~"tollgate_.+"})`, &families); err != nil {
		t.Fatal(err)
	}
	all := strings.Join(exprs, "\n")
	for _, f := range families {
		if name := metricNames(f.Metric["__name__"]); len(name) != 1 || !strings.Contains(all, name[0]) {
			t.Errorf("scraped %s has no dashboard panel", f.Metric["__name__"])
		}
	}
	if len(families) < 5 {
		t.Fatalf("only %d tollgate series families scraped: %v", len(families), families)
	}
}

// TestPayproxyRedisOutageShowsAtTheNextScrape: the webhook gauges are read
// from Redis when /metrics is scraped; a scrape that cannot read Redis says
// so with tollgate_payproxy_redis_up 0 and leaves the queue gauges out
// rather than report stale numbers.
func TestPayproxyRedisOutageShowsAtTheNextScrape(t *testing.T) {
	w := startPayWorld(t)
	metrics := func() string {
		body, err := get(w.caddy.AdminURL() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		return body
	}
	m := metrics()
	for _, line := range []string{"tollgate_payproxy_redis_up 1", "tollgate_payproxy_webhook_dead_letters 0", "tollgate_payproxy_webhook_queue_length 0"} {
		if !strings.Contains(m, "\n"+line+"\n") {
			t.Fatalf("/metrics lacks %q:\n%s", line, grepLines(m, "tollgate_payproxy_"))
		}
	}
	w.redis.Stop()
	m = metrics()
	if !strings.Contains(m, "\ntollgate_payproxy_redis_up 0\n") || strings.Contains(m, "\ntollgate_payproxy_webhook_queue_length ") {
		t.Fatalf("with Redis down, /metrics says:\n%s", grepLines(m, "tollgate_payproxy_"))
	}
	w.redis.Restart()
	waitFor(t, 20*time.Second, "redis_up 1 after the restart", func() bool {
		return strings.Contains(metrics(), "\ntollgate_payproxy_redis_up 1\n")
	})
}

// payWorld is a tollgate running payproxy (WeChat Pay through paysim) with a
// webhook to a receiver that is down, max_attempts 1, and Caddy's HTTP
// metrics on.
type payWorld struct {
	t        *testing.T
	redis    *testredis.Server
	sim      *paysim.Sim
	caddy    *testcaddy.Instance
	base     string
	receiver *receiver
}

// receiver is the backend's webhook endpoint: 503 to everything until up,
// then 200, recording the event ids it accepted.
type receiver struct {
	up  atomic.Bool
	mu  sync.Mutex
	ids []string
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !rc.up.Load() {
		http.Error(w, "receiver down", http.StatusServiceUnavailable)
		return
	}
	var ev struct {
		ID string `json:"id"`
	}
	_ = json.NewDecoder(r.Body).Decode(&ev)
	rc.mu.Lock()
	rc.ids = append(rc.ids, ev.ID)
	rc.mu.Unlock()
}

func (rc *receiver) got(id string) bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Contains(rc.ids, id)
}

func startPayWorld(t *testing.T) *payWorld {
	t.Helper()
	sim, simURL := paysimtest.Start(t, paysim.Config{})
	w := &payWorld{t: t, redis: testredis.Start(t), sim: sim, receiver: &receiver{}}
	hooks := httptest.NewServer(w.receiver)
	t.Cleanup(hooks.Close)
	port := testcaddy.FreePort(t)
	w.base = fmt.Sprintf("http://127.0.0.1:%d", port)
	k := sim.Keys()
	w.caddy = testcaddy.Start(t, "\tmetrics", fmt.Sprintf(`%s {
	payproxy {
		redis %s
		prefix /pay
		poll_interval 200ms
		wechat {
			mch_id %s
			app_id %s
			serial_no %s
			private_key %s
			apiv3_key %s
			platform_public_key %s
			platform_public_key_id %s
			base_url %s
			notify_url %s/pay/notify/wechat
		}
		webhook %s {
			secret deploy-test-webhook-secret-0123456789
			max_attempts 1
		}
	}
	respond "upstream" 200
}
`, w.base, w.redis.URL(), k.WechatMchID, k.WechatAppID, k.WechatSerialNo, k.WechatPrivateKeyFile, k.WechatAPIv3Key,
		k.WechatPlatformPublicKeyFile, k.WechatPlatformPublicKeyID, simURL, w.base, hooks.URL+"/webhooks"))
	if err := testcaddy.WaitListening(fmt.Sprintf("127.0.0.1:%d", port), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	return w
}

// paidOrder creates a WeChat trade and pays it in paysim.
func (w *payWorld) paidOrder(order string) {
	w.t.Helper()
	body, _ := json.Marshal(map[string]any{"order_no": order, "amount_fen": 100, "channel": "wechat", "subject": "freight " + order})
	resp, err := http.Post(w.base+"/pay/trades", "application/json", bytes.NewReader(body))
	if err != nil {
		w.t.Fatal(err)
	}
	defer resp.Body.Close()
	var trade struct {
		TradeNo string `json:"trade_no"`
	}
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &trade) != nil || trade.TradeNo == "" {
		w.t.Fatalf("create trade: %d %s", resp.StatusCode, raw)
	}
	if err := w.sim.Pay(trade.TradeNo); err != nil {
		w.t.Fatal(err)
	}
}

// prometheus is a real Prometheus server on a free loopback port.
type prometheus struct {
	base string
}

// startPrometheus runs Debian's prometheus with alerts.yml, scraping and
// evaluating every second, until the test ends.
func startPrometheus(t *testing.T, target string) *prometheus {
	t.Helper()
	bin := tool(t, "prometheus")
	rules, err := filepath.Abs(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: tollgate
    static_configs:
      - targets: [%q]
`, rules, target)), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(testcaddy.FreePort(t))
	cmd := exec.Command(bin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	var log lockedBuffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("prometheus log:\n%s", log.String())
		}
	})
	p := &prometheus{base: "http://" + addr}
	waitFor(t, 60*time.Second, "prometheus ready", func() bool {
		_, err := get(p.base + "/-/ready")
		return err == nil
	})
	return p
}

// alertState is "firing", "pending" or "" for the named alert.
func (p *prometheus) alertState(name string) string {
	var data struct {
		Alerts []struct {
			Labels map[string]string `json:"labels"`
			State  string            `json:"state"`
		} `json:"alerts"`
	}
	if err := p.api("/api/v1/alerts", &data); err != nil {
		return ""
	}
	for _, a := range data.Alerts {
		if a.Labels["alertname"] == name {
			return a.State
		}
	}
	return ""
}

// query runs an instant query; out, when given, receives data.result.
func (p *prometheus) query(q string, out any) error {
	var data struct {
		Result json.RawMessage `json:"result"`
	}
	if err := p.api("/api/v1/query?query="+url.QueryEscape(q), &data); err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(data.Result, out)
}

// value is the single sample's value of an instant query, "" without one.
func (p *prometheus) value(t *testing.T, q string) string {
	t.Helper()
	var result []struct {
		Value [2]any `json:"value"`
	}
	if err := p.query(q, &result); err != nil {
		t.Fatal(err)
	}
	if len(result) != 1 {
		return ""
	}
	s, _ := result[0].Value[1].(string)
	return s
}

// api GETs a Prometheus API path and decodes its data, failing on any
// status other than "success" with Prometheus' error text.
func (p *prometheus) api(path string, data any) error {
	body, err := get(p.base + path)
	var env struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if jerr := json.Unmarshal([]byte(body), &env); jerr != nil {
		return fmt.Errorf("%v %v: %s", err, jerr, body)
	}
	if env.Status != "success" {
		return fmt.Errorf("%s: %s", env.Status, env.Error)
	}
	return json.Unmarshal(env.Data, data)
}

// cliResult is what one run of the tollgate binary printed.
type cliResult struct{ stdout, stderr string }

// cli runs the tollgate binary and fails the test unless it exits with code.
func cli(t *testing.T, code int, args ...string) cliResult {
	t.Helper()
	cmd := exec.Command(testcaddy.Binary(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	got := 0
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		got = exit.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if got != code {
		t.Fatalf("tollgate %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), got, code, &stdout, &stderr)
	}
	return cliResult{stdout.String(), stderr.String()}
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

// get returns the body of a GET; a status other than 200 is an error (the
// body is still returned).
func get(u string) (string, error) {
	resp, err := httpClient.Get(u)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return string(b), err
}

func getJSON(u string, out any) error {
	body, err := get(u)
	if err != nil {
		return err
	}
	return json.Unmarshal([]byte(body), out)
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func grepLines(text, prefix string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
