// Command anchor is the benchmark's point of comparison: stock Caddy with
// its standard modules plus caddy-security (authorize), the JWT gate ops
// would deploy instead of tollgate's authjwt. It is its own Go module so
// the product's go.mod never sees caddy-security. Build (the checksum
// database lookup for github.com/greenpau fails on this machine):
//
//	cd bench/anchor && GONOSUMDB=github.com/greenpau GOFLAGS=-mod=mod go build -o anchor .
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
	_ "github.com/greenpau/caddy-security"
)

func main() { caddycmd.Main() }
