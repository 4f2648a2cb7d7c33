package payproxy

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// scrapeTimeout bounds the Redis reads of one /metrics scrape, so a Redis
// that is down delays the scrape by at most this much.
const scrapeTimeout = time.Second

// webhookGauges reads the webhook queue and the dead-letter list from Redis
// when /metrics is scraped, so the numbers are the shared truth of every
// instance (each instance reports the same values) and survive restarts
// and reloads. A scrape that cannot read Redis reports redis_up 0 and
// leaves the two lengths out rather than report stale ones.
type webhookGauges struct {
	queued, dead, up, orders *prometheus.Desc
}

func newWebhookGauges() *webhookGauges {
	const ns, sub = "tollgate", "payproxy"
	return &webhookGauges{
		queued: prometheus.NewDesc(prometheus.BuildFQName(ns, sub, "webhook_queue_length"),
			"Webhook events waiting for delivery (or being delivered), read from Redis at scrape time.", nil, nil),
		dead: prometheus.NewDesc(prometheus.BuildFQName(ns, sub, "webhook_dead_letters"),
			"Webhook events in the dead-letter list, read from Redis at scrape time.", nil, nil),
		orders: prometheus.NewDesc(prometheus.BuildFQName(ns, sub, "orders_in_redis"),
			"Orders payproxy holds in Redis (every order with records is scheduled until it is archived: the due set's size plus its parked lists' lengths; an order parked and scheduled anew meanwhile may count twice), read at scrape time.", nil, nil),
		up: prometheus.NewDesc(prometheus.BuildFQName(ns, sub, "redis_up"),
			"1 when this scrape could read payproxy's Redis (the trade store), 0 when it could not.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (g *webhookGauges) Describe(ch chan<- *prometheus.Desc) {
	ch <- g.queued
	ch <- g.dead
	ch <- g.up
	ch <- g.orders
}

// Collect implements prometheus.Collector. It reports nothing while no
// payproxy route is running; with several Redis servers (routes with
// different redis URLs) the lengths are summed and redis_up is 0 when any
// of them failed.
func (g *webhookGauges) Collect(ch chan<- prometheus.Metric) {
	clients := redisClients()
	if len(clients) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	var queued, dead, orders int64
	for _, rdb := range clients {
		q, d, o, err := redisLengths(ctx, rdb)
		if err != nil {
			ch <- prometheus.MustNewConstMetric(g.up, prometheus.GaugeValue, 0)
			return
		}
		queued, dead, orders = queued+q, dead+d, orders+o
	}
	ch <- prometheus.MustNewConstMetric(g.up, prometheus.GaugeValue, 1)
	ch <- prometheus.MustNewConstMetric(g.queued, prometheus.GaugeValue, float64(queued))
	ch <- prometheus.MustNewConstMetric(g.dead, prometheus.GaugeValue, float64(dead))
	ch <- prometheus.MustNewConstMetric(g.orders, prometheus.GaugeValue, float64(orders))
}

// redisLengths reads the three lengths: the webhook queue's and the dead
// letters' in one pipeline (O(1) each: ZCARD, LLEN; on a Cluster the
// client sends each to its slot's master), the orders by
// ordersInRedisScript on the {due} slot (the due zset's ZCARD and the
// LLEN of each parked bucket: at most retention/bucket width + a few,
// ~720 with the default retention, see parkWidth). An order parked and
// then scheduled anew holds two entries until the parked one is
// unparked: it may be counted twice meanwhile.
func redisLengths(ctx context.Context, rdb redis.UniversalClient) (queued, dead, orders int64, err error) {
	var q, d *redis.IntCmd
	_, err = rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		q = p.ZCard(ctx, queueKey)
		d = p.LLen(ctx, deadKey)
		return nil
	})
	if err != nil {
		return 0, 0, 0, err
	}
	orders, err = ordersInRedisScript.Run(ctx, rdb, []string{dueKey, parkedKey}).Int64()
	if err != nil {
		return 0, 0, 0, err
	}
	return q.Val(), d.Val(), orders, nil
}
