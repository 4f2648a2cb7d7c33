package authjwt

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/tollgate/tollgate/internal/testcaddy"
	"github.com/tollgate/tollgate/internal/testkeys"
)

// handlerJSON adapts a one-site Caddyfile and returns the authjwt handler's
// JSON.
func handlerJSON(t *testing.T, block string) []byte {
	t.Helper()
	cfg, _, err := testcaddy.Adapt("http://127.0.0.1:9 {\n" + block + "\n}\n")
	if err != nil {
		t.Fatalf("adapt: %v", err)
	}
	var doc any
	if err := json.Unmarshal(cfg, &doc); err != nil {
		t.Fatal(err)
	}
	h := findHandler(doc, "authjwt")
	if h == nil {
		t.Fatalf("no authjwt handler in %s", cfg)
	}
	raw, _ := json.Marshal(h)
	return raw
}

// findHandler walks adapted JSON for the object with this "handler" name.
func findHandler(v any, name string) map[string]any {
	switch x := v.(type) {
	case map[string]any:
		if x["handler"] == name {
			return x
		}
		for _, e := range x {
			if h := findHandler(e, name); h != nil {
				return h
			}
		}
	case []any:
		for _, e := range x {
			if h := findHandler(e, name); h != nil {
				return h
			}
		}
	}
	return nil
}

func TestCaddyfileAdaptsEverySubdirective(t *testing.T) {
	k := keys(t)
	dir := t.TempDir()
	rsaPEM := writePublicPEM(t, dir, "rsa.pem", &k.rsa1.PublicKey)
	edPEM := writePublicPEM(t, dir, "ed.pem", k.ed.Public())
	raw := handlerJSON(t, fmt.Sprintf(`
	authjwt {
		key %s k1
		key %s
		jwks https://idp.example/.well-known/jwks.json refresh 5m
		alg RS256 EdDSA
		issuer https://auth.example
		audience gateway mobile
		leeway 10s
		from header X-Token
		from cookie access_token
		from query access_token
		allow /public/* /health
		user_claim userId
		user_header X-Uid
		claim_header tenant X-Tenant
		claim_header roles X-Roles
		strip_headers X-User-* X-Auth-* X-Internal
		roles_claim authorities
		require_role admin dispatcher
		preflight require
		revocation redis://127.0.0.1:6379/0 {
			allow_without_sid
			unavailable reject
		}
		cache_size 500
	}
	respond ok`, rsaPEM, edPEM))

	var got AuthJWT
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatalf("JSON does not load back into AuthJWT: %v\n%s", err, raw)
	}
	leeway := caddy.Duration(10 * time.Second)
	want := AuthJWT{
		Keys:                      []KeyFile{{File: rsaPEM, Kid: "k1"}, {File: edPEM}},
		JWKS:                      &JWKS{URL: "https://idp.example/.well-known/jwks.json", Refresh: caddy.Duration(5 * time.Minute)},
		Alg:                       []string{"RS256", "EdDSA"},
		Issuer:                    StringList{"https://auth.example"},
		Audience:                  []string{"gateway", "mobile"},
		Leeway:                    &leeway,
		From:                      []TokenSource{{"header", "X-Token"}, {"cookie", "access_token"}, {"query", "access_token"}},
		Allow:                     []string{"/public/*", "/health"},
		UserClaim:                 "userId",
		UserHeader:                "X-Uid",
		ClaimHeaders:              []ClaimHeader{{"tenant", "X-Tenant"}, {"roles", "X-Roles"}},
		StripHeaders:              []string{"X-User-*", "X-Auth-*", "X-Internal"},
		RolesClaim:                "authorities",
		RequireRole:               []string{"admin", "dispatcher"},
		Preflight:                 "require",
		Revocation:                "redis://127.0.0.1:6379/0",
		RevocationAllowWithoutSid: true,
		RevocationUnavailable:     "reject",
		CacheSize:                 500,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("adapted config\n got %+v\nwant %+v\njson %s", got, want, raw)
	}
	for _, field := range []string{`"keys"`, `"jwks"`, `"alg"`, `"issuer"`, `"audience"`, `"leeway"`, `"from"`, `"allow"`,
		`"user_claim"`, `"user_header"`, `"claim_headers"`, `"strip_headers"`, `"roles_claim"`, `"require_role"`, `"preflight"`, `"revocation"`, `"revocation_allow_without_sid"`, `"revocation_unavailable"`, `"cache_size"`} {
		if !strings.Contains(string(raw), field) {
			t.Errorf("JSON lacks %s: %s", field, raw)
		}
	}
}

