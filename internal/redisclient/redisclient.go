// Package redisclient gives every tollgate module one pooled Redis client per
// distinct address, shared across module instances and across config
// reloads (old and new instances overlap during a reload, so the client must
// outlive either of them). It is the only place that dials Redis.
package redisclient

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	neturl "net/url"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"
)

// pool holds the live clients, keyed by their normalized URL.
var pool = caddy.NewUsagePool()

type sharedClient struct {
	redis.UniversalClient
	secret string // its password, scrubbed from log lines while it lives
}

func (c sharedClient) Destruct() error {
	forgetSecret(c.secret)
	return c.Close()
}

// Acquire returns the shared client for url, creating it on first use. It
// does not dial: Provision must not block on the network, and a Redis that is
// down at start must not stop Caddy from starting. Each Acquire must be
// matched by one Release (in Cleanup). Config.Acquire does the same for a
// URL with a password given apart.
func Acquire(url string) (redis.UniversalClient, error) {
	return Config{URL: strings.TrimSpace(url)}.Acquire()
}

// Release drops one use of the client for url; the last release closes it.
func Release(url string) error {
	return Config{URL: strings.TrimSpace(url)}.Release()
}

// Validate reports whether url is a Redis URL tollgate can use, without
// dialing. Caddyfile parsing and Validate() use it so a typo fails at load.
func Validate(url string) error {
	_, err := Options(strings.TrimSpace(url))
	return err
}

// Options turns a Redis URL into client options with timeouts short enough
// that a dead Redis turns into a quick 503, not a hung request. Forms:
//
//	redis://[user:password@]host:port[/db]         one server (rediss:// for TLS)
//	redis+cluster://[user:password@]host:port[,host:port...]
//	redis+sentinel://[user:password@]host:port[,host:port...]/<master>[/db]
//
// The single-server form also takes go-redis's query options
// (dial_timeout=…, pool_size=…).
func Options(url string) (*redis.UniversalOptions, error) {
	url, durability, err := splitDurability(url)
	if err != nil {
		return nil, fmt.Errorf("redis URL %q: %w", redactURL(url), err)
	}
	if url == "" {
		return nil, fmt.Errorf("empty redis URL")
	}
	scheme, rest, ok := strings.Cut(url, "://")
	if !ok {
		return nil, fmt.Errorf("redis URL %q: want redis://, rediss://, redis+cluster:// or redis+sentinel://", redactURL(url))
	}
	var u *redis.UniversalOptions
	switch scheme {
	case "redis", "rediss":
		u, err = singleOptions(url)
	case "redis+cluster", "rediss+cluster":
		u, err = clusterOptions(rest)
		if err == nil && durability.Replicas > 0 {
			// WAIT counts the replicas of one connection's writes; a
			// cluster pipeline may send it to another node.
			err = fmt.Errorf("wait_replicas is not supported with redis+cluster")
		}
	case "redis+sentinel", "rediss+sentinel":
		u, err = sentinelOptions(rest)
	default:
		err = fmt.Errorf("unknown scheme %q", scheme)
	}
	if err != nil {
		return nil, fmt.Errorf("redis URL %q: %w", redactURL(url), err)
	}
	if strings.HasPrefix(scheme, "rediss+") && u.TLSConfig == nil {
		u.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	u.DialTimeout = orDefault(u.DialTimeout, 2*time.Second, 5*time.Second)
	u.ReadTimeout = orDefault(u.ReadTimeout, 2*time.Second, 3*time.Second)
	u.WriteTimeout = orDefault(u.WriteTimeout, 2*time.Second, 3*time.Second)
	u.MaxRetries = 1
	return u, nil
}

func singleOptions(url string) (*redis.UniversalOptions, error) {
	o, err := redis.ParseURL(url)
	if err != nil {
		// net/url's errors quote the URL, or pieces of it: a password
		// holding / # ? or % breaks the URL's structure, and the piece
		// quoted ("invalid port \":pa\"") is then part of the password.
		if hasUserinfo(url) {
			return nil, errUserinfo
		}
		var ue *neturl.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, err
	}
	return &redis.UniversalOptions{Addrs: []string{o.Addr}, DB: o.DB, Username: o.Username,
		Password: o.Password, TLSConfig: o.TLSConfig, DialTimeout: o.DialTimeout,
		ReadTimeout: o.ReadTimeout, WriteTimeout: o.WriteTimeout, PoolSize: o.PoolSize}, nil
}

// clusterOptions sets IsClusterMode so NewUniversalClient builds a cluster
// client even when only one seed address is given.
func clusterOptions(rest string) (*redis.UniversalOptions, error) {
	user, pass, hosts, path, err := splitURL(rest)
	if err != nil {
		return nil, err
	}
	if path != "" {
		return nil, fmt.Errorf("a cluster URL has no path (Cluster has only db 0)")
	}
	addrs, err := splitHosts(hosts)
	if err != nil {
		return nil, err
	}
	return &redis.UniversalOptions{Addrs: addrs, Username: user, Password: pass, IsClusterMode: true}, nil
}

func sentinelOptions(rest string) (*redis.UniversalOptions, error) {
	user, pass, hosts, path, err := splitURL(rest)
	if err != nil {
		return nil, err
	}
	addrs, err := splitHosts(hosts)
	if err != nil {
		return nil, err
	}
	master, dbText, _ := strings.Cut(path, "/")
	if master == "" {
		return nil, fmt.Errorf("a sentinel URL needs the master name: redis+sentinel://host:port/<master>[/db]")
	}
	db := 0
	if dbText != "" {
		if db, err = strconv.Atoi(dbText); err != nil || db < 0 {
			return nil, fmt.Errorf("bad db %q", dbText)
		}
	}
	return &redis.UniversalOptions{Addrs: addrs, MasterName: master, DB: db, Username: user, Password: pass}, nil
}

// errUserinfo replaces any parse error of a URL with credentials: its
// text could quote part of the password.
var errUserinfo = errors.New("the URL cannot be parsed; percent-encode the user name and password " +
	"(/ as %2F, # as %23, ? as %3F, % as %25, @ as %40, a space as %20) or give the password with `password`")

// hasUserinfo reports whether url seems to carry credentials (an @ after
// the scheme).
func hasUserinfo(url string) bool {
	_, rest, _ := strings.Cut(url, "://")
	return strings.Contains(rest, "@")
}

// splitURL takes "user:pass@h1:p1,h2:p2/path" apart, decoding the
// percent-encoded user name and password as net/url does for redis://.
func splitURL(rest string) (user, pass, hosts, path string, err error) {
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		user, pass, _ = strings.Cut(rest[:at], ":")
		rest = rest[at+1:]
		if user, err = neturl.PathUnescape(user); err != nil {
			return "", "", "", "", errUserinfo
		}
		if pass, err = neturl.PathUnescape(pass); err != nil {
			return "", "", "", "", errUserinfo
		}
	}
	hosts, path, _ = strings.Cut(rest, "/")
	return user, pass, hosts, strings.Trim(path, "/"), nil
}

