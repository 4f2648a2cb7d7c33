package refresh

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"

	"github.com/tollgate/tollgate/internal/httpjson"
)

// serveLegacy exchanges a refresh token minted by the seed's TokenService
// (stored as <legacy_prefix> + md5hex(token), value: the token) for a
// tollgate session, once. handled is false when raw is not a valid legacy
// token, so the caller answers invalid_grant; Redis is read only after the
// signature has been verified.
func (h *Handler) serveLegacy(w http.ResponseWriter, r *http.Request, raw string) (handled bool, err error) {
	user, authTime, err := h.verifyLegacy(raw)
	if err != nil {
		h.debug("not a legacy token either", zap.String("token", fingerprint(raw)), zap.Error(err))
		return false, nil
	}
	took, err := h.store.takeLegacy(r.Context(), h.LegacyPrefix, raw)
	if err != nil {
		return true, h.storeError(w, r, err)
	}
	if !took {
		h.outcome(r, "unknown")
		return true, httpjson.Token.Error(w, http.StatusBadRequest, "invalid_grant", "the session has ended; log in again")
	}
	s := session{user: user, sid: randomID(16), authTime: authTime, extra: map[string]any{}}
	setUser(r, s)
	rot, err := h.store.create(r.Context(), s.user, s.sid)
	if err != nil {
		// The legacy key is gone already: the user logs in again. Rare (Redis
		// failing between two commands), and safer than accepting it twice.
		return true, h.storeError(w, r, err)
	}
	h.outcome(r, "legacy")
	h.logger.Info("legacy refresh token migrated", zap.String("user", user), zap.String("sid", s.sid))
	return true, h.writePair(w, s, rot, nil)
}

// verifyLegacy checks the signature (with any legacy key of the token's
// algorithm) and expiry of a seed token and returns its user id.
func (h *Handler) verifyLegacy(raw string) (user string, authTime int64, err error) {
	claims := jwt.MapClaims{}
	_, err = h.legacyP.ParseWithClaims(raw, claims, h.legacyKeyfunc)
	if err != nil {
		return "", 0, err
	}
	if _, has := claims["typ"]; has {
		return "", 0, errors.New("a tollgate token is not a legacy token")
	}
	user, err = claimString(claims[h.UserClaim])
	if err != nil {
		return "", 0, fmt.Errorf("legacy claim %s: %w", h.UserClaim, err)
	}
	if n, ok := claims["iat"].(json.Number); ok {
		authTime, _ = n.Int64()
	}
	return user, authTime, nil
}

// legacyKeyfunc offers the legacy keys of the token's algorithm; golang-jwt
// tries each of a VerificationKeySet.
func (h *Handler) legacyKeyfunc(t *jwt.Token) (any, error) {
	var set jwt.VerificationKeySet
	for _, k := range h.legacy {
		if k.method.Alg() == t.Method.Alg() {
			set.Keys = append(set.Keys, k.pub)
		}
	}
	if len(set.Keys) == 0 {
		return nil, fmt.Errorf("no legacy key for algorithm %s", t.Method.Alg())
	}
	return set, nil
}

// claimString reads a user id that the seed wrote as a JSON number (a Java
// Long) or a string, without float rounding.
func claimString(v any) (string, error) {
	switch x := v.(type) {
	case string:
		if strings.TrimSpace(x) != "" {
			return x, nil
		}
	case json.Number:
		return x.String(), nil
	}
	return "", errors.New("missing or not a string or number")
}
