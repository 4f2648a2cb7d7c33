package refresh

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/tollgate/tollgate/internal/httpjson"
)

// maxBodyBytes bounds what the endpoints read of a request body.
const maxBodyBytes = 64 << 10

// errNoToken means the request carried no token at all (400 invalid_request).
var errNoToken = errors.New("no refresh token in the request")

// serveRefresh exchanges a refresh token for a new pair: one verification,
// one Redis script, two signatures.
func (h *Handler) serveRefresh(w http.ResponseWriter, r *http.Request) error {
	if !allowPost(w, r) {
		return nil
	}
	raw, err := h.readToken(r, true)
	if err != nil {
		return httpjson.Token.Error(w, http.StatusBadRequest, "invalid_request", err.Error())
	}
	s, err := h.verify(raw, typRefresh)
	if err != nil {
		if h.LegacyPrefix != "" {
			if handled, lerr := h.serveLegacy(w, r, raw); handled {
				return lerr
			}
		}
		h.outcome(r, "invalid")
		h.debug("refresh token rejected", zap.String("token", fingerprint(raw)), zap.Error(err))
		return httpjson.Token.Error(w, http.StatusBadRequest, "invalid_grant", "the refresh token is invalid or expired")
	}
	setUser(r, s)
	rot, err := h.store.rotate(r.Context(), s.user, s.sid, s.gen)
	if err != nil {
		return h.storeError(w, r, err)
	}
	switch rot.outcome {
	case "rotated", "replayed":
		h.outcome(r, rot.outcome)
		return h.writePair(w, s, rot, nil)
	case "reuse":
		return h.reuseDetected(w, r, s, raw)
	}
	h.outcome(r, rot.outcome)
	return httpjson.Token.Error(w, http.StatusBadRequest, "invalid_grant", "the session has ended; log in again")
}

// reuseDetected finishes what a script started when a superseded refresh
// token came back: the session is marked dead; here its access tokens are
// revoked everywhere, then it is deleted, and the theft is logged. If
// Redis fails on the way the answer is 503 and the session stays dead, so
// the retry (or the next use of any of its tokens) finishes the job.
func (h *Handler) reuseDetected(w http.ResponseWriter, r *http.Request, s session, raw string) error {
	if err := h.store.end(r.Context(), s.user, s.sid); err != nil {
		return h.storeError(w, r, err)
	}
	h.outcome(r, "reuse")
	h.logReuse(r, s, raw)
	return httpjson.Token.Error(w, http.StatusBadRequest, "invalid_grant", "the session has ended; log in again")
}

func (h *Handler) logReuse(r *http.Request, s session, raw string) {
	h.logger.Warn("refresh_reuse",
		zap.String("user", s.user),
		zap.String("sid", s.sid),
		zap.Int64("gen", s.gen),
		zap.String("client", clientAddr(r)),
		zap.String("token", fingerprint(raw)))
}

