package payproxy

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/go-redsync/redsync/v4"
	"go.uber.org/zap"
)

// orderLock is one held per-order lock with its watchdog. Redsync's lock
// expires by itself; the watchdog extends it every lock_ttl/3 while work
// runs (what Redisson's watchdog does), and if an extension fails it
// cancels the work's context: better a 503 and state UNKNOWN than two
// holders creating two trades.
type orderLock struct {
	mu *redsync.Mutex
	// renewer extends mu's lock (same key and value, options for renewal);
	// until is the end of the last grant or renewal. Only the watchdog
	// touches them.
	renewer *redsync.Mutex
	until   time.Time
	cancel  context.CancelCauseFunc
	stop    chan struct{}
	done    sync.WaitGroup
}

// lockState is what a request did about its order's lock: the value of
// the {http.payproxy.lock} placeholder.
type lockState uint8

const (
	lockNone    lockState = iota // answered without taking the lock
	lockHeld                     // took the lock and kept it to the end
	lockTimeout                  // could not take it in time (lock_timeout)
	lockLost                     // lost it during the provider call (lock_lost)
)

// String is the placeholder's value.
func (l lockState) String() string {
	switch l {
	case lockHeld:
		return "held"
	case lockTimeout:
		return "timeout"
	case lockLost:
		return "lost"
	}
	return "none"
}

// errLockLost is the cause of a work context cancelled by the watchdog.
var errLockLost = errors.New("per-order lock lost")

// errLockBusy means the lock could not be taken in time.
var errLockBusy = errors.New("per-order lock busy")

// errLockServersDown means too few lock servers answered for a majority to
// ever grant the lock.
var errLockServersDown = &apiError{http.StatusServiceUnavailable, "redis_unavailable",
	"too few lock servers are reachable to take the order lock"}

// errLockNotNeeded means the caller's answered func reported, while
// waiting for the lock, that the work no longer needs it.
var errLockNotNeeded = errors.New("per-order lock no longer needed")

// lockOrder takes the order's lock, waiting up to wait, and returns a
// context that ends when the lock is lost. Unlock must be called. While it
// waits it calls answered (if not nil) every lockRecheck, and gives up with
// errLockNotNeeded when that reports true.
//
// Each attempt asks every lock server once (redsync's quorum: a majority
// must grant it). The retry loop is ours rather than redsync's so that an
// attempt's errors can be read: when a majority of the servers cannot be
// reached at all, no amount of waiting grants the lock, and the client gets
// a quick 503 instead of waiting out the whole lock wait.
func (p *PayProxy) lockOrder(ctx context.Context, order string, wait time.Duration, answered func() bool) (*orderLock, context.Context, error) {
	ttl := time.Duration(p.LockTTL)
	// Each attempt gets 5% of the expiry (redsync's default is 1%: 10ms for
	// a 1s lock, 100ms for the default 10s). Under load an attempt cut short
	// leaves its SETNX behind when its release is cut short too, and such a
	// stray key blocks every competitor, and the holder's renewal on a
	// server where it is missing, until it expires.
	m := p.locks.NewMutex(lockKey(order), redsync.WithExpiry(ttl), redsync.WithTimeoutFactor(float64(lockAttemptTimeout(ttl))/float64(ttl)))
	start := time.Now()
	err := p.acquire(ctx, m, start.Add(wait), answered)
	p.metrics.lockWait(time.Since(start), err == nil)
	if err != nil {
		return nil, nil, err
	}
	workCtx, cancel := context.WithCancelCause(ctx)
	l := &orderLock{mu: m, renewer: p.renewer(m, ttl), until: m.Until(), cancel: cancel, stop: make(chan struct{})}
	l.done.Add(1)
	go l.watch(workCtx, ttl/3)
	return l, workCtx, nil
}

// renewer returns the mutex the watchdog extends m's lock with. With
// several lock servers it answers as soon as a majority has (a server that
// is down costs go-redis several dial attempts, which would eat the lock's
// validity on every renewal), and it also takes the servers where our key
// is missing (one back from a restart, or one a competitor held when we
// locked): while a majority holds our key nobody else can hold the lock,
// and the spare servers are what lets it survive the next failure. With
// one server a missing key means the lock was lost, so m itself renews.
// (Taking and releasing do not answer early: a release cut short would
// leave a competitor's key behind and block everyone until it expires.)
func (p *PayProxy) renewer(m *redsync.Mutex, ttl time.Duration) *redsync.Mutex {
	if p.lockServers == 1 {
		return m
	}
	return p.locks.NewMutex(m.Name(), redsync.WithExpiry(ttl), redsync.WithValue(m.Value()),
		redsync.WithSetNXOnExtend(), redsync.WithFailFast(true))
}

// lockRecheck is how often a waiter for the lock asks whether it still
// needs it.
const lockRecheck = 100 * time.Millisecond

