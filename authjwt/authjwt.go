// Package authjwt is the Caddy HTTP handler http.handlers.authjwt: it
// verifies the access JWT of every request at the edge, skips a whitelist
// of paths, checks roles, and hands the identity to the upstream as
// placeholders and headers.
package authjwt

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
	"unsafe"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/tollgate/tollgate/internal/resolve"
	"github.com/tollgate/tollgate/internal/revocation"
)

func init() {
	caddy.RegisterModule(AuthJWT{})
}

// Defaults of the optional settings.
const (
	DefaultLeeway     = 30 * time.Second
	DefaultRefresh    = 10 * time.Minute
	DefaultUserClaim  = "sub"
	DefaultUserHeader = "X-User-Id"
	DefaultRolesClaim = "roles"
	DefaultCacheSize  = 10000
	minHMACSecret     = 32
	// maxTokenSize bounds the work a hostile request can ask for: real
	// access tokens are well under 4 KiB.
	maxTokenSize = 16 << 10
)

// AuthJWT verifies a JWT access token on every request it handles and
// rejects the request with 401 when the token is absent or invalid, or 403
// when a required role is missing. Failures get an RFC 6750
// `WWW-Authenticate: Bearer` header and a JSON body
// `{"error": "<code>", "error_description": "<text>"}` where the code is
// `unauthorized` (no token), `invalid_token` (bad token) or
// `insufficient_scope` (missing role).
//
// After a successful verification these placeholders are set:
// `{http.auth.user.id}` (the user_claim) and `{http.auth.user.<claim>}` for
// every other claim (lists of strings are comma-separated, objects JSON).
// Client headers matching strip_headers and the identity headers
// (user_header and every claim_header) are removed from every incoming
// request first, whitelisted or not, so a client can never send its own.
type AuthJWT struct {
	// Public keys (PEM: PKIX or PKCS#1 public key, or an X.509
	// certificate) of type RSA (2048 bits or more), ECDSA P-256/P-384 or
	// Ed25519. A key with a kid only verifies tokens with that kid (or
	// without one).
	Keys []KeyFile `json:"keys,omitempty"`

	// A JWK Set, fetched when the config loads and refreshed in the
	// background.
	JWKS *JWKS `json:"jwks,omitempty"`

	// The accepted JWS algorithms. Default: derived from the keys (RS*/PS*
	// for RSA, ES256/ES384 by curve, EdDSA), or HS256/HS384/HS512 with
	// hmac_secret. "none" is never accepted.
	Algorithms []string `json:"alg,omitempty"`

	// A shared HMAC secret of at least 32 bytes; then it is the only key
	// (no keys, no jwks). Placeholders `{env.X}` and `{file./path}` are
	// resolved when the config loads.
	HMACSecret string `json:"hmac_secret,omitempty"`

	// The accepted `iss` values; a token must carry one of them (an
	// external identity provider and jwt_refresh on one site). In JSON a
	// string or a list. Default: not checked.
	Issuer StringList `json:"issuer,omitempty"`

	// Accepted `aud` values; a token matching any one is accepted.
	// Default: not checked.
	Audience []string `json:"audience,omitempty"`

	// Clock skew tolerated on exp, nbf and iat. At most 5m: revocations
	// are kept that long past a token's exp, no longer. Default: 30s.
	Leeway *caddy.Duration `json:"leeway,omitempty"`

	// Where tokens are looked for, in order. In a header both
	// `Bearer <jwt>` and a bare `<jwt>` are accepted. Two different tokens
	// in one request are refused. A token in the query string is removed
	// from the URL before the upstream sees it.
	// Default: the Authorization header.
	Sources []TokenSource `json:"from,omitempty"`

	// Path patterns (the `path` matcher's syntax) that need no token. A
	// valid token there still sets the identity; an invalid one is ignored.
	Allow []string `json:"allow,omitempty"`

	// The claim holding the user id. Default: sub.
	UserClaim string `json:"user_claim,omitempty"`

	// The request header that carries the user id upstream.
	// Default: X-User-Id.
	UserHeader string `json:"user_header,omitempty"`

	// More claims to pass upstream as headers.
	ClaimHeaders []ClaimHeader `json:"claim_headers,omitempty"`

	// Client headers removed from every request before anything else, on
	// every path: exact names or prefixes ending in "*", matched without
	// regard to case and with '_' counting as '-'. Their names are also
	// removed from Connection, so a client cannot make a proxy drop them
	// as hop-by-hop. user_header and every claim_header are always
	// removed as well. Default: X-User-* X-Auth-*.
	StripHeaders []string `json:"strip_headers,omitempty"`

	// The claim holding roles: a JSON array of strings or a
	// space-separated string. Default: roles.
	RolesClaim string `json:"roles_claim,omitempty"`

	// Roles of which the token must have at least one, else 403.
	// Default: none required.
	RequireRoles []string `json:"require_role,omitempty"`

	// "pass" lets CORS preflight requests (OPTIONS with Origin and
	// Access-Control-Request-Method) through without a token; "require"
	// treats them like any request. Default: pass.
	Preflight string `json:"preflight,omitempty"`

	// A Redis URL; when set, a token whose `sid` claim has been revoked
	// is refused with 401 ("session revoked"), and a token without a
	// `sid` with 401 ("token cannot be revoked"). `{env.*}` and
	// `{file.*}` are resolved when the config loads; a password in the
	// URL must be percent-encoded. Default: off.
	Revocation string `json:"revocation,omitempty"`

	// The revocation Redis's password, given apart from the URL: taken as
	// it is (no percent-encoding), `{env.*}` and `{file.*}` resolved when
	// the config loads. Default: the URL's.
	RevocationPassword string `json:"revocation_password,omitempty"`

	// With revocation, accept tokens without a `sid` claim too, knowing
	// they can never be revoked (tokens of another issuer that has no
	// sessions). Default: false.
	RevocationAllowWithoutSid bool `json:"revocation_allow_without_sid,omitempty"`

	// What to do with a token that has a `sid` while the revoked-session
	// set is not current (not loaded yet, or not confirmed with Redis for
	// 5s): "accept" it (a revoked session may get through meanwhile) or
	// "reject" it with 503 temporarily_unavailable and Retry-After.
	// Either way tollgate_authjwt_revocation_synced is 0 and a warning is
	// logged. Default: accept.
	RevocationUnavailable string `json:"revocation_unavailable,omitempty"`

	// How many verified tokens are remembered so a repeated token skips
	// the signature check. Entries never outlive the token's exp.
	// Default: 10000.
	CacheSize int `json:"cache_size,omitempty"`

	algs            []string
	hmacKey         *verificationKey // the hmac_secret, alone when set
	staticKeys      *keySet
	jwks            *jwksSource
	parser          *jwt.Parser    // only parses: verifyToken checks the signature
	validator       *jwt.Validator // the claims rules (exp, iat, iss, aud, leeway)
	allow           caddyhttp.MatchPath
	userHeader      string
	identityHdrs    []string // canonical names of the headers we set: user_header first
	stripMatch      headerPatterns
	cache           *tokenCache
	revoked         revocationChecker
	releaseRevoke   func() error
	logger          *zap.Logger
	metricsRegistry *prometheus.Registry
	now             func() time.Time
}

