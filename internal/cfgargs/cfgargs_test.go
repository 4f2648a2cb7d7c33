package cfgargs

import (
	"strings"
	"testing"

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
