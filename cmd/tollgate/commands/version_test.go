package commands

import (
	"runtime/debug"
	"testing"
)

// TestVersionComesFromTheLinkerFlagElseTheBuildInformation covers the ways
// a binary is made: make build (linker flag), go build in a checkout (the
// main module's version), xcaddy from a tag or from a checkout (a
// dependency, replaced by a folder).
func TestVersionComesFromTheLinkerFlagElseTheBuildInformation(t *testing.T) {
	dep := func(v string, replace *debug.Module) *debug.BuildInfo {
		return &debug.BuildInfo{
			Main: debug.Module{Path: "caddy", Version: "(devel)"},
			Deps: []*debug.Module{{Path: "github.com/caddyserver/caddy/v2", Version: "v2.11.9"}, {Path: modulePath, Version: v, Replace: replace}},
		}
	}
	checkout := &debug.BuildInfo{Main: debug.Module{Path: modulePath, Version: "v0.0.0-20261201225539-acb0b3e0cc2f+dirty"}}
	for _, c := range []struct {
		name, override string
		bi             *debug.BuildInfo
		want           string
	}{
		{"linker flag wins", "v1.2.3", checkout, "v1.2.3"},
		{"go build in a checkout", "", checkout, "v0.0.0-20261201225539-acb0b3e0cc2f+dirty"},
		{"xcaddy from a tag", "", dep("v0.1.0", nil), "v0.1.0"},
		{"xcaddy from a checkout", "", dep("v0.0.0-20261201225539-acb0b3e0cc2f", &debug.Module{Path: "/src/tollgate", Version: "(devel)"}),
			"v0.0.0-20261201225539-acb0b3e0cc2f => /src/tollgate"},
		{"xcaddy with a module replacement", "", dep("v0.1.0", &debug.Module{Path: "example.com/fork", Version: "v0.1.1"}),
			"v0.1.0 => example.com/fork@v0.1.1"},
		{"no build information", "", nil, "unknown"},
		{"tollgate not linked", "", &debug.BuildInfo{Main: debug.Module{Path: "caddy"}}, "unknown"},
	} {
		if got := versionOf(c.bi, c.override); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}