// StringList is a list of strings that JSON may also give as one string;
// one value is written as a string, as configs were before lists.
type StringList []string

// MarshalJSON writes one value as a string, several as a list.
func (l StringList) MarshalJSON() ([]byte, error) {
	if len(l) == 1 {
		return json.Marshal(l[0])
	}
	return json.Marshal([]string(l))
}

// UnmarshalJSON reads a string or a list of strings.
func (l *StringList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*l = StringList{one}
		return nil
	}
	return json.Unmarshal(b, (*[]string)(l))
}

// KeyFile is one PEM public key or certificate.
type KeyFile struct {
	// Path of the PEM file.
	File string `json:"file"`
	// Optional key id matched against the token's kid header.
	Kid string `json:"kid,omitempty"`
}

// JWKS is a JWK Set location.
type JWKS struct {
	// An https URL (http only on loopback) or a file path.
	URL string `json:"url"`
	// How often the set is refetched. Default: 10m.
	Refresh caddy.Duration `json:"refresh,omitempty"`
}

// ClaimHeader passes one claim upstream as a request header.
type ClaimHeader struct {
	Claim  string `json:"claim"`
	Header string `json:"header"`
}

// revocationChecker answers whether a session was revoked, and whether
// its answers are current.
type revocationChecker interface {
	Revoked(member string) bool
	Synced(now time.Time) bool
}

