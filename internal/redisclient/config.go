package redisclient

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/resolve"
)

// Config is one Redis as a module's config names it: a URL and,
// optionally, the password given apart from it (Caddyfile `<url> {
// password <secret> }`), which needs no percent-encoding. Get one with
// Resolve in Provision; its String never shows a credential.
type Config struct {
	// URL is the resolved Redis URL (see Options for its forms).
	URL string
	// Password, when not empty, is the password to authenticate with; the
	// URL then carries none (a user name is allowed: ACL users).
	Password string
}

// Resolve turns a module's configured URL and password into a Config:
// `{env.*}` and `{file.*}` are resolved in both (internal/resolve, which
// names an empty placeholder), and the URL is checked without dialing.
// directive names the setting in errors ("redis", "revocation",
// "lock_redis"); no error shows any part of a password.
func Resolve(directive, rawURL, rawPassword string) (Config, error) {
	url, err := resolve.Value(strings.TrimSpace(rawURL))
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", directive, err)
	}
	password, err := resolve.Value(rawPassword)
	if err != nil {
		return Config{}, fmt.Errorf("%s password: %w", directive, err)
	}
	c := Config{URL: url, Password: password}
	opts, err := Options(url)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", directive, err)
	}
	if password != "" && opts.Password != "" {
		return Config{}, fmt.Errorf("%s %s: a password is given both in the URL and with password; keep one", directive, c)
	}
	return c, nil
}

// Options is the client options of c: the URL's, with Password in place.
func (c Config) Options() (*redis.UniversalOptions, error) {
	opts, err := Options(c.URL)
	if err != nil {
		return nil, err
	}
	if c.Password != "" {
		opts.Password = c.Password
	}
	return opts, nil
}

// String is the URL without its credentials, for errors and logs.
func (c Config) String() string { return redactURL(c.URL) }

// key identifies the client of c in the pool: two configs share a client
// only when URL and password are the same. The password is kept as a
// hash, so the key is harmless wherever it ends up.
func (c Config) key() string {
	if c.Password == "" {
		return c.URL
	}
	sum := sha256.Sum256([]byte(c.Password))
	return c.URL + "\x00" + hex.EncodeToString(sum[:])
}

// Key is c's identity for other pools keyed by Redis (the revocation
// watchers, jwt_refresh's admin registry); it holds no secret.
func (c Config) Key() string { return c.key() }

// Durability is the durability options of c's URL.
func (c Config) Durability() (Durability, error) { return DurabilityOf(c.URL) }

// Acquire returns the shared client for c (see the package function).
func (c Config) Acquire() (redis.UniversalClient, error) {
	val, _, err := pool.LoadOrNew(c.key(), func() (caddy.Destructor, error) {
		opts, err := c.Options()
		if err != nil {
			return nil, err
		}
		rememberSecret(opts.Password)
		return sharedClient{UniversalClient: redis.NewUniversalClient(opts), secret: opts.Password}, nil
	})
	if err != nil {
		return nil, err
	}
	return val.(sharedClient).UniversalClient, nil
}

// Release drops one use of c's client; the last release closes it.
func (c Config) Release() error {
	_, err := pool.Delete(c.key())
	return err
}

// AuthError is Redis refusing the credentials (WRONGPASS, NOAUTH, NOPERM,
// or a password given to a Redis that has none): a config that cannot
// work until it is changed, unlike a Redis that is down.
type AuthError struct {
	Redis string // the redacted URL
	Err   error  // Redis's answer, scrubbed of passwords
}

func (e *AuthError) Error() string {
	return fmt.Sprintf("redis %s refused the credentials: %v (check the password: in the URL it must be "+
		"percent-encoded; `password` takes it as it is, or from {env.*}/{file.*})", e.Redis, e.Err)
}

func (e *AuthError) Unwrap() error { return e.Err }

// isAuthError reports whether err is Redis's answer to bad or missing
// credentials.
func isAuthError(err error) bool {
	var re redis.Error
	if !errors.As(err, &re) {
		return false
	}
	msg := re.Error()
	for _, prefix := range []string{"WRONGPASS", "NOAUTH", "NOPERM"} {
		if strings.HasPrefix(msg, prefix) {
			return true
		}
	}
	// "ERR AUTH <password> called without any password configured …",
	// "ERR invalid password" (Redis before 6).
	return strings.HasPrefix(msg, "ERR") && (strings.Contains(msg, "AUTH") || strings.Contains(msg, "password"))
}
