package payproxy_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/paysim"
)

var queryOp = map[string]string{"alipay": "alipay.trade.query", "wechat": "wechat.query"}

// TestFailedChecksBackOffAndHonourRetryAfter: the poller's query of an
// unpaid trade is rate limited (WeChat 429, Alipay 40005), or answered by a
// system error (Alipay's two shapes) or a proxy's HTML 502. Each failure in
// a row doubles the wait before the next check (poll_interval·2^n, at most
// 32·poll_interval), and a Retry-After the answer carries is waited out;
// once the provider answers again, the payment is recorded. Failed refund
// checks move along the refund_checks schedule the same way.
func TestFailedChecksBackOffAndHonourRetryAfter(t *testing.T) {
	e := newEnv(t)
	e.options["poll_interval"] = "100ms"
	e.wechatBase = retryAfterProxy(t, e.simURL, "2")
	e.start()
	const poll = 100
	cases := []struct {
		name, channel string
		fault         paysim.Fault
		floor         int64 // ms the answer asks to wait
	}{
		{"wechat_429_with_retry_after", "wechat", paysim.Fault{Mode: paysim.FaultRateLimited}, 2000},
		{"alipay_40005", "alipay", paysim.Fault{Mode: paysim.FaultRateLimited}, 0},
		{"alipay_system_error_isp", "alipay", paysim.Fault{Mode: paysim.FaultSystemError, Shape: paysim.ShapeISP}, 0},
		{"alipay_system_error_acq", "alipay", paysim.Fault{Mode: paysim.FaultSystemError, Shape: paysim.ShapeACQ}, 0},
		{"wechat_html_502", "wechat", paysim.Fault{Mode: paysim.FaultHTML502}, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			order := "BACKOFF_" + c.name
			if len(order) > 32 {
				order = order[:32]
			}
			f := c.fault
			f.Operation, f.Count = queryOp[c.channel], 3
			e.sim.SetFault(f)
			r := e.create(order, c.channel, 500)
			wantStatus(t, r, http.StatusOK, "")
			field := "t:" + r.str("trade_no")
			seen := 0
			eventually(t, 20*time.Second, "three failed checks", func() bool {
				entry, ok := e.checkEntry(t, order, field)
				if !ok {
					return false
				}
				want := min(int64(poll)<<entry.Fails, 32*poll)
				want = max(want, c.floor)
				if entry.Next-entry.At != want {
					t.Fatalf("after %d failed checks the next comes %d ms later, want %d", entry.Fails, entry.Next-entry.At, want)
				}
				seen = entry.Fails
				return entry.Fails >= 3
			})
			if seen < 3 {
				t.Fatalf("saw %d failures", seen)
			}
			if err := e.sim.Pay(r.str("trade_no")); err != nil {
				t.Fatal(err)
			}
			eventually(t, 10*time.Second, "PAID", func() bool { return e.get(order).str("state") == "PAID" })
			eventually(t, 5*time.Second, "the failures forgotten", func() bool { _, ok := e.checkEntry(t, order, field); return !ok })
			e.checkOrder(t, order)
		})
	}

	t.Run("refund_checks", func(t *testing.T) {
		const order = "BACKOFF_REFUND_1"
		e.paidOrder(order, "alipay", 500)
		e.sim.SetFault(paysim.Fault{Operation: "alipay.trade.fastpay.refund.query", Mode: paysim.FaultSystemError, Count: 3})
		// The notifications are held back: a refund's would make
		// payproxy query it off the schedule (and use up a fault).
		e.sim.SetFault(paysim.Fault{Operation: "alipay.notify", Mode: paysim.FaultDelay, DelayMS: 60000, Count: 10})
		wantStatus(t, e.refund(order, "BO_RF_1", 500), http.StatusOK, "")
		// refund_checks 200ms 400ms 800ms 1600ms: the first check 200 ms
		// after the refund was sent, each failed one a step further.
		steps := []int64{200, 400, 800, 1600, 1600}
		most := 0
		eventually(t, 20*time.Second, "refund SUCCESS", func() bool {
			if entry, ok := e.checkEntry(t, order, "r:BO_RF_1"); ok {
				if entry.Next-entry.At != steps[min(entry.Checks, 4)] {
					t.Fatalf("after %d checks the next comes %d ms later, want %d", entry.Checks, entry.Next-entry.At, steps[min(entry.Checks, 4)])
				}
				most = max(most, entry.Checks)
			}
			return e.refundState("BO_RF_1") == "SUCCESS"
		})
		if most < 3 {
			t.Fatalf("saw %d checks, want the 3 failed ones", most)
		}
		e.checkOrder(t, order)
	})
}

// TestRateLimitedCallIsAnswered503WithRetryAfter: a create or a refund the
// provider rate limits is answered 503 provider_busy, with the provider's
// Retry-After when it gave one; nothing is lost, and the retry works.
func TestRateLimitedCallIsAnswered503WithRetryAfter(t *testing.T) {
	e := newEnv(t)
	e.wechatBase = retryAfterProxy(t, e.simURL, "2")
	e.start()
	for _, c := range []struct{ channel, retryAfter string }{{"wechat", "2"}, {"alipay", ""}} {
		t.Run(c.channel, func(t *testing.T) {
			order := "RATE_CREATE_" + c.channel
			e.sim.SetFault(paysim.Fault{Operation: createOp[c.channel], Mode: paysim.FaultRateLimited})
			r := e.create(order, c.channel, 300)
			wantStatus(t, r, http.StatusServiceUnavailable, "provider_busy")
			if got := r.Header.Get("Retry-After"); got != c.retryAfter {
				t.Fatalf("Retry-After %q, want %q", got, c.retryAfter)
			}
			r = e.create(order, c.channel, 300)
			wantStatus(t, r, http.StatusOK, "")
			if err := e.sim.Pay(r.str("trade_no")); err != nil {
				t.Fatal(err)
			}
			eventually(t, 5*time.Second, "PAID", func() bool { return e.get(order).str("state") == "PAID" })
			e.checkOrder(t, order)
		})
	}
}