// CaddyModule returns the Caddy module information.
func (AuthJWT) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.authjwt",
		New: func() caddy.Module { return new(AuthJWT) },
	}
}

// Provision applies defaults, loads keys and shared resources.
func (h *AuthJWT) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	h.now = time.Now
	h.metricsRegistry = ctx.GetMetricsRegistry()
	if err := initMetrics(h.metricsRegistry); err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}
	h.applyDefaults()
	patterns, err := compileHeaderPatterns(h.StripHeaders)
	if err != nil {
		return err
	}
	h.stripMatch = patterns.with(h.identityHdrs...)
	if err := h.provisionKeys(); err != nil {
		return err
	}
	if err := h.provisionAlgorithms(); err != nil {
		return err
	}
	if len(h.Allow) > 0 {
		h.allow = caddyhttp.MatchPath(slices.Clone(h.Allow))
		if err := h.allow.Provision(ctx); err != nil {
			return fmt.Errorf("allow: %w", err)
		}
	}
	h.parser = jwt.NewParser(h.parserOptions()...)
	h.validator = jwt.NewValidator(h.parserOptions()...)
	h.cache = newTokenCache(h.CacheSize)
	return h.provisionRevocation()
}

func (h *AuthJWT) applyDefaults() {
	if h.Leeway == nil {
		d := caddy.Duration(DefaultLeeway)
		h.Leeway = &d
	}
	if len(h.Sources) == 0 {
		h.Sources = []TokenSource{{From: "header", Name: "Authorization"}}
	}
	if h.UserClaim == "" {
		h.UserClaim = DefaultUserClaim
	}
	if h.UserHeader == "" {
		h.UserHeader = DefaultUserHeader
	}
	if h.RolesClaim == "" {
		h.RolesClaim = DefaultRolesClaim
	}
	if h.CacheSize == 0 {
		h.CacheSize = DefaultCacheSize
	}
	if h.JWKS != nil && h.JWKS.Refresh == 0 {
		h.JWKS.Refresh = caddy.Duration(DefaultRefresh)
	}
	if len(h.StripHeaders) == 0 {
		h.StripHeaders = slices.Clone(DefaultStripHeaders)
	}
	h.userHeader = http.CanonicalHeaderKey(h.UserHeader)
	h.identityHdrs = []string{h.userHeader}
	for _, ch := range h.ClaimHeaders {
		h.identityHdrs = append(h.identityHdrs, http.CanonicalHeaderKey(ch.Header))
	}
}

