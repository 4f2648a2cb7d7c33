// Package cfgargs reads the argument shapes tollgate's Caddyfile
// subdirectives share, with errors that name the subdirective and the
// offending value (the dispenser adds the Caddyfile line).
package cfgargs

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// One reads exactly one argument into dst.
func One(d *caddyfile.Dispenser, dst *string) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	*dst = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

// AtLeastOne appends the remaining arguments (one or more) to dst.
func AtLeastOne(d *caddyfile.Dispenser, dst *[]string) error {
	args := d.RemainingArgs()
	if len(args) == 0 {
		return d.ArgErr()
	}
	*dst = append(*dst, args...)
	return nil
}

// Duration reads one duration in Caddy's syntax (90s, 5m, 24h, 30d). Zero
// is accepted only where it means something (zeroOK).
func Duration(d *caddyfile.Dispenser, dst *caddy.Duration, zeroOK bool) error {
	name := d.Val()
	var s string
	if err := One(d, &s); err != nil {
		return err
	}
	dur, err := caddy.ParseDuration(s)
	if err != nil || dur < 0 || (dur == 0 && !zeroOK) {
		return d.Errf("%s %q: not a positive duration", name, s)
	}
	*dst = caddy.Duration(dur)
	return nil
}
