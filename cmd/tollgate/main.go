// Command tollgate is Caddy with its standard modules plus tollgate's own:
// authjwt, jwt_refresh and payproxy. It accepts every caddy subcommand
// (run, validate, adapt, list-modules, reload, ...).
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	// Caddy's standard modules, exactly as the official binary has them.
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	// tollgate's modules, the same import xcaddy's --with adds.
	_ "github.com/tollgate/tollgate"
)

func main() {
	caddycmd.Main()
}
