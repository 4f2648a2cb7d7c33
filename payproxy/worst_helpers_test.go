package payproxy_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/paysim"
)

// Issue 15: payproxy against the providers at their worst. Every test of
// a misbehaviour ends with checkOrder, which holds the order to the
// issue's invariants.

// providerTrades are the order's trades at the provider (the tests'
// subjects end with " <order>").
func (e *env) providerTrades(order string) []paysim.Trade {
	var out []paysim.Trade
	for _, tr := range e.sim.Trades() {
		if strings.HasSuffix(tr.Subject, " "+order) {
			out = append(out, tr)
		}
	}
	return out
}

// providerRefunds are the refunds the provider holds for the order's
// trades.
func (e *env) providerRefunds(order string) []paysim.Refund {
	trades := map[string]bool{}
	for _, tr := range e.providerTrades(order) {
		trades[tr.OutTradeNo] = true
	}
	var out []paysim.Refund
	for _, rf := range e.sim.Refunds() {
		if trades[rf.OutTradeNo] {
			out = append(out, rf)
		}
	}
	return out
}

// storedRefunds are the order's refund records in Redis.
func (e *env) storedRefunds(t *testing.T, order string) map[string]struct {
	State     string `json:"state"`
	AmountFen int64  `json:"amount_fen"`
} {
	t.Helper()
	m, err := e.redis.Client().HGetAll(context.Background(), "tollgate:pay:{o:"+order+"}:refunds").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]struct {
		State     string `json:"state"`
		AmountFen int64  `json:"amount_fen"`
	}{}
	for no, raw := range m {
		var r struct {
			State     string `json:"state"`
			AmountFen int64  `json:"amount_fen"`
		}
		if err := json.Unmarshal([]byte(raw), &r); err != nil {
			t.Fatal(err)
		}
		out[no] = r
	}
	return out
}

// providerCompleted: the provider's refund status says the money moved.
func providerCompleted(rf paysim.Refund) bool {
	return rf.Status == "REFUND_SUCCESS" || rf.Status == "SUCCESS"
}

// checkOrder asserts, once the order has settled as far as the test
// wants: every payment the provider took for the order's trades is
// recorded and its event delivered exactly once; each event id reached
// the backend once; no refund FAILED that the provider completed; no
// refund SUCCESS that the provider did not complete for that amount; no
// paid trade reported closed, and no refund failed after it succeeded.
func (e *env) checkOrder(t *testing.T, order string) {
	t.Helper()
	e.quiesce()
	events := map[string]int{}
	seq := map[string]int64{} // event id → seq
	for _, ev := range e.hooks.all() {
		if ev.Data.OrderNo == order {
			events[ev.ID]++
			seq[ev.ID] = ev.Data.Seq
		}
	}
	for id, n := range events {
		if n != 1 {
			t.Errorf("event %s reached the backend %d times", id, n)
		}
	}
	for _, tr := range e.providerTrades(order) {
		if tr.PaidAt.IsZero() {
			continue
		}
		if events["evt_"+tr.OutTradeNo+"_trade.paid"]+events["evt_"+tr.OutTradeNo+"_trade.duplicate_paid"] != 1 {
			t.Errorf("payment of %s (%s) is not recorded and delivered once: events %v", tr.OutTradeNo, tr.Provider, events)
		}
		if _, closed := events["evt_"+tr.OutTradeNo+"_trade.closed"]; closed {
			t.Errorf("trade %s was paid and reported closed", tr.OutTradeNo)
		}
	}
	atProvider := map[string]paysim.Refund{}
	for _, rf := range e.providerRefunds(order) {
		atProvider[rf.OutRefundNo] = rf
	}
	for no, r := range e.storedRefunds(t, order) {
		p, held := atProvider[no]
		switch r.State {
		case "FAILED":
			if held && p.Status != "CLOSED" {
				t.Errorf("refund %s is FAILED, the provider holds it %s", no, p.Status)
			}
		case "SUCCESS":
			if !held || !providerCompleted(p) || p.AmountFen != r.AmountFen {
				t.Errorf("refund %s of %d fen is SUCCESS, the provider holds %+v (held %v)", no, r.AmountFen, p, held)
			}
		}
		for id := range events {
			if strings.HasSuffix(id, "_"+no+"_refund.failed") {
				if s, ok := seq[strings.TrimSuffix(id, "refund.failed")+"refund.succeeded"]; ok && s < seq[id] {
					t.Errorf("refund %s failed after it succeeded", no)
				}
			}
		}
	}
}

// refundState is GET /refunds/{no}'s state.
func (e *env) refundState(no string) string {
	return do(e.t, "GET", e.base+"/pay/refunds/"+no, nil).str("state")
}

// eventuallyRefund waits for a refund to reach state.
func (e *env) eventuallyRefund(t *testing.T, no, state string, within time.Duration) {
	t.Helper()
	eventually(t, within, "refund "+no+" "+state, func() bool { return e.refundState(no) == state })
}

// checkEntry reads one entry of the order's :checks hash (when the
// poller looks again), false if there is none.
func (e *env) checkEntry(t *testing.T, order, field string) (entry struct {
	Sends  int   `json:"sends"`
	Checks int   `json:"checks"`
	Fails  int   `json:"fails"`
	At     int64 `json:"at"`
	Next   int64 `json:"next"`
}, ok bool) {
	t.Helper()
	raw, err := e.redis.Client().HGet(context.Background(), "tollgate:pay:{o:"+order+"}:checks", field).Result()
	if err != nil {
		return entry, false
	}
	if err := json.Unmarshal([]byte(raw), &entry); err != nil {
		t.Fatal(err)
	}
	return entry, true
}

// retryAfterProxy is a hop in front of WeChat Pay that adds Retry-After to
// the provider's 429 answers.
func retryAfterProxy(t *testing.T, target, retryAfter string) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ModifyResponse = func(r *http.Response) error {
		if r.StatusCode == http.StatusTooManyRequests {
			r.Header.Set("Retry-After", retryAfter)
		}
		return nil
	}
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	return srv.URL
}

// settledRefunds waits until none of the order's refunds is PROCESSING.
func (e *env) settledRefunds(t *testing.T, order string, within time.Duration) {
	t.Helper()
	eventually(t, within, "no refund of "+order+" PROCESSING", func() bool {
		for _, r := range e.storedRefunds(t, order) {
			if r.State == "PROCESSING" {
				return false
			}
		}
		return true
	})
}

// wantProviderTrades fails unless the provider holds n trades for the
// order.
func (e *env) wantProviderTrades(t *testing.T, order string, n int) {
	t.Helper()
	if got := len(e.providerTrades(order)); got != n {
		t.Fatalf("the provider holds %d trades for %s, want %d", got, order, n)
	}
}

// wantProviderRefunds fails unless the provider holds n refunds of the
// order's trades.
func (e *env) wantProviderRefunds(t *testing.T, order string, n int) {
	t.Helper()
	if got := len(e.providerRefunds(order)); got != n {
		t.Fatalf("the provider holds %d refunds of %s, want %d", got, order, n)
	}
}

// wantRefundAnswer fails unless the refund was answered 200 with state;
// what names the refund in the failure.
func (e *env) wantRefundAnswer(t *testing.T, r response, state, what string) {
	t.Helper()
	if r.Status != http.StatusOK || r.str("state") != state {
		t.Fatalf("%s: %d %s, want 200 %s", what, r.Status, r.Raw, state)
	}
}
