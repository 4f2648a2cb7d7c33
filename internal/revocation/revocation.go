// Package revocation spreads "this session is revoked" to every tollgate
// instance without a Redis round trip per request. jwt_refresh writes a
// revoked session id into one sorted set (score: the unix second until which
// it must stay rejected, i.e. when its last access token expires) and
// publishes it; each process keeps one Watcher per Redis address that
// mirrors the set in memory from pub/sub, and reloads the whole set whenever
// its subscription is (re)established, so nothing published while it was
// disconnected is missed.
//
// A subscription can also go deaf without breaking: after a Sentinel
// failover go-redis sends commands to the promoted master but leaves
// subscriptions on the old one, which no longer hears what is published.
// So each watcher publishes a probe every second and, when its own probe
// does not come back, subscribes again (on the current master) and
// reloads.
package revocation

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/tollgate/tollgate/internal/redisclient"
)

// MaxLeeway is the most clock skew a verifier may allow on exp (authjwt's
// leeway is bounded by it). A revocation is kept this long past the
// expiry of the session's last access token, so a token that is expired
// but still inside a verifier's leeway stays refused.
const MaxLeeway = 5 * time.Minute

const (
	// Key is the sorted set of revoked session ids, scored by expiry.
	Key = "tollgate:revoked"
	// Channel carries "<until-unix> <sid> [<sid>...]" for each revocation.
	Channel = "tollgate:revoked"
	// resyncEvery bounds how stale a watcher can be if a message is lost
	// without the connection dropping.
	resyncEvery = 30 * time.Second
	// probeEvery is how often a watcher publishes a probe to itself, and
	// probeTimeout how long it waits for it before subscribing again.
	probeEvery   = time.Second
	probeTimeout = time.Second
	// probePrefix starts a probe's payload; apply ignores it (not a time).
	probePrefix = "probe "
)

// StaleAfter is how long a watcher's set counts as current after the
// watcher last heard from Redis: its own probe coming back through the
// subscription (every second), which proves every earlier message arrived,
// or a full reload. Past it, Synced is false.
const StaleAfter = 5 * time.Second

// Revoke marks sids (Member names) as revoked until the given time and
// tells every watcher.
// The set is written before the message is published, so a watcher that
// reloads because of a reconnect sees it either way. It is one MULTI/EXEC:
// a write that Redis refuses (a node down, an ACL) publishes nothing
// either, so an error means nothing was revoked and the caller may retry.
func Revoke(ctx context.Context, rdb redis.UniversalClient, until time.Time, sids ...string) error {
	if len(sids) == 0 {
		return nil
	}
	score := float64(until.Unix())
	members := make([]redis.Z, 0, len(sids))
	for _, sid := range sids {
		members = append(members, redis.Z{Score: score, Member: sid})
	}
	_, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.ZAddArgs(ctx, Key, redis.ZAddArgs{GT: true, Members: members})
		p.ZRemRangeByScore(ctx, Key, "-inf", "("+strconv.FormatInt(time.Now().Unix(), 10))
		p.Publish(ctx, Channel, strconv.FormatInt(until.Unix(), 10)+" "+strings.Join(sids, " "))
		return nil
	})
	if err != nil {
		return fmt.Errorf("publishing revocation: %w", err)
	}
	return nil
}

// RealmTag writes a realm name for Redis key names and revocation entries:
// every byte outside [A-Za-z0-9._~-] is percent-escaped, so a tag holds no
// ':', '{', '}' or space and cannot run into what follows it.
func RealmTag(realm string) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(realm); i++ {
		c := realm[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '~', c == '-':
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&15])
		}
	}
	return b.String()
}

// Member is the revoked set's entry for a session: its sid in the default
// realm (""), "<RealmTag(realm)>:<sid>" in any other, so revoking a
// session of one realm can never refuse a token of another.
func Member(realm, sid string) string {
	if realm == "" {
		return sid
	}
	return RealmTag(realm) + ":" + sid
}

// IsRevoked asks Redis whether sid (a Member name) is revoked now (for
// callers that do not run a Watcher).
func IsRevoked(ctx context.Context, rdb redis.UniversalClient, sid string) (bool, error) {
	until, err := rdb.ZScore(ctx, Key, sid).Result()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading revocation: %w", err)
	}
	return int64(until) >= time.Now().Unix(), nil
}

// watchers shares one Watcher per Redis URL across module instances and
// config reloads.
var watchers = caddy.NewUsagePool()

