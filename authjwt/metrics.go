package authjwt

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/internal/metrics"
	"github.com/tollgate/tollgate/internal/revocation"
)

// Rejection reasons, the values of the "reason" label.
const (
	reasonMissing    = "missing_token"
	reasonMultiple   = "multiple_tokens"
	reasonMalformed  = "malformed"
	reasonCrit       = "unknown_crit"
	reasonSignature  = "bad_signature"
	reasonAlg        = "bad_alg"
	reasonUnknownKid = "unknown_kid"
	reasonExpired    = "expired"
	reasonNotYet     = "not_yet_valid"
	reasonIssuer     = "bad_issuer"
	reasonAudience   = "bad_audience"
	reasonClaims     = "bad_claims"
	reasonRefresh    = "refresh_token"
	reasonNoUser     = "no_user_claim"
	reasonRevoked    = "revoked"
	reasonNoSid      = "no_sid"
	reasonRole       = "insufficient_role"

	reasonRevocationUnknown = "revocation_unknown"
	reasonKeysNotLoaded     = "keys_not_loaded"
)

// The collectors are process-wide, so counts survive config reloads; each
// new config's registry gets them registered (see internal/metrics).
var (
	verifiedTotal = metrics.NewCounterVec("authjwt", "verified_total",
		"Requests whose token was verified, by whether the token cache answered.", "cache")
	rejectedTotal = metrics.NewCounterVec("authjwt", "rejected_total",
		"Requests rejected with 401 or 403, by reason.", "reason")
)

func registerMetrics(registry *prometheus.Registry) error {
	return metrics.Register(registry, verifiedTotal, rejectedTotal)
}

// revocationSynced is process-wide like the counters: it reads the state
// of every revocation watcher when scraped.
var revocationSynced = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
	Namespace: metrics.Namespace,
	Subsystem: "authjwt",
	Name:      "revocation_synced",
	Help:      "1 while every revocation watcher's revoked-session set is current, 0 while one is not (Redis unreachable or first load pending).",
}, func() float64 {
	if revocation.AllSynced(time.Now()) {
		return 1
	}
	return 0
})

// registerRevocationMetric adds the gauge to a config's registry, once
// however many authjwt handlers with revocation the config has.
func registerRevocationMetric(registry *prometheus.Registry) error {
	return metrics.Register(registry, revocationSynced)
}

// Counters resolved once, so the hot path skips the label lookup.
var (
	verifiedHit  prometheus.Counter
	verifiedMiss prometheus.Counter
	countersOnce sync.Once
)

func countVerified(cached bool) {
	countersOnce.Do(func() {
		verifiedHit = verifiedTotal.WithLabelValues("hit")
		verifiedMiss = verifiedTotal.WithLabelValues("miss")
	})
	if cached {
		verifiedHit.Inc()
	} else {
		verifiedMiss.Inc()
	}
}

func countRejected(reason string) {
	rejectedTotal.WithLabelValues(reason).Inc()
}
