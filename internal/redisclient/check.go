package redisclient

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// CheckTimeout bounds the load-time check: a config load (and `caddy
// validate`) waits at most this long for a Redis that does not answer.
const CheckTimeout = time.Second

// Check asks Redis once (PING, which authenticates the connection first)
// whether it accepts c's credentials. It returns nil when it does, an
// *AuthError when Redis refused them, and another error when Redis did not
// answer by ctx's deadline (down or unreachable: nothing wrong with the
// config as far as anyone can tell).
func (c Config) Check(ctx context.Context, rdb redis.UniversalClient) error {
	err := rdb.Ping(ctx).Err()
	switch {
	case err == nil:
		return nil
	case isAuthError(err):
		return &AuthError{Redis: c.String(), Err: errors.New(Scrub(err.Error()))}
	}
	return fmt.Errorf("redis %s not reached: %s", c, Scrub(err.Error()))
}

// CheckAtLoad is Check as Provision uses it: bounded by CheckTimeout, a
// Redis that refuses the credentials fails the load (the returned error),
// one that does not answer is logged as a warning and the load goes on —
// Redis may come up after tollgate, and the module retries by itself.
func (c Config) CheckAtLoad(rdb redis.UniversalClient, logger *zap.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), CheckTimeout)
	defer cancel()
	err := c.Check(ctx, rdb)
	var ae *AuthError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ae):
		return err
	}
	logger.Warn("redis not reachable while the config loads; going on, requests that need it wait for it",
		zap.String("redis", c.String()), zap.String("error", err.Error()))
	return nil
}