// failureLogEvery is the least time between two warnings of one kind
// (subscription, reload) of a watcher: Redis down or refusing us is
// reported steadily, not once per retry.
const failureLogEvery = 10 * time.Second

// Watcher mirrors the revoked-session set of one Redis in memory.
type Watcher struct {
	redis  redisclient.Config
	rdb    redis.UniversalClient
	logger *zap.Logger
	cancel context.CancelFunc
	done   chan struct{}
	probe  string // this watcher's probe payload prefix, unique per process

	psMu   sync.Mutex
	ps     *redis.PubSub // replaced when a probe goes unanswered
	closed bool

	mu        sync.RWMutex
	revoked   map[string]int64
	loaded    bool
	confirmed time.Time // when the set was last known current

	started  time.Time
	reported bool // the sync state last logged (run's goroutine only)
	failures redisclient.LogLimiter
}

// Acquire returns the process's Watcher for this Redis, starting it on
// first use. It does not wait for Redis. Pair each Acquire with one
// Release.
func Acquire(cfg redisclient.Config, logger *zap.Logger) (*Watcher, error) {
	val, _, err := watchers.LoadOrNew(cfg.Key(), func() (caddy.Destructor, error) {
		rdb, err := cfg.Acquire()
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithCancel(context.Background())
		w := &Watcher{redis: cfg, rdb: rdb, logger: logger, cancel: cancel,
			done: make(chan struct{}), revoked: map[string]int64{}, probe: probePrefix + randomID() + " ",
			started: time.Now(), reported: true, failures: redisclient.LogLimiter{Every: failureLogEvery}}
		w.ps = rdb.Subscribe(ctx, Channel)
		go w.run(ctx)
		return w, nil
	})
	if err != nil {
		return nil, err
	}
	return val.(*Watcher), nil
}

// Release drops one use; the last one stops the watcher.
func (w *Watcher) Release() error {
	_, err := watchers.Delete(w.redis.Key())
	return err
}

// Destruct stops the background goroutine and releases the Redis client.
func (w *Watcher) Destruct() error {
	w.cancel()
	// Closing the subscription interrupts a blocked read at once.
	w.psMu.Lock()
	w.closed = true
	_ = w.ps.Close()
	w.psMu.Unlock()
	<-w.done
	return w.redis.Release()
}

// Revoked reports whether sid (a Member name) is revoked now. It never
// touches Redis.
func (w *Watcher) Revoked(sid string) bool {
	if sid == "" {
		return false
	}
	w.mu.RLock()
	until, ok := w.revoked[sid]
	w.mu.RUnlock()
	return ok && time.Now().Unix() <= until
}

// Loaded reports whether the full set has been read at least once.
func (w *Watcher) Loaded() bool {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.loaded
}

// Synced reports whether the set is known to be current at now: loaded,
// and confirmed within StaleAfter.
func (w *Watcher) Synced(now time.Time) bool {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.loaded && now.Sub(w.confirmed) <= StaleAfter
}

// AllSynced reports whether every watcher of this process is Synced (true
// when there is none).
func AllSynced(now time.Time) bool {
	all := true
	watchers.Range(func(_, v any) bool {
		all = v.(*Watcher).Synced(now)
		return all
	})
	return all
}

func (w *Watcher) confirm() {
	w.mu.Lock()
	w.confirmed = time.Now()
	w.mu.Unlock()
}

// reportSync logs when the set stops being current and when it is current
// again; the first load gets StaleAfter before it counts as late.
func (w *Watcher) reportSync(now time.Time) {
	synced := w.Synced(now)
	if synced == w.reported || (!synced && !w.Loaded() && now.Sub(w.started) < StaleAfter) {
		return
	}
	w.reported = synced
	if synced {
		w.logger.Info("revocation status known again: the revoked-session set is current")
		return
	}
	w.logger.Warn("revocation status unknown: the revoked-session set is not current (Redis unreachable?); "+
		"authjwt with unavailable accept lets tokens through, with unavailable reject answers 503",
		zap.String("redis", w.redis.String()), zap.Duration("stale_after", StaleAfter))
}

