package payproxy

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"
)

func init() {
	caddy.RegisterModule(DeadLetterAdmin{})
}

// DeadLetterAdmin is the admin API module admin.api.tollgate_payproxy: it
// lists and replays the webhook events that exhausted max_attempts, for
// every Redis the running payproxy routes use.
//
//	GET  /tollgate/payproxy/dead_letters          list (JSON array)
//	POST /tollgate/payproxy/dead_letters/replay   body {"id": "<event id>"} or {} for all
//	POST /tollgate/payproxy/reconcile             body {"date", "channel"}: run, answer the report
//	GET  /tollgate/payproxy/reconcile/{channel}/{date}   the stored report (reconcile_admin.go)
type DeadLetterAdmin struct{}

// CaddyModule returns the Caddy module information.
func (DeadLetterAdmin) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.tollgate_payproxy",
		New: func() caddy.Module { return new(DeadLetterAdmin) },
	}
}

// Routes implements caddy.AdminRouter.
func (DeadLetterAdmin) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/tollgate/payproxy/", Handler: caddy.AdminHandlerFunc(serveAdmin)},
	}
}

// instances are the provisioned payproxy routes, whose Redis clients the
// admin API borrows (never dialing on its own).
var (
	instancesMu sync.Mutex
	instances   = map[*PayProxy]struct{}{}
)

func registerInstance(p *PayProxy) {
	instancesMu.Lock()
	defer instancesMu.Unlock()
	instances[p] = struct{}{}
}

func unregisterInstance(p *PayProxy) {
	instancesMu.Lock()
	defer instancesMu.Unlock()
	delete(instances, p)
}

// redisClients returns one client per distinct Redis URL in use.
func redisClients() []redis.UniversalClient {
	instancesMu.Lock()
	defer instancesMu.Unlock()
	seen := map[string]bool{}
	var out []redis.UniversalClient
	for p := range instances {
		if !seen[p.Redis] {
			seen[p.Redis] = true
			out = append(out, p.rdb)
		}
	}
	return out
}

// deadLetter is one entry of the dead-letter list.
type deadLetter struct {
	ID        string          `json:"id"`
	Event     json.RawMessage `json:"event"`
	Attempts  int             `json:"attempts"`
	LastError string          `json:"last_error"`
	FailedAt  int64           `json:"failed_at"`
}

func serveAdmin(w http.ResponseWriter, r *http.Request) error {
	if p := strings.TrimSuffix(r.URL.Path, "/"); p == reconcileAdminPath || strings.HasPrefix(p, reconcileAdminPath+"/") {
		return serveReconcileAdmin(w, r)
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	switch path := strings.TrimSuffix(r.URL.Path, "/"); {
	case path == "/tollgate/payproxy/dead_letters" && r.Method == http.MethodGet:
		return listDeadLetters(ctx, w)
	case path == "/tollgate/payproxy/dead_letters/replay" && r.Method == http.MethodPost:
		return replayDeadLetters(ctx, w, r)
	}
	return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no such payproxy admin endpoint")}
}

func listDeadLetters(ctx context.Context, w http.ResponseWriter) error {
	out := []deadLetter{}
	for _, rdb := range redisClients() {
		items, err := rdb.LRange(ctx, deadKey, 0, -1).Result()
		if err != nil {
			return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: fmt.Errorf("reading dead letters: %w", err)}
		}
		for _, raw := range items {
			var d struct {
				ID        string `json:"id"`
				Event     string `json:"event"`
				Attempts  int    `json:"attempts"`
				LastError string `json:"last_error"`
				FailedAt  int64  `json:"failed_at"`
			}
			if json.Unmarshal([]byte(raw), &d) == nil {
				out = append(out, deadLetter{d.ID, json.RawMessage(d.Event), d.Attempts, d.LastError, d.FailedAt})
			}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(out)
}

func replayDeadLetters(ctx context.Context, w http.ResponseWriter, r *http.Request) error {
	var body struct {
		ID string `json:"id"`
	}
	if r.ContentLength != 0 {
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("body: %w", err)}
		}
	}
	total := 0
	for _, rdb := range redisClients() {
		n, err := replayDeadScript.Run(ctx, rdb, []string{deadKey, eventsKey, queueKey, attemptsKey},
			body.ID, time.Now().UnixMilli()).Int()
		if err != nil {
			return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: fmt.Errorf("replaying dead letters: %w", err)}
		}
		total += n
	}
	instancesMu.Lock()
	for p := range instances {
		p.wakeSender()
	}
	instancesMu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(map[string]int{"replayed": total})
}

// Interface guards.
var _ caddy.AdminRouter = (*DeadLetterAdmin)(nil)
