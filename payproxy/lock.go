package payproxy

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/go-redsync/redsync/v4"
)

// orderLock is one held per-order lock with its watchdog. Redsync's lock
// expires by itself; the watchdog extends it every lock_ttl/3 while work
// runs (what Redisson's watchdog does), and if an extension fails it
// cancels the work's context: better a 503 and state UNKNOWN than two
// holders creating two trades.
type orderLock struct {
	mu     *redsync.Mutex
	cancel context.CancelCauseFunc
	stop   chan struct{}
	done   sync.WaitGroup
}

// errLockLost is the cause of a work context cancelled by the watchdog.
var errLockLost = errors.New("per-order lock lost")

// errLockBusy means the lock could not be taken in time.
var errLockBusy = errors.New("per-order lock busy")

// lockOrder takes the order's lock, waiting up to wait, and returns a
// context that ends when the lock is lost. Unlock must be called.
func (p *PayProxy) lockOrder(ctx context.Context, order string, wait time.Duration) (*orderLock, context.Context, error) {
	ttl := time.Duration(p.LockTTL)
	const minDelay, maxDelay = 5 * time.Millisecond, 30 * time.Millisecond
	tries := max(1, int(wait/((minDelay+maxDelay)/2)))
	m := p.locks.NewMutex(lockKey(order),
		redsync.WithExpiry(ttl),
		redsync.WithTries(tries),
		redsync.WithRetryDelayFunc(func(int) time.Duration {
			return minDelay + rand.N(maxDelay-minDelay)
		}))
	start := time.Now()
	err := m.LockContext(ctx)
	p.metrics.lockWait(time.Since(start), err == nil)
	if err != nil {
		var taken *redsync.ErrTaken
		if errors.Is(err, redsync.ErrFailed) || errors.As(err, &taken) {
			return nil, nil, errLockBusy
		}
		return nil, nil, fmt.Errorf("locking order %s: %w", order, err)
	}
	workCtx, cancel := context.WithCancelCause(ctx)
	l := &orderLock{mu: m, cancel: cancel, stop: make(chan struct{})}
	l.done.Add(1)
	go l.watch(workCtx, ttl/3)
	return l, workCtx, nil
}

// tryLockOrder takes the lock only if it is free now (the poller skips
// busy orders; they come back at the next round).
func (p *PayProxy) tryLockOrder(ctx context.Context, order string) (*orderLock, context.Context, error) {
	return p.lockOrder(ctx, order, 0)
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
			ok, err := l.mu.ExtendContext(context.WithoutCancel(ctx))
			if err != nil || !ok {
				l.cancel(errLockLost)
				return
			}
		}
	}
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
