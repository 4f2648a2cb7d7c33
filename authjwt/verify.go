package authjwt

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate/tollgate/internal/revocation"
)

// rejection is why a token was refused: a metric label, the text the
// client sees in error_description, and the status.
type rejection struct {
	reason string
	desc   string
	status int
}

func reject401(reason, desc string) *rejection {
	return &rejection{reason: reason, desc: desc, status: http.StatusUnauthorized}
}

var (
	errUnknownKid    = errors.New("unknown key id")
	errAlg           = errors.New("algorithm not allowed")
	errKeysNotLoaded = errors.New("jwks not loaded yet")
)

// keysFor picks the keys that may verify the token, by its kid and alg,
// and never lets the token choose a key type. HMAC is configured alone, so
// a public key can never be handed to the HMAC method.
func (h *AuthJWT) keysFor(t *jwt.Token, buf []*verificationKey) ([]*verificationKey, error) {
	alg := t.Method.Alg()
	if !h.algAllowed(alg) {
		return nil, errAlg
	}
	if h.hmacKey != nil {
		return append(buf, h.hmacKey), nil
	}
	kid, _ := t.Header["kid"].(string)
	keys := h.staticKeys.candidates(kid, alg, buf)
	if h.jwks != nil {
		set := h.jwks.keys()
		if set == nil && len(keys) == 0 {
			// Not an invalid token: we cannot tell yet. 503, never a 401
			// that would make the client drop a good token.
			return nil, errKeysNotLoaded
		}
		if kid != "" && !set.hasKid(kid) && !h.staticKeys.hasKid(kid) {
			set = h.jwks.refetchForKid(kid)
		}
		keys = set.candidates(kid, alg, keys)
	}
	if len(keys) == 0 {
		if kid != "" {
			return nil, errUnknownKid
		}
		return nil, errAlg
	}
	return keys, nil
}

// verifySignature checks the token's signature against each candidate key
// until one fits.
func (h *AuthJWT) verifySignature(t *jwt.Token, signed string) error {
	var buf [4]*verificationKey
	keys, err := h.keysFor(t, buf[:0])
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err = k.verify(t.Method, signed, t.Signature); err == nil {
			return nil
		}
	}
	return fmt.Errorf("%w: %w", jwt.ErrTokenSignatureInvalid, err)
}

func (h *AuthJWT) algAllowed(alg string) bool {
	for _, a := range h.algs {
		if a == alg {
			return true
		}
	}
	return false
}

// verifyToken checks signature and claims and builds the identity. It does
// what jwt.Parser.ParseWithClaims does, in the same order (parse, pick the
// keys, verify, validate the claims), with the signature check its own so
// that RSA keys use their prepared form (internal/rsapub).
func (h *AuthJWT) verifyToken(raw string, now time.Time) (*identity, *rejection) {
	claims := jwt.MapClaims{}
	tok, parts, err := h.parser.ParseUnverified(raw, claims)
	if err != nil {
		return nil, classify(err)
	}
	if _, ok := tok.Header["crit"]; ok {
		// RFC 7515 §4.1.11: we understand no extension, so any token that
		// makes one critical must be refused rather than half-understood.
		return nil, reject401(reasonCrit, "critical header parameter not understood")
	}
	if err := h.verifySignature(tok, raw[:len(parts[0])+1+len(parts[1])]); err != nil {
		return nil, classify(err)
	}
	if err := h.validator.Validate(claims); err != nil {
		return nil, classify(err)
	}
	if !h.issuerAccepted(claims) {
		return nil, reject401(reasonIssuer, "wrong issuer")
	}
	if isRefresh(tok.Header["typ"]) || isRefresh(claims["typ"]) {
		return nil, reject401(reasonRefresh, "refresh token is not an access token")
	}
	return h.identityFrom(claims, now)
}

// issuerAccepted checks `iss` against the issuers, after the other claims
// (where the jwt library's WithIssuer checked it, which takes only one).
func (h *AuthJWT) issuerAccepted(claims jwt.MapClaims) bool {
	if len(h.Issuer) == 0 {
		return true
	}
	iss, ok := claims["iss"].(string)
	return ok && slices.Contains(h.Issuer, iss)
}

