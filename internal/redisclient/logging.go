package redisclient

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// go-redis writes its own lines ("redis: 2026/12/01 … pool.go:770: …
// failed to dial") to stderr with the standard library's logger, about
// four a second while Redis is down: plain text in the middle of Caddy's
// JSON log stream, which breaks every log shipper that parses it. Its
// logger is process-wide, so it is replaced once, here, by one that writes
// through Caddy's current logger (as a warning: go-redis only logs what
// went wrong), at most once per logLineInterval for each kind of line,
// counting the ones it left out.
func init() {
	redis.SetLogger(&goRedisLog{limit: LogLimiter{Every: logLineInterval}})
}

// logLineInterval is the least time between two lines of one kind.
const logLineInterval = 10 * time.Second

// goRedisLog is go-redis's logger, routed to zap.
type goRedisLog struct {
	limit LogLimiter
}

// Printf is go-redis's logging call. The format is the kind of line: its
// arguments (addresses, attempts, errors) change from one line to the next.
func (l *goRedisLog) Printf(_ context.Context, format string, v ...any) {
	suppressed, ok := l.limit.Allow(format, time.Now())
	if !ok {
		return
	}
	caddy.Log().Named("tollgate.redis").Warn("redis client",
		zap.String("detail", Scrub(fmt.Sprintf(format, v...))), zap.Int("suppressed", suppressed))
}

// LogLimiter lets one log line of each kind through per interval and
// counts the others, so a Redis that stays down is reported steadily
// without flooding the log. The zero value needs Every set.
type LogLimiter struct {
	Every time.Duration
	mu    sync.Mutex
	kinds map[string]*lineKind
}

type lineKind struct {
	last       time.Time
	suppressed int
}

// Allow reports whether a line of this kind may be written at now, and how
// many were left out since the last one.
func (l *LogLimiter) Allow(kind string, now time.Time) (suppressed int, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.kinds == nil {
		l.kinds = map[string]*lineKind{}
	}
	k := l.kinds[kind]
	if k == nil {
		k = &lineKind{}
		l.kinds[kind] = k
	} else if now.Sub(k.last) < l.Every {
		k.suppressed++
		return 0, false
	}
	suppressed, k.suppressed, k.last = k.suppressed, 0, now
	return suppressed, true
}
