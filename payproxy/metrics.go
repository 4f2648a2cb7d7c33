package payproxy

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/internal/metrics"
)

// The collectors are process-wide, so the counters keep counting across
// config reloads, `reload --force` included (each config's registry gets
// them registered: see internal/metrics). The gauges read Redis when
// scraped, so they are the shared truth of every instance anyway.
var (
	providerCallsTotal = metrics.NewCounterVec("payproxy", "provider_calls_total",
		"Provider API calls by channel, operation and outcome (ok, rejected, error, timeout).", "channel", "operation", "outcome")
	providerCallDuration = metrics.NewHistogramVec("payproxy", "provider_call_duration_seconds",
		"Latency of provider API calls.", prometheus.DefBuckets, "channel", "operation")
	lockWaitSeconds = metrics.NewHistogramVec("payproxy", "lock_wait_seconds",
		"Time spent waiting for per-order locks, by result (acquired, busy).",
		[]float64{.001, .005, .01, .05, .1, .5, 1, 5, 10, 30}, "result")
	notificationsTotal = metrics.NewCounterVec("payproxy", "notifications_total",
		"Provider notifications by channel and result.", "channel", "result")
	webhookDeliveriesTotal = metrics.NewCounterVec("payproxy", "webhook_deliveries_total",
		"Webhook delivery attempts by result (delivered, failed, dead_lettered).", "result")
	webhookDeliveryDuration = metrics.NewHistogramVec("payproxy", "webhook_delivery_duration_seconds",
		"Latency of webhook deliveries.", prometheus.DefBuckets)
	webhookDeadDroppedTotal = metrics.NewCounterVec("payproxy", "webhook_dead_letters_dropped_total",
		"Dead letters dropped by the list's bounds (age: older than 30 days; cap: beyond 10 000), never delivered.", "reason")
	duplicatePaymentsTotal = metrics.NewCounterVec("payproxy", "duplicate_payments_total",
		"Payments of an order that was already paid (trade.duplicate_paid), by channel.", "channel")
	reconcileRunsTotal = metrics.NewCounterVec("payproxy", "reconcile_runs_total",
		"Reconciliations of a provider's daily bill, by channel and result (done, pending: bill not ready, error).",
		"channel", "result")
	// Open reconciliation differences, the webhook queue, dead letters and
	// Redis health, read at scrape time.
	reconcileDifferences = newReconcileGauge()
	webhookState         = newWebhookGauges()
)

// payMetrics is what the handlers of a config count into: every instance
// of every config shares the same process-wide collectors.
type payMetrics struct {
	providerCalls    *prometheus.CounterVec
	providerDuration *prometheus.HistogramVec
	lockWaits        *prometheus.HistogramVec
	notifications    *prometheus.CounterVec
	webhooks         *prometheus.CounterVec
	webhookDuration  prometheus.Observer
	duplicates       *prometheus.CounterVec
	reconcileRuns    *prometheus.CounterVec
}

// newPayMetrics registers the process-wide collectors in a config's
// registry.
func newPayMetrics(reg *prometheus.Registry) (*payMetrics, error) {
	if err := metrics.Register(reg, providerCallsTotal, providerCallDuration, lockWaitSeconds, notificationsTotal,
		webhookDeliveriesTotal, webhookDeliveryDuration, webhookDeadDroppedTotal, duplicatePaymentsTotal, reconcileRunsTotal,
		reconcileDifferences, webhookState); err != nil {
		return nil, err
	}
	return &payMetrics{providerCalls: providerCallsTotal, providerDuration: providerCallDuration, lockWaits: lockWaitSeconds,
		notifications: notificationsTotal, webhooks: webhookDeliveriesTotal, webhookDuration: webhookDeliveryDuration.WithLabelValues(),
		duplicates: duplicatePaymentsTotal, reconcileRuns: reconcileRunsTotal}, nil
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

func (m *payMetrics) reconcileRun(channel, result string) {
	m.reconcileRuns.WithLabelValues(channel, result).Inc()
}
