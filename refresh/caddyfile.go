package refresh

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/tollgate/tollgate/internal/cfgargs"
	"github.com/tollgate/tollgate/internal/redisclient"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("jwt_refresh", parseCaddyfile)
	// Right after try_files, so before basic_auth and before authjwt (which
	// sits just before basic_auth): login, refresh and logout must be
	// reachable without an access token when both are in one site.
	httpcaddyfile.RegisterDirectiveOrder("jwt_refresh", httpcaddyfile.After, "try_files")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(Handler)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	jwt_refresh [<matcher>] {
//	    redis           <url> {
//	        password    <secret>
//	    }
//	    signing_key     <pem-file> [<kid>]
//	    jwks_path       <path>
//	    user_claim      <claim>
//	    issuer          <iss>
//	    realm           <name>
//	    audience        <aud...>
//	    access_ttl      <duration>
//	    refresh_ttl     <duration>
//	    session_max     <duration>
//	    max_sessions    <n>
//	    reuse_grace     <duration>
//	    refresh_path    <path>
//	    refresh_header  <header>
//	    login_path      <path>
//	    logout_path     <path>
//	    logout_all_path <path>
//	    legacy_prefix   <prefix>
//	    legacy_key      <public-pem>
//	}
//
// redis and at least one signing_key are required. signing_key and
// legacy_key are repeatable; the others may appear once. The parser only
// records (CONTRIBUTING.md): key files are read (and {env.*}/{file.*}
// resolved) in Provision, so `caddy adapt` needs none of them and `caddy
// validate` names a missing one with its subdirective; the rules on the
// values (redis and signing_key given, paths starting with /, durations in
// range) are Validate's, which JSON configs reach too.
func (m *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sub := d.Val()
		if seen[sub] && sub != "signing_key" && sub != "legacy_key" {
			return d.Errf("%s given more than once", sub)
		}
		seen[sub] = true
		if err := m.unmarshalSubdirective(d, sub); err != nil {
			return err
		}
	}
	return nil
}

func (m *Handler) unmarshalSubdirective(d *caddyfile.Dispenser, sub string) error {
	switch sub {
	case "redis":
		return redisclient.UnmarshalCaddyfile(d, &m.Redis, &m.RedisPassword, nil)
	case "signing_key":
		return m.parseSigningKey(d)
	case "jwks_path":
		return cfgargs.One(d, &m.JWKSPath)
	case "user_claim":
		return cfgargs.One(d, &m.UserClaim)
	case "issuer":
		return cfgargs.One(d, &m.Issuer)
	case "realm":
		return cfgargs.One(d, &m.Realm)
	case "audience":
		return cfgargs.AtLeastOne(d, &m.Audience)
	case "access_ttl":
		return cfgargs.DurationArg(d, &m.AccessTTL, false)
	case "refresh_ttl":
		return cfgargs.DurationArg(d, &m.RefreshTTL, false)
	case "session_max":
		return cfgargs.DurationArg(d, &m.SessionMax, false)
	case "max_sessions":
		return cfgargs.IntArg(d, &m.MaxSessions)
	case "reuse_grace":
		m.ReuseGrace = new(caddy.Duration)
		return cfgargs.DurationArg(d, m.ReuseGrace, true)
	case "refresh_path":
		return cfgargs.One(d, &m.RefreshPath)
	case "refresh_header":
		return cfgargs.One(d, &m.RefreshHeader)
	case "login_path":
		return cfgargs.One(d, &m.LoginPath)
	case "logout_path":
		return cfgargs.One(d, &m.LogoutPath)
	case "logout_all_path":
		return cfgargs.One(d, &m.LogoutAllPath)
	case "legacy_prefix":
		return cfgargs.One(d, &m.LegacyPrefix)
	case "legacy_key":
		var path string
		if err := cfgargs.One(d, &path); err != nil {
			return err
		}
		m.LegacyKeys = append(m.LegacyKeys, path)
	default:
		return cfgargs.Unknown(d, "jwt_refresh subdirective", sub, subdirectives, subdirectiveHints)
	}
	return nil
}

// subdirectives are the names unmarshalSubdirective knows, for the
// suggestion an unknown one gets.
var subdirectives = []string{"redis", "signing_key", "jwks_path", "user_claim", "issuer", "realm", "audience",
	"access_ttl", "refresh_ttl", "session_max", "max_sessions", "reuse_grace", "refresh_path", "refresh_header", "login_path",
	"logout_path", "logout_all_path", "legacy_prefix", "legacy_key"}

// subdirectiveHints map what people write from memory or from authjwt to
// the subdirective meant.
var subdirectiveHints = map[string]string{
	"key": "signing_key", "private_key": "signing_key", "jwks": "jwks_path", "revocation": "redis",
	"password": "redis", "ttl": "access_ttl", "grace": "reuse_grace", "max_session": "session_max",
	"logout_everywhere_path": "logout_all_path", "sessions": "max_sessions", "session_limit": "max_sessions",
}

func (m *Handler) parseSigningKey(d *caddyfile.Dispenser) error {
	args := d.RemainingArgs()
	if len(args) < 1 || len(args) > 2 {
		return d.ArgErr()
	}
	kf := KeyFile{File: args[0]}
	if len(args) == 2 {
		kf.Kid = args[1]
	}
	m.SigningKeys = append(m.SigningKeys, kf)
	return nil
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Handler)(nil)
