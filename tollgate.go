// Package tollgate registers tollgate's Caddy modules: importing it (as
// cmd/tollgate does, and as `xcaddy build --with github.com/tollgate/tollgate`
// does) adds http.handlers.authjwt, http.handlers.jwt_refresh,
// http.handlers.payproxy and their admin API routes to a Caddy binary, and
// the ops commands (keygen, sessions, payproxy; tollgate's version in
// `version`) to its command line.
package tollgate

import (
	// Each module registers itself and its Caddyfile directive in init().
	_ "github.com/tollgate/tollgate/authjwt"
	_ "github.com/tollgate/tollgate/payproxy"
	_ "github.com/tollgate/tollgate/refresh"

	// The ops commands register themselves with caddycmd in init().
	_ "github.com/tollgate/tollgate/cmd/tollgate/commands"
)
