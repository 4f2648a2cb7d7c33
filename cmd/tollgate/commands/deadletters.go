package commands

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "payproxy",
		Usage: "dead-letters [--replay <id> | --replay-all] [--json] [--address <interface>] | reconcile --channel <c> --date <d>",
		Short: "Operates payproxy through the admin API",
		Long: `
Operates the running payproxy routes through the admin API
(admin.api.tollgate_payproxy).

dead-letters
    Lists the webhook events that the backend did not accept within
    max_attempts: id, type, order, when the last attempt failed, attempts,
    last error. --json prints the admin API's JSON instead.

dead-letters --replay <id>
    Puts that event back into the webhook queue with a fresh attempt count.

dead-letters --replay-all
    Puts every dead letter back into the queue.

reconcile --channel <alipay|wechat> --date <yyyy-MM-dd>
    Reconciles the channel's bill of that day with the trade ledger now and
    prints the report (--json: the admin API's JSON); exits 1 unless done.

Replay after the receiver is fixed: an event that fails max_attempts times
again comes back to the list. The admin endpoint is --address, else the
admin address of --config, else localhost:2019.`,
		CobraFunc: func(cmd *cobra.Command) {
			dl := &cobra.Command{
				Use:   "dead-letters [--replay <id> | --replay-all] [--json] [--address <interface>]",
				Short: "Lists or replays the webhook dead letters",
				Args:  cobra.NoArgs,
				RunE:  caddycmd.WrapCommandFuncForCobra(cmdDeadLetters),
			}
			dl.Flags().String("replay", "", "Replay the dead letter with this event id")
			dl.Flags().Bool("replay-all", false, "Replay every dead letter")
			dl.Flags().Bool("json", false, "Print the list as the admin API's JSON")
			adminFlags(dl)
			cmd.AddCommand(dl, reconcileCommand())
		},
	})
}

// deadLetter is one entry of GET /tollgate/payproxy/dead_letters.
type deadLetter struct {
	ID        string          `json:"id"`
	Event     json.RawMessage `json:"event"`
	Attempts  int             `json:"attempts"`
	LastError string          `json:"last_error"`
	FailedAt  int64           `json:"failed_at"` // Unix milliseconds
}

func cmdDeadLetters(fl caddycmd.Flags) (int, error) {
	id, all := strings.TrimSpace(fl.String("replay")), fl.Bool("replay-all")
	switch {
	case id != "" && all:
		return caddy.ExitCodeFailedStartup, errors.New("give --replay <id> or --replay-all, not both")
	case id != "" || all:
		return replay(fl, id)
	}
	var list []deadLetter
	if err := adminCall(fl, http.MethodGet, "/tollgate/payproxy/dead_letters", nil, &list); err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("listing dead letters: %w", err)
	}
	if fl.Bool("json") {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return caddy.ExitCodeSuccess, enc.Encode(list)
	}
	if len(list) == 0 {
		fmt.Fprintln(os.Stderr, "no dead letters")
		return caddy.ExitCodeSuccess, nil
	}
	printDeadLetters(list)
	return caddy.ExitCodeSuccess, nil
}

// replay replays one dead letter (id) or all of them (id == "").
func replay(fl caddycmd.Flags, id string) (int, error) {
	body := map[string]string{}
	if id != "" {
		body["id"] = id
	}
	var answer struct {
		Replayed int `json:"replayed"`
	}
	if err := adminCall(fl, http.MethodPost, "/tollgate/payproxy/dead_letters/replay", body, &answer); err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("replaying dead letters: %w", err)
	}
	if id != "" && answer.Replayed == 0 {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("no dead letter with id %q (list them with: tollgate payproxy dead-letters)", id)
	}
	fmt.Printf("replayed %d\n", answer.Replayed)
	return caddy.ExitCodeSuccess, nil
}

func printDeadLetters(list []deadLetter) {
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTYPE\tORDER\tFAILED AT\tATTEMPTS\tLAST ERROR")
	for _, d := range list {
		var ev struct {
			Type string `json:"type"`
			Data struct {
				OrderNo string `json:"order_no"`
			} `json:"data"`
		}
		_ = json.Unmarshal(d.Event, &ev)
		failed := time.UnixMilli(d.FailedAt).UTC().Format(time.RFC3339)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", d.ID, ev.Type, ev.Data.OrderNo, failed, d.Attempts, d.LastError)
	}
	_ = tw.Flush()
}
