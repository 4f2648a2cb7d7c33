package refresh

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/tollgate/tollgate/internal/httpjson"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// defaultStoreTimeout bounds Redis calls made outside an HTTP request.
const defaultStoreTimeout = 5 * time.Second

// AdminAPI adds GET /tollgate/sessions and POST /tollgate/sessions/revoke
// to Caddy's admin API, for operators and for backends that detect a
// suspicious login. It needs no configuration: it acts on the Redis of
// every jwt_refresh handler of the running config (usually one), which
// register themselves when provisioned.
//
// GET /tollgate/sessions?user=<id>[&realm=<realm>] lists the user's open
// sessions: 200 {"realm", "user", "sessions": [{"sid", "created",
// "last_rotated", "expires", "ends", "reuse_detected"}]} (RFC 3339 times,
// oldest session first), so one can be revoked by its sid.
//
// Request body: {"user": "<id>"} ends every session of the user;
// {"user": "<id>", "sid": "<sid>"} ends one; "realm": "<realm>" picks the
// realm, and is required when the running handlers have more than one
// (user 42 of one realm is not user 42 of another). Answer: 200
// {"revoked": ["<sid>", ...]}. Errors: 400 invalid_request (bad body,
// realm missing or unknown), 405 (not POST), 409 not_configured (no
// jwt_refresh handler running), 503 temporarily_unavailable (Redis
// unreachable; nothing was deleted, retry).
type AdminAPI struct {
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.tollgate",
		New: func() caddy.Module { return new(AdminAPI) },
	}
}

// Provision takes the logger.
func (a *AdminAPI) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	return nil
}

// Routes returns the admin routes.
func (a *AdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/tollgate/sessions", Handler: caddy.AdminHandlerFunc(a.handleList)},
		{Pattern: "/tollgate/sessions/revoke", Handler: caddy.AdminHandlerFunc(a.handleRevoke)},
	}
}

// sessionList is the answer of GET /tollgate/sessions.
type sessionList struct {
	Realm    string        `json:"realm"`
	User     string        `json:"user"`
	Sessions []sessionInfo `json:"sessions"`
}

func (a *AdminAPI) handleList(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		return httpjson.Token.Error(w, http.StatusMethodNotAllowed, "invalid_request", "use GET")
	}
	q := r.URL.Query()
	user := q.Get("user")
	if user == "" {
		return httpjson.Token.Error(w, http.StatusBadRequest, "invalid_request", "give the user: /tollgate/sessions?user=<id>[&realm=<realm>]")
	}
	var realm *string
	if q.Has("realm") {
		v := q.Get("realm")
		realm = &v
	}
	stores, status, code, msg := a.storesFor(realm)
	if stores == nil {
		return httpjson.Token.Error(w, status, code, msg)
	}
	ctx, cancel := storeContext()
	defer cancel()
	answer := sessionList{Realm: stores[0].realm, User: user, Sessions: []sessionInfo{}}
	seen := map[string]bool{}
	for _, s := range stores {
		sessions, err := s.list(ctx, user)
		if err != nil {
			a.logger.Error("admin session list failed", zap.String("user", user), zap.Error(err))
			w.Header().Set("Retry-After", "1")
			return httpjson.Token.Error(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the session store is unavailable; retry shortly")
		}
		for _, si := range sessions {
			if !seen[si.Sid] {
				seen[si.Sid] = true
				answer.Sessions = append(answer.Sessions, si)
			}
		}
	}
	sort.Slice(answer.Sessions, func(i, j int) bool { return answer.Sessions[i].Created.Before(answer.Sessions[j].Created) })
	return httpjson.Token.Write(w, http.StatusOK, answer)
}

// storesFor picks the running stores of the realm asked for; on failure
// it gives the error answer instead.
func (a *AdminAPI) storesFor(realm *string) (stores []*sessionStore, status int, code, msg string) {
	all := registeredStores()
	if len(all) == 0 {
		return nil, http.StatusConflict, "not_configured", "no jwt_refresh handler is running"
	}
	stores, err := storesOfRealm(all, realm)
	if err != nil {
		return nil, http.StatusBadRequest, "invalid_request", err.Error()
	}
	return stores, 0, "", ""
}

// revokeRequest is the body of POST /tollgate/sessions/revoke.
type revokeRequest struct {
	User  string  `json:"user"`
	Sid   string  `json:"sid,omitempty"`
	Realm *string `json:"realm,omitempty"`
}