func (h *AuthJWT) provisionKeys() error {
	if h.HMACSecret != "" {
		if len(h.Keys) > 0 || h.JWKS != nil {
			return errors.New("hmac_secret cannot be combined with key or jwks (algorithm confusion)")
		}
		secret, err := resolve.Value(h.HMACSecret)
		if err != nil {
			return fmt.Errorf("hmac_secret: %w", err)
		}
		if len(secret) < minHMACSecret {
			return fmt.Errorf("hmac_secret%s is %d bytes; at least %d are required",
				resolve.Origin(h.HMACSecret), len(secret), minHMACSecret)
		}
		h.hmacKey = &verificationKey{key: []byte(secret), algs: slices.Clone(hmacAlgs)}
		return nil
	}
	if len(h.Keys) == 0 && h.JWKS == nil {
		return errors.New("no key configured: give key, jwks or hmac_secret")
	}
	h.staticKeys = &keySet{}
	for _, kf := range h.Keys {
		k, err := provisionKeyFile(kf)
		if err != nil {
			return err
		}
		h.staticKeys.keys = append(h.staticKeys.keys, k)
	}
	if h.JWKS != nil {
		return h.provisionJWKS()
	}
	return nil
}

// provisionKeyFile resolves a key's placeholders and reads it; the error
// names the subdirective, the file and where its path came from.
func provisionKeyFile(kf KeyFile) (verificationKey, error) {
	path, err := resolve.Value(kf.File)
	if err != nil {
		return verificationKey{}, fmt.Errorf("key: %w", err)
	}
	kid, err := resolve.Value(kf.Kid)
	if err != nil {
		return verificationKey{}, fmt.Errorf("key %s kid: %w", path, err)
	}
	k, err := loadKeyFile(path, kid)
	if err != nil {
		return verificationKey{}, fmt.Errorf("key %s%s: %w", path, resolve.Origin(kf.File), err)
	}
	return k, nil
}

// provisionJWKS resolves the JWK Set location (a URL may carry
// credentials) and takes the shared fetcher.
func (h *AuthJWT) provisionJWKS() error {
	location, err := resolve.Value(h.JWKS.URL)
	if err != nil {
		return fmt.Errorf("jwks: %w", err)
	}
	if err := checkJWKSLocation(location); err != nil {
		return err
	}
	src, err := acquireJWKS(location, time.Duration(h.JWKS.Refresh), h.logger)
	if err != nil {
		return err
	}
	h.jwks = src
	return nil
}

// asymmetricAlgs are the algorithms a JWK Set may need.
var asymmetricAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"}

var hmacAlgs = []string{"HS256", "HS384", "HS512"}

func (h *AuthJWT) provisionAlgorithms() error {
	if len(h.Algorithms) == 0 {
		h.algs = h.derivedAlgorithms()
		return nil
	}
	for _, a := range h.Algorithms {
		switch {
		case strings.EqualFold(a, "none"):
			return errors.New(`alg "none" is never accepted`)
		case slices.Contains(hmacAlgs, a) && h.hmacKey == nil:
			return fmt.Errorf("alg %s needs hmac_secret", a)
		case !slices.Contains(hmacAlgs, a) && h.hmacKey != nil:
			return fmt.Errorf("alg %s cannot be used with hmac_secret", a)
		case !slices.Contains(hmacAlgs, a) && !slices.Contains(asymmetricAlgs, a):
			return fmt.Errorf("unsupported alg %q", a)
		}
	}
	h.algs = slices.Clone(h.Algorithms)
	return nil
}

func (h *AuthJWT) derivedAlgorithms() []string {
	if h.hmacKey != nil {
		return slices.Clone(hmacAlgs)
	}
	if h.JWKS != nil {
		return slices.Clone(asymmetricAlgs)
	}
	var algs []string
	for _, k := range h.staticKeys.keys {
		for _, a := range k.algs {
			if !slices.Contains(algs, a) {
				algs = append(algs, a)
			}
		}
	}
	return algs
}

func (h *AuthJWT) parserOptions() []jwt.ParserOption {
	// No WithValidMethods: keysFor checks the alg before handing out any key,
	// which also lets us tell "alg not accepted" apart from a bad signature.
	opts := []jwt.ParserOption{
		jwt.WithLeeway(time.Duration(*h.Leeway)),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		// Keep numbers as written: 64-bit user ids must not pass through
		// float64.
		jwt.WithJSONNumber(),
		jwt.WithTimeFunc(func() time.Time { return h.now() }),
	}
	if len(h.Audience) > 0 {
		opts = append(opts, jwt.WithAudience(h.Audience...))
	}
	return opts
}

