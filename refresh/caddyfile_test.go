package refresh

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/tollgate/tollgate/internal/testcaddy"
)

// adaptHandler adapts a site with one jwt_refresh block and returns the
// handler's JSON as a map.
func adaptHandler(t *testing.T, block string) map[string]any {
	t.Helper()
	out, _, err := testcaddy.Adapt(":8080 {\n\tjwt_refresh {\n" + block + "\n\t}\n}\n")
	if err != nil {
		t.Fatalf("adapt: %v", err)
	}
	var cfg struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Routes []struct {
						Handle []map[string]any `json:"handle"`
					} `json:"routes"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	for _, srv := range cfg.Apps.HTTP.Servers {
		for _, r := range srv.Routes {
			for _, h := range r.Handle {
				if h["handler"] == "jwt_refresh" {
					return h
				}
			}
		}
	}
	t.Fatalf("no jwt_refresh handler in %s", out)
	return nil
}

func TestCaddyfileAdaptsEverySubdirective(t *testing.T) {
	k := testKeys(t)
	req := fmt.Sprintf("\t\tredis redis://:pw@127.0.0.1:6379/2\n\t\tsigning_key %s es1\n", k.es256)
	cases := []struct {
		name, line string
		field      string
		want       any
	}{
		{"redis", "", "redis", "redis://:pw@127.0.0.1:6379/2"},
		{"signing_key with kid", "", "signing_keys", []any{map[string]any{"file": k.es256, "kid": "es1"}}},
		{"second signing_key without kid", "signing_key " + k.rsa, "signing_keys",
			[]any{map[string]any{"file": k.es256, "kid": "es1"}, map[string]any{"file": k.rsa}}},
		{"jwks_path", "jwks_path /.well-known/jwks.json", "jwks_path", "/.well-known/jwks.json"},
		{"user_claim", "user_claim userId", "user_claim", "userId"},
		{"issuer", "issuer https://auth.example", "issuer", "https://auth.example"},
		{"realm", "realm customer", "realm", "customer"},
		{"audience", "audience api admin", "audience", []any{"api", "admin"}},
		{"access_ttl", "access_ttl 5m", "access_ttl", float64(300e9)},
		{"refresh_ttl", "refresh_ttl 24h", "refresh_ttl", float64(86400e9)},
		{"session_max", "session_max 30d", "session_max", float64(30 * 86400e9)},
		{"max_sessions", "max_sessions 20", "max_sessions", float64(20)},
		{"reuse_grace", "reuse_grace 90s", "reuse_grace", float64(90e9)},
		{"reuse_grace zero is strict", "reuse_grace 0s", "reuse_grace", float64(0)},
		{"refresh_path", "refresh_path /api/token", "refresh_path", "/api/token"},
		{"refresh_header", "refresh_header refresh_token", "refresh_header", "refresh_token"},
		{"login_path", "login_path /user/login", "login_path", "/user/login"},
		{"logout_path", "logout_path /user/logout", "logout_path", "/user/logout"},
		{"logout_all_path", "logout_all_path /user/logout-all", "logout_all_path", "/user/logout-all"},
		{"legacy_prefix", "legacy_prefix SL_CUSTOMER_REFRESH_TOKEN_", "legacy_prefix", "SL_CUSTOMER_REFRESH_TOKEN_"},
		{"legacy_key", "legacy_key " + k.rsaPub, "legacy_keys", []any{k.rsaPub}},
		{"placeholder key path kept", "signing_key {env.KEY_DIR}/new.pem", "signing_keys",
			[]any{map[string]any{"file": k.es256, "kid": "es1"}, map[string]any{"file": "{env.KEY_DIR}/new.pem"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := adaptHandler(t, req+"\t\t"+c.line)
			if got := h[c.field]; !reflect.DeepEqual(got, c.want) {
				t.Fatalf("%s = %#v, want %#v", c.field, got, c.want)
			}
		})
	}
}

func TestCaddyfileOrderPutsJWTRefreshBeforeAuth(t *testing.T) {
	k := testKeys(t)
	out, _, err := testcaddy.Adapt(fmt.Sprintf(`:8080 {
	basic_auth {
		bob $2a$14$Zkx19XLiW6VYouLHR5NmfOFU0z2GTNmpkT/5qqR7hx4IjWJPDhjvG
	}
	jwt_refresh {
		redis redis://127.0.0.1:6379
		signing_key %s
	}
	respond ok
}`, k.es256))
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	if i, j := strings.Index(s, `"jwt_refresh"`), strings.Index(s, `"authentication"`); i < 0 || j < 0 || i > j {
		t.Fatalf("jwt_refresh must come before basic_auth without an order option:\n%s", s)
	}
}

// What the parser refuses is syntax alone: an unknown or repeated
// subdirective, a wrong argument count, a value that does not parse, a
// zero the JSON config could not tell from unset. Each error names the
// Caddyfile line and keeps its cause.
func TestCaddyfileSyntaxErrorsNameTheLineAndTheCause(t *testing.T) {
	k := testKeys(t)
	cases := []struct {
		name, block, want string
	}{
		{"unknown subdirective", "redis redis://x:1\nsigning_key " + k.es256 + "\nfoo bar", `Caddyfile:5: unrecognized jwt_refresh subdirective "foo"`},
		{"misspelt subdirective", "redis redis://x:1\nsigning_key " + k.es256 + "\nsigning_keys " + k.rsa, `Caddyfile:5: unrecognized jwt_refresh subdirective "signing_keys" — did you mean signing_key?`},
		{"authjwt's name for a key", "redis redis://x:1\nkey " + k.rsa, `Caddyfile:4: unrecognized jwt_refresh subdirective "key" — did you mean signing_key?`},
		{"misspelt redis option", "redis redis://x:1 {\npasword x\n}\nsigning_key " + k.es256, `Caddyfile:4: unrecognized redis option "pasword" — did you mean password?`},
		{"signing_key too many args", "redis redis://x:1\nsigning_key " + k.es256 + " a b", "Caddyfile:4: wrong argument count"},
		{"not a duration", "redis redis://x:1\nsigning_key " + k.es256 + "\naccess_ttl soon", `Caddyfile:5: access_ttl: time: invalid duration "soon"`},
		{"zero ttl", "redis redis://x:1\nsigning_key " + k.es256 + "\nrefresh_ttl 0s", "Caddyfile:5: refresh_ttl 0s: zero cannot be told from unset in the JSON config; leave refresh_ttl out for its default"},
		{"max_sessions not a number", "redis redis://x:1\nsigning_key " + k.es256 + "\nmax_sessions lots", `Caddyfile:5: max_sessions: strconv.Atoi: parsing "lots": invalid syntax`},
		{"max_sessions zero", "redis redis://x:1\nsigning_key " + k.es256 + "\nmax_sessions 0", "Caddyfile:5: max_sessions 0: zero cannot be told from unset"},
		{"duplicate", "redis redis://x:1\nredis redis://y:1", "Caddyfile:4: redis given more than once"},
		{"missing arg", "redis", "Caddyfile:3: wrong argument count"},
		{"args on directive", "", "wrong argument count"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			head := "jwt_refresh {"
			if c.name == "args on directive" {
				head = "jwt_refresh extra {\nredis redis://x:1\nsigning_key " + k.es256
			}
			_, _, err := testcaddy.Adapt(":8080 {\n" + head + "\n" + c.block + "\n}\n}\n")
			// "Caddyfile:N: msg" means msg, reported at line N.
			msg, line := c.want, ""
			if where, rest, ok := strings.Cut(c.want, ": "); ok && strings.HasPrefix(where, "Caddyfile:") {
				msg, line = rest, "at "+where
			}
			if err == nil || !strings.Contains(err.Error(), msg) || !strings.Contains(err.Error(), line) {
				t.Fatalf("error %v, want %q %s", err, msg, line)
			}
		})
	}
}

// Every rule on the values lives in Validate (or, for a value that may
// hold a placeholder, where Provision resolves it): a Caddyfile breaking
// it adapts, then fails `caddy validate` with the very message the same
// config written as JSON gets, named by its subdirective and without a
// "jwt_refresh" of ours before Caddy's own "provision
// http.handlers.jwt_refresh".
func TestEveryRuleRefusesTheCaddyfileAndTheJSONConfigAlike(t *testing.T) {
	k := testKeys(t)
	es, rsaKey, pub := k.es256, k.rsa, k.es256Pub
	base := "redis redis://127.0.0.1:1\nsigning_key " + es + "\n"
	baseJSON := `"redis":"redis://127.0.0.1:1","signing_keys":[{"file":"` + es + `"}]`
	for name, tc := range map[string]struct{ caddyfile, json, msg string }{
		"NoRedis":           {"signing_key " + es, `"signing_keys":[{"file":"` + es + `"}]`, "redis <url> is required"},
		"NoSigningKey":      {"redis redis://127.0.0.1:1", `"redis":"redis://127.0.0.1:1"`, "at least one signing_key is required"},
		"BadRedisURL":       {"redis http://x:1\nsigning_key " + es, `"redis":"http://x:1","signing_keys":[{"file":"` + es + `"}]`, "redis: redis URL"},
		"GraceTooLong":      {base + "reuse_grace 11m", baseJSON + `,"reuse_grace":660000000000`, "reuse_grace 11m0s: must be between 0 and 10m0s"},
		"GraceNegative":     {base + "reuse_grace -1s", baseJSON + `,"reuse_grace":-1000000000`, "reuse_grace -1s: must be between 0 and 10m0s"},
		"NegativeTTL":       {base + "access_ttl -5m", baseJSON + `,"access_ttl":-300000000000`, "access_ttl -5m0s: must be positive"},
		"RefreshOverMax":    {base + "refresh_ttl 2h\nsession_max 1h", baseJSON + `,"refresh_ttl":7200000000000,"session_max":3600000000000`, "refresh_ttl 2h0m0s exceeds session_max 1h0m0s"},
		"AccessOverRefresh": {base + "access_ttl 2h\nrefresh_ttl 1h", baseJSON + `,"access_ttl":7200000000000,"refresh_ttl":3600000000000`, "access_ttl 2h0m0s exceeds refresh_ttl 1h0m0s"},
		"RelativePath":      {base + "login_path login", baseJSON + `,"login_path":"login"`, `login_path "login": must start with /`},
		"SamePathTwice":     {base + "login_path /a\nlogout_path /a", baseJSON + `,"login_path":"/a","logout_path":"/a"`, `login_path and logout_path are both "/a"`},
		"MaxSessionsNeg":    {base + "max_sessions -1", baseJSON + `,"max_sessions":-1`, "max_sessions -1: must be positive"},
		"LegacyNoPrefix":    {base + "legacy_key " + pub, baseJSON + `,"legacy_keys":["` + pub + `"]`, "legacy_key needs legacy_prefix"},
		"MissingSigningKey": {"redis redis://127.0.0.1:1\nsigning_key /nonexistent.pem", `"redis":"redis://127.0.0.1:1","signing_keys":[{"file":"/nonexistent.pem"}]`, "signing_key /nonexistent.pem: cannot read the file: no such file or directory"},
		"PublicAsSigning":   {"redis redis://127.0.0.1:1\nsigning_key " + pub, `"redis":"redis://127.0.0.1:1","signing_keys":[{"file":"` + pub + `"}]`, "signing_key " + pub + ": holds no private key (only PUBLIC KEY): a signing key must be the private key"},
		"MissingLegacyKey":  {base + "legacy_prefix OLD_\nlegacy_key /nope.pem", baseJSON + `,"legacy_prefix":"OLD_","legacy_keys":["/nope.pem"]`, "legacy_key /nope.pem: cannot read the file: no such file or directory"},
		"PrivateAsLegacy":   {base + "legacy_prefix OLD_\nlegacy_key " + rsaKey, baseJSON + `,"legacy_prefix":"OLD_","legacy_keys":["` + rsaKey + `"]`, "legacy_key " + rsaKey + ": holds a private key (PRIVATE KEY): give the public key or a certificate"},
	} {
		t.Run(name, func(t *testing.T) {
			errs := map[string]error{"Caddyfile": validateCaddyfile(t, tc.caddyfile), "JSON": testcaddy.ValidateHandler(t, "jwt_refresh", tc.json)}
			for form, err := range errs {
				if err == nil || !strings.Contains(err.Error(), "http.handlers.jwt_refresh: "+tc.msg) &&
					!strings.Contains(err.Error(), "http.handlers.jwt_refresh: invalid configuration: "+tc.msg) {
					t.Errorf("%s: validate: %v, want %q right after the module's name", form, err, tc.msg)
				}
			}
		})
	}
}

func TestValidateRejectsInconsistentJSON(t *testing.T) {
	k := testKeys(t)
	grace := caddy.Duration(11 * 60e9)
	keys := []KeyFile{{File: k.es256}}
	cases := map[string]Handler{
		"refresh_ttl over session_max": {Redis: "redis://x:1", SigningKeys: keys, RefreshTTL: caddy.Duration(2e9), SessionMax: caddy.Duration(1e9)},
		"grace over 10m":               {Redis: "redis://x:1", SigningKeys: keys, ReuseGrace: &grace},
		"access_ttl over refresh_ttl":  {Redis: "redis://x:1", SigningKeys: keys, AccessTTL: caddy.Duration(10 * 60e9), RefreshTTL: caddy.Duration(5 * 60e9)},
		"duplicate paths":              {Redis: "redis://x:1", SigningKeys: keys, LoginPath: "/a", LogoutPath: "/a"},
		"legacy key without prefix":    {Redis: "redis://x:1", SigningKeys: keys, LegacyKeys: []string{k.rsaPub}},
	}
	for name, h := range cases {
		t.Run(name, func(t *testing.T) {
			if err := h.Validate(); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestUnmarshalCaddyfileKeepsPlaceholders(t *testing.T) {
	d := caddyfile.NewTestDispenser(`jwt_refresh {
		redis {env.REDIS_URL}
		signing_key {file./run/secrets/keypath}
	}`)
	var h Handler
	if err := h.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	if h.Redis != "{env.REDIS_URL}" || h.SigningKeys[0].File != "{file./run/secrets/keypath}" {
		t.Fatalf("placeholders expanded while parsing: %+v", h)
	}
}

// validateCaddyfile adapts a site with one jwt_refresh block and runs
// caddy.Validate on it, which provisions the handler as `caddy validate`
// does.
func validateCaddyfile(t *testing.T, block string) error {
	t.Helper()
	return testcaddy.ValidateCaddyfile(t, "http://127.0.0.1:9 {\n\tjwt_refresh {\n"+block+"\n\t}\n}\n")
}

// The JSON config follows Caddy's naming (snake_case of the field), and
// configs adapted before the conventions load unchanged.
func TestJSONNamesAreTheFieldsAndOldConfigsStillLoad(t *testing.T) {
	testcaddy.CheckJSONNames(t, Handler{}, AdminAPI{})
	testcaddy.CheckOldConfigsLoad(t, "testdata/compat", "http.handlers.jwt_refresh")
}