func TestCaddyfileHMACSecretKeepsPlaceholder(t *testing.T) {
	raw := handlerJSON(t, "authjwt {\n\t\thmac_secret {env.JWT_SECRET}\n\t}")
	if !strings.Contains(string(raw), `"hmac_secret":"{env.JWT_SECRET}"`) {
		t.Errorf("placeholder expanded while parsing: %s", raw)
	}
}

// What the parser refuses is syntax alone: an unknown or repeated
// subdirective, a wrong argument count, a value that does not parse, a
// zero the JSON config could not tell from unset. Each error names the
// Caddyfile line and keeps its cause.
func TestBadCaddyfileSyntaxNamesTheLineAndTheCause(t *testing.T) {
	key := "key /etc/tollgate/jwt.pem"
	for name, tc := range map[string]struct{ body, msg string }{
		"UnknownSubdirective":      {key + "\n\t\tcolour blue", `unrecognized authjwt subdirective "colour"`},
		"MissingArgument":          {key + "\n\t\tissuer", "wrong argument count"},
		"Repeated":                 {key + "\n\t\tleeway 1s\n\t\tleeway 2s", "leeway given more than once"},
		"LeewayNotADuration":       {key + "\n\t\tleeway soon", `leeway: time: invalid duration "soon"`},
		"CacheSizeNotANumber":      {key + "\n\t\tcache_size many", `cache_size: strconv.Atoi: parsing "many": invalid syntax`},
		"CacheSizeZero":            {key + "\n\t\tcache_size 0", "cache_size 0: zero cannot be told from unset in the JSON config; leave cache_size out for its default"},
		"JWKSRefreshZero":          {"jwks https://idp.example/jwks.json refresh 0s", "refresh 0s: zero cannot be told from unset"},
		"JWKSWithoutRefreshWord":   {"jwks https://idp.example/jwks.json every 5m", `jwks: unexpected "every" after the location, want refresh <duration>`},
		"UnknownRevocationOption":  {key + "\n\t\trevocation redis://127.0.0.1:6379/0 {\n\t\t\tfail open\n\t\t}", `unrecognized revocation option "fail"`},
		"RolesSuggestsRequireRole": {key + "\n\t\troles admin", `unrecognized authjwt subdirective "roles" — did you mean require_role?`},
		"MisspeltSubdirective":     {key + "\n\t\trequire_roles admin", `unrecognized authjwt subdirective "require_roles" — did you mean require_role?`},
		"MisspeltRevocationOption": {key + "\n\t\trevocation redis://127.0.0.1:6379/0 {\n\t\t\tunavailible reject\n\t\t}", `unrecognized revocation option "unavailible" — did you mean unavailable?`},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := testcaddy.Adapt("http://127.0.0.1:9 {\n\tauthjwt {\n\t\t" + tc.body + "\n\t}\n\trespond ok\n}\n")
			if err == nil {
				t.Fatal("adapt succeeded")
			}
			if !strings.Contains(err.Error(), tc.msg) || !strings.Contains(err.Error(), "Caddyfile:") {
				t.Errorf("error %q should contain %q and the Caddyfile line", err, tc.msg)
			}
		})
	}
}

