package commands

import (
	"runtime/debug"

	"github.com/caddyserver/caddy/v2"
)

// modulePath is tollgate's Go module.
const modulePath = "github.com/tollgate/tollgate"

// Version, when set at link time, is tollgate's version:
//
//	go build -ldflags '-X github.com/tollgate/tollgate/cmd/tollgate/commands.Version=v1.2.3'
//
// (`make build VERSION=v1.2.3` does it). Left empty, the version comes from
// the build information Go records: the tag or pseudo-version of the commit
// a checkout was built from, or the version xcaddy was given.
var Version string

// `tollgate version` (and `--version`) print Caddy's version after
// caddy.CustomVersion, Caddy's hook for downstream builds: the line reads
// "tollgate <version>; Caddy <version> <sum>".
func init() {
	bi, _ := debug.ReadBuildInfo()
	caddy.CustomVersion = "tollgate " + versionOf(bi, Version) + "; Caddy"
}

// versionOf returns override if set, else tollgate's version from bi: the
// main module's when tollgate is the main module (go build ./cmd/tollgate),
// else the dependency's (xcaddy), with its replacement when there is one.
func versionOf(bi *debug.BuildInfo, override string) string {
	if override != "" {
		return override
	}
	if bi == nil {
		return "unknown"
	}
	if bi.Main.Path == modulePath {
		return bi.Main.Version
	}
	for _, dep := range bi.Deps {
		if dep.Path != modulePath {
			continue
		}
		v := dep.Version
		if r := dep.Replace; r != nil {
			// A folder replacement (xcaddy's --with …=./checkout) has no
			// version of its own; Go records "(devel)".
			v += " => " + r.Path
			if r.Version != "" && r.Version != "(devel)" {
				v += "@" + r.Version
			}
		}
		return v
	}
	return "unknown"
}