func isRefresh(v any) bool {
	s, _ := v.(string)
	return strings.EqualFold(s, "refresh")
}

// classify maps the jwt library's errors to what we tell the client.
func classify(err error) *rejection {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return reject401(reasonMalformed, "malformed token")
	case errors.Is(err, errUnknownKid):
		return reject401(reasonUnknownKid, "unknown key id")
	case errors.Is(err, errKeysNotLoaded):
		return &rejection{reason: reasonKeysNotLoaded, desc: "signing keys not loaded yet; retry shortly", status: http.StatusServiceUnavailable}
	case errors.Is(err, errAlg):
		return reject401(reasonAlg, "signing algorithm not accepted")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return reject401(reasonSignature, "invalid signature")
	case errors.Is(err, jwt.ErrTokenExpired):
		return reject401(reasonExpired, "token expired")
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return reject401(reasonNotYet, "token not valid yet")
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return reject401(reasonIssuer, "wrong issuer")
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return reject401(reasonAudience, "wrong audience")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return reject401(reasonClaims, "token has no exp")
	}
	return reject401(reasonClaims, "invalid claims")
}

// identityFrom turns verified claims into placeholders and headers.
func (h *AuthJWT) identityFrom(claims jwt.MapClaims, now time.Time) (*identity, *rejection) {
	userID := claimString(claims[h.UserClaim])
	if userID == "" {
		return nil, reject401(reasonNoUser, "token has no "+h.UserClaim+" claim")
	}
	exp, err := claims.GetExpirationTime()
	if err != nil || exp == nil {
		return nil, reject401(reasonClaims, "token has no exp")
	}
	id := &identity{
		userID: userID,
		exp:    exp.Time,
		roleOK: h.hasRequiredRole(claims[h.RolesClaim]),
	}
	id.sid, _ = claims["sid"].(string)
	// jwt_refresh names the realm of a session in its tokens; the revoked
	// set's entries carry it, so one realm's revocation never refuses
	// another's token.
	realm, _ := claims["realm"].(string)
	id.revocation = revocation.Member(realm, id.sid)
	for name, v := range claims {
		if name == "id" {
			continue // http.auth.user.id is the user id, never a claim
		}
		id.placeholders = append(id.placeholders, placeholder{"http.auth.user." + name, claimString(v)})
	}
	id.placeholders = append(id.placeholders, placeholder{"http.auth.user.id", userID})
	if safeHeaderValue(userID) {
		id.headers = append(id.headers, headerValue{h.userHeader, userID})
	}
	for i, ch := range h.ClaimHeaders {
		v, ok := claims[ch.Claim]
		if s := claimString(v); ok && s != "" && safeHeaderValue(s) {
			// identityHdrs holds the canonical names, user header first.
			id.headers = append(id.headers, headerValue{h.identityHdrs[i+1], s})
		}
	}
	return id, nil
}

// claimString renders a claim for a placeholder or header: strings as is,
// numbers as written in the token, lists of strings comma-separated,
// anything else as JSON.
func claimString(v any) string {
	switch c := v.(type) {
	case nil:
		return ""
	case string:
		return c
	case json.Number:
		return c.String()
	case float64:
		return strconv.FormatFloat(c, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(c)
	case []any:
		parts := make([]string, 0, len(c))
		for _, e := range c {
			s, ok := e.(string)
			if !ok {
				b, _ := json.Marshal(c)
				return string(b)
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, ",")
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// rolesOf reads a roles claim given as a JSON array or a space-separated
// string (the OAuth "scope" style).
func rolesOf(v any) []string {
	switch c := v.(type) {
	case string:
		return strings.Fields(c)
	case []any:
		roles := make([]string, 0, len(c))
		for _, e := range c {
			if s, ok := e.(string); ok {
				roles = append(roles, s)
			}
		}
		return roles
	}
	return nil
}

func (h *AuthJWT) hasRequiredRole(claim any) bool {
	if len(h.RequireRole) == 0 {
		return true
	}
	for _, have := range rolesOf(claim) {
		for _, want := range h.RequireRole {
			if have == want {
				return true
			}
		}
	}
	return false
}

// safeHeaderValue refuses control characters, which no upstream header
// should carry from a claim.
func safeHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