// serveLogin lets the backend authenticate the user, then turns its 2xx
// answer carrying X-Auth-Subject into a session and a token response. Any
// other answer goes to the client untouched, unbuffered.
func (h *Handler) serveLogin(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	// The upstream's body is nested in our JSON, so it must not be compressed.
	r.Header.Del("Accept-Encoding")
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer bufPool.Put(buf)
	rec := caddyhttp.NewResponseRecorder(w, buf, func(status int, header http.Header) bool {
		return status >= 200 && status < 300 && header.Get(headerSubject) != ""
	})
	if err := next.ServeHTTP(rec, r); err != nil {
		return err
	}
	if !rec.Buffered() {
		return nil
	}
	hdr := w.Header()
	user := strings.TrimSpace(hdr.Get(headerSubject))
	claimsJSON := hdr.Get(headerClaims)
	for _, k := range []string{headerSubject, headerClaims, "Content-Length", "Content-Encoding", "Etag", "Last-Modified"} {
		hdr.Del(k)
	}
	extra, err := loginClaims(claimsJSON, h.UserClaim)
	if err != nil || len(user) > 512 {
		h.logger.Error("upstream login answer unusable", zap.Error(err), zap.Int("subject_len", len(user)))
		return httpjson.Token.Error(w, http.StatusBadGateway, "server_error", "the login backend answered an unusable identity")
	}
	s := session{user: user, sid: randomID(16), extra: extra}
	setUser(r, s)
	rot, err := h.store.create(r.Context(), s.user, s.sid)
	if err != nil {
		return h.storeError(w, r, err)
	}
	h.outcome(r, "login")
	return h.writePair(w, s, rot, upstreamJSON(buf.Bytes()))
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// loginClaims parses X-Auth-Claims (a JSON object), dropping the claims
// tollgate sets itself so the backend cannot forge a sid or a typ.
func loginClaims(raw, userClaim string) (map[string]any, error) {
	extra := map[string]any{}
	if strings.TrimSpace(raw) == "" {
		return extra, nil
	}
	if err := json.Unmarshal([]byte(raw), &extra); err != nil {
		return nil, errors.New("X-Auth-Claims is not a JSON object")
	}
	for k := range extra {
		if reservedClaims[k] || k == userClaim {
			delete(extra, k)
		}
	}
	return extra, nil
}

// upstreamJSON is the backend's login body for "user", or nil if it is not
// JSON (then it is left out rather than mangled).
func upstreamJSON(body []byte) any {
	body = bytes.TrimSpace(body)
	if len(body) == 0 || !json.Valid(body) {
		return nil
	}
	return json.RawMessage(append([]byte(nil), body...))
}

// serveLogout ends the session of the presented refresh token. As in RFC
// 7009 an invalid or unknown token still gets 200: the client's goal, no
// usable session, is met. A superseded token is reuse, as at refresh: the
// session ends, refresh_reuse is logged, and the answer is invalid_grant.
// Only a Redis outage is an error (503), because then the session would
// survive; nothing is deleted before the revocation is written.
func (h *Handler) serveLogout(w http.ResponseWriter, r *http.Request) error {
	if !allowPost(w, r) {
		return nil
	}
	raw, err := h.readToken(r, false)
	if err != nil {
		return httpjson.Token.Error(w, http.StatusBadRequest, "invalid_request", err.Error())
	}
	s, err := h.verify(raw, typRefresh)
	if err != nil {
		h.debug("logout with an unusable token", zap.String("token", fingerprint(raw)), zap.Error(err))
		return httpjson.Token.Write(w, http.StatusOK, struct{}{})
	}
	setUser(r, s)
	verdict, err := h.store.logout(r.Context(), s.user, s.sid, s.gen)
	if err != nil {
		return h.storeError(w, r, err)
	}
	if verdict == "reuse" {
		h.outcome(r, "reuse")
		h.logReuse(r, s, raw)
		return httpjson.Token.Error(w, http.StatusBadRequest, "invalid_grant", "the session has ended; log in again")
	}
	h.outcome(r, "logout")
	if verdict == "ended" {
		h.metrics.session("logout")
	}
	return httpjson.Token.Write(w, http.StatusOK, struct{}{})
}

// serveLogoutAll ends every session of the user, identified by a refresh
// token (same ways as refresh) or a valid access token in Authorization.
func (h *Handler) serveLogoutAll(w http.ResponseWriter, r *http.Request) error {
	if !allowPost(w, r) {
		return nil
	}
	s, raw, err := h.logoutAllIdentity(r)
	if errors.Is(err, errNoToken) {
		return httpjson.Token.Error(w, http.StatusBadRequest, "invalid_request", err.Error())
	}
	if err != nil {
		h.debug("logout_all with an unusable token", zap.Error(err))
		return httpjson.Token.Error(w, http.StatusUnauthorized, "invalid_token", "the token is invalid or expired")
	}
	setUser(r, s)
	verdict, err := h.sessionInForce(r, s)
	switch {
	case err != nil:
		return h.storeError(w, r, err)
	case verdict == "reuse":
		return h.reuseDetected(w, r, s, raw)
	case verdict != "ok":
		h.debug("logout_all with the token of an ended session", zap.String("sid", s.sid))
		return httpjson.Token.Error(w, http.StatusUnauthorized, "invalid_token", "the session of this token has ended")
	}
	sids, err := h.store.endAll(r.Context(), s.user)
	if err != nil {
		return h.storeError(w, r, err)
	}
	h.outcome(r, "logout_all")
	h.metrics.session("logout_all")
	h.logger.Info("all sessions ended", zap.String("user", s.user), zap.Int("sessions", len(sids)))
	return httpjson.Token.Write(w, http.StatusOK, map[string]int{"revoked_sessions": len(sids)})
}

// logoutAllIdentity verifies the token logout_all was given: a Bearer
// access token or a refresh token (session.gen is 0 for an access token).
func (h *Handler) logoutAllIdentity(r *http.Request) (session, string, error) {
	if auth := r.Header.Get("Authorization"); auth != "" {
		scheme, tok, ok := strings.Cut(auth, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return session{}, "", errors.New("authorization is not a Bearer token")
		}
		tok = strings.TrimSpace(tok)
		s, err := h.verify(tok, typAccess)
		return s, tok, err
	}
	raw, err := h.readToken(r, false)
	if err != nil {
		return session{}, "", err
	}
	s, err := h.verify(raw, typRefresh)
	return s, raw, err
}

// sessionInForce says whether the verified token's session may still act:
// "ok"; "reuse" for a refresh token refresh would refuse as superseded;
// anything else when the session has ended or an access token of it was
// revoked.
func (h *Handler) sessionInForce(r *http.Request, s session) (string, error) {
	if s.gen > 0 {
		return h.store.check(r.Context(), s.user, s.sid, s.gen)
	}
	live, err := h.store.live(r.Context(), s.user, s.sid)
	if err != nil || !live {
		return "revoked", err
	}
	return "ok", nil
}

// readToken finds the refresh token: the refresh_header, a form body
// (grant_type=refresh_token&refresh_token=…, or RFC 7009's token=… outside
// refresh_path) or a JSON body {"refresh_token": "…"}.
func (h *Handler) readToken(r *http.Request, refreshing bool) (string, error) {
	if v := strings.TrimSpace(r.Header.Get(h.RefreshHeader)); v != "" {
		return v, nil
	}
	if r.Body == nil || r.Body == http.NoBody {
		return "", errNoToken
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
	if err != nil {
		return "", errors.New("reading the request body failed")
	}
	if len(body) > maxBodyBytes {
		return "", errors.New("request body too large")
	}
	switch mt {
	case "application/x-www-form-urlencoded":
		return formToken(body, refreshing)
	case "application/json":
		var v struct {
			RefreshToken string `json:"refresh_token"`
		}
		if err := json.Unmarshal(body, &v); err != nil {
			return "", errors.New("the body is not valid JSON")
		}
		if v.RefreshToken == "" {
			return "", errNoToken
		}
		return v.RefreshToken, nil
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return "", errNoToken
	}
	return "", errors.New("unsupported Content-Type: use a form or JSON body, or the refresh token header")
}

func formToken(body []byte, refreshing bool) (string, error) {
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return "", errors.New("the form body is malformed")
	}
	if refreshing {
		if gt := form.Get("grant_type"); gt != "" && gt != "refresh_token" {
			return "", errors.New("grant_type must be refresh_token")
		}
	}
	if tok := form.Get("refresh_token"); tok != "" {
		return tok, nil
	}
	if tok := form.Get("token"); tok != "" && !refreshing {
		return tok, nil
	}
	return "", errNoToken
}

// writePair answers 200 with a token response for the session.
func (h *Handler) writePair(w http.ResponseWriter, s session, rot rotation, user any) error {
	pair, err := h.issue(s, rot)
	if err != nil {
		h.logger.Error("signing tokens", zap.Error(err))
		return httpjson.Token.Error(w, http.StatusInternalServerError, "server_error", "could not sign tokens")
	}
	pair.User = user
	return httpjson.Token.Write(w, http.StatusOK, pair)
}

// storeError answers 503 when Redis cannot be reached: fail closed, but
// never with invalid_grant, which would make clients log the user out.
func (h *Handler) storeError(w http.ResponseWriter, r *http.Request, err error) error {
	h.outcome(r, "store_error")
	h.logger.Error("session store unavailable", zap.Error(err))
	w.Header().Set("Retry-After", "1")
	return httpjson.Token.Error(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the session store is unavailable; retry shortly")
}

// outcome counts the request and exposes the outcome as a placeholder.
func (h *Handler) outcome(r *http.Request, o string) {
	h.metrics.refresh(o)
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Set("http.jwt_refresh.outcome", o)
	}
}

func (h *Handler) debug(msg string, fields ...zap.Field) {
	if c := h.logger.Check(zapcore.DebugLevel, msg); c != nil {
		c.Write(fields...)
	}
}

func setUser(r *http.Request, s session) {
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Set("http.auth.user.id", s.user)
		repl.Set("http.jwt_refresh.sid", s.sid)
	}
}

// clientAddr is the client IP Caddy determined (trusted proxies applied),
// or the peer address.
func clientAddr(r *http.Request) string {
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok && ip != "" {
		return ip
	}
	return r.RemoteAddr
}

func allowPost(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodPost {
		return true
	}
	w.Header().Set("Allow", http.MethodPost)
	_ = httpjson.Token.Error(w, http.StatusMethodNotAllowed, "invalid_request", "use POST")
	return false
}

// storeContext is used by callers outside a request (the admin API).
func storeContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), defaultStoreTimeout)
}
