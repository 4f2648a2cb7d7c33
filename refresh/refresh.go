// Package refresh is tollgate's session lifecycle at the edge: the Caddy
// module http.handlers.jwt_refresh (directive jwt_refresh) issues a short
// access JWT and a long, single-use refresh JWT after the backend's own
// login, rotates the refresh token with reuse detection in one Redis Lua
// script per refresh, revokes sessions on logout, and publishes its public
// keys as a JWK Set for authjwt. The admin module admin.api.tollgate revokes
// sessions from Caddy's admin API.
package refresh

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/golang-jwt/jwt/v5"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/tollgate/tollgate/internal/redisclient"
	"github.com/tollgate/tollgate/internal/resolve"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// The defaults of the optional settings, applied by applyDefaults and
// named in the fields' comments (CONTRIBUTING.md).
const (
	defaultAccessTTL     = 5 * time.Minute
	defaultRefreshTTL    = 24 * time.Hour
	defaultSessionMax    = 30 * 24 * time.Hour
	defaultReuseGrace    = 60 * time.Second
	defaultRefreshPath   = "/auth/refresh"
	defaultRefreshHeader = "Refresh-Token"
	defaultUserClaim     = "sub"
	defaultMaxSessions   = 100
)

// maxReuseGrace bounds reuse_grace: a superseded refresh token is a
// stolen one's signature, answered only briefly.
const maxReuseGrace = 10 * time.Minute

// Headers the upstream's login answer uses to hand tollgate the identity.
// They are response headers; clients sending them is an attack, so they are
// removed from every incoming request too.
const (
	headerSubject = "X-Auth-Subject"
	headerClaims  = "X-Auth-Claims"
)

// nowFunc is the clock for token times; tests move it.
var nowFunc = time.Now

