package refresh

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// session is what a verified refresh or access token says about its session.
type session struct {
	user     string
	sid      string
	gen      int64
	authTime int64
	extra    map[string]any
}

// buildParsers prepares the verifiers of presented tokens: only the
// algorithms of the configured keys, expiry required, issuer and audience
// when configured.
func (h *Handler) buildParsers() {
	common := []jwt.ParserOption{
		jwt.WithTimeFunc(func() time.Time { return h.now() }),
		jwt.WithExpirationRequired(),
	}
	if h.Issuer != "" {
		common = append(common, jwt.WithIssuer(h.Issuer))
	}
	// Refresh tokens are MACed (see signingKey.mac), access tokens signed.
	h.refreshP = jwt.NewParser(append([]jwt.ParserOption{
		jwt.WithValidMethods([]string{refreshMACMethod.Alg()})}, common...)...)
	access := append([]jwt.ParserOption{jwt.WithValidMethods(h.keys.algs)}, common...)
	if len(h.Audience) > 0 {
		access = append(access, jwt.WithAudience(h.Audience...))
	}
	h.accessP = jwt.NewParser(access...)
	var legacyAlgs []string
	for _, k := range h.legacy {
		legacyAlgs = append(legacyAlgs, k.method.Alg())
	}
	h.legacyP = jwt.NewParser(jwt.WithValidMethods(legacyAlgs),
		jwt.WithTimeFunc(func() time.Time { return h.now() }),
		jwt.WithExpirationRequired(), jwt.WithJSONNumber())
}

// verify checks a token of type typ and returns its session.
func (h *Handler) verify(raw, typ string) (session, error) {
	p, keyfunc := h.refreshP, h.keys.refreshKeyfunc
	if typ == typAccess {
		p, keyfunc = h.accessP, h.keys.keyfunc
	}
	claims := jwt.MapClaims{}
	if _, err := p.ParseWithClaims(raw, claims, keyfunc); err != nil {
		return session{}, err
	}
	if claims["typ"] != typ {
		return session{}, fmt.Errorf("token typ %v, want %s", claims["typ"], typ)
	}
	if realm, _ := claims["realm"].(string); realm != h.realm {
		// Signed with a key this realm shares with another: not ours.
		return session{}, errors.New("token of another realm")
	}
	return sessionFromClaims(claims, typ == typRefresh, h.UserClaim)
}

func sessionFromClaims(claims jwt.MapClaims, needGen bool, userClaim string) (session, error) {
	s := session{extra: map[string]any{}}
	s.user, _ = claims["sub"].(string)
	s.sid, _ = claims["sid"].(string)
	if s.user == "" || len(s.sid) != 32 {
		return session{}, errors.New("token lacks sub or sid")
	}
	if needGen {
		gen, ok := claims["gen"].(float64)
		if !ok || gen < 1 || gen != math.Trunc(gen) || gen > 1<<52 {
			return session{}, errors.New("token lacks a valid gen")
		}
		s.gen = int64(gen)
	}
	if at, ok := claims["auth_time"].(float64); ok {
		s.authTime = int64(at)
	}
	for k, v := range claims {
		if !reservedClaims[k] && k != userClaim {
			s.extra[k] = v
		}
	}
	return s, nil
}

// tokenPair is the token response of RFC 6749 §5.1, plus the upstream's
// login answer under "user".
type tokenPair struct {
	AccessToken      string `json:"access_token"`
	RefreshToken     string `json:"refresh_token"`
	TokenType        string `json:"token_type"`
	ExpiresIn        int64  `json:"expires_in"`
	RefreshExpiresIn int64  `json:"refresh_expires_in"`
	User             any    `json:"user,omitempty"`
}

// issue signs an access token and a refresh token of generation rot.gen
// whose lifetime is rot.ttl (what Redis gives the session); the access
// token does not outlive the session's end (rot.end, when known). Every call mints a new
// jti, so several valid refresh tokens of the current generation may exist
// (grace answers); the generation, not the jti, is what Redis checks.
func (h *Handler) issue(s session, rot rotation) (tokenPair, error) {
	now := h.now()
	if s.authTime == 0 {
		s.authTime = now.Unix()
	}
	accessTTL := time.Duration(h.AccessTTL)
	accessExp := capAtEnd(ceilUnix(now.Add(accessTTL)), rot.end)
	access := h.baseClaims(s, typAccess, now, accessExp)
	if len(h.Audience) == 1 {
		access["aud"] = h.Audience[0]
	} else if len(h.Audience) > 1 {
		access["aud"] = h.Audience
	}
	// rot.ttl already ends by the session's end; Redis's TTL, not exp,
	// decides when a refresh token stops working.
	refresh := h.baseClaims(s, typRefresh, now, ceilUnix(now.Add(rot.ttl)))
	refresh["gen"] = rot.gen
	at, err := h.keys.signer.sign(access)
	if err != nil {
		return tokenPair{}, err
	}
	rt, err := h.keys.signer.signRefresh(refresh)
	if err != nil {
		return tokenPair{}, err
	}
	expiresIn := seconds(accessTTL)
	if left := accessExp - now.Unix(); left < expiresIn {
		expiresIn = max(left, 0)
	}
	return tokenPair{AccessToken: at, RefreshToken: rt, TokenType: "Bearer",
		ExpiresIn: expiresIn, RefreshExpiresIn: seconds(rot.ttl)}, nil
}

// capAtEnd keeps a token's exp at or before the session's end (rounded
// down to the second); a zero end means not known.
func capAtEnd(exp int64, end time.Time) int64 {
	if !end.IsZero() && exp > end.Unix() {
		return end.Unix()
	}
	return exp
}

func (h *Handler) baseClaims(s session, typ string, now time.Time, exp int64) jwt.MapClaims {
	c := make(jwt.MapClaims, len(s.extra)+10)
	for k, v := range s.extra {
		c[k] = v
	}
	c["sub"] = s.user
	if h.UserClaim != "sub" {
		c[h.UserClaim] = s.user
	}
	c["sid"] = s.sid
	c["typ"] = typ
	c["jti"] = randomID(16)
	c["iat"] = now.Unix()
	c["exp"] = exp
	c["auth_time"] = s.authTime
	if h.Issuer != "" {
		c["iss"] = h.Issuer
	}
	if h.realm != "" {
		c["realm"] = h.realm
	}
	return c
}

// seconds rounds up, so a token never claims to expire before its session.
func seconds(d time.Duration) int64 { return int64((d + time.Second - 1) / time.Second) }

// ceilUnix rounds up to the second: JWT times are whole seconds, and
// truncating would end a short-lived token up to a second early. Redis's
// TTL stays the authority on when the session really ends.
func ceilUnix(t time.Time) int64 {
	if t.Nanosecond() > 0 {
		return t.Unix() + 1
	}
	return t.Unix()
}
