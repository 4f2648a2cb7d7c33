// Package billtest holds what the bill parsers' tests share: reading a
// bill to its end and comparing it with paysim's own state.
package billtest

import (
	"fmt"
	"io"
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
