package payproxy_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/format"
	"go/parser"
	"go/token"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/payproxy"
)

// TestWebhookReceiverDownThenUp: events pile up while the backend is down
// and all arrive, verifiable, once it is back; duplicates only with the
// same id.
func TestWebhookReceiverDownThenUp(t *testing.T) {
	e := newEnv(t)
	e.options["max_attempts"] = "1000"
	e.start()
	e.hooks.setDown(true)
	var orders []string
	for i := 0; i < 4; i++ {
		order := fmt.Sprintf("DOWN_%d_0001", i)
		orders = append(orders, order)
		e.paidOrder(order, []string{"alipay", "wechat"}[i%2], 100)
	}
	time.Sleep(700 * time.Millisecond) // several failed attempts each
	if n := len(e.hooks.all()); n != 0 {
		t.Fatalf("%d events accepted while down", n)
	}
	e.hooks.setDown(false)
	eventually(t, 5*time.Second, "all events", func() bool {
		for _, o := range orders {
			if len(e.hooks.ofType("trade.paid", o)) == 0 {
				return false
			}
		}
		return true
	})
	ids := map[string]string{}
	for _, ev := range e.hooks.all() {
		if prev, ok := ids[ev.Data.OrderNo+ev.Type]; ok && prev != ev.ID {
			t.Fatalf("duplicate with another id: %s vs %s", prev, ev.ID)
		}
		ids[ev.Data.OrderNo+ev.Type] = ev.ID
	}
	if e.hooks.badCount() != 0 {
		t.Fatal("bad signatures")
	}
}

// TestDeadLettersAreListedAndReplayedThroughTheAdminAPI.
func TestDeadLettersAreListedAndReplayedThroughTheAdminAPI(t *testing.T) {
	e := newEnv(t)
	e.options["max_attempts"] = "2"
	inst := e.start()
	e.hooks.setDown(true)
	e.paidOrder("DEAD_00001", "wechat", 100)
	var dead []map[string]any
	eventually(t, 5*time.Second, "dead letter", func() bool {
		r := do(t, "GET", inst.AdminURL()+"/tollgate/payproxy/dead_letters", nil)
		dead = nil
		_ = json.Unmarshal(r.Raw, &dead)
		return r.Status == 200 && len(dead) == 1
	})
	var ev struct {
		ID, Type string
	}
	raw, _ := json.Marshal(dead[0]["event"])
	_ = json.Unmarshal(raw, &ev)
	if ev.Type != "trade.paid" || dead[0]["id"] != ev.ID || dead[0]["attempts"].(float64) != 2 {
		t.Fatalf("dead letter: %v", dead[0])
	}
	e.hooks.setDown(false)
	r := do(t, "POST", inst.AdminURL()+"/tollgate/payproxy/dead_letters/replay", map[string]string{"id": ev.ID}, "Origin", inst.AdminURL())
	if r.Status != http.StatusOK || r.num("replayed") != 1 {
		t.Fatalf("replay: %d %s", r.Status, r.Raw)
	}
	eventually(t, 5*time.Second, "replayed event", func() bool { return len(e.hooks.ofType("trade.paid", "DEAD_00001")) == 1 })
	if got := e.hooks.ofType("trade.paid", "DEAD_00001")[0].ID; got != ev.ID {
		t.Fatalf("replayed with id %s, want %s", got, ev.ID)
	}
	r = do(t, "GET", inst.AdminURL()+"/tollgate/payproxy/dead_letters", nil)
	if string(r.Raw) != "[]\n" {
		t.Fatalf("dead letters after replay: %s", r.Raw)
	}
}

// TestReloadHandsBackLeasedEventsAtOnce: a config reload cancels the old
// sender in the middle of a leased batch (one event held by a slow
// receiver, any others of the batch waiting their turn). It hands them
// back, so the new config's sender delivers them all well before the 30s
// lease would have let them go.
func TestReloadHandsBackLeasedEventsAtOnce(t *testing.T) {
	e := newEnv(t)
	e.options["max_attempts"] = "1000"
	inst := e.start()
	e.hooks.setDown(true)
	var orders []string
	for i := 0; i < 4; i++ {
		order := fmt.Sprintf("LEASE_%d_0001", i)
		orders = append(orders, order)
		e.paidOrder(order, []string{"alipay", "wechat"}[i%2], 100)
	}
	queue := e.redis.Client()
	eventually(t, 5*time.Second, "4 queued events", func() bool {
		n, _ := queue.HLen(context.Background(), "tollgate:pay:{wh}:events").Result()
		return n == 4
	})
	e.hooks.setSlow(time.Minute)
	eventually(t, 5*time.Second, "a delivery held by the receiver", func() bool { return e.hooks.inFlight() == 1 })
	leased, _ := queue.ZCount(context.Background(), "tollgate:pay:{wh}:queue",
		strconv.FormatInt(time.Now().Add(10*time.Second).UnixMilli(), 10), "+inf").Result()
	t.Logf("%d events leased at the reload (one held by the receiver)", leased)
	e.hooks.setSlow(0)
	e.options["poll_interval"] = "150ms" // a different config: a real reload
	inst.Reload(e.caddyfile(e.port))
	eventually(t, 10*time.Second, "every event after the reload", func() bool {
		for _, o := range orders {
			if len(e.hooks.ofType("trade.paid", o)) == 0 {
				return false
			}
		}
		return true
	})
	if e.hooks.badCount() != 0 {
		t.Fatal("bad signatures")
	}
}

