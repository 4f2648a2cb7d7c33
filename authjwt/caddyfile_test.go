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
		Algorithms:                []string{"RS256", "EdDSA"},
		Issuer:                    StringList{"https://auth.example"},
		Audience:                  []string{"gateway", "mobile"},
		Leeway:                    &leeway,
		Sources:                   []TokenSource{{"header", "X-Token"}, {"cookie", "access_token"}, {"query", "access_token"}},
		Allow:                     []string{"/public/*", "/health"},
		UserClaim:                 "userId",
		UserHeader:                "X-Uid",
		ClaimHeaders:              []ClaimHeader{{"tenant", "X-Tenant"}, {"roles", "X-Roles"}},
		StripHeaders:              []string{"X-User-*", "X-Auth-*", "X-Internal"},
		RolesClaim:                "authorities",
		RequireRoles:              []string{"admin", "dispatcher"},
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

func TestBadCaddyfileNamesTheLine(t *testing.T) {
	k := keys(t)
	rsaPEM := writePublicPEM(t, t.TempDir(), "rsa.pem", &k.rsa1.PublicKey)
	for name, tc := range map[string]struct{ body, msg string }{
		"UnknownSubdirective":      {"key " + rsaPEM + "\n\t\tcolour blue", `unrecognized authjwt subdirective "colour"`},
		"MissingArgument":          {"key " + rsaPEM + "\n\t\tissuer", "wrong argument count"},
		"ShortHMACSecret":          {"hmac_secret tooshort", "at least 32"},
		"PlainHTTPJWKS":            {"jwks http://idp.example/jwks.json", "plain http"},
		"AlgNone":                  {"key " + rsaPEM + "\n\t\talg none", `"none" is never accepted`},
		"HMACMixedWithPublicKeys":  {"key " + rsaPEM + "\n\t\thmac_secret " + strings.Repeat("x", 32), "cannot be combined"},
		"NoKeyAtAll":               {"issuer x", "needs a key"},
		"UnknownRevocationOption":  {"key " + rsaPEM + "\n\t\trevocation redis://127.0.0.1:6379/0 {\n\t\t\tfail open\n\t\t}", `unrecognized revocation option "fail"`},
		"RolesSuggestsRequireRole": {"key " + rsaPEM + "\n\t\troles admin", `unrecognized authjwt subdirective "roles" — did you mean require_role?`},
		"MisspeltSubdirective":     {"key " + rsaPEM + "\n\t\trequire_roles admin", `unrecognized authjwt subdirective "require_roles" — did you mean require_role?`},
		"MisspeltRevocationOption": {"key " + rsaPEM + "\n\t\trevocation redis://127.0.0.1:6379/0 {\n\t\t\tunavailible reject\n\t\t}", `unrecognized revocation option "unavailible" — did you mean unavailable?`},
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

// TestValidateRefusesBadJSON covers JSON configs, which skip the Caddyfile
// checks: Provision must refuse them too.
func TestValidateRefusesBadJSON(t *testing.T) {
	for name, tc := range map[string]struct{ handler, msg string }{
		"NoKey":            {`{"handler":"authjwt"}`, "no key configured"},
		"ShortSecret":      {`{"handler":"authjwt","hmac_secret":"short"}`, "hmac_secret is 5 bytes; at least 32"},
		"EmptySecretEnv":   {`{"handler":"authjwt","hmac_secret":"{env.TOLLGATE_UNSET_SECRET}"}`, "hmac_secret: {env.TOLLGATE_UNSET_SECRET} is empty or unset"},
		"UnreadableKey":    {`{"handler":"authjwt","keys":[{"file":"/nonexistent/k.pem"}]}`, "key /nonexistent/k.pem: cannot read the file: no such file or directory"},
		"PlainHTTP":        {`{"handler":"authjwt","jwks":{"url":"http://idp.example/j"}}`, "plain http"},
		"UnavailableMaybe": {`{"handler":"authjwt","hmac_secret":"` + strings.Repeat("s", 32) + `","revocation_unavailable":"maybe"}`, `revocation unavailable "maybe"`},
		"LeewayOver5m":     {`{"handler":"authjwt","hmac_secret":"` + strings.Repeat("s", 32) + `","leeway":360000000000}`, "leeway 6m0s exceeds 5m0s"},
		"StarInside":       {`{"handler":"authjwt","hmac_secret":"` + strings.Repeat("s", 32) + `","strip_headers":["X-*-Id"]}`, `strip_headers "X-*-Id"`},
		"StarAlone":        {`{"handler":"authjwt","hmac_secret":"` + strings.Repeat("s", 32) + `","strip_headers":["*"]}`, `strip_headers "*"`},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := `{"apps":{"http":{"servers":{"s":{"listen":["127.0.0.1:0"],"routes":[{"handle":[` + tc.handler + `]}]}}}}}`
			var c caddy.Config
			if err := json.Unmarshal([]byte(cfg), &c); err != nil {
				t.Fatal(err)
			}
			err := caddy.Validate(&c)
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("Validate: %v, want %q", err, tc.msg)
			}
		})
	}
}
