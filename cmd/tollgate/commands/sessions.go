package commands

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
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
		Name:  "sessions",
		Usage: "list|revoke --user <id> [--sid <sid>] [--realm <realm>] [--address <interface>]",
		Short: "Lists and revokes jwt_refresh sessions through the admin API",
		Long: `
Lists and ends the sessions of the running jwt_refresh handlers through the
admin API of admin.api.tollgate (GET /tollgate/sessions,
POST /tollgate/sessions/revoke).

list --user <id>
    Prints the user's open sessions, oldest first: the session id, when it
    was created (the login), last rotated (the last refresh), when its
    refresh token expires if unused, and when session_max ends it. --json
    prints the admin API's answer as it is.

revoke --user <id>
    Ends every session of the user: their refresh tokens fail at once, their
    access tokens within a second on every instance whose authjwt has
    revocation. The revoked session ids are printed, one per line.

revoke --user <id> --sid <sid>
    Ends that one session (its id as list prints it).

--realm names the realm when the running config has several (user 42 of
one site is not user 42 of another). The admin endpoint is --address, else
the admin address of --config, else localhost:2019.`,
		CobraFunc: func(cmd *cobra.Command) {
			list := &cobra.Command{
				Use:   "list --user <id> [--realm <realm>] [--json] [--address <interface>]",
				Short: "Lists a user's open sessions",
				Args:  cobra.NoArgs,
				RunE:  caddycmd.WrapCommandFuncForCobra(cmdSessionsList),
			}
			list.Flags().String("user", "", "The user whose sessions to list (required)")
			list.Flags().Bool("json", false, "Print the admin API's JSON answer")
			revoke := &cobra.Command{
				Use:   "revoke --user <id> [--sid <sid>] [--realm <realm>] [--address <interface>]",
				Short: "Ends a user's sessions, or one of them",
				Args:  cobra.NoArgs,
				RunE:  caddycmd.WrapCommandFuncForCobra(cmdSessionsRevoke),
			}
			revoke.Flags().String("user", "", "The user whose sessions end (required)")
			revoke.Flags().String("sid", "", "End only this session")
			for _, c := range []*cobra.Command{list, revoke} {
				c.Flags().String("realm", "", "The realm, when the running config has several")
				adminFlags(c)
				cmd.AddCommand(c)
			}
		},
	})
}

// sessionsAnswer is the admin API's GET /tollgate/sessions answer.
type sessionsAnswer struct {
	Realm    string `json:"realm"`
	User     string `json:"user"`
	Sessions []struct {
		Sid           string    `json:"sid"`
		Created       time.Time `json:"created"`
		LastRotated   time.Time `json:"last_rotated"`
		Expires       time.Time `json:"expires"`
		Ends          time.Time `json:"ends"`
		ReuseDetected bool      `json:"reuse_detected"`
	} `json:"sessions"`
}

func cmdSessionsList(fl caddycmd.Flags) (int, error) {
	user, realm := strings.TrimSpace(fl.String("user")), strings.TrimSpace(fl.String("realm"))
	if user == "" {
		return caddy.ExitCodeFailedStartup, errors.New("--user is required: tollgate sessions list --user <id> [--realm <realm>]")
	}
	q := url.Values{"user": {user}}
	if realm != "" {
		q.Set("realm", realm)
	}
	var raw json.RawMessage
	if err := adminCall(fl, http.MethodGet, "/tollgate/sessions?"+q.Encode(), nil, &raw); err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("listing sessions of user %s: %w", user, err)
	}
	if fl.Bool("json") {
		fmt.Println(string(raw))
		return caddy.ExitCodeSuccess, nil
	}
	var answer sessionsAnswer
	if err := json.Unmarshal(raw, &answer); err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("listing sessions of user %s: decoding the answer: %w", user, err)
	}
	if len(answer.Sessions) == 0 {
		fmt.Fprintf(os.Stderr, "user %s has no open session in realm %q\n", user, answer.Realm)
		return caddy.ExitCodeSuccess, nil
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SID\tCREATED\tLAST ROTATED\tEXPIRES\tENDS\t")
	for _, s := range answer.Sessions {
		sid := s.Sid
		if s.ReuseDetected {
			sid += " (reuse detected: being revoked)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", sid, stamp(s.Created), stamp(s.LastRotated), stamp(s.Expires), stamp(s.Ends))
	}
	return caddy.ExitCodeSuccess, tw.Flush()
}

// stamp writes a time in RFC 3339, to the second, in UTC.
func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func cmdSessionsRevoke(fl caddycmd.Flags) (int, error) {
	user, sid := strings.TrimSpace(fl.String("user")), strings.TrimSpace(fl.String("sid"))
	if user == "" {
		return caddy.ExitCodeFailedStartup, errors.New("--user is required: tollgate sessions revoke --user <id> [--sid <sid>]")
	}
	req := map[string]string{"user": user}
	if sid != "" {
		req["sid"] = sid
	}
	if realm := strings.TrimSpace(fl.String("realm")); realm != "" {
		req["realm"] = realm
	}
	var answer struct {
		Revoked []string `json:"revoked"`
	}
	if err := adminCall(fl, http.MethodPost, "/tollgate/sessions/revoke", req, &answer); err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("revoking sessions of user %s: %w", user, err)
	}
	if len(answer.Revoked) == 0 {
		fmt.Fprintf(os.Stderr, "user %s had no session\n", user)
	}
	for _, s := range answer.Revoked {
		fmt.Println(s)
	}
	return caddy.ExitCodeSuccess, nil
}
