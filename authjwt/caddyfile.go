package authjwt

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/tollgate/tollgate/internal/cfgargs"
	"github.com/tollgate/tollgate/internal/redisclient"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("authjwt", parseCaddyfile)
	// Authentication runs before basic_auth and so before every proxying
	// directive: no `order` global option is needed.
	httpcaddyfile.RegisterDirectiveOrder("authjwt", httpcaddyfile.Before, "basic_auth")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	a := new(AuthJWT)
	err := a.UnmarshalCaddyfile(h.Dispenser)
	return a, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	authjwt [<matcher>] {
//	    key          <pem-file> [<kid>]
//	    jwks         <url-or-file> [refresh <duration>]
//	    hmac_secret  <secret>
//	    alg          <algs...>
//	    issuer       <iss...>
//	    audience     <aud...>
//	    leeway       <duration>
//	    from         header|cookie|query <name>
//	    allow        <path patterns...>
//	    user_claim   <claim>
//	    user_header  <header>
//	    claim_header <claim> <header>
//	    strip_headers <patterns...>
//	    roles_claim  <claim>
//	    require_role <roles...>
//	    preflight    pass|require
//	    revocation   <redis-url> {
//	        password     <secret>
//	        allow_without_sid
//	        unavailable  accept|reject
//	    }
//	    cache_size   <entries>
//	}
//
// key, from and claim_header are repeatable; the others may appear once.
// The parser only records (CONTRIBUTING.md): key files, JWK Set files and
// secrets are read (and {env.*}/{file.*} resolved) in Provision, so `caddy
// adapt` needs none of them and `caddy validate` names a missing one with
// its subdirective; the rules on the values (a key is given, pass|require,
// the bounds of leeway…) are Validate's, which JSON configs reach too.
func (a *AuthJWT) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sub := d.Val()
		switch sub {
		case "key", "from", "claim_header":
		default:
			if seen[sub] {
				return d.Errf("%s given more than once", sub)
			}
		}
		seen[sub] = true
		if err := a.unmarshalSubdirective(d, sub); err != nil {
			return err
		}
	}
	return nil
}

func (a *AuthJWT) unmarshalSubdirective(d *caddyfile.Dispenser, sub string) error {
	switch sub {
	case "key":
		return a.parseKey(d)
	case "jwks":
		return a.parseJWKS(d)
	case "hmac_secret":
		return cfgargs.One(d, &a.HMACSecret)
	case "alg":
		return cfgargs.AtLeastOne(d, &a.Alg)
	case "issuer":
		return cfgargs.AtLeastOne(d, (*[]string)(&a.Issuer))
	case "audience":
		return cfgargs.AtLeastOne(d, &a.Audience)
	case "leeway":
		a.Leeway = new(caddy.Duration)
		return cfgargs.DurationArg(d, a.Leeway, true)
	case "from":
		return a.parseFrom(d)
	case "allow":
		return cfgargs.AtLeastOne(d, &a.Allow)
	case "user_claim":
		return cfgargs.One(d, &a.UserClaim)
	case "user_header":
		return cfgargs.One(d, &a.UserHeader)
	case "claim_header":
		var ch ClaimHeader
		if !d.Args(&ch.Claim, &ch.Header) || d.NextArg() {
			return d.ArgErr()
		}
		a.ClaimHeaders = append(a.ClaimHeaders, ch)
	case "strip_headers":
		return cfgargs.AtLeastOne(d, &a.StripHeaders)
	case "roles_claim":
		return cfgargs.One(d, &a.RolesClaim)
	case "require_role":
		return cfgargs.AtLeastOne(d, &a.RequireRole)
	case "preflight":
		return cfgargs.One(d, &a.Preflight)
	case "revocation":
		return a.parseRevocation(d)
	case "cache_size":
		return cfgargs.IntArg(d, &a.CacheSize)
	default:
		return cfgargs.Unknown(d, "authjwt subdirective", sub, subdirectives, subdirectiveHints)
	}
	return nil
}

// subdirectives are the names unmarshalSubdirective knows, for the
// suggestion an unknown one gets.
var subdirectives = []string{"key", "jwks", "hmac_secret", "alg", "issuer", "audience", "leeway", "from", "allow",
	"user_claim", "user_header", "claim_header", "strip_headers", "roles_claim", "require_role", "preflight",
	"revocation", "cache_size"}

// subdirectiveHints map what people write for another module or from
// memory to the subdirective meant.
var subdirectiveHints = map[string]string{
	"roles": "require_role", "role": "require_role", "required_roles": "require_role",
	"secret": "hmac_secret", "public_key": "key", "redis": "revocation", "whitelist": "allow",
	"iss": "issuer", "aud": "audience", "header": "from", "cookie": "from", "query": "from",
}

// parseRevocation reads `revocation <url> [{ password <secret>;
// allow_without_sid; unavailable accept|reject }]`.
func (a *AuthJWT) parseRevocation(d *caddyfile.Dispenser) error {
	return redisclient.UnmarshalCaddyfile(d, &a.Revocation, &a.RevocationPassword, map[string]func(*caddyfile.Dispenser) error{
		"allow_without_sid": func(d *caddyfile.Dispenser) error {
			if d.NextArg() {
				return d.ArgErr()
			}
			a.RevocationAllowWithoutSid = true
			return nil
		},
		"unavailable": func(d *caddyfile.Dispenser) error {
			return cfgargs.One(d, &a.RevocationUnavailable)
		},
	})
}

func (a *AuthJWT) parseKey(d *caddyfile.Dispenser) error {
	args := d.RemainingArgs()
	if len(args) < 1 || len(args) > 2 {
		return d.ArgErr()
	}
	kf := KeyFile{File: args[0]}
	if len(args) == 2 {
		kf.Kid = args[1]
	}
	a.Keys = append(a.Keys, kf)
	return nil
}

// parseJWKS reads `jwks <url-or-file> [refresh <duration>]`; the location
// is checked once resolved, in Provision.
func (a *AuthJWT) parseJWKS(d *caddyfile.Dispenser) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	a.JWKS = &JWKS{URL: d.Val()}
	if !d.NextArg() {
		return nil
	}
	if d.Val() != "refresh" {
		return d.Errf("jwks: unexpected %q after the location, want refresh <duration>", d.Val())
	}
	return cfgargs.DurationArg(d, &a.JWKS.Refresh, false)
}

func (a *AuthJWT) parseFrom(d *caddyfile.Dispenser) error {
	var src TokenSource
	if !d.Args(&src.From, &src.Name) || d.NextArg() {
		return d.ArgErr()
	}
	a.From = append(a.From, src)
	return nil
}

// Interface guard
var _ caddyfile.Unmarshaler = (*AuthJWT)(nil)
