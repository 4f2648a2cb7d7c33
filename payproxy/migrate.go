package payproxy

import (
	"cmp"
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/tollgate/tollgate/payproxy/reconcile"
)

// The previous release took an order off the due set once nothing was
// left to do; retention only visits orders in the due set. The due
// migration puts every order that has records back into it (ZADD NX: an
// order already due keeps its time), so that the poller's normal round
// compacts and archives it; the migration itself deletes nothing.
//
// It runs in the background from the poller's start-up and never blocks
// Redis: SCAN (on each master of a Cluster) in batches of migrateCount
// keys, one pipelined ZADD NX per batch. One instance at a time makes the
// pass, under a lease renewed as it goes; an instance that dies leaves a
// lease that runs out, and another instance (waiting for it) makes the
// pass again, which adding NX makes harmless. A completed pass sets
// migratedKey, with no expiry, and no instance makes it again. A pass
// that finds no order at all (a new Redis) takes no lease and sets no
// marker: there is nothing to move, and the next start-up looks again.
//
// The lease is reconcile's (TryLease: SET NX, 60 s, renewed in the
// background while the pass runs); the marker is set only while it is
// held, and a pass that lost it is made again (ZADD NX and the marker are
// harmless twice).
const (
	migratedKey  = dueKey + ":migrated:v1"
	migratingKey = dueKey + ":migrating:v1"
	migrateMatch = keyPrefix + "{o:*}:trade"
	migrateCount = 1000
)

// errMigrationBusy: another instance holds the lease (or took it over).
var errMigrationBusy = errors.New("another instance is migrating the due set")

// startDueMigration runs the due migration beside the poller until ctx
// ends (a config reload or shutdown; the next start-up resumes it).
func (p *PayProxy) startDueMigration(ctx context.Context) {
	p.wg.Add(1)
	go func() { defer p.wg.Done(); p.migrateDue(ctx) }()
}