// TestEveryEventCarriesThePerOrderSequence: each event's data has the
// order's seq, 1, 2, 3 … in the order the order's state changed, so a
// receiver can order events that arrive out of order.
func TestEveryEventCarriesThePerOrderSequence(t *testing.T) {
	e := newEnv(t)
	e.start()
	const order = "SEQ_ORDER_01"
	wantStatus(t, e.create(order, "wechat", 1000), http.StatusOK, "")
	r := e.create(order, "wechat", 1200) // closes the first trade: trade.closed
	wantStatus(t, r, http.StatusOK, "")
	if err := e.sim.Pay(r.str("trade_no")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "PAID", func() bool { return e.get(order).str("state") == "PAID" })
	wantStatus(t, e.refund(order, "SEQ_RF_1", 200), http.StatusOK, "")
	want := []string{"trade.closed", "trade.paid", "refund.succeeded"}
	var got []hookEvent
	eventually(t, 10*time.Second, "three events", func() bool {
		got = got[:0]
		for _, ev := range e.hooks.all() {
			if ev.Data.OrderNo == order {
				got = append(got, ev)
			}
		}
		return len(got) == len(want)
	})
	bySeq := map[int64]string{}
	for _, ev := range got {
		bySeq[ev.Data.Seq] = ev.Type
	}
	for i, typ := range want {
		if bySeq[int64(i+1)] != typ {
			t.Fatalf("events by seq %v, want %v as seq 1, 2, 3", bySeq, want)
		}
	}
}

// verifyTollgateSignature checks an event's X-Tollgate-Signature
// ("t=<unix>,v1=<hex HMAC-SHA256(secret, t + "." + body)>") over the raw
// body, refusing a timestamp more than 5 minutes from now (each delivery
// attempt is signed afresh). Imports: crypto/hmac, crypto/sha256,
// encoding/hex, errors, strconv, strings, time.
func verifyTollgateSignature(secret, header string, body []byte, now time.Time) error {
	var ts, sig string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || sig == "" {
		return errors.New("malformed X-Tollgate-Signature")
	}
	if d := now.Sub(time.Unix(unix, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return errors.New("X-Tollgate-Signature is more than 5 minutes old or ahead")
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	got, err := hex.DecodeString(sig)
	if err != nil || !hmac.Equal(got, mac.Sum(nil)) {
		return errors.New("X-Tollgate-Signature does not match the body")
	}
	return nil
}

// TestREADMEReceiverIsTheOneTheTestsUse: the Go receiver payproxy/README.md shows
// is, to the byte after gofmt, the verifyTollgateSignature every webhook
// test's receiver runs; it accepts payproxy's signatures and refuses a
// stale timestamp, a tampered body and another secret.
func TestREADMEReceiverIsTheOneTheTestsUse(t *testing.T) {
	readme, err := os.ReadFile("README.md") // payproxy's manual
	if err != nil {
		t.Fatal(err)
	}
	var shown string
	for _, m := range regexp.MustCompile("(?s)```go\n(.*?)```").FindAllStringSubmatch(string(readme), -1) {
		if strings.Contains(m[1], "func verifyTollgateSignature(") {
			shown = m[1]
		}
	}
	src, err := os.ReadFile("webhook_test.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "webhook_test.go", src, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	var tested string
	for _, d := range f.Decls {
		if fd, ok := d.(*ast.FuncDecl); ok && fd.Name.Name == "verifyTollgateSignature" {
			tested = string(src[fset.Position(fd.Doc.Pos()).Offset:fset.Position(fd.End()).Offset])
		}
	}
	a, errA := format.Source([]byte(shown))
	b, errB := format.Source([]byte(tested))
	if shown == "" || errA != nil || errB != nil || strings.TrimSpace(string(a)) != strings.TrimSpace(string(b)) {
		t.Fatalf("README receiver differs from the tested one (%d, %d bytes; %v, %v):\n%s\n---\n%s", len(shown), len(tested), errA, errB, a, b)
	}
	body := []byte(`{"id":"evt_x","type":"trade.paid","data":{"seq":1}}`)
	now := time.Now()
	if err := verifyTollgateSignature(webhookSecret, payproxy.Sign(webhookSecret, now, body), body, now); err != nil {
		t.Fatalf("a genuine signature: %v", err)
	}
	for name, c := range map[string]struct {
		header string
		body   []byte
	}{
		"stale":          {payproxy.Sign(webhookSecret, now.Add(-6*time.Minute), body), body},
		"ahead":          {payproxy.Sign(webhookSecret, now.Add(6*time.Minute), body), body},
		"tampered":       {payproxy.Sign(webhookSecret, now, body), append([]byte(" "), body...)},
		"another secret": {payproxy.Sign("another-secret", now, body), body},
		"malformed":      {"v1=00", body},
	} {
		if err := verifyTollgateSignature(webhookSecret, c.header, c.body, now); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
