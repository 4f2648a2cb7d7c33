package payproxy

import (
	"context"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/payproxy/reconcile"
)

// reconcileGauge reads the open reconciliation differences from Redis when
// /metrics is scraped (tollgate_payproxy_reconcile_differences{channel,
// kind}): the shared truth of every instance, whichever ran the
// reconciliation, surviving restarts and reloads. Every kind of every
// offered channel is reported, 0 when none is open; a Redis that cannot be
// read is left out (tollgate_payproxy_redis_up says so).
type reconcileGauge struct{ open *prometheus.Desc }

func newReconcileGauge() *reconcileGauge {
	return &reconcileGauge{open: prometheus.NewDesc(prometheus.BuildFQName("tollgate", "payproxy", "reconcile_differences"),
		"Differences with a provider's daily bill found by the last reconciliation of each date and not healed "+
			"(counted for 48 h after the run that found them), read from Redis at scrape time.",
		[]string{"channel", "kind"}, nil)}
}

// Describe implements prometheus.Collector.
func (g *reconcileGauge) Describe(ch chan<- *prometheus.Desc) { ch <- g.open }

// Collect implements prometheus.Collector.
func (g *reconcileGauge) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	totals := map[string]map[string]int{}
	now := time.Now()
	for rdb, channels := range reconcileChannels() {
		for _, channel := range channels {
			counts, err := reconcile.OpenDifferences(ctx, rdb, channel, now)
			if err != nil {
				continue
			}
			if totals[channel] == nil {
				totals[channel] = map[string]int{}
			}
			for kind, n := range counts {
				totals[channel][kind] += n
			}
		}
	}
	for channel, kinds := range totals {
		for kind, n := range kinds {
			ch <- prometheus.MustNewConstMetric(g.open, prometheus.GaugeValue, float64(n), channel, kind)
		}
	}
}

// reconcileChannels lists, per Redis in use, the channels its routes offer.
func reconcileChannels() map[redis.UniversalClient][]string {
	instancesMu.Lock()
	defer instancesMu.Unlock()
	seen := map[string]map[string]bool{}
	clients := map[string]redis.UniversalClient{}
	for p := range instances {
		if seen[p.Redis] == nil {
			seen[p.Redis], clients[p.Redis] = map[string]bool{}, p.rdb
		}
		for ch := range p.providers {
			seen[p.Redis][ch] = true
		}
	}
	out := make(map[redis.UniversalClient][]string, len(clients))
	for url, rdb := range clients {
		for ch := range seen[url] {
			out[rdb] = append(out[rdb], ch)
		}
		sort.Strings(out[rdb])
	}
	return out
}
