// Package commands adds tollgate's operations commands to the Caddy command
// line, the way Caddy's own modules add theirs (caddyauth's hash-password):
// every binary that imports github.com/tollgate/tollgate — `go build
// ./cmd/tollgate` or xcaddy — has them, and `tollgate help` lists them.
//
//	tollgate keygen                       a jwt_refresh signing key pair with a kid, and the Caddyfile lines
//	tollgate sessions list|revoke         list a user's sessions, end them or one (admin API)
//	tollgate payproxy dead-letters        list or replay webhook dead letters (admin API)
//	tollgate payproxy reconcile           reconcile a channel's bill of one day now (admin API)
//	tollgate version                      tollgate's version, then Caddy's
//
// The admin commands are thin clients of the admin API routes of
// admin.api.tollgate and admin.api.tollgate_payproxy, and find the admin
// endpoint as `caddy reload` does: --address, else the admin address of
// --config, else localhost:2019.
package commands

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

// adminFlags adds --address, --config and --adapter to cmd, as Caddy's
// reload and stop have them.
func adminFlags(cmd *cobra.Command) {
	cmd.Flags().String("address", "", "The address of the admin API (default: the admin address of --config, else localhost:2019)")
	cmd.Flags().StringP("config", "c", "", "Configuration file whose admin address to use")
	cmd.Flags().StringP("adapter", "a", "", "Name of config adapter to apply (when --config is used)")
}

// adminCall sends one request to the admin API of the instance the flags
// name and decodes its JSON answer into out. An error answer comes back as
// an error carrying the status and the API's own error text.
func adminCall(fl caddycmd.Flags, method, path string, body, out any) error {
	addr, err := caddycmd.DetermineAdminAPIAddress(fl.String("address"), nil, fl.String("config"), fl.String("adapter"))
	if err != nil {
		return fmt.Errorf("finding the admin address: %w", err)
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = strings.NewReader(string(b))
	}
	resp, err := caddycmd.AdminAPIRequest(addr, method, path, http.Header{}, rd)
	if err != nil {
		return fmt.Errorf("%s %s on the admin API at %s: %w", method, path, addr, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s on the admin API at %s: decoding the answer: %w", method, path, addr, err)
	}
	return nil
}