// Validate checks the settings that need no resources.
func (h *AuthJWT) Validate() error {
	for _, s := range h.Sources {
		switch s.From {
		case "header", "cookie", "query":
		default:
			return fmt.Errorf("from %q: must be header, cookie or query", s.From)
		}
		if s.Name == "" {
			return fmt.Errorf("from %s: name is empty", s.From)
		}
	}
	switch h.Preflight {
	case "", "pass", "require":
	default:
		return fmt.Errorf("preflight %q: must be pass or require", h.Preflight)
	}
	switch h.RevocationUnavailable {
	case "", "accept", "reject":
	default:
		return fmt.Errorf("revocation unavailable %q: must be accept or reject", h.RevocationUnavailable)
	}
	if h.CacheSize < 0 {
		return fmt.Errorf("cache_size %d is negative", h.CacheSize)
	}
	if h.Leeway != nil && *h.Leeway < 0 {
		return errors.New("leeway is negative")
	}
	if h.Leeway != nil && time.Duration(*h.Leeway) > revocation.MaxLeeway {
		return fmt.Errorf("leeway %s exceeds %s: a revoked session's tokens are refused only that long past their exp",
			time.Duration(*h.Leeway), revocation.MaxLeeway)
	}
	for _, ch := range h.ClaimHeaders {
		if ch.Claim == "" || ch.Header == "" {
			return errors.New("claim_header needs a claim and a header name")
		}
	}
	if _, err := compileHeaderPatterns(h.StripHeaders); err != nil {
		return err
	}
	return nil
}

// Cleanup releases the shared JWK Set fetcher and revocation watcher; it
// is safe after a failed Provision.
func (h *AuthJWT) Cleanup() error {
	if h.jwks != nil {
		releaseJWKS(h.jwks)
		h.jwks = nil
	}
	if h.releaseRevoke != nil {
		err := h.releaseRevoke()
		h.releaseRevoke, h.revoked = nil, nil
		return err
	}
	return nil
}

// ServeHTTP authenticates the request, then calls next or answers with
// 401/403 itself.
func (h *AuthJWT) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	h.stripClientHeaders(r)
	token, err := extractToken(r, h.Sources)
	if h.isPreflight(r) {
		return next.ServeHTTP(w, r)
	}
	allowed, matchErr := h.isAllowed(r)
	if matchErr != nil {
		return caddyhttp.Error(http.StatusInternalServerError, matchErr)
	}
	if err != nil {
		return h.refuseOrPass(w, r, next, allowed, reject401(reasonMultiple, "more than one token"), "")
	}
	if token == "" {
		if allowed {
			return next.ServeHTTP(w, r)
		}
		countRejected(reasonMissing)
		return writeChallenge(w, http.StatusUnauthorized, "unauthorized", "no token", false)
	}
	if len(token) > maxTokenSize {
		return h.refuseOrPass(w, r, next, allowed, reject401(reasonMalformed, "malformed token"), token)
	}
	id, rej := h.authenticate(token)
	if rej != nil {
		return h.refuseOrPass(w, r, next, allowed, rej, token)
	}
	if !id.roleOK && !allowed {
		h.logRejection(r, &rejection{reason: reasonRole}, token)
		countRejected(reasonRole)
		return writeChallenge(w, http.StatusForbidden, "insufficient_scope", "missing required role", true)
	}
	h.applyIdentity(r, id)
	return next.ServeHTTP(w, r)
}

