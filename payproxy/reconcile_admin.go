package payproxy

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/tollgate/tollgate/internal/httpjson"
	"github.com/tollgate/tollgate/payproxy/reconcile"
)

// Reconciliation on the admin API (admin.api.tollgate_payproxy):
//
//	POST /tollgate/payproxy/reconcile                    {"date": "2026-11-30", "channel": "alipay"} → the report, once done
//	GET  /tollgate/payproxy/reconcile/{channel}/{date}   the stored report
//
// A run acts on the payproxy routes of the running config that offer the
// channel, once per Redis they use (routes sharing a Redis share one
// ledger): the answer is that report, or an array of reports, one per
// Redis, when the routes use several.

const reconcileAdminPath = "/tollgate/payproxy/reconcile"

// reconcileRunLimit bounds a run on demand (a bill of millions of lines
// takes tens of seconds).
const reconcileRunLimit = 30 * time.Minute

// reconcileRequest is the body of POST /tollgate/payproxy/reconcile.
type reconcileRequest struct {
	Date    string `json:"date"`
	Channel string `json:"channel"`
}

// serveReconcileAdmin answers the reconciliation endpoints. Errors are
// payproxy's JSON errors, written here.
func serveReconcileAdmin(w http.ResponseWriter, r *http.Request) error {
	path := strings.TrimSuffix(r.URL.Path, "/")
	switch {
	case path == reconcileAdminPath && r.Method == http.MethodPost:
		runReconcileAdmin(w, r)
	case path == reconcileAdminPath:
		w.Header().Set("Allow", http.MethodPost)
		httpjson.API.Error(w, http.StatusMethodNotAllowed, "method_not_allowed", "use POST")
	case r.Method != http.MethodGet:
		w.Header().Set("Allow", http.MethodGet)
		httpjson.API.Error(w, http.StatusMethodNotAllowed, "method_not_allowed", "use GET")
	default:
		getReconcileAdmin(w, r, strings.TrimPrefix(path, reconcileAdminPath+"/"))
	}
	return nil
}

var validChannels = []string{"alipay", "wechat"}

func runReconcileAdmin(w http.ResponseWriter, r *http.Request) {
	var req reconcileRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		httpjson.API.Error(w, http.StatusBadRequest, "invalid_request", `body must be {"date": "yyyy-MM-dd", "channel": "alipay"|"wechat"}: `+err.Error())
		return
	}
	routes, ok := reconcileRoutes(w, req.Channel, req.Date)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), reconcileRunLimit)
	defer cancel()
	reports := make([]*reconcile.Report, 0, len(routes))
	for _, p := range routes {
		rep, retry, err := p.reconcileDate(ctx, req.Channel, req.Date)
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, "redis_unavailable", "the reconciliation could not complete: "+err.Error())
			return
		}
		if retry {
			if next, ok := reconcile.NextRetry(reconcileNow().In(p.reconcileLocation())); ok {
				p.scheduleReconcile(ctx, req.Channel, req.Date, next)
			}
		}
		if rep.State != reconcile.StateDone {
			// A run that compared nothing did not replace the date's
			// completed report: answer that, with this run as its
			// last_attempt, as GET does.
			if stored, err := reconcile.Load(ctx, p.rdb, req.Channel, req.Date); err == nil {
				rep = stored
			}
		}
		reports = append(reports, rep)
	}
	writeReports(w, reports)
}

func getReconcileAdmin(w http.ResponseWriter, r *http.Request, rest string) {
	channel, date, _ := strings.Cut(rest, "/")
	routes, ok := reconcileRoutes(w, channel, date)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	var reports []*reconcile.Report
	for _, p := range routes {
		rep, err := reconcile.Load(ctx, p.rdb, channel, date)
		if errors.Is(err, reconcile.ErrNoReport) {
			continue
		}
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, "redis_unavailable", err.Error())
			return
		}
		reports = append(reports, rep)
	}
	if len(reports) == 0 {
		httpjson.API.Error(w, http.StatusNotFound, "not_found", "no reconciliation report for "+channel+" "+date)
		return
	}
	writeReports(w, reports)
}

// reconcileRoutes checks channel and date and finds the routes that
// reconcile them, one per Redis; it answers the error itself.
func reconcileRoutes(w http.ResponseWriter, channel, date string) ([]*PayProxy, bool) {
	known := false
	for _, ch := range validChannels {
		known = known || ch == channel
	}
	if !known {
		httpjson.API.Error(w, http.StatusBadRequest, "invalid_request", `channel must be "alipay" or "wechat"`)
		return nil, false
	}
	routes := routesWithChannel(channel)
	if len(routes) == 0 {
		httpjson.API.Error(w, http.StatusNotFound, "not_found", "no running payproxy route offers "+channel)
		return nil, false
	}
	loc := routes[0].reconcileLocation()
	start, _, err := reconcile.Day(date, loc)
	if err != nil {
		httpjson.API.Error(w, http.StatusBadRequest, "invalid_request", err.Error())
		return nil, false
	}
	if start.After(reconcileNow().In(loc)) {
		httpjson.API.Error(w, http.StatusBadRequest, "invalid_request", "date "+date+" is after today ("+loc.String()+")")
		return nil, false
	}
	return routes, true
}

// routesWithChannel picks, per Redis URL, one running route offering the
// channel (one with a reconcile block if any: its time zone decides the
// day), sorted by URL.
func routesWithChannel(channel string) []*PayProxy {
	instancesMu.Lock()
	defer instancesMu.Unlock()
	byRedis := map[string]*PayProxy{}
	for p := range instances {
		if p.providers[channel] == nil {
			continue
		}
		if cur := byRedis[p.Redis]; cur == nil || (cur.Reconcile == nil && p.Reconcile != nil) {
			byRedis[p.Redis] = p
		}
	}
	urls := make([]string, 0, len(byRedis))
	for u := range byRedis {
		urls = append(urls, u)
	}
	sort.Strings(urls)
	out := make([]*PayProxy, len(urls))
	for i, u := range urls {
		out[i] = byRedis[u]
	}
	return out
}

// writeReports answers one report, or an array when routes use several
// Redis servers.
func writeReports(w http.ResponseWriter, reports []*reconcile.Report) {
	if len(reports) == 1 {
		httpjson.API.Write(w, http.StatusOK, reports[0])
		return
	}
	httpjson.API.Write(w, http.StatusOK, reports)
}
