//go:build chaos

package chaos

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// row is one fault's line in the table.
type row struct {
	fault                      string
	checks                     checks
	refresh, fiveXX, answers   verdict
	requests, connErrs, orders int64
	trades, payments, refunds  int
	events, duplicates         int
	refreshOK, refreshErr, ig  int64
	codes                      map[int]int
	settled                    time.Duration
}

func mark(v verdict) string {
	if v.ok {
		return "✓"
	}
	return "✗"
}

func (r row) ok() bool {
	return r.checks.oneTrade.ok && r.checks.paidRecorded.ok && r.checks.refundsLE.ok && r.checks.noFailedDone.ok &&
		r.checks.noSuccessUndone.ok && r.checks.forward.ok && r.refresh.ok && r.fiveXX.ok && r.answers.ok
}

func codes(m map[int]int) string {
	if len(m) == 0 {
		return "-"
	}
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%d×%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

// printTable writes the table, then the details of every ✗.
func printTable(out io.Writer, rows []row) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "fault\t1 trade/request\tevery payment recorded+delivered\trefunds≤paid\tno FAILED refund done at provider\tno SUCCESS refund not done at provider\tnothing moved back\trefresh clean\tno other 5xx\t4xx as documented\trequests\tconn errs\torders\ttrades\tpayments\trefunds\tevents\tduplicate payments\trefreshes ok/fail(invalid_grant)\t5xx by code\tdead letters\tsettled in")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d/%d(%d)\t%s\t%d\t%s\n",
			r.fault, mark(r.checks.oneTrade), mark(r.checks.paidRecorded), mark(r.checks.refundsLE), mark(r.checks.noFailedDone),
			mark(r.checks.noSuccessUndone), mark(r.checks.forward), mark(r.refresh), mark(r.fiveXX), mark(r.answers),
			r.requests, r.connErrs, r.orders, r.trades, r.payments, r.refunds, r.events, r.duplicates,
			r.refreshOK, r.refreshErr, r.ig, codes(r.codes), r.checks.dead, r.settled)
	}
	_ = tw.Flush()
	for _, r := range rows {
		for _, d := range []struct {
			name string
			v    verdict
		}{{"1 trade/request", r.checks.oneTrade}, {"every provider payment is recorded and reached the backend", r.checks.paidRecorded},
			{"refunds≤paid", r.checks.refundsLE}, {"no refund FAILED that the provider completed", r.checks.noFailedDone},
			{"no refund SUCCESS that the provider did not complete", r.checks.noSuccessUndone},
			{"no state moved back by a late or reordered notification", r.checks.forward},
			{"refresh clean", r.refresh}, {"no other 5xx", r.fiveXX}, {"4xx as documented", r.answers}} {
			if d.v.ok {
				continue
			}
			fmt.Fprintf(out, "\n✗ %s — %s:\n", r.fault, d.name)
			for _, s := range d.v.details {
				fmt.Fprintf(out, "    %s\n", s)
			}
		}
	}
}
