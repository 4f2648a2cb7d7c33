package commands

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "sessions",
		Usage: "revoke --user <id> [--sid <sid>] [--address <interface>]",
		Short: "Manages jwt_refresh sessions through the admin API",
		Long: `
Manages the sessions of the running jwt_refresh handlers through the admin
API (POST /tollgate/sessions/revoke of admin.api.tollgate).

revoke --user <id>
    Ends every session of the user: their refresh tokens fail at once, their
    access tokens within a second on every instance whose authjwt has
    revocation.

revoke --user <id> --sid <sid>
    Ends that one session.

The revoked session ids are printed, one per line. The admin endpoint is
--address, else the admin address of --config, else localhost:2019.`,
		CobraFunc: func(cmd *cobra.Command) {
			revoke := &cobra.Command{
				Use:   "revoke --user <id> [--sid <sid>] [--address <interface>]",
				Short: "Ends a user's sessions, or one of them",
				Args:  cobra.NoArgs,
				RunE:  caddycmd.WrapCommandFuncForCobra(cmdSessionsRevoke),
			}
			revoke.Flags().String("user", "", "The user whose sessions end (required)")
			revoke.Flags().String("sid", "", "End only this session")
			adminFlags(revoke)
			cmd.AddCommand(revoke)
		},
	})
}

func cmdSessionsRevoke(fl caddycmd.Flags) (int, error) {
	user, sid := strings.TrimSpace(fl.String("user")), strings.TrimSpace(fl.String("sid"))
	if user == "" {
		return caddy.ExitCodeFailedStartup, errors.New("--user is required: tollgate sessions revoke --user <id> [--sid <sid>]")
	}
	req := map[string]string{"user": user}
	if sid != "" {
		req["sid"] = sid
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
