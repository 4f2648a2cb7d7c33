// Package redisclient gives every tollgate module one pooled Redis client per
// distinct address, shared across module instances and across config
// reloads (old and new instances overlap during a reload, so the client must
// outlive either of them). It is the only place that dials Redis.
package redisclient

import (
	"fmt"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"
)

// pool holds the live clients, keyed by their normalized URL.
var pool = caddy.NewUsagePool()

type sharedClient struct{ redis.UniversalClient }

func (c sharedClient) Destruct() error { return c.Close() }

// Acquire returns the shared client for url, creating it on first use. It
// does not dial: Provision must not block on the network, and a Redis that is
// down at start must not stop Caddy from starting. Each Acquire must be
// matched by one Release (in Cleanup).
func Acquire(url string) (redis.UniversalClient, error) {
	key := strings.TrimSpace(url)
	val, _, err := pool.LoadOrNew(key, func() (caddy.Destructor, error) {
		opts, err := Options(key)
		if err != nil {
			return nil, err
		}
		return sharedClient{redis.NewUniversalClient(opts)}, nil
	})
	if err != nil {
		return nil, err
	}
	return val.(sharedClient).UniversalClient, nil
}

// Release drops one use of the client for url; the last release closes it.
func Release(url string) error {
	_, err := pool.Delete(strings.TrimSpace(url))
	return err
}

// Validate reports whether url is a Redis URL tollgate can use, without
// dialing. Caddyfile parsing and Validate() use it so a typo fails at load.
func Validate(url string) error {
	_, err := Options(strings.TrimSpace(url))
	return err
}

// Options turns a redis:// or rediss:// URL (password, db, and go-redis's
// query options such as dial_timeout) into client options with timeouts
// short enough that a dead Redis turns into a quick 503, not a hung request.
func Options(url string) (*redis.UniversalOptions, error) {
	if url == "" {
		return nil, fmt.Errorf("empty redis URL")
	}
	o, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redis URL %q: %w", redactURL(url), err)
	}
	u := &redis.UniversalOptions{
		Addrs:        []string{o.Addr},
		DB:           o.DB,
		Username:     o.Username,
		Password:     o.Password,
		TLSConfig:    o.TLSConfig,
		DialTimeout:  orDefault(o.DialTimeout, 2*time.Second, 5*time.Second),
		ReadTimeout:  orDefault(o.ReadTimeout, 2*time.Second, 3*time.Second),
		WriteTimeout: orDefault(o.WriteTimeout, 2*time.Second, 3*time.Second),
		PoolSize:     o.PoolSize,
		MaxRetries:   1,
	}
	return u, nil
}

// orDefault keeps an explicit setting from the URL and otherwise replaces
// go-redis's own default (goDefault) with ours.
func orDefault(v, ours, goDefault time.Duration) time.Duration {
	if v == 0 || v == goDefault {
		return ours
	}
	return v
}

// redactURL hides the password of a Redis URL for error messages and logs.
func redactURL(url string) string {
	at := strings.LastIndex(url, "@")
	scheme := strings.Index(url, "://")
	if at < 0 || scheme < 0 || at < scheme {
		return url
	}
	return url[:scheme+3] + "***" + url[at:]
}

// Redact is redactURL for other packages' log fields.
func Redact(url string) string { return redactURL(url) }
