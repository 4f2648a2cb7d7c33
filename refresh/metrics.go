package refresh

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/internal/metrics"
)

// The counters are process-wide, so they keep counting across config
// reloads (each config's registry gets them registered: see
// internal/metrics).
var (
	outcomesTotal = metrics.NewCounterVec("refresh", "outcomes_total",
		"Requests to jwt_refresh's endpoints by outcome: rotated, replayed, reuse, unknown, invalid, store_error, login, legacy, logout, logout_all.",
		"outcome")
	sessionsEndedTotal = metrics.NewCounterVec("refresh", "sessions_ended_total",
		"Sessions ended, by cause: logout, logout_all, admin, max_sessions (the least recently used ones, ended by a login beyond max_sessions).", "cause")
)

// refreshMetrics counts what the handlers of a config do; every instance
// of every config counts into the same process-wide counters.
type refreshMetrics struct {
	refreshes *prometheus.CounterVec
	sessions  *prometheus.CounterVec
}

// newMetrics registers the process-wide counters in a config's registry.
func newMetrics(reg *prometheus.Registry) (*refreshMetrics, error) {
	if err := metrics.Register(reg, outcomesTotal, sessionsEndedTotal); err != nil {
		return nil, err
	}
	return &refreshMetrics{refreshes: outcomesTotal, sessions: sessionsEndedTotal}, nil
}

func (m *refreshMetrics) refresh(outcome string) {
	if m != nil {
		m.refreshes.WithLabelValues(outcome).Inc()
	}
}

func (m *refreshMetrics) session(cause string) { m.sessionsEnded(cause, 1) }

func (m *refreshMetrics) sessionsEnded(cause string, n int) {
	if m != nil && n > 0 {
		m.sessions.WithLabelValues(cause).Add(float64(n))
	}
}
