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

	"github.com/tollgate/tollgate/internal/httpjson"
	"github.com/tollgate/tollgate/internal/resolve"
	"github.com/tollgate/tollgate/internal/revocation"
)

func init() {
	caddy.RegisterModule(AuthJWT{})
}

// The defaults of the optional settings, applied by applyDefaults and
// named in the fields' comments (CONTRIBUTING.md).
const (
	defaultLeeway                = 30 * time.Second
	defaultJWKSRefresh           = 10 * time.Minute
	defaultUserClaim             = "sub"
	defaultUserHeader            = "X-User-Id"
	defaultRolesClaim            = "roles"
	defaultPreflight             = preflightPass
	defaultRevocationUnavailable = unavailableAccept
	defaultCacheSize             = 10000
)

// defaultFrom is where a token is looked for when no from is given; like
// defaultStripHeaders, it is cloned when applied, never changed.
var defaultFrom = []TokenSource{{From: "header", Name: "Authorization"}}

// The values of preflight and revocation_unavailable.
const (
	preflightPass     = "pass"
	preflightRequire  = "require"
	unavailableAccept = "accept"
	unavailableReject = "reject"
)

const (
	minHMACSecret = 32
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
	// background. Default: none.
	JWKS *JWKS `json:"jwks,omitempty"`

	// The accepted JWS algorithms. Default: derived from the keys (RS*/PS*
	// for RSA, ES256/ES384 by curve, EdDSA), or HS256/HS384/HS512 with
	// hmac_secret. "none" is never accepted.
	Alg []string `json:"alg,omitempty"`

	// A shared HMAC secret of at least 32 bytes; then it is the only key
	// (no keys, no jwks). Placeholders `{env.X}` and `{file./path}` are
	// resolved when the config loads. Default: none.
	HMACSecret string `json:"hmac_secret,omitempty"`

	// The accepted `iss` values; a token must carry one of them (an
	// external identity provider and jwt_refresh on one site). In JSON a
	// string or a list. Default: not checked.
	Issuer StringList `json:"issuer,omitempty"`

	// Accepted `aud` values; a token matching any one is accepted.
	// Default: not checked.
	Audience []string `json:"audience,omitempty"`

	// Clock skew tolerated on exp, nbf and iat; 0 tolerates none. At most
	// 5m: revocations are kept that long past a token's exp, no longer.
	// Default: 30s.
	Leeway *caddy.Duration `json:"leeway,omitempty"`

	// Where tokens are looked for, in order. In a header both
	// `Bearer <jwt>` and a bare `<jwt>` are accepted. Two different tokens
	// in one request are refused. A token in the query string is removed
	// from the URL before the upstream sees it.
	// Default: the Authorization header.
	From []TokenSource `json:"from,omitempty"`

	// Path patterns (the `path` matcher's syntax) that need no token. A
	// valid token there still sets the identity; an invalid one is ignored.
	// Default: none.
	Allow []string `json:"allow,omitempty"`

	// The claim holding the user id. Default: sub.
	UserClaim string `json:"user_claim,omitempty"`

	// The request header that carries the user id upstream.
	// Default: X-User-Id.
	UserHeader string `json:"user_header,omitempty"`

	// More claims to pass upstream as headers. Default: none.
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
	RequireRole []string `json:"require_role,omitempty"`

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
	// Path of the PEM file: a public key or a certificate; a file that
	// holds a private key is refused (internal/jwtkey). `{env.*}` and
	// `{file.*}` are resolved when the config loads.
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
	// The claim's name in the token.
	Claim string `json:"claim"`
	// The request header that carries it upstream; removed from every
	// incoming request first.
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

// Provision applies the defaults, refuses a config Validate refuses
// before it takes anything, then loads the keys and takes the shared
// resources (the JWK Set fetcher, the revocation watcher).
func (h *AuthJWT) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	h.now = time.Now
	h.applyDefaults()
	if err := h.Validate(); err != nil {
		return err
	}
	h.metricsRegistry = ctx.GetMetricsRegistry()
	if err := registerMetrics(h.metricsRegistry); err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}
	if err := h.provisionHeaders(); err != nil {
		return err
	}
	if err := h.provisionKeys(); err != nil {
		return err
	}
	h.algs = h.acceptedAlgorithms()
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

// applyDefaults fills every unset optional setting with its default.
func (h *AuthJWT) applyDefaults() {
	if h.Leeway == nil {
		d := caddy.Duration(defaultLeeway)
		h.Leeway = &d
	}
	if len(h.From) == 0 {
		h.From = slices.Clone(defaultFrom)
	}
	if h.UserClaim == "" {
		h.UserClaim = defaultUserClaim
	}
	if h.UserHeader == "" {
		h.UserHeader = defaultUserHeader
	}
	if h.RolesClaim == "" {
		h.RolesClaim = defaultRolesClaim
	}
	if h.Preflight == "" {
		h.Preflight = defaultPreflight
	}
	if h.RevocationUnavailable == "" {
		h.RevocationUnavailable = defaultRevocationUnavailable
	}
	if h.CacheSize == 0 {
		h.CacheSize = defaultCacheSize
	}
	if h.JWKS != nil && h.JWKS.Refresh == 0 {
		h.JWKS.Refresh = caddy.Duration(defaultJWKSRefresh)
	}
	if len(h.StripHeaders) == 0 {
		h.StripHeaders = slices.Clone(defaultStripHeaders)
	}
}

