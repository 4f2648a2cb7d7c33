package reconcile

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// A run of one channel and date holds a lease in Redis, so that an admin
// request and the daily run, or two instances, never compare the same day
// at once: SET NX with an expiry, extended while the run goes on, released
// by its token. If an extension fails, the run's context is cancelled: a
// run that may no longer be alone stops. payproxy's one-time due-set
// migration holds one the same way (TryLease).

const (
	leaseTTL   = 60 * time.Second
	leaseRenew = leaseTTL / 3
)

// errLeaseLost is the cause of a run cancelled because its lease could not
// be extended.
var errLeaseLost = errors.New("the run's lease was lost")

type Lease struct {
	rdb    redis.UniversalClient
	key    string
	token  string
	cancel context.CancelCauseFunc
	stop   chan struct{}
	done   chan struct{}
}

// renewScript extends the lease only while the caller holds it.
//
// KEYS: lease. ARGV: token, ttl_ms.
var renewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
`)

// releaseScript deletes the lease only while the caller holds it.
//
// KEYS: lease. ARGV: token.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

func newToken() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// TryLease takes the lease on key, or reports false when another holder
// has it. The context returned ends when the lease is lost.
func TryLease(ctx context.Context, rdb redis.UniversalClient, key string) (*Lease, context.Context, bool, error) {
	token := newToken()
	ok, err := rdb.SetNX(ctx, key, token, leaseTTL).Result()
	if err != nil || !ok {
		return nil, nil, false, err
	}
	runCtx, cancel := context.WithCancelCause(ctx)
	l := &Lease{rdb: rdb, key: key, token: token, cancel: cancel, stop: make(chan struct{}), done: make(chan struct{})}
	go l.keep(runCtx)
	return l, runCtx, true, nil
}

func (l *Lease) keep(ctx context.Context) {
	defer close(l.done)
	t := time.NewTicker(leaseRenew)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-ctx.Done():
			return
		case <-t.C:
			n, err := renewScript.Run(ctx, l.rdb, []string{l.key}, l.token, leaseTTL.Milliseconds()).Int()
			if err == nil && n == 0 {
				l.cancel(errLeaseLost)
				return
			}
			// A failed extension is tried again at the next tick; the
			// lease still has two thirds of its time.
		}
	}
}

// Release stops the renewals and gives the lease up. It runs after the
// run's context may have ended, so on a context of its own.
func (l *Lease) Release(ctx context.Context) {
	close(l.stop)
	<-l.done
	l.cancel(nil)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	_ = releaseScript.Run(ctx, l.rdb, []string{l.key}, l.token).Err()
}