func (a *AdminAPI) handleRevoke(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return httpjson.Token.Error(w, http.StatusMethodNotAllowed, "invalid_request", "use POST")
	}
	var req revokeRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || req.User == "" {
		return httpjson.Token.Error(w, http.StatusBadRequest, "invalid_request", `body must be {"user": "..."} or {"user": "...", "sid": "..."}`)
	}
	stores, status, code, msg := a.storesFor(req.Realm)
	if stores == nil {
		return httpjson.Token.Error(w, status, code, msg)
	}
	ctx, cancel := storeContext()
	defer cancel()
	revoked := []string{}
	for _, s := range stores {
		sids, err := revokeIn(ctx, s, req)
		if err != nil {
			a.logger.Error("admin session revoke failed", zap.String("user", req.User), zap.Error(err))
			w.Header().Set("Retry-After", "1")
			return httpjson.Token.Error(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the session store is unavailable; retry shortly")
		}
		revoked = append(revoked, sids...)
	}
	for _, s := range stores {
		s.metrics.session("admin")
	}
	a.logger.Info("sessions revoked by admin", zap.String("realm", stores[0].realm), zap.String("user", req.User), zap.Strings("sids", revoked))
	return httpjson.Token.Write(w, http.StatusOK, map[string][]string{"revoked": dedupe(revoked)})
}

// storesOfRealm keeps the stores of the requested realm; with none
// requested, the only realm running.
func storesOfRealm(stores []*sessionStore, realm *string) ([]*sessionStore, error) {
	var out []*sessionStore
	realms := map[string]bool{}
	for _, s := range stores {
		realms[s.realm] = true
		if realm != nil && s.realm == *realm {
			out = append(out, s)
		}
	}
	names := make([]string, 0, len(realms))
	for r := range realms {
		names = append(names, strconv.Quote(r))
	}
	sort.Strings(names)
	switch {
	case realm == nil && len(realms) == 1:
		return stores, nil
	case realm == nil:
		return nil, fmt.Errorf("several realms are running: name one with \"realm\" (%s)", strings.Join(names, ", "))
	case len(out) == 0:
		return nil, fmt.Errorf("no jwt_refresh handler has this realm (running: %s)", strings.Join(names, ", "))
	}
	return out, nil
}

func revokeIn(ctx context.Context, s *sessionStore, req revokeRequest) ([]string, error) {
	if req.Sid != "" {
		if err := s.end(ctx, req.User, req.Sid); err != nil {
			return nil, err
		}
		return []string{req.Sid}, nil
	}
	return s.endAll(ctx, req.User)
}

func dedupe(in []string) []string {
	seen := map[string]bool{}
	out := in[:0]
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// The process-wide registry of the stores of provisioned jwt_refresh
// handlers. Admin modules are provisioned apart from the HTTP app, so this
// is how the admin route finds Redis with no extra configuration. Handlers
// register in Provision and leave in Cleanup; during a reload old and new
// ones overlap, which is harmless (same Redis).
var (
	registryMu sync.Mutex
	registry   = map[*sessionStore]string{}
)

// registerStore records s under its Redis's key (redisclient.Config.Key:
// no secret in it).
func registerStore(redisKey string, s *sessionStore) {
	registryMu.Lock()
	defer registryMu.Unlock()
	registry[s] = redisKey
}

func unregisterStore(s *sessionStore) {
	registryMu.Lock()
	defer registryMu.Unlock()
	delete(registry, s)
}

// registeredStores returns one store per Redis URL and realm, the one with
// the longest access_ttl (so revocations outlive every access token).
func registeredStores() []*sessionStore {
	registryMu.Lock()
	defer registryMu.Unlock()
	byKey := map[string]*sessionStore{}
	for s, url := range registry {
		key := url + "\x00" + s.realm
		if cur, ok := byKey[key]; !ok || s.accessTTL > cur.accessTTL {
			byKey[key] = s
		}
	}
	out := make([]*sessionStore, 0, len(byKey))
	for _, s := range byKey {
		out = append(out, s)
	}
	return out
}

// Interface guards
var (
	_ caddy.AdminRouter = (*AdminAPI)(nil)
	_ caddy.Provisioner = (*AdminAPI)(nil)
)
