package commands

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate/payproxy/reconcile"
)

// reconcileCommand is `tollgate payproxy reconcile`: one reconciliation of
// a channel's bill of one day, run now through the admin API, and its
// report.
func reconcileCommand() *cobra.Command {
	rc := &cobra.Command{
		Use:   "reconcile --channel <alipay|wechat> --date <yyyy-MM-dd> [--json] [--address <interface>]",
		Short: "Reconciles a channel's bill of one day with the trade ledger and prints the report",
		Long: `
Runs the reconciliation of the channel's bill of that day (Beijing time
unless the route's reconcile block says otherwise) now, on the running
payproxy routes, and prints the report once it is done: the state, the
lines read and matched, the totals on both sides, and every difference
(healed ones marked). --json prints the admin API's JSON instead.

Exits 1 when this run did not compare: pending (the provider has no bill
yet; the daily run asks again later that day) or error (the bill was bad
or could not be fetched; nothing was compared). Such a run never replaces
the date's completed report: that is printed, with this run as its
last_attempt.`,
		Args: cobra.NoArgs,
		RunE: caddycmd.WrapCommandFuncForCobra(cmdReconcile),
	}
	rc.Flags().String("channel", "", "alipay or wechat")
	rc.Flags().String("date", "", "The bill's day, yyyy-MM-dd")
	rc.Flags().Bool("json", false, "Print the admin API's JSON")
	adminFlags(rc)
	return rc
}

func cmdReconcile(fl caddycmd.Flags) (int, error) {
	channel, date := strings.TrimSpace(fl.String("channel")), strings.TrimSpace(fl.String("date"))
	if channel == "" || date == "" {
		return caddy.ExitCodeFailedStartup, errors.New("give --channel <alipay|wechat> and --date <yyyy-MM-dd>")
	}
	var raw json.RawMessage
	if err := adminCall(fl, http.MethodPost, "/tollgate/payproxy/reconcile", map[string]string{"channel": channel, "date": date}, &raw); err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("reconciling %s %s: %w", channel, date, err)
	}
	// One report per Redis the routes use: an array when there are several.
	var reports []reconcile.Report
	list := raw
	if !bytes.HasPrefix(bytes.TrimSpace(raw), []byte("[")) {
		list = append(append(json.RawMessage("["), raw...), ']')
	}
	if err := json.Unmarshal(list, &reports); err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("decoding the report: %w", err)
	}
	if fl.Bool("json") {
		var out bytes.Buffer
		_ = json.Indent(&out, raw, "", "  ")
		fmt.Println(out.String())
	} else {
		for _, r := range reports {
			printReport(r)
		}
	}
	for _, r := range reports {
		if r.State != reconcile.StateDone {
			return caddy.ExitCodeFailedStartup, fmt.Errorf("the reconciliation of %s %s is %s: %s", r.Channel, r.Date, r.State, r.Error)
		}
		if a := r.LastAttempt; a != nil {
			return caddy.ExitCodeFailedStartup, fmt.Errorf("the reconciliation of %s %s is %s: %s (the report printed is the last completed run's, kept as it was)",
				r.Channel, r.Date, a.State, a.Error)
		}
	}
	return caddy.ExitCodeSuccess, nil
}

func printReport(r reconcile.Report) {
	open := 0
	for _, d := range r.Differences {
		if !d.Healed {
			open++
		}
	}
	fmt.Printf("%s %s: %s; %d lines, %d matched, %d differences (%d healed, %d open)\n",
		r.Channel, r.Date, r.State, r.Lines, r.Matched, len(r.Differences), r.Healed, open)
	if r.Error != "" {
		fmt.Println("error:", r.Error)
	}
	t := r.Totals
	fmt.Printf("paid:     provider %s, tollgate %s\nrefunded: provider %s, tollgate %s\n",
		yuan(t.ProviderPaidFen), yuan(t.LocalPaidFen), yuan(t.ProviderRefundedFen), yuan(t.LocalRefundedFen))
	if len(r.Differences) == 0 {
		return
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tORDER\tTRADE\tREFUND\tPROVIDER FEN\tLOCAL FEN\tHEALED")
	for _, d := range r.Differences {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%v\n", d.Kind, dash(d.OrderNo), d.TradeNo, dash(d.RefundNo), d.ProviderFen, d.LocalFen, d.Healed)
	}
	_ = tw.Flush()
}

// yuan writes fen as yuan with two decimals.
func yuan(fen int64) string {
	sign := ""
	if fen < 0 {
		sign, fen = "-", -fen
	}
	return fmt.Sprintf("%s%d.%02d yuan", sign, fen/100, fen%100)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
