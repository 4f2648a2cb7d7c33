// Package billtest holds what the bill parsers' tests share: reading a
// bill to its end and comparing it with paysim's own state.
package billtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/paysim"
	"github.com/tollgate/tollgate/payproxy/bill"
)

var chinaTZ = time.FixedZone("CST", 8*3600)

// Today is today's date in Beijing, the providers' bill day.
func Today() string { return time.Now().In(chinaTZ).Format("2006-01-02") }

// ReadAll reads a bill to its end: the lines, and nil only at io.EOF.
func ReadAll(r bill.Reader) ([]bill.Line, error) {
	var out []bill.Line
	for {
		l, err := r.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, l)
	}
}

// Count reads a bill to its end without keeping its lines, as
// reconciliation streams it: the number of lines, and nil only at io.EOF.
func Count(r bill.Reader) (int, error) {
	n := 0
	for {
		_, err := r.Next()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		n++
	}
}

// Key is what reconciliation matches a line on, printable.
func Key(l bill.Line) string {
	return fmt.Sprintf("%s %s %s %s %d.%02d %s", l.Kind, l.OrderNo, l.TradeNo, l.RefundNo, l.AmountFen/100, l.AmountFen%100, l.State)
}

// FromPaysim derives a provider's bill from paysim's state: every paid
// trade and every refund (tests make them all today). WeChat lines carry
// the state; Alipay's have none.
func FromPaysim(sim *paysim.Sim, provider string) ([]string, bill.Totals) {
	var want []string
	var tot bill.Totals
	add := func(l bill.Line) {
		want = append(want, Key(l))
		tot.Add(l)
	}
	for _, tr := range sim.Trades() {
		if tr.Provider == provider && !tr.PaidAt.IsZero() {
			l := bill.Line{Kind: bill.Payment, OrderNo: tr.OutTradeNo, TradeNo: tr.TradeNo, AmountFen: tr.TotalFen}
			if provider == paysim.ProviderWechat {
				l.State = "SUCCESS"
			}
			add(l)
		}
	}
	for _, rf := range sim.Refunds() {
		if rf.Provider == provider {
			l := bill.Line{Kind: bill.Refund, OrderNo: rf.OutTradeNo, TradeNo: rf.TradeNo, RefundNo: rf.OutRefundNo, AmountFen: rf.AmountFen}
			if provider == paysim.ProviderWechat {
				l.State = rf.Status
			}
			add(l)
		}
	}
	sort.Strings(want)
	return want, tot
}

// MatchesPaysim reads r to its end and checks that it holds exactly
// paysim's payments and refunds of the provider, each dated today, and
// that its totals are paysim's.
func MatchesPaysim(t *testing.T, sim *paysim.Sim, provider string, r bill.Reader) {
	t.Helper()
	lines, err := ReadAll(r)
	if err != nil {
		t.Fatalf("a good bill was refused: %v", err)
	}
	var got []string
	for _, l := range lines {
		got = append(got, Key(l))
		if l.Time.In(chinaTZ).Format("2006-01-02") != Today() {
			t.Errorf("line %s at %v", Key(l), l.Time)
		}
	}
	sort.Strings(got)
	want, tot := FromPaysim(sim, provider)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if r.Totals() != tot || tot.Payments == 0 || tot.Refunds == 0 {
		t.Errorf("totals %+v, paysim's %+v", r.Totals(), tot)
	}
}

// Fetcher is an adapter's FetchBill.
type Fetcher func(ctx context.Context, date string) (bill.Reader, error)

// NoTempFiles points TMPDIR at a fresh folder and checks, when the test
// ends, that nothing was left in it.
func NoTempFiles(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("TMPDIR", dir)
	t.Cleanup(func() {
		if left, _ := os.ReadDir(dir); len(left) != 0 {
			t.Errorf("temporary files left: %v", left)
		}
	})
}

// FetchMatchesPaysim fetches today's bill through an adapter after
// mixedDay and checks it against paysim's state.
func FetchMatchesPaysim(t *testing.T, sim *paysim.Sim, provider string, fetch Fetcher, mixedDay func(*testing.T)) {
	t.Helper()
	NoTempFiles(t)
	mixedDay(t)
	r, err := fetch(context.Background(), Today())
	if err != nil {
		t.Fatal(err)
	}
	MatchesPaysim(t, sim, provider, r)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}

// FetchRefusals drives an adapter's FetchBill around missing and damaged
// bills: not ready on a day without trades and while the provider says so
// (fault bill_not_ready on op), the bill once ready, a bad bill naming
// corruptReason under fault corrupt_bill, an error for dates that are not
// days up to today — and no temporary file left.
func FetchRefusals(t *testing.T, sim *paysim.Sim, op string, fetch Fetcher, mixedDay func(*testing.T), corruptReason string) {
	t.Helper()
	NoTempFiles(t)
	ctx := context.Background()
	if _, err := fetch(ctx, Today()); !errors.Is(err, bill.ErrNotReady) {
		t.Fatalf("no trades today: %v", err)
	}
	mixedDay(t)
	sim.SetFault(paysim.Fault{Operation: op, Mode: paysim.FaultBillNotReady})
	if _, err := fetch(ctx, Today()); !errors.Is(err, bill.ErrNotReady) {
		t.Fatalf("bill_not_ready: %v", err)
	}
	r, err := fetch(ctx, Today())
	if err != nil {
		t.Fatalf("the bill once ready: %v", err)
	}
	r.Close()
	sim.SetFault(paysim.Fault{Operation: op, Mode: paysim.FaultCorruptBill})
	if _, err := fetch(ctx, Today()); !errors.Is(err, bill.ErrBadBill) || !strings.Contains(err.Error(), corruptReason) {
		t.Fatalf("corrupt_bill: %v, want a bad bill naming %q", err, corruptReason)
	}
	for _, date := range []string{"2026-11-31", "today", time.Now().In(chinaTZ).AddDate(0, 0, 2).Format("2006-01-02")} {
		if _, err := fetch(ctx, date); err == nil || errors.Is(err, bill.ErrNotReady) {
			t.Errorf("%s: %v", date, err)
		}
	}
}

// CheckFuzzed holds a parser to its contract on any input: open and read
// to the end, it refuses the bill with bill.ErrBadBill, or what it accepts
// is consistent with itself — lines of a kind, with both numbers and a
// non-negative amount (and whatever valid adds), adding up to its Totals.
func CheckFuzzed(t *testing.T, open func() (bill.Reader, error), valid func(bill.Line) bool) {
	t.Helper()
	r, err := open()
	var lines []bill.Line
	if err == nil {
		defer r.Close()
		lines, err = ReadAll(r)
	}
	if err != nil {
		if !errors.Is(err, bill.ErrBadBill) {
			t.Fatalf("error outside ErrBadBill: %v", err)
		}
		return
	}
	var tot bill.Totals
	for _, l := range lines {
		if l.AmountFen < 0 || (l.Kind != bill.Payment && l.Kind != bill.Refund) || l.OrderNo == "" || l.TradeNo == "" || !valid(l) {
			t.Fatalf("accepted line %+v", l)
		}
		tot.Add(l)
	}
	if tot != r.Totals() {
		t.Fatalf("totals %+v, the lines add up to %+v", r.Totals(), tot)
	}
}
