package redisclient

import (
	"maps"
	"slices"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/tollgate/tollgate/internal/cfgargs"
)

// UnmarshalCaddyfile reads a Redis setting at d's current subdirective:
//
//	<subdirective> <url> {
//	    password <secret>
//	}
//
// into url and password, recording them as written: {env.*} and {file.*}
// are resolved, and the URL checked, by Resolve in Provision, the one
// place for that rule whether the config came from a Caddyfile or JSON;
// nothing is read or dialed here. more handles the setting's other block
// options (authjwt's revocation: unavailable, allow_without_sid); an
// unknown option is an error that suggests the nearest known one.
func UnmarshalCaddyfile(d *caddyfile.Dispenser, url, password *string, more map[string]func(*caddyfile.Dispenser) error) error {
	sub := d.Val()
	if err := cfgargs.One(d, url); err != nil {
		return err
	}
	known := append(slices.Sorted(maps.Keys(more)), "password")
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if opt == "password" {
			if err := cfgargs.One(d, password); err != nil {
				return err
			}
			continue
		}
		parse, ok := more[opt]
		if !ok {
			return cfgargs.Unknown(d, sub+" option", opt, known, nil)
		}
		if err := parse(d); err != nil {
			return err
		}
	}
	return nil
}
