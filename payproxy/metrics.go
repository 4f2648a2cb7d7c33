package payproxy

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// payMetrics are registered in Caddy's metrics registry, once per registry
// (instances of a reload share them).
type payMetrics struct {
	providerCalls    *prometheus.CounterVec
	providerDuration *prometheus.HistogramVec
	lockWaits        *prometheus.HistogramVec
	notifications    *prometheus.CounterVec
	webhooks         *prometheus.CounterVec
	webhookDuration  prometheus.Histogram
	duplicates       *prometheus.CounterVec
	reconcileRuns    *prometheus.CounterVec
}

func newPayMetrics(reg prometheus.Registerer) (*payMetrics, error) {
	const ns, sub = "tollgate", "payproxy"
	m := &payMetrics{
		providerCalls: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "provider_calls_total", Help: "Provider API calls by channel, operation and outcome (ok, rejected, error, timeout)."},
			[]string{"channel", "operation", "outcome"}),
		providerDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name: "provider_call_duration_seconds", Help: "Latency of provider API calls.", Buckets: prometheus.DefBuckets},
			[]string{"channel", "operation"}),
		lockWaits: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name: "lock_wait_seconds", Help: "Time spent waiting for per-order locks, by result (acquired, busy).",
			Buckets: []float64{.001, .005, .01, .05, .1, .5, 1, 5, 10, 30}}, []string{"result"}),
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "notifications_total", Help: "Provider notifications by channel and result."},
			[]string{"channel", "result"}),
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "webhook_deliveries_total", Help: "Webhook delivery attempts by result (delivered, failed, dead_lettered)."},
			[]string{"result"}),
		webhookDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name: "webhook_delivery_duration_seconds", Help: "Latency of webhook deliveries.", Buckets: prometheus.DefBuckets}),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "duplicate_payments_total", Help: "Payments of an order that was already paid (trade.duplicate_paid), by channel."},
			[]string{"channel"}),
		reconcileRuns: reconcileRuns,
	}
	if reg == nil {
		return m, nil
	}
	var err error
	m.providerCalls = register(reg, m.providerCalls, &err)
	m.providerDuration = register(reg, m.providerDuration, &err)
	m.lockWaits = register(reg, m.lockWaits, &err)
	m.notifications = register(reg, m.notifications, &err)
	m.webhooks = register(reg, m.webhooks, &err)
	m.webhookDuration = register(reg, m.webhookDuration, &err)
	m.duplicates = register(reg, m.duplicates, &err)
	m.reconcileRuns = register(reg, m.reconcileRuns, &err)
	// Open reconciliation differences, read from Redis at scrape time.
	register[prometheus.Collector](reg, newReconcileGauge(), &err)
	// The webhook queue, dead letters and Redis health, read at scrape time.
	register[prometheus.Collector](reg, newWebhookGauges(), &err)
	return m, err
}

// register adds c to reg, or returns the collector already registered
// under the same name (a config reload provisions new instances against
// the same registry).
func register[C prometheus.Collector](reg prometheus.Registerer, c C, errp *error) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		if *errp == nil {
			*errp = err
		}
	}
	return c
}

func (m *payMetrics) provider(channel, op, outcome string, d time.Duration) {
	m.providerCalls.WithLabelValues(channel, op, outcome).Inc()
	m.providerDuration.WithLabelValues(channel, op).Observe(d.Seconds())
}

func (m *payMetrics) lockWait(d time.Duration, acquired bool) {
	res := "acquired"
	if !acquired {
		res = "busy"
	}
	m.lockWaits.WithLabelValues(res).Observe(d.Seconds())
}

func (m *payMetrics) notification(channel, result string) {
	m.notifications.WithLabelValues(channel, result).Inc()
}

func (m *payMetrics) webhook(result string, d time.Duration) {
	m.webhooks.WithLabelValues(result).Inc()
	if d > 0 {
		m.webhookDuration.Observe(d.Seconds())
	}
}

func (m *payMetrics) duplicatePayment(channel string) {
	m.duplicates.WithLabelValues(channel).Inc()
}

// reconcileRuns is one counter for the process, as Caddy's own metrics
// are: every config's registry gets the same one, so a reload does not
// reset it (a daily count would otherwise vanish with any reload).
var reconcileRuns = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "tollgate", Subsystem: "payproxy",
	Name: "reconcile_runs_total", Help: "Reconciliations of a provider's daily bill, by channel and result (done, pending: bill not ready, error)."},
	[]string{"channel", "result"})

func (m *payMetrics) reconcileRun(channel, result string) {
	m.reconcileRuns.WithLabelValues(channel, result).Inc()
}