// Handler issues, rotates and revokes access and refresh JWTs ("double
// token"): the backend only authenticates the user at login_path, and
// everything else of the session's life happens here, with the state in
// Redis. Requests to other paths pass through to the next handler (with any
// client-sent X-Auth-Subject / X-Auth-Claims request headers removed).
//
// Placeholders set on its endpoints: {http.auth.user.id} (the user id) and
// {http.jwt_refresh.sid}, {http.jwt_refresh.outcome} (rotated, replayed,
// reuse, unknown, invalid, store_error, login, legacy, logout, logout_all).
type Handler struct {
	// Redis URL (redis://, rediss://, redis+cluster://, redis+sentinel://,
	// with database) where sessions live. One client per address is shared
	// by every instance of the module and across config reloads.
	// `{env.*}` and `{file.*}` are resolved when the config loads; a
	// password in the URL must be percent-encoded. Required.
	Redis string `json:"redis,omitempty"`

	// The Redis password, given apart from the URL: taken as it is (no
	// percent-encoding), `{env.*}` and `{file.*}` resolved when the config
	// loads. Default: the URL's.
	RedisPassword string `json:"redis_password,omitempty"`

	// PEM private keys (RSA ≥ 2048 bits → RS256, ECDSA P-256 → ES256,
	// P-384 → ES384, Ed25519 → EdDSA). The first one signs; all of them
	// verify, so a new key can be put first while tokens signed by the old
	// one are still accepted. Required.
	SigningKeys []KeyFile `json:"signing_keys,omitempty"`

	// Path that serves the public halves of signing_keys as a JWK Set
	// (RFC 7517) for authjwt's `jwks`. Default: none (not served).
	JWKSPath string `json:"jwks_path,omitempty"`

	// Claim that carries the user id in both tokens besides `sub` (the
	// seed's clients read `userId`); also where a legacy token has it.
	// Default: sub.
	UserClaim string `json:"user_claim,omitempty"`

	// `iss` of issued tokens; when set, presented tokens must carry it.
	// Default: none.
	Issuer string `json:"issuer,omitempty"`

	// The namespace of the sessions: handlers with the same realm share
	// sessions on purpose (one API behind two listeners); handlers with
	// different realms never do, even on one Redis with one signing key
	// and kid. The realm is in every Redis key, every revocation entry,
	// the refresh-token MAC key and a `realm` claim of both tokens.
	// Default: the issuer; with no issuer either, the default realm, whose
	// keys and tokens are those of releases before realms existed.
	Realm string `json:"realm,omitempty"`

	// `aud` of access tokens. Default: none.
	Audience []string `json:"audience,omitempty"`

	// Lifetime of an access token, at most refresh_ttl; never past the
	// session's end (session_max). Default: 5m.
	AccessTTL caddy.Duration `json:"access_ttl,omitempty"`

	// Idle timeout of a session: a refresh token must be used within it,
	// and each rotation restarts it. Default: 24h.
	RefreshTTL caddy.Duration `json:"refresh_ttl,omitempty"`

	// Absolute lifetime of a session from login, however active. Default: 30d.
	SessionMax caddy.Duration `json:"session_max,omitempty"`

	// The most sessions one user may have open in this realm. A login
	// beyond it first ends the user's least recently used sessions as a
	// logout would (revoked, then deleted), so a client that logs in again
	// and again cannot grow Redis without bound. Logins of one user racing
	// at the same moment may each end the same session: for that moment
	// the user holds up to one more session per concurrent login, and the
	// next login ends the surplus. Default: 100.
	MaxSessions int `json:"max_sessions,omitempty"`

	// How long after a rotation the previous refresh token is still
	// answered (with tokens of the current generation, without rotating
	// again), so a lost response or concurrent refreshes do not log the user
	// out. 0 is strict: any reuse revokes the session. At most 10m.
	// Default: 60s.
	ReuseGrace *caddy.Duration `json:"reuse_grace,omitempty"`

	// POST endpoint that exchanges a refresh token for a new pair.
	// Default: /auth/refresh.
	RefreshPath string `json:"refresh_path,omitempty"`

	// Request header that may carry the refresh token. Default: Refresh-Token.
	RefreshHeader string `json:"refresh_header,omitempty"`

	// Path of the backend's login. The request goes upstream unchanged; a
	// 2xx answer with an X-Auth-Subject header starts a session and is
	// replaced by the token response. Default: none.
	LoginPath string `json:"login_path,omitempty"`

	// POST endpoint that ends the session of the presented refresh token.
	// Default: none.
	LogoutPath string `json:"logout_path,omitempty"`

	// POST endpoint that ends every session of the user of the presented
	// refresh token or Bearer access token. Default: none.
	LogoutAllPath string `json:"logout_all_path,omitempty"`

	// Redis key prefix of the seed's refresh tokens
	// (SL_CUSTOMER_REFRESH_TOKEN_); enables their one-time exchange.
	// Default: none (no migration).
	LegacyPrefix string `json:"legacy_prefix,omitempty"`

	// PEM public keys (or certificates) that verify legacy tokens; a file
	// that holds a private key is refused (internal/jwtkey). Default: the
	// public halves of signing_keys.
	LegacyKeys []string `json:"legacy_keys,omitempty"`

	keys       *keySet
	legacy     []*verifyKey
	refreshP   *jwt.Parser
	accessP    *jwt.Parser
	legacyP    *jwt.Parser
	redis      redisclient.Config
	acquired   bool // redis's client is held, to be released in Cleanup
	rdb        redis.UniversalClient
	store      *sessionStore
	jwks       []byte
	realm      string // Realm, or the issuer
	metrics    *refreshMetrics
	logger     *zap.Logger
	now        func() time.Time
	registered bool
}