// migrateDue makes passes until one completes (or finds nothing to do),
// waiting a poll_interval while another instance holds the lease or
// Redis fails.
func (p *PayProxy) migrateDue(ctx context.Context) {
	wait := time.Duration(p.PollInterval)
	for {
		err := p.migratePass(ctx)
		if err == nil || ctx.Err() != nil {
			return
		}
		if errors.Is(err, errMigrationBusy) {
			wait = time.Duration(p.PollInterval)
		} else {
			// A Redis that keeps failing the pass (one that refuses
			// SCAN) is asked less and less often, up to hourly.
			p.logger.Warn("migrating the due set failed; retrying", zap.Error(err), zap.Duration("retry_in", wait))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if !errors.Is(err, errMigrationBusy) {
			wait = min(2*wait, time.Hour)
		}
	}
}

// dueMigration is one pass: its lease, once taken (reconcile's: renewed
// in the background, its context ended if lost), and its counts.
type dueMigration struct {
	p     *PayProxy
	lease *reconcile.Lease
	held  context.Context // ends when the lease is lost
	start time.Time
	found int // orders seen (spreads their due times)
	added int // orders put into the due set
}

// migratePass makes one pass unless the marker says it was made.
func (p *PayProxy) migratePass(ctx context.Context) error {
	if n, err := p.rdb.Exists(ctx, migratedKey).Result(); err != nil || n == 1 {
		return err
	}
	if n, err := p.rdb.Exists(ctx, migratingKey).Result(); err != nil || n == 1 {
		return cmp.Or(err, errMigrationBusy)
	}
	nodes, err := p.scanNodes(ctx)
	if err != nil {
		return err
	}
	m := &dueMigration{p: p, start: time.Now()}
	defer m.release(ctx)
	for _, node := range nodes {
		if err := m.scan(ctx, node); err != nil {
			return err
		}
	}
	return m.finish(ctx)
}

// keyScanner is a client SCAN can run on: a node of a Cluster, or the
// client of a single Redis (through Sentinel: its master).
type keyScanner interface {
	Scan(ctx context.Context, cursor uint64, match string, count int64) *redis.ScanCmd
}

// scanNodes is where the order keys live: each master of a Cluster, in
// turn (one scan at a time is the gentler), or the one Redis.
func (p *PayProxy) scanNodes(ctx context.Context) ([]keyScanner, error) {
	cc, ok := p.rdb.(*redis.ClusterClient)
	if !ok {
		return []keyScanner{p.rdb}, nil
	}
	var mu sync.Mutex
	var nodes []keyScanner
	err := cc.ForEachMaster(ctx, func(_ context.Context, c *redis.Client) error {
		mu.Lock()
		defer mu.Unlock()
		nodes = append(nodes, c)
		return nil
	})
	return nodes, err
}

// scan walks one node's keyspace and schedules the orders it finds.
func (m *dueMigration) scan(ctx context.Context, node keyScanner) error {
	var cursor uint64
	for {
		keys, next, err := node.Scan(ctx, cursor, migrateMatch, migrateCount).Result()
		if err != nil {
			return err
		}
		if m.held != nil && m.held.Err() != nil {
			return errMigrationBusy // the lease was lost: the pass is made again
		}
		if err := m.schedule(ctx, ordersOf(keys)); err != nil {
			return err
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}

// ordersOf is the order numbers of trade keys.
func ordersOf(keys []string) []string {
	orders := make([]string, 0, len(keys))
	for _, k := range keys {
		order, ok := strings.CutPrefix(k, keyPrefix+"{o:")
		if order, ok = strings.CutSuffix(order, "}:trade"); ok && anyOrderRE.MatchString(order) {
			orders = append(orders, order)
		}
	}
	return orders
}

// schedule adds a batch of orders to the due set, NX, one pipeline. The
// k-th order found is due k/1000 poll_intervals after the pass began (an
// instance polls up to 1 000 orders per poll_interval), so that a backlog
// does not crowd out the orders with work left.
func (m *dueMigration) schedule(ctx context.Context, orders []string) error {
	if len(orders) == 0 {
		return nil
	}
	if err := m.take(ctx); err != nil {
		return err
	}
	step := time.Duration(m.p.PollInterval) / (pollBatch * pollBatches)
	cmds := make([]*redis.IntCmd, 0, len(orders))
	_, err := m.p.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for _, order := range orders {
			at := m.start.Add(time.Duration(m.found) * step)
			cmds = append(cmds, pipe.ZAddNX(ctx, dueKey, redis.Z{Score: float64(at.UnixMilli()), Member: order}))
			m.found++
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, c := range cmds {
		m.added += int(c.Val())
	}
	return nil
}

// take takes the lease at the pass's first order.
func (m *dueMigration) take(ctx context.Context) error {
	if m.held != nil {
		return nil
	}
	l, held, ok, err := reconcile.TryLease(ctx, m.p.rdb, migratingKey)
	if err != nil {
		return err
	}
	if !ok {
		return errMigrationBusy
	}
	m.lease, m.held = l, held
	return nil
}

// release gives the lease up, if the pass took it.
func (m *dueMigration) release(ctx context.Context) {
	if m.lease != nil {
		m.lease.Release(ctx)
	}
}

// finish sets the marker once the pass has seen every key, and logs what
// it did. A pass that found no order leaves no marker.
func (m *dueMigration) finish(ctx context.Context) error {
	if m.held == nil {
		m.p.logger.Debug("due set migration: no order in Redis")
		return nil
	}
	if m.held.Err() != nil {
		return errMigrationBusy // the lease was lost: the pass is made again
	}
	if err := m.p.rdb.Set(ctx, migratedKey, time.Now().UTC().Format(time.RFC3339), 0).Err(); err != nil {
		return err
	}
	m.p.logger.Info("due set migration done: orders off the due set scheduled for retention",
		zap.Int("scheduled", m.added), zap.Int("orders_seen", m.found))
	return nil
}
