// Command tollgate is Caddy with its standard modules plus tollgate's own:
// authjwt, jwt_refresh and payproxy. It accepts every caddy subcommand
// (run, validate, adapt, list-modules, reload, ...) and tollgate's own
// (keygen, sessions, payproxy): `tollgate help` lists them all.
package main

import (
	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	// Caddy's standard modules, exactly as the official binary has them.
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	// tollgate's modules, the same import xcaddy's --with adds.
	_ "github.com/tollgate/tollgate"
)

func main() {
	// Usage lines and help say "tollgate", the name of this binary.
	caddy.CustomBinaryName = "tollgate"
	caddycmd.Main()
}
