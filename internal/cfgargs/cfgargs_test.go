package cfgargs

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

var authjwtLike = []string{"key", "jwks", "hmac_secret", "alg", "issuer", "audience", "leeway", "from", "allow",
	"user_claim", "user_header", "claim_header", "strip_headers", "roles_claim", "require_role", "preflight",
	"revocation", "cache_size"}

func TestSuggestFindsTheIntendedSubdirective(t *testing.T) {
	hints := map[string]string{"roles": "require_role"}
	for name, want := range map[string]string{
		"roles":         "require_role", // a hint wins over roles_claim, which it is a prefix of
		"require_roles": "require_role",
		"rolse_claim":   "roles_claim", // two letters swapped
		"Issuer":        "issuer",
		"issuers":       "issuer",
		"user-claim":    "user_claim",
		"hmacsecret":    "hmac_secret",
		"jwks_url":      "jwks", // starts with one name only
		"keys":          "key",
		"colour":        "",
		"x":             "",
		"re":            "",
		"cache":         "cache_size",
	} {
		if got := Suggest(name, authjwtLike, hints); got != want {
			t.Errorf("Suggest(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestUnknownNamesTheValueAndSuggests(t *testing.T) {
	d := caddyfile.NewTestDispenser("authjwt {\n\troles admin\n}")
	d.Next()
	d.NextBlock(0)
	err := Unknown(d, "authjwt subdirective", d.Val(), authjwtLike, map[string]string{"roles": "require_role"})
	if err == nil || !strings.Contains(err.Error(), `unrecognized authjwt subdirective "roles" — did you mean require_role?`) {
		t.Fatalf("error %v", err)
	}
	err = Unknown(d, "authjwt subdirective", "colour", authjwtLike, nil)
	if err == nil || strings.Contains(err.Error(), "did you mean") || !strings.Contains(err.Error(), `unrecognized authjwt subdirective "colour"`) {
		t.Fatalf("error %v", err)
	}
}

// The readers only record: what does not parse is refused with its cause,
// a zero JSON could not tell from unset is refused, and a negative value
// is recorded for Validate to judge (one rule, one place).
func TestReadersRefuseSyntaxAndLeaveRangesToValidate(t *testing.T) {
	for _, tc := range []struct {
		line, want string
		read       func(d *caddyfile.Dispenser) (any, error)
	}{
		{"ttl soon", `ttl: time: invalid duration "soon"`, duration(false)},
		{"ttl 0s", "ttl 0s: zero cannot be told from unset in the JSON config; leave ttl out for its default", duration(false)},
		{"grace 0s", "", duration(true)},
		{"ttl -5m", "", duration(false)},
		{"ttl 5m 6m", "wrong argument count", duration(false)},
		{"size many", `size: strconv.Atoi: parsing "many": invalid syntax`, integer},
		{"size 0", "size 0: zero cannot be told from unset", integer},
		{"size -3", "", integer},
	} {
		t.Run(tc.line, func(t *testing.T) {
			d := caddyfile.NewTestDispenser(tc.line)
			d.Next()
			_, err := tc.read(d)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func duration(zeroOK bool) func(d *caddyfile.Dispenser) (any, error) {
	return func(d *caddyfile.Dispenser) (any, error) {
		var v caddy.Duration
		err := DurationArg(d, &v, zeroOK)
		return v, err
	}
}

func integer(d *caddyfile.Dispenser) (any, error) {
	var v int
	err := IntArg(d, &v)
	return v, err
}