// Every rule on the values lives in Validate (or, for a value that may
// hold a placeholder, where Provision resolves it): a Caddyfile breaking
// it adapts — `caddy adapt` is no linter of values it may not be able to
// resolve — and then fails `caddy validate` with the very message the same
// config written as JSON gets.
func TestEveryRuleRefusesTheCaddyfileAndTheJSONConfigAlike(t *testing.T) {
	k := keys(t)
	dir := t.TempDir()
	pub := writePublicPEM(t, dir, "pub.pem", k.ec256.Public())
	priv, err := testkeys.WritePrivate(dir, "priv.pem", k.ec256)
	if err != nil {
		t.Fatal(err)
	}
	secret := strings.Repeat("s", 32)
	for name, tc := range map[string]struct{ caddyfile, json, msg string }{
		"NoKey":             {"issuer x", `{"issuer":"x"}`, "no key: give key, jwks or hmac_secret"},
		"HMACWithKey":       {"key " + pub + "\nhmac_secret " + secret, `{"keys":[{"file":"` + pub + `"}],"hmac_secret":"` + secret + `"}`, "hmac_secret cannot be combined with key or jwks"},
		"ShortSecret":       {"hmac_secret short", `{"hmac_secret":"short"}`, "hmac_secret is 5 bytes; at least 32"},
		"AlgNone":           {"key " + pub + "\nalg none", `{"keys":[{"file":"` + pub + `"}],"alg":["none"]}`, `alg "none" is never accepted`},
		"AlgUnknown":        {"key " + pub + "\nalg XS256", `{"keys":[{"file":"` + pub + `"}],"alg":["XS256"]}`, `alg "XS256": unsupported`},
		"AlgHMACWithoutKey": {"key " + pub + "\nalg HS256", `{"keys":[{"file":"` + pub + `"}],"alg":["HS256"]}`, "alg HS256 needs hmac_secret"},
		"PlainHTTPJWKS":     {"jwks http://idp.example/j", `{"jwks":{"url":"http://idp.example/j"}}`, "plain http"},
		"JWKSRefreshNeg":    {"jwks https://idp.example/j refresh -1m", `{"jwks":{"url":"https://idp.example/j","refresh":-60000000000}}`, "jwks refresh -1m0s: must be positive"},
		"FromElsewhere":     {"hmac_secret " + secret + "\nfrom body token", `{"hmac_secret":"` + secret + `","from":[{"from":"body","name":"token"}]}`, `from "body": must be header, cookie or query`},
		"PreflightMaybe":    {"hmac_secret " + secret + "\npreflight maybe", `{"hmac_secret":"` + secret + `","preflight":"maybe"}`, `preflight "maybe": must be pass or require`},
		"UnavailableMaybe":  {"hmac_secret " + secret + "\nrevocation redis://127.0.0.1:1/0 {\nunavailable maybe\n}", `{"hmac_secret":"` + secret + `","revocation":"redis://127.0.0.1:1/0","revocation_unavailable":"maybe"}`, `revocation unavailable "maybe"`},
		"LeewayOver5m":      {"hmac_secret " + secret + "\nleeway 6m", `{"hmac_secret":"` + secret + `","leeway":360000000000}`, "leeway 6m0s exceeds 5m0s"},
		"LeewayNegative":    {"hmac_secret " + secret + "\nleeway -1s", `{"hmac_secret":"` + secret + `","leeway":-1000000000}`, "leeway -1s: must not be negative"},
		"CacheSizeNegative": {"hmac_secret " + secret + "\ncache_size -5", `{"hmac_secret":"` + secret + `","cache_size":-5}`, "cache_size -5: must be positive"},
		"StarInside":        {"hmac_secret " + secret + "\nstrip_headers X-*-Id", `{"hmac_secret":"` + secret + `","strip_headers":["X-*-Id"]}`, `strip_headers "X-*-Id"`},
		"PrivateKeyAsKey":   {"key " + priv, `{"keys":[{"file":"` + priv + `"}]}`, "key " + priv + ": holds a private key (PRIVATE KEY): give the public key or a certificate"},
		"EmptySecretEnv":    {"hmac_secret {env.TOLLGATE_UNSET_SECRET}", `{"hmac_secret":"{env.TOLLGATE_UNSET_SECRET}"}`, "hmac_secret: {env.TOLLGATE_UNSET_SECRET} is empty or unset"},
		"UnreadableKey":     {"key /nonexistent/k.pem", `{"keys":[{"file":"/nonexistent/k.pem"}]}`, "key /nonexistent/k.pem: cannot read the file: no such file or directory"},
	} {
		t.Run(name, func(t *testing.T) {
			fromCaddyfile := testcaddy.ValidateCaddyfile(t, "http://127.0.0.1:9 {\n\tauthjwt {\n"+tc.caddyfile+"\n\t}\n}\n")
			fromJSON := testcaddy.ValidateHandler(t, "authjwt", strings.TrimSuffix(strings.TrimPrefix(tc.json, "{"), "}"))
			for form, err := range map[string]error{"Caddyfile": fromCaddyfile, "JSON": fromJSON} {
				if err == nil || !strings.Contains(err.Error(), tc.msg) {
					t.Errorf("%s: Validate: %v, want %q", form, err, tc.msg)
				}
			}
		})
	}
}

// The JSON config follows Caddy's naming (snake_case of the field: what
// the module docs show as the field is what JSON takes), and configs
// adapted before the fields were renamed (Algorithms → Alg, Sources →
// From, RequireRoles → RequireRole; their JSON names did not change) load
// unchanged.
func TestJSONNamesAreTheFieldsAndOldConfigsStillLoad(t *testing.T) {
	testcaddy.CheckJSONNames(t, AuthJWT{})
	testcaddy.CheckOldConfigsLoad(t, "testdata/compat", "http.handlers.authjwt")
}
