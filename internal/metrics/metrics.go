// Package metrics keeps tollgate's Prometheus collectors for the life of
// the process, so that every tollgate_* series keeps counting across
// config reloads.
//
// Caddy gives each config — every reload, `reload --force` included — a
// new registry (ctx.GetMetricsRegistry()), and /metrics serves the
// current one. A collector created in Provision therefore starts from zero
// at each reload, and a counter no request has touched since is not
// exported at all. So a module declares its collectors once, as package
// variables (New* below), and registers them in each config's registry in
// Provision with Register:
//
//	var outcomes = metrics.NewCounterVec("refresh", "outcomes_total", "Requests by outcome.", "outcome")
//
//	func (h *Handler) Provision(ctx caddy.Context) error {
//		if err := metrics.Register(ctx.GetMetricsRegistry(), outcomes); err != nil { … }
//
// Collectors that read live state when scraped (a gauge of a queue's
// length) are process-wide the same way and read the state of whichever
// instances are running (see revocation.AllSynced for one).
package metrics

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Namespace starts every tollgate metric name.
const Namespace = "tollgate"

// NewCounterVec is a tollgate_<subsystem>_<name> counter with labels.
func NewCounterVec(subsystem, name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Subsystem: subsystem, Name: name, Help: help}, labels)
}

// NewHistogramVec is a tollgate_<subsystem>_<name> histogram with labels.
func NewHistogramVec(subsystem, name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Subsystem: subsystem, Name: name,
		Help: help, Buckets: buckets}, labels)
}

// Register adds process-wide collectors to one config's registry. Several
// handlers of one config register the same collectors: registering one
// that is already there is expected and harmless; another collector under
// the same name is an error (two definitions of one metric). A nil
// registry (a handler provisioned outside Caddy) registers nothing.
func Register(reg *prometheus.Registry, collectors ...prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) || are.ExistingCollector != c {
				return err
			}
		}
	}
	return nil
}