func (w *Watcher) run(ctx context.Context) {
	defer close(w.done)
	ps := w.ps
	var pr prober
	lastLoad := time.Now()
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		w.reportSync(time.Now())
		msg, err := ps.ReceiveTimeout(ctx, probeEvery/2)
		switch m := msg.(type) {
		case *redis.Subscription:
			// A new or re-established subscription: whatever was published
			// while we were away is only in the set.
			w.reload(ctx)
			lastLoad = time.Now()
			backoff = 100 * time.Millisecond
		case *redis.Message:
			if m.Payload == pr.pending {
				pr.pending = ""
				w.confirm() // everything published before it has arrived
			} else {
				w.apply(m.Payload)
			}
		default:
			if err != nil && !isTimeout(err) {
				if ctx.Err() != nil {
					return
				}
				w.warnFailure("revocation subscription failed; subscribing again", err)
				sleep(ctx, backoff)
				backoff = min(backoff*2, 2*time.Second)
				continue
			}
		}
		if pr.deaf(time.Now()) {
			w.logger.Warn("revocation subscription hears nothing (its own probe did not come back); subscribing again")
			if ps = w.resubscribe(ctx); ps == nil {
				return
			}
			pr.pending = ""
		}
		if pr.due(time.Now()) {
			pr.send(ctx, w.rdb, w.probe)
		}
		if time.Since(lastLoad) >= resyncEvery {
			w.reload(ctx)
			lastLoad = time.Now()
		}
	}
}

// warnFailure logs a failure to talk to Redis at warn level with its
// cause (scrubbed of passwords), at most once per failureLogEvery for each
// kind of failure, with the count of those left out. A wrong password
// (WRONGPASS, NOAUTH) shows up here on every retry.
func (w *Watcher) warnFailure(msg string, err error) {
	suppressed, ok := w.failures.Allow(msg, time.Now())
	if !ok {
		return
	}
	w.logger.Warn(msg, zap.String("redis", w.redis.String()),
		zap.String("error", redisclient.Scrub(err.Error())), zap.Int("suppressed", suppressed))
}

// prober tracks the watcher's probe: one outstanding at a time.
type prober struct {
	seq     uint64
	pending string // payload published and not heard back yet
	sentAt  time.Time
}

func (p *prober) due(now time.Time) bool {
	return p.pending == "" && now.Sub(p.sentAt) >= probeEvery
}

func (p *prober) deaf(now time.Time) bool {
	return p.pending != "" && now.Sub(p.sentAt) >= probeTimeout
}

// send publishes the next probe. A failed publish sets nothing pending:
// Redis is unreachable, and the subscription's own errors handle that.
func (p *prober) send(ctx context.Context, rdb redis.UniversalClient, prefix string) {
	p.seq++
	p.sentAt = time.Now()
	payload := prefix + strconv.FormatUint(p.seq, 10)
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	if rdb.Publish(ctx, Channel, payload).Err() == nil {
		p.pending = payload
	}
}

// resubscribe replaces the subscription with a new one, dialed afresh (to
// the current master); nil when the watcher is being destroyed.
func (w *Watcher) resubscribe(ctx context.Context) *redis.PubSub {
	w.psMu.Lock()
	defer w.psMu.Unlock()
	if w.closed {
		return nil
	}
	_ = w.ps.Close()
	w.ps = w.rdb.Subscribe(ctx, Channel)
	return w.ps
}

func randomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// reload replaces the in-memory set with Redis's, dropping expired entries.
func (w *Watcher) reload(ctx context.Context) {
	start := time.Now()
	now := start.Unix()
	zs, err := w.rdb.ZRangeByScoreWithScores(ctx, Key, &redis.ZRangeBy{
		Min: strconv.FormatInt(now, 10), Max: "+inf"}).Result()
	if err != nil {
		w.warnFailure("loading the revoked sessions failed", err)
		return
	}
	fresh := make(map[string]int64, len(zs))
	for _, z := range zs {
		if sid, ok := z.Member.(string); ok {
			fresh[sid] = int64(z.Score)
		}
	}
	w.mu.Lock()
	// Keep entries that arrived by message after our read started.
	for sid, until := range w.revoked {
		if until >= now && until > fresh[sid] {
			fresh[sid] = until
		}
	}
	w.revoked = fresh
	w.loaded = true
	w.confirmed = start // current as of when the read began
	w.mu.Unlock()
}

// apply adds the sids of one published message.
func (w *Watcher) apply(payload string) {
	fields := strings.Fields(payload)
	if len(fields) < 2 {
		return
	}
	until, err := strconv.ParseInt(fields[0], 10, 64)
	if err != nil {
		return
	}
	w.mu.Lock()
	for _, sid := range fields[1:] {
		if until > w.revoked[sid] {
			w.revoked[sid] = until
		}
	}
	w.mu.Unlock()
}

func isTimeout(err error) bool {
	type timeout interface{ Timeout() bool }
	t, ok := err.(timeout)
	return ok && t.Timeout()
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