func splitHosts(hosts string) ([]string, error) {
	var addrs []string
	for _, h := range strings.Split(hosts, ",") {
		if h = strings.TrimSpace(h); h == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(h); err != nil {
			return nil, fmt.Errorf("address %q: %w", h, err)
		}
		addrs = append(addrs, h)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("no address")
	}
	return addrs, nil
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

// Durability is how many replicas must confirm a write before tollgate
// answers it as done, and how long to wait for them. Redis replication is
// asynchronous: without it, a failover can lose a write the old master had
// acknowledged. Set it with the URL options wait_replicas=N and
// wait_timeout=<duration> (default 1s), e.g.
// redis+sentinel://s1:26379/main/0?wait_replicas=1.
type Durability struct {
	Replicas int
	Timeout  time.Duration
}

// DurabilityOf reads the durability options of url (zero when absent).
func DurabilityOf(url string) (Durability, error) {
	_, d, err := splitDurability(strings.TrimSpace(url))
	return d, err
}

// splitDurability removes wait_replicas and wait_timeout from url's query,
// which go-redis would refuse, and returns them.
func splitDurability(url string) (string, Durability, error) {
	d := Durability{Timeout: time.Second}
	base, query, found := strings.Cut(url, "?")
	if !found {
		return url, Durability{}, nil
	}
	var kept []string
	for _, kv := range strings.Split(query, "&") {
		k, v, _ := strings.Cut(kv, "=")
		var err error
		switch k {
		case "wait_replicas":
			if d.Replicas, err = strconv.Atoi(v); err != nil || d.Replicas < 0 {
				return url, d, fmt.Errorf("wait_replicas %q: want a whole number", v)
			}
		case "wait_timeout":
			if d.Timeout, err = time.ParseDuration(v); err != nil || d.Timeout <= 0 {
				return url, d, fmt.Errorf("wait_timeout %q: want a duration such as 500ms", v)
			}
		default:
			kept = append(kept, kv)
		}
	}
	if d.Replicas == 0 {
		d = Durability{}
	}
	if len(kept) > 0 {
		base += "?" + strings.Join(kept, "&")
	}
	return base, d, nil
}

// Pipelined runs fn's commands in one pipeline on one connection and, when
// d asks for replicas, ends it with WAIT: WAIT counts the writes of its own
// connection, so it confirms exactly these. Too few confirmations is an
// error; the write may still have happened on the master, and the caller
// answers as if it had failed (its retry finds the write).
func (d Durability) Pipelined(ctx context.Context, rdb redis.UniversalClient, fn func(redis.Pipeliner)) error {
	var wait *redis.Cmd
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		fn(p)
		if d.Replicas > 0 {
			wait = p.Do(ctx, "WAIT", d.Replicas, d.Timeout.Milliseconds())
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return err
	}
	if wait != nil {
		if n, werr := wait.Int(); werr != nil || n < d.Replicas {
			return fmt.Errorf("write confirmed by %d of %d replicas in %s: %v", n, d.Replicas, d.Timeout, werr)
		}
	}
	return nil
}

// Run runs a writing script, confirmed by d's replicas when it asks for
// them (see Pipelined). The reply is the script's, or the failure.
func (d Durability) Run(ctx context.Context, rdb redis.UniversalClient, script *redis.Script, keys []string, args ...any) *redis.Cmd {
	if d.Replicas == 0 {
		return script.Run(ctx, rdb, keys, args...)
	}
	var res *redis.Cmd
	err := d.Pipelined(ctx, rdb, func(p redis.Pipeliner) { res = script.Eval(ctx, p, keys, args...) })
	if err != nil {
		failed := redis.NewCmd(ctx)
		failed.SetErr(err)
		return failed
	}
	return res
}