// provisionHeaders prepares the identity headers and what is stripped
// from every request: strip_headers plus every identity header.
func (h *AuthJWT) provisionHeaders() error {
	h.userHeader = http.CanonicalHeaderKey(h.UserHeader)
	h.identityHdrs = []string{h.userHeader}
	for _, ch := range h.ClaimHeaders {
		h.identityHdrs = append(h.identityHdrs, http.CanonicalHeaderKey(ch.Header))
	}
	patterns, err := compileHeaderPatterns(h.StripHeaders)
	if err != nil {
		return err
	}
	h.stripMatch = patterns.with(h.identityHdrs...)
	return nil
}

// provisionKeys resolves and reads the keys Validate found configured.
func (h *AuthJWT) provisionKeys() error {
	if h.HMACSecret != "" {
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
		return verificationKey{}, fmt.Errorf("key %s kid: %w", resolve.Where(kf.File, path), err)
	}
	k, err := loadKeyFile(path, kid)
	if err != nil {
		return verificationKey{}, fmt.Errorf("key %s: %w", resolve.Where(kf.File, path), err)
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

// acceptedAlgorithms is alg, or the algorithms of the keys.
func (h *AuthJWT) acceptedAlgorithms() []string {
	if len(h.Alg) > 0 {
		return slices.Clone(h.Alg)
	}
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

// Validate checks the settings as written, for Caddyfile and JSON configs
// alike; it only reads. The values that may hold placeholders (key paths,
// hmac_secret, the jwks location, the revocation Redis) are checked where
// Provision resolves them.
func (h *AuthJWT) Validate() error {
	if err := h.validateKeys(); err != nil {
		return err
	}
	for _, s := range h.From {
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
	case "", preflightPass, preflightRequire:
	default:
		return fmt.Errorf("preflight %q: must be pass or require", h.Preflight)
	}
	switch h.RevocationUnavailable {
	case "", unavailableAccept, unavailableReject:
	default:
		return fmt.Errorf("revocation unavailable %q: must be accept or reject", h.RevocationUnavailable)
	}
	if h.CacheSize < 0 {
		return fmt.Errorf("cache_size %d: must be positive", h.CacheSize)
	}
	if err := validateLeeway(h.Leeway); err != nil {
		return err
	}
	for _, ch := range h.ClaimHeaders {
		if ch.Claim == "" || ch.Header == "" {
			return errors.New("claim_header needs a claim and a header name")
		}
	}
	_, err := compileHeaderPatterns(h.StripHeaders)
	return err
}

// validateKeys checks that exactly one kind of key is configured, the
// JWK Set's refresh and alg.
func (h *AuthJWT) validateKeys() error {
	switch {
	case h.HMACSecret == "" && len(h.Keys) == 0 && h.JWKS == nil:
		return errors.New("no key: give key, jwks or hmac_secret")
	case h.HMACSecret != "" && (len(h.Keys) > 0 || h.JWKS != nil):
		return errors.New("hmac_secret cannot be combined with key or jwks (algorithm confusion)")
	case h.JWKS != nil && h.JWKS.Refresh < 0:
		return fmt.Errorf("jwks refresh %s: must be positive", time.Duration(h.JWKS.Refresh))
	}
	for _, a := range h.Alg {
		switch isHMAC := slices.Contains(hmacAlgs, a); {
		case strings.EqualFold(a, "none"):
			return errors.New(`alg "none" is never accepted`)
		case !isHMAC && !slices.Contains(asymmetricAlgs, a):
			return fmt.Errorf("alg %q: unsupported (%s or %s)", a, strings.Join(asymmetricAlgs, " "), strings.Join(hmacAlgs, " "))
		case isHMAC && h.HMACSecret == "":
			return fmt.Errorf("alg %s needs hmac_secret", a)
		case !isHMAC && h.HMACSecret != "":
			return fmt.Errorf("alg %s cannot be used with hmac_secret", a)
		}
	}
	return nil
}

// validateLeeway bounds leeway: revocations are kept revocation.MaxLeeway
// past a token's exp, no longer.
func validateLeeway(leeway *caddy.Duration) error {
	switch {
	case leeway == nil:
		return nil
	case *leeway < 0:
		return fmt.Errorf("leeway %s: must not be negative", time.Duration(*leeway))
	case time.Duration(*leeway) > revocation.MaxLeeway:
		return fmt.Errorf("leeway %s exceeds %s: a revoked session's tokens are refused only that long past their exp",
			time.Duration(*leeway), revocation.MaxLeeway)
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
	token, err := extractToken(r, h.From)
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
	return h.Preflight != preflightRequire && r.Method == http.MethodOptions &&
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
		return httpjson.API.Error(w, rej.status, "temporarily_unavailable", rej.desc)
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
	return httpjson.API.Error(w, status, code, desc)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*AuthJWT)(nil)
	_ caddy.Validator             = (*AuthJWT)(nil)
	_ caddy.CleanerUpper          = (*AuthJWT)(nil)
	_ caddyhttp.MiddlewareHandler = (*AuthJWT)(nil)
)