// KeyFile is one signing key: a PEM file and an optional key id.
type KeyFile struct {
	// Path of the PEM private key; a file with only a public key is
	// refused (internal/jwtkey). `{env.*}` and `{file.*}` are resolved
	// when the config loads.
	File string `json:"file"`
	// `kid` header of the tokens it signs. Default: the RFC 7638
	// thumbprint of its public key.
	Kid string `json:"kid,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.jwt_refresh",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision applies the defaults, refuses a config Validate refuses
// before it takes anything, loads the keys and takes the shared Redis
// client, asking Redis once, briefly, whether it takes the credentials.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	h.now = nowFunc
	h.applyDefaults()
	if err := h.Validate(); err != nil {
		return err
	}
	// The realm defaults to the issuer; with neither, the default realm
	// ("") of the releases before realms.
	h.realm = cmp.Or(h.Realm, h.Issuer)
	if err := h.loadKeys(); err != nil {
		return err
	}
	h.buildParsers()
	jwks, err := marshalJWKS(h.keys)
	if err != nil {
		return err
	}
	h.jwks = jwks
	if h.metrics, err = newMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}
	if err := h.provisionRedis(); err != nil {
		return err
	}
	durability, err := h.redis.Durability()
	if err != nil {
		return fmt.Errorf("redis %s: %w", h.redis, err)
	}
	h.store = &sessionStore{rdb: h.rdb, realm: h.realm, refreshTTL: time.Duration(h.RefreshTTL),
		sessionMax: time.Duration(h.SessionMax), grace: time.Duration(*h.ReuseGrace),
		accessTTL: time.Duration(h.AccessTTL), maxSessions: h.MaxSessions, now: h.now, metrics: h.metrics,
		durability: durability}
	registerStore(h.redis.Key(), h.store)
	h.registered = true
	return nil
}

// provisionRedis resolves the Redis setting, takes the shared client and
// asks Redis once, briefly, whether it takes the credentials: a wrong or
// empty password fails the load instead of answering 503 to every
// refresh; a Redis that does not answer yet only gets a warning.
func (h *Handler) provisionRedis() error {
	cfg, err := redisclient.Resolve("redis", h.Redis, h.RedisPassword)
	if err != nil {
		return err
	}
	if h.rdb, err = cfg.Acquire(); err != nil {
		return fmt.Errorf("redis %s: %w", cfg, err)
	}
	h.redis, h.acquired = cfg, true
	if err := cfg.CheckAtLoad(h.rdb, h.logger); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	return nil
}

// applyDefaults fills every unset optional setting with its default.
func (h *Handler) applyDefaults() {
	if h.AccessTTL == 0 {
		h.AccessTTL = caddy.Duration(defaultAccessTTL)
	}
	if h.RefreshTTL == 0 {
		h.RefreshTTL = caddy.Duration(defaultRefreshTTL)
	}
	if h.SessionMax == 0 {
		h.SessionMax = caddy.Duration(defaultSessionMax)
	}
	if h.ReuseGrace == nil {
		g := caddy.Duration(defaultReuseGrace)
		h.ReuseGrace = &g
	}
	if h.RefreshPath == "" {
		h.RefreshPath = defaultRefreshPath
	}
	if h.RefreshHeader == "" {
		h.RefreshHeader = defaultRefreshHeader
	}
	if h.UserClaim == "" {
		h.UserClaim = defaultUserClaim
	}
	if h.MaxSessions == 0 {
		h.MaxSessions = defaultMaxSessions
	}
}

// loadKeys reads the signing keys and the legacy keys, resolving
// {env.*}/{file.*} placeholders in their paths; errors name the
// subdirective, the file and where its path came from.
func (h *Handler) loadKeys() error {
	var keys []*signingKey
	for _, kf := range h.SigningKeys {
		path, kid, err := resolveKeyFile(kf)
		if err != nil {
			return fmt.Errorf("signing_key: %w", err)
		}
		k, err := loadSigningKey(path, kid, h.realm)
		if err != nil {
			return fmt.Errorf("signing_key %s: %w", resolve.Where(kf.File, path), err)
		}
		keys = append(keys, k)
	}
	h.keys = newKeySet(keys)
	h.legacy = nil
	for _, raw := range h.LegacyKeys {
		path, err := resolve.Value(raw)
		if err != nil {
			return fmt.Errorf("legacy_key: %w", err)
		}
		k, err := loadPublicKey(path)
		if err != nil {
			return fmt.Errorf("legacy_key %s: %w", resolve.Where(raw, path), err)
		}
		h.legacy = append(h.legacy, k)
	}
	if len(h.legacy) == 0 {
		for _, k := range h.keys.byKid {
			h.legacy = append(h.legacy, k)
		}
	}
	return nil
}

func resolveKeyFile(kf KeyFile) (path, kid string, err error) {
	if path, err = resolve.Value(kf.File); err != nil {
		return "", "", err
	}
	if kid, err = resolve.Value(kf.Kid); err != nil {
		return "", "", fmt.Errorf("%s kid: %w", path, err)
	}
	return path, kid, nil
}

// Validate checks the settings as written, for Caddyfile and JSON configs
// alike; it only reads. The values that may hold placeholders (the Redis
// URL and password, key paths) are checked where Provision resolves them.
func (h *Handler) Validate() error {
	switch {
	case h.Redis == "":
		return errors.New("redis <url> is required")
	case len(h.SigningKeys) == 0:
		return errors.New("at least one signing_key is required")
	case len(h.LegacyKeys) > 0 && h.LegacyPrefix == "":
		return errors.New("legacy_key needs legacy_prefix")
	case h.MaxSessions < 0:
		return fmt.Errorf("max_sessions %d: must be positive", h.MaxSessions)
	}
	if err := h.validateDurations(); err != nil {
		return err
	}
	return h.validatePaths()
}

// validateDurations bounds each lifetime and orders them: access_ttl ≤
// refresh_ttl ≤ session_max.
func (h *Handler) validateDurations() error {
	if h.ReuseGrace != nil && (*h.ReuseGrace < 0 || time.Duration(*h.ReuseGrace) > maxReuseGrace) {
		return fmt.Errorf("reuse_grace %s: must be between 0 and %s", time.Duration(*h.ReuseGrace), maxReuseGrace)
	}
	for _, d := range []struct {
		name  string
		value caddy.Duration
	}{{"access_ttl", h.AccessTTL}, {"refresh_ttl", h.RefreshTTL}, {"session_max", h.SessionMax}} {
		if d.value < 0 {
			return fmt.Errorf("%s %s: must be positive", d.name, time.Duration(d.value))
		}
	}
	if h.SessionMax != 0 && h.RefreshTTL > h.SessionMax {
		return fmt.Errorf("refresh_ttl %s exceeds session_max %s", time.Duration(h.RefreshTTL), time.Duration(h.SessionMax))
	}
	// An access token issued at a rotation must not outlive the refresh
	// token issued with it: an idle session would end while its access
	// tokens still work.
	if h.RefreshTTL != 0 && h.AccessTTL > h.RefreshTTL {
		return fmt.Errorf("access_ttl %s exceeds refresh_ttl %s", time.Duration(h.AccessTTL), time.Duration(h.RefreshTTL))
	}
	return nil
}

// validatePaths checks that the endpoints are absolute paths, all distinct.
func (h *Handler) validatePaths() error {
	seen := map[string]string{}
	for _, p := range []struct{ name, path string }{{"refresh_path", h.RefreshPath}, {"login_path", h.LoginPath},
		{"logout_path", h.LogoutPath}, {"logout_all_path", h.LogoutAllPath}, {"jwks_path", h.JWKSPath}} {
		if p.path == "" {
			continue
		}
		if !strings.HasPrefix(p.path, "/") {
			return fmt.Errorf("%s %q: must start with /", p.name, p.path)
		}
		if other, dup := seen[p.path]; dup {
			return fmt.Errorf("%s and %s are both %q", other, p.name, p.path)
		}
		seen[p.path] = p.name
	}
	return nil
}

// Cleanup releases the Redis client and the admin registration; it is safe
// after a failed Provision.
func (h *Handler) Cleanup() error {
	if h.registered {
		unregisterStore(h.store)
		h.registered = false
	}
	if h.acquired {
		h.acquired = false
		if err := h.redis.Release(); err != nil {
			return fmt.Errorf("releasing redis client: %w", err)
		}
	}
	return nil
}

// ServeHTTP answers the module's endpoints and passes everything else on.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	r.Header.Del(headerSubject)
	r.Header.Del(headerClaims)
	switch r.URL.Path {
	case h.RefreshPath:
		return h.serveRefresh(w, r)
	case h.LoginPath:
		if h.LoginPath != "" {
			return h.serveLogin(w, r, next)
		}
	case h.LogoutPath:
		if h.LogoutPath != "" {
			return h.serveLogout(w, r)
		}
	case h.LogoutAllPath:
		if h.LogoutAllPath != "" {
			return h.serveLogoutAll(w, r)
		}
	case h.JWKSPath:
		if h.JWKSPath != "" {
			return h.serveJWKS(w, r)
		}
	}
	return next.ServeHTTP(w, r)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
