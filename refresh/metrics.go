package refresh

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the module's Prometheus counters, shared by every instance
// of the module in one config.
type metrics struct {
	refreshes *prometheus.CounterVec
	sessions  *prometheus.CounterVec
}

// newMetrics registers the counters in Caddy's registry, or reuses them when
// another jwt_refresh instance (or an earlier provisioning against the same
// registry) registered them first.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	refreshes, err := registerCounter(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "tollgate",
		Subsystem: "refresh",
		Name:      "outcomes_total",
		Help:      "Requests to jwt_refresh's endpoints by outcome: rotated, replayed, reuse, unknown, invalid, store_error, login, legacy, logout, logout_all.",
	}, []string{"outcome"}))
	if err != nil {
		return nil, err
	}
	sessions, err := registerCounter(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "tollgate",
		Subsystem: "refresh",
		Name:      "sessions_ended_total",
		Help:      "Sessions ended, by cause: logout, logout_all, admin.",
	}, []string{"cause"}))
	if err != nil {
		return nil, err
	}
	return &metrics{refreshes: refreshes, sessions: sessions}, nil
}

func registerCounter(reg prometheus.Registerer, c *prometheus.CounterVec) (*prometheus.CounterVec, error) {
	if reg == nil {
		return c, nil
	}
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
			return existing, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("registering jwt_refresh metrics: %w", err)
	}
	return c, nil
}

func (m *metrics) refresh(outcome string) {
	if m != nil {
		m.refreshes.WithLabelValues(outcome).Inc()
	}
}

func (m *metrics) session(cause string) {
	if m != nil {
		m.sessions.WithLabelValues(cause).Inc()
	}
}