// TestUnverifiableAnswersLeaveTheOutcomeUnknownAndLoseNothing: a 200 whose
// signature does not verify (bad_signature; WeChat's SIGNTEST probe; a
// correctly signed answer 10 minutes old), a proxy's HTML 502, and
// Alipay's system errors in both shapes, on a create, a refund and a
// close: the client gets 502 provider_error (never a 500, never a guess),
// and the retry, the poller or a signed query settles it: one trade, each
// refund once, every payment recorded.
func TestUnverifiableAnswersLeaveTheOutcomeUnknownAndLoseNothing(t *testing.T) {
	e := newEnv(t)
	e.start()
	var answers []unknownOutcome
	for _, ch := range []string{"alipay", "wechat"} {
		answers = append(answers, unknownOutcome{ch, paysim.Fault{Mode: paysim.FaultBadSignature}, http.StatusBadGateway, "provider_error"},
			unknownOutcome{ch, paysim.Fault{Mode: paysim.FaultHTML502}, http.StatusBadGateway, "provider_error"})
	}
	answers = append(answers,
		unknownOutcome{"wechat", paysim.Fault{Mode: paysim.FaultSigntest}, http.StatusBadGateway, "provider_error"},
		unknownOutcome{"wechat", paysim.Fault{Mode: paysim.FaultStaleTimestamp}, http.StatusBadGateway, "provider_error"},
		unknownOutcome{"alipay", paysim.Fault{Mode: paysim.FaultSystemError, Shape: paysim.ShapeISP}, http.StatusBadGateway, "provider_error"},
		unknownOutcome{"alipay", paysim.Fault{Mode: paysim.FaultSystemError, Shape: paysim.ShapeACQ}, http.StatusBadGateway, "provider_error"})
	for i, a := range answers {
		t.Run(a.channel+"_"+a.fault.Mode+a.fault.Shape, func(t *testing.T) { e.survive(t, fmt.Sprintf("UNVERIFIED_%d", i), a) })
	}
}

// TestTransportFaultsLeaveTheOutcomeUnknownAndLoseNothing: the generic
// faults of every hop — the provider's signed system error (error), a
// connection closed before (reset) or after the work (drop_response), a
// hop's unsigned error (unsigned_error), an answer later than
// provider_timeout (delay) — on a create, a refund and a close: 502
// provider_error (504 provider_timeout for the delay), never a 500, and
// the same invariants once settled.
func TestTransportFaultsLeaveTheOutcomeUnknownAndLoseNothing(t *testing.T) {
	e := newEnv(t)
	e.start()
	var answers []unknownOutcome
	for _, ch := range []string{"alipay", "wechat"} {
		for _, mode := range []string{paysim.FaultError, paysim.FaultReset, paysim.FaultDropResponse, paysim.FaultUnsignedError} {
			answers = append(answers, unknownOutcome{ch, paysim.Fault{Mode: mode}, http.StatusBadGateway, "provider_error"})
		}
		answers = append(answers, unknownOutcome{ch, paysim.Fault{Mode: paysim.FaultDelay, DelayMS: 2500}, http.StatusGatewayTimeout, "provider_timeout"})
	}
	for i, a := range answers {
		t.Run(a.channel+"_"+a.fault.Mode, func(t *testing.T) { e.survive(t, fmt.Sprintf("TRANSPORT_%d", i), a) })
	}
}

// unknownOutcome is a fault whose answer leaves the outcome unknown, and
// how the client is answered.
type unknownOutcome struct {
	channel string
	fault   paysim.Fault
	status  int
	code    string
}

// survive arms a's fault once on a create, a close and a refund of the
// channel: each is answered a.status a.code; the retry (create, close) or
// the poller (refund) settles it; the provider holds one trade and one
// refund; the orders hold to checkOrder's invariants.
func (e *env) survive(t *testing.T, order string, a unknownOutcome) {
	t.Helper()
	arm := func(op string) { f := a.fault; f.Operation = op; e.sim.SetFault(f) }

	arm(createOp[a.channel])
	wantStatus(t, e.create(order, a.channel, 1000), a.status, a.code)
	r := e.create(order, a.channel, 1000)
	wantStatus(t, r, http.StatusOK, "")
	e.wantProviderTrades(t, order, 1)

	closing := order + "_C"
	wantStatus(t, e.create(closing, a.channel, 1000), http.StatusOK, "")
	arm(closeOp[a.channel])
	wantStatus(t, do(t, "POST", e.base+"/pay/trades/"+closing+"/close", nil), a.status, a.code)
	cl := do(t, "POST", e.base+"/pay/trades/"+closing+"/close", nil)
	if cl.Status != http.StatusOK || cl.str("state") != "CLOSED" {
		t.Fatalf("second close: %d %s", cl.Status, cl.Raw)
	}

	if err := e.sim.Pay(r.str("trade_no")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "PAID", func() bool { return e.get(order).str("state") == "PAID" })
	arm(refundOp[a.channel])
	refundNo := "RF_" + order
	wantStatus(t, e.refund(order, refundNo, 1000), a.status, a.code)
	e.eventuallyRefund(t, refundNo, "SUCCESS", 15*time.Second)
	e.wantProviderRefunds(t, order, 1)
	e.checkOrder(t, order)
	e.checkOrder(t, closing)
}
