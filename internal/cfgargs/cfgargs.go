// Package cfgargs reads the argument shapes tollgate's Caddyfile
// subdirectives share, with errors that name the subdirective and the
// offending value (the dispenser adds the Caddyfile line).
package cfgargs

import (
	"strconv"
	"strings"

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

// DurationArg reads one duration in Caddy's syntax (90s, 5m, 24h, 30d).
// Like every reader here it only records: it refuses what does not parse,
// and a zero where zeroOK is false — a field whose JSON zero means "unset,
// take the default" could not tell `0s` from absent, so the config would
// silently get the default. Whether the value is in range (not negative,
// at most some bound) is the module's Validate's rule, which JSON configs
// reach too (CONTRIBUTING.md).
func DurationArg(d *caddyfile.Dispenser, dst *caddy.Duration, zeroOK bool) error {
	return parsed(d, dst, zeroOK, func(s string) (caddy.Duration, error) {
		dur, err := caddy.ParseDuration(s)
		return caddy.Duration(dur), err
	})
}

// IntArg reads one integer, refusing what does not parse and a zero (see
// DurationArg); its range is Validate's.
func IntArg(d *caddyfile.Dispenser, dst *int) error {
	return parsed(d, dst, false, strconv.Atoi)
}

// parsed reads the one argument of the subdirective at d with parse,
// refusing what does not parse (with the cause) and, unless zeroOK, zero.
func parsed[T comparable](d *caddyfile.Dispenser, dst *T, zeroOK bool, parse func(string) (T, error)) error {
	name, s, err := named(d)
	if err != nil {
		return err
	}
	v, err := parse(s)
	if err != nil {
		return d.Errf("%s: %w", name, err)
	}
	var zero T
	if v == zero && !zeroOK {
		return d.Errf(zeroMeansDefault, name, s, name)
	}
	*dst = v
	return nil
}

// named reads the one argument of the subdirective at d, with its name.
func named(d *caddyfile.Dispenser) (name, value string, err error) {
	name = d.Val()
	err = One(d, &value)
	return name, value, err
}

// zeroMeansDefault is the error for a zero that the JSON config could not
// tell from an absent setting.
const zeroMeansDefault = "%s %s: zero cannot be told from unset in the JSON config; leave %s out for its default"

// Unknown is the error for a subdirective or block option that is none of
// known: it names it and, when one is near enough, suggests it
// (`unrecognized authjwt subdirective "roles" — did you mean
// require_role?`). what is "authjwt subdirective", "revocation option"…;
// hints maps names people write for another module's or an older syntax
// (roles → require_role) to the right one, checked before spelling.
func Unknown(d *caddyfile.Dispenser, what, name string, known []string, hints map[string]string) error {
	if s := Suggest(name, known, hints); s != "" {
		return d.Errf("unrecognized %s %q — did you mean %s?", what, name, s)
	}
	return d.Errf("unrecognized %s %q", what, name)
}

// Suggest returns the known name nearest to name, or "" when none is
// near enough to be a likely intent: a hint, the same name in another
// case or with '-' for '_', one within a third of its length in edits
// (a swap of two neighbours counts as one), or the one name it is a prefix
// of or starts with.
func Suggest(name string, known []string, hints map[string]string) string {
	norm := normalize(name)
	if s, ok := hints[norm]; ok {
		return s
	}
	best, bestDist := "", max(1, len(norm)/3)+1
	for _, k := range known {
		if d := editDistance(norm, normalize(k)); d < bestDist {
			best, bestDist = k, d
		}
	}
	if best != "" {
		return best
	}
	return uniquePrefixMatch(norm, known)
}

func normalize(s string) string {
	return strings.ReplaceAll(strings.ToLower(s), "-", "_")
}

// uniquePrefixMatch is the one known name that starts with name or that
// name starts with (redis_url → redis), for names of 3 letters or more.
func uniquePrefixMatch(name string, known []string) string {
	if len(name) < 3 {
		return ""
	}
	found := ""
	for _, k := range known {
		nk := normalize(k)
		if strings.HasPrefix(nk, name) || strings.HasPrefix(name, nk) {
			if found != "" {
				return "" // ambiguous
			}
			found = k
		}
	}
	return found
}

// editDistance is the optimal string alignment distance: insertions,
// deletions, substitutions and swaps of neighbours, one each.
func editDistance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