// acquire tries m until it is granted, the deadline passes (errLockBusy),
// a majority of the lock servers is unreachable (errLockServersDown) or
// answered reports true (errLockNotNeeded).
func (p *PayProxy) acquire(ctx context.Context, m *redsync.Mutex, deadline time.Time, answered func() bool) error {
	const minDelay, maxDelay = 5 * time.Millisecond, 30 * time.Millisecond
	quorum := p.lockServers/2 + 1
	nextCheck := time.Now().Add(lockRecheck)
	for {
		if answered != nil && time.Now().After(nextCheck) {
			if answered() {
				return errLockNotNeeded
			}
			nextCheck = time.Now().Add(lockRecheck)
		}
		free, down := p.peekLock(ctx, m.Name())
		if down == 0 && free >= quorum {
			err := m.TryLockContext(ctx)
			if err == nil {
				return nil
			}
			down = unreachableNodes(err)
		}
		if down > p.lockServers-quorum {
			p.logger.Warn("lock servers unreachable", zap.Int("unreachable", down), zap.Int("servers", p.lockServers))
			return errLockServersDown
		}
		delay := minDelay + rand.N(maxDelay-minDelay)
		if time.Now().Add(delay).After(deadline) {
			return errLockBusy
		}
		select {
		case <-ctx.Done():
			return errLockBusy
		case <-time.After(delay):
		}
	}
}

// peekLock counts the lock servers where key is free, and those that
// could not be asked (timeouts aside, see unreachableNodes). Waiters try
// to take the lock only when a majority is free: every attempt holds the
// servers it got until it has heard from all, and a storm of waiters doing
// so on the spare server of a lock that lost one server would keep the
// holder from renewing there, and so lose it.
func (p *PayProxy) peekLock(ctx context.Context, key string) (free, down int) {
	ctx, cancel := context.WithTimeout(ctx, lockAttemptTimeout(time.Duration(p.LockTTL)))
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, c := range p.lockClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := c.Exists(ctx, key).Result()
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil && !isTimeout(err) && !errors.Is(err, context.Canceled):
				down++
			case err == nil && n == 0:
				free++
			}
		}()
	}
	wg.Wait()
	return free, down
}

// lockAttemptTimeout is the deadline of one attempt on the lock servers.
func lockAttemptTimeout(ttl time.Duration) time.Duration { return ttl / 20 }

// unreachableNodes counts the lock servers an attempt could not talk to.
// Timeouts do not count: under load an attempt's short deadline (redsync
// gives each attempt 1% of the lock's expiry) can pass on a healthy server,
// and that is worth another attempt; a refused or reset connection is not.
func unreachableNodes(err error) int {
	if redisErr, ok := err.(*redsync.RedisError); ok && !isTimeout(redisErr.Err) && !errors.Is(redisErr.Err, context.Canceled) {
		return 1
	}
	n := 0
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range joined.Unwrap() {
			n += unreachableNodes(e)
		}
	}
	return n
}

// tryLockOrder takes the lock only if it is free now (the poller skips
// busy orders; they come back at the next round).
func (p *PayProxy) tryLockOrder(ctx context.Context, order string) (*orderLock, context.Context, error) {
	return p.lockOrder(ctx, order, 0, nil)
}

func (l *orderLock) watch(ctx context.Context, every time.Duration) {
	defer l.done.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-ctx.Done():
			return
		case <-t.C:
			if !l.renew(ctx, every) {
				l.cancel(errLockLost)
				return
			}
		}
	}
}

// renew extends the lock, retrying until the validity of the last grant
// runs out. With several lock servers one attempt can miss a majority for
// a moment while the lock is still ours: a server that was down, or one
// whose key a competitor holds between its own SETNX and its release.
// Only a lock that cannot be renewed before it expires is lost.
func (l *orderLock) renew(ctx context.Context, every time.Duration) bool {
	const minDelay, maxDelay = 5 * time.Millisecond, 30 * time.Millisecond
	for {
		if ok, _ := l.extend(ctx, min(every, time.Until(l.until))); ok {
			l.until = l.renewer.Until()
			return true
		}
		delay := minDelay + rand.N(maxDelay-minDelay)
		if time.Now().Add(delay).After(l.until) {
			return false
		}
		select {
		case <-l.stop:
			return true // unlocking anyway
		case <-time.After(delay):
		}
	}
}

// extend renews the lock on every server (held if a majority renews it).
// It gets at most limit: a hung server must not keep the watchdog waiting
// past the lock's expiry.
func (l *orderLock) extend(ctx context.Context, limit time.Duration) (bool, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), limit)
	defer cancel()
	return l.renewer.ExtendContext(ctx)
}

// lost reports whether the watchdog gave the lock up.
func (l *orderLock) lost(ctx context.Context) bool {
	return errors.Is(context.Cause(ctx), errLockLost)
}

// Unlock stops the watchdog and releases the lock (redsync deletes it only
// if it still holds our random value: never someone else's lock).
func (l *orderLock) Unlock() {
	close(l.stop)
	l.done.Wait()
	l.cancel(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, _ = l.mu.UnlockContext(ctx)
}