// authenticate answers from the cache or verifies the token.
func (h *AuthJWT) authenticate(token string) (*identity, *rejection) {
	now := h.now()
	// Hash the string's bytes in place: a copy would cost an allocation per
	// request, and Sum256 neither keeps nor changes its input.
	key := tokenKey(sha256.Sum256(unsafe.Slice(unsafe.StringData(token), len(token))))
	gen := h.keyGeneration()
	id := h.cache.get(key, now)
	if id != nil && id.keyGen != gen {
		id = nil // the key set changed since: verify again
	}
	cached := id != nil
	if !cached {
		var rej *rejection
		if id, rej = h.verifyToken(token, now); rej != nil {
			return nil, rej
		}
		id.keyGen = gen
		if now.Before(id.exp) {
			h.cache.put(key, id, now)
		}
	}
	// Revocation is checked on every request, cached or not.
	if rej := h.checkRevocation(id, now); rej != nil {
		return nil, rej
	}
	countVerified(cached)
	return id, nil
}

func (h *AuthJWT) keyGeneration() uint64 {
	if h.jwks == nil {
		return 0
	}
	return h.jwks.generation.Load()
}

func (h *AuthJWT) isPreflight(r *http.Request) bool {
	return h.Preflight != "require" && r.Method == http.MethodOptions &&
		r.Header.Get("Origin") != "" && r.Header.Get("Access-Control-Request-Method") != ""
}

func (h *AuthJWT) isAllowed(r *http.Request) (bool, error) {
	if h.allow == nil {
		return false, nil
	}
	return h.allow.MatchWithError(r)
}

// refuseOrPass rejects a bad token, except on an allowed path, where the
// token is ignored and the request goes on without identity.
func (h *AuthJWT) refuseOrPass(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, allowed bool, rej *rejection, token string) error {
	h.logRejection(r, rej, token)
	if allowed {
		return next.ServeHTTP(w, r)
	}
	countRejected(rej.reason)
	if rej.status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
		return writeError(w, rej.status, "temporarily_unavailable", rej.desc)
	}
	return writeChallenge(w, rej.status, "invalid_token", rej.desc, true)
}

func (h *AuthJWT) applyIdentity(r *http.Request, id *identity) {
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if repl != nil {
		// One provider per request instead of a Set per claim: Set writes
		// into the request's replacer map and grows it on every request,
		// while most placeholders are never read.
		repl.Map(id.placeholder)
	}
	// A fresh slice per request: the cached identity is shared by every
	// request with this token, and handlers after us may edit header
	// values in place.
	for _, kv := range id.headers {
		r.Header[kv.key] = []string{kv.value}
	}
}

// logRejection logs at debug level with a fingerprint, never the token.
func (h *AuthJWT) logRejection(r *http.Request, rej *rejection, token string) {
	if c := h.logger.Check(zapcore.DebugLevel, "token rejected"); c != nil {
		c.Write(zap.String("reason", rej.reason), zap.String("token_sha256", fingerprint(token)),
			zap.String("remote_ip", r.RemoteAddr), zap.String("uri", r.URL.Path))
	}
}

// fingerprint is a short SHA-256 prefix that identifies a token in logs
// without revealing it.
func fingerprint(token string) string {
	if token == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:6])
}

// writeChallenge answers 401/403 with the RFC 6750 header and the JSON body.
// A missing token gets the bare challenge, as RFC 6750 section 3.1 asks.
func writeChallenge(w http.ResponseWriter, status int, code, desc string, withError bool) error {
	challenge := "Bearer"
	if withError {
		challenge = fmt.Sprintf(`Bearer error="%s", error_description="%s"`, code, desc)
	}
	w.Header().Set("WWW-Authenticate", challenge)
	return writeError(w, status, code, desc)
}

// writeError answers the JSON error body.
func writeError(w http.ResponseWriter, status int, code, desc string) error {
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", "no-store")
	body, _ := json.Marshal(map[string]string{"error": code, "error_description": desc})
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*AuthJWT)(nil)
	_ caddy.Validator             = (*AuthJWT)(nil)
	_ caddy.CleanerUpper          = (*AuthJWT)(nil)
	_ caddyhttp.MiddlewareHandler = (*AuthJWT)(nil)
)
