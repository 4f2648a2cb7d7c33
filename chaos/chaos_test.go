//go:build chaos

package chaos

import (
	"context"
	"os"
	"testing"
	"time"
)

// TestChaos runs the load against three tollgate processes, injects each
// fault in turn, lets the system settle and checks the invariants.
func TestChaos(t *testing.T) {
	tm := timings()
	w := newWorld(t, 3)
	l := newLoad(w)
	var rows []row
	for _, f := range faults() {
		rows = append(rows, runFault(t, w, l, f, tm))
		r := rows[len(rows)-1]
		t.Logf("%s: requests %d, trades %d, payments %d, settled in %s, all invariants hold: %v",
			r.fault, r.requests, r.trades, r.payments, r.settled, r.ok())
	}
	printTable(os.Stdout, rows)
	for _, r := range rows {
		if !r.ok() {
			t.Errorf("invariants failed after %q (see the table)", r.fault)
		}
	}
	if t.Failed() {
		for _, in := range w.live() {
			t.Logf("--- last log lines of %s ---\n%s", in.name, tail(in.proc.Log(), 30))
		}
	}
}

// runFault is one row: load, the fault in its middle, more load, then the
// bounded wait for the system to settle and the checks.
func runFault(t *testing.T, w *world, l *load, f fault, tm timing) row {
	st := newPhaseStats()
	l.phase.Store(st)
	before := w.observe()
	stop, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); l.runPhase(stop, tm.orderers, tm.refreshers) }()
	start := time.Now()
	time.Sleep(tm.lead)
	t.Logf("injecting: %s", f.name)
	f.inject(w, tm)
	if rest := tm.phase - time.Since(start); rest > tm.tail {
		time.Sleep(rest)
	} else {
		time.Sleep(tm.tail)
	}
	cancel()
	<-done
	unsettled, took := w.settle(tm.settle)
	c := w.check(l, unsettled)
	after := w.observe()
	return buildRow(f.name, st, c, before, after, took)
}

func buildRow(name string, st *phaseStats, c checks, before, after *state, took time.Duration) row {
	r := row{fault: name, checks: c, settled: took,
		requests: st.requests.Load(), connErrs: st.connErrs.Load(), orders: st.orders.Load(),
		trades: len(after.trades) - len(before.trades), payments: int(st.payments.Load()),
		refunds: len(after.refunds) - len(before.refunds), events: len(after.events) - len(before.events),
		duplicates: after.ofType("trade.duplicate_paid") - before.ofType("trade.duplicate_paid"),
		refreshOK:  st.refreshOK.Load(), refreshErr: st.refreshErr.Load(), ig: st.invalid.Load()}
	st.mu.Lock()
	defer st.mu.Unlock()
	r.codes = st.fiveXX
	r.refresh = verdict{ok: len(st.badRefresh) == 0}
	for i, s := range st.badRefresh {
		if i < 8 {
			r.refresh.details = append(r.refresh.details, s)
		}
	}
	r.fiveXX = verdict{ok: len(st.badStatus) == 0}
	for i, s := range st.badStatus {
		if i < 8 {
			r.fiveXX.details = append(r.fiveXX.details, s)
		}
	}
	r.answers = verdict{ok: len(st.badAnswer) == 0}
	for i, s := range st.badAnswer {
		if i < 8 {
			r.answers.details = append(r.answers.details, s)
		}
	}
	return r
}

func tail(s string, n int) string {
	lines := splitLines(s)
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	out := ""
	for _, l := range lines {
		out += l + "\n"
	}
	return out
}

func splitLines(s string) []string {
	var out []string
	start := 0
	for i := range len(s) {
		if s[i] == '\n' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}
