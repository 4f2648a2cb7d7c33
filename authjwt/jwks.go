package authjwt

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

const (
	// jwksFetchTimeout bounds every fetch, including the one at provision:
	// a config load must fail clearly rather than hang on the network.
	jwksFetchTimeout = 5 * time.Second
	// jwksMaxBody caps a JWK Set response; real ones are a few KiB.
	jwksMaxBody = 1 << 20
)

var (
	// jwksMissInterval is the least time between two refetches triggered
	// by unknown kids, so forged kids cannot turn us into a traffic source.
	jwksMissInterval = 10 * time.Second
	// jwksFirstRetry and jwksMaxRetry space the attempts at a set not
	// loaded yet: soon, for a set published by the same config (its
	// listener starts right after the config loads), then less often.
	jwksFirstRetry = 250 * time.Millisecond
	jwksMaxRetry   = 10 * time.Second
)

// jwksPool shares one fetcher per JWK Set location and refresh interval
// between handler instances and across config reloads.
var jwksPool = caddy.NewUsagePool()

// jwksSource is a JWK Set kept current in the background.
type jwksSource struct {
	location string
	refresh  time.Duration
	logger   *zap.Logger
	client   *http.Client

	current atomic.Pointer[keySet]
	// generation changes whenever the published set changes, so cached
	// verifications made with a removed key stop being served.
	generation atomic.Uint64
	lastSum    [32]byte
	sumMu      sync.Mutex

	missMu       sync.Mutex // serializes refetches on unknown kids
	lastMissTime time.Time

	ctx    context.Context // the source's life; cancelled by Destruct
	cancel context.CancelFunc
	done   chan struct{}
}

func jwksPoolKey(location string, refresh time.Duration) string {
	return location + "|" + refresh.String()
}

// acquireJWKS returns the shared source for location, fetching it first
// when no other instance holds it.
func acquireJWKS(location string, refresh time.Duration, logger *zap.Logger) (*jwksSource, error) {
	val, _, err := jwksPool.LoadOrNew(jwksPoolKey(location, refresh), func() (caddy.Destructor, error) {
		return startJWKS(location, refresh, logger)
	})
	if err != nil {
		return nil, err
	}
	return val.(*jwksSource), nil
}

func releaseJWKS(src *jwksSource) {
	_, _ = jwksPool.Delete(jwksPoolKey(src.location, src.refresh))
}

// startJWKS fetches the set once. A file that cannot be read or parsed
// fails the config load; a URL that does not answer yet does not: the set
// may be published by this very config (jwt_refresh's jwks_path), whose
// listener only starts after the load, or by an identity provider that is
// briefly down. It is fetched again in the background until it loads;
// meanwhile tokens that need it get 503.
func startJWKS(location string, refresh time.Duration, logger *zap.Logger) (*jwksSource, error) {
	src := &jwksSource{
		location: location,
		refresh:  refresh,
		logger:   logger,
		client:   &http.Client{Timeout: jwksFetchTimeout, CheckRedirect: checkJWKSRedirect},
		done:     make(chan struct{}),
	}
	set, sum, err := src.fetch(context.Background())
	switch {
	case err == nil:
		src.store(set, sum)
	case !isURL(location):
		return nil, fmt.Errorf("loading jwks %s: %w", redactLocation(location), err)
	default:
		logger.Warn("jwks not loaded yet; fetching it again in the background, tokens that need it get 503 meanwhile",
			zap.String("jwks", redactLocation(location)), zap.Error(err))
	}
	// The refresher lives as long as the pool entry, not one config: the
	// last Cleanup's Destruct cancels it.
	ctx, cancel := context.WithCancel(context.Background())
	src.ctx, src.cancel = ctx, cancel
	go src.refreshLoop(ctx)
	return src, nil
}

// Destruct stops the background refresher; called by the pool when the
// last handler using this source is cleaned up.
func (s *jwksSource) Destruct() error {
	s.cancel()
	<-s.done
	return nil
}

func (s *jwksSource) refreshLoop(ctx context.Context) {
	defer close(s.done)
	retry := jwksFirstRetry
	for s.keys() == nil {
		if !sleepCtx(ctx, retry) {
			return
		}
		if s.reload(ctx, "not loaded yet") {
			s.logger.Info("jwks loaded", zap.String("jwks", redactLocation(s.location)))
		}
		retry = min(retry*2, jwksMaxRetry, s.refresh)
	}
	ticker := time.NewTicker(s.refresh)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			s.reload(ctx, "scheduled")
		}
	}
}

// sleepCtx waits d, or less if ctx ends (then it reports false).
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// reload fetches the set; on failure the last good set stays in use.
func (s *jwksSource) reload(ctx context.Context, why string) bool {
	set, sum, err := s.fetch(ctx)
	if err != nil {
		s.logger.Warn("jwks refresh failed; keeping last good key set",
			zap.String("jwks", redactLocation(s.location)), zap.String("trigger", why), zap.Error(err))
		return false
	}
	s.store(set, sum)
	s.logger.Debug("jwks refreshed", zap.String("jwks", redactLocation(s.location)),
		zap.String("trigger", why), zap.Int("keys", len(set.keys)))
	return true
}

// store publishes a fetched set, bumping the generation when it changed.
func (s *jwksSource) store(set *keySet, sum [32]byte) {
	s.sumMu.Lock()
	defer s.sumMu.Unlock()
	if sum != s.lastSum {
		s.lastSum = sum
		s.generation.Add(1)
	}
	s.current.Store(set)
}

// keys returns the current set, nil until the first fetch succeeded.
func (s *jwksSource) keys() *keySet { return s.current.Load() }

// refetchForKid is called when a token names a kid we do not know: it
// refetches at most once per jwksMissInterval and returns the set to use.
func (s *jwksSource) refetchForKid(kid string) *keySet {
	s.missMu.Lock()
	defer s.missMu.Unlock()
	if cur := s.current.Load(); cur.hasKid(kid) {
		return cur // a concurrent request already fetched it
	}
	if !s.lastMissTime.IsZero() && time.Since(s.lastMissTime) < jwksMissInterval {
		return s.current.Load()
	}
	s.lastMissTime = time.Now()
	// Bound to the source's life: Destruct cancels a fetch in flight.
	ctx, cancel := context.WithTimeout(s.ctx, jwksFetchTimeout)
	defer cancel()
	s.reload(ctx, "unknown kid")
	return s.current.Load()
}

func (s *jwksSource) fetch(ctx context.Context) (*keySet, [32]byte, error) {
	var data []byte
	var err error
	if isURL(s.location) {
		data, err = s.fetchURL(ctx)
	} else {
		data, err = os.ReadFile(s.location)
	}
	if err != nil {
		return nil, [32]byte{}, err
	}
	set, err := parseJWKS(data)
	return set, sha256.Sum256(data), err
}

func (s *jwksSource) fetchURL(ctx context.Context) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, jwksFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.location, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		// The error quotes the URL, whose query may carry a token.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP status %d", resp.StatusCode)
	}
	return io.ReadAll(io.LimitReader(resp.Body, jwksMaxBody))
}

// checkJWKSRedirect applies the https-or-loopback rule to every hop: a
// loopback or https location must not hand us keys fetched over plain
// http from anywhere else.
func checkJWKSRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	if err := checkJWKSLocation(req.URL.String()); err != nil {
		return fmt.Errorf("redirect refused: %w", err)
	}
	return nil
}

func isURL(location string) bool {
	return strings.HasPrefix(location, "http://") || strings.HasPrefix(location, "https://")
}

// checkJWKSLocation refuses key material over plain http, where anyone on
// the path could substitute keys; loopback is allowed for sidecars.
func checkJWKSLocation(location string) error {
	if location == "" {
		return errors.New("jwks location is empty")
	}
	if !strings.Contains(location, "://") {
		return nil // a file
	}
	u, err := url.Parse(location)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its text quotes the whole URL
		}
		return fmt.Errorf("jwks URL %q: %w", redactLocation(location), err)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if isLoopbackHost(u.Hostname()) {
			return nil
		}
		return fmt.Errorf("jwks URL %s uses plain http; use https (http is allowed on loopback only)", redactLocation(location))
	}
	return fmt.Errorf("jwks URL %s: unsupported scheme %q", redactLocation(location), u.Scheme)
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// redactLocation drops userinfo and query from a URL for logs.
func redactLocation(location string) string {
	u, err := url.Parse(location)
	if err != nil {
		return "(unparsable URL)" // it might still hold credentials
	}
	if u.Scheme == "" {
		return location // a file path
	}
	u.User = nil
	u.RawQuery = ""
	return u.String()
}

// jsonWebKey holds the JWK members we use (RFC 7517, 7518, 8037).
type jsonWebKey struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// parseJWKS turns a JWK Set into a key set. Keys for encryption or of
// unknown types are skipped; a set without one usable key is an error, so
// a broken publication never replaces a good set.
func parseJWKS(data []byte) (*keySet, error) {
	var doc struct {
		Keys []jsonWebKey `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("decoding JWK Set: %w", err)
	}
	set := &keySet{}
	var errs []error
	for _, k := range doc.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		vk, err := k.verificationKey()
		if err != nil {
			errs = append(errs, fmt.Errorf("kid %q: %w", k.Kid, err))
			continue
		}
		set.keys = append(set.keys, vk)
	}
	if len(set.keys) == 0 {
		return nil, fmt.Errorf("JWK Set has no usable signing key: %w", errors.Join(errs...))
	}
	return set, nil
}

func (k jsonWebKey) verificationKey() (verificationKey, error) {
	pub, err := k.publicKey()
	if err != nil {
		return verificationKey{}, err
	}
	vk, err := newVerificationKey(k.Kid, pub)
	if err != nil {
		return verificationKey{}, err
	}
	if k.Alg != "" {
		// The publisher pinned the algorithm: honour it, and only if it
		// fits the key.
		if !slices.Contains(vk.algs, k.Alg) {
			return verificationKey{}, fmt.Errorf("alg %s does not fit a %s key", k.Alg, k.Kty)
		}
		vk.algs = []string{k.Alg}
	}
	return vk, nil
}

func (k jsonWebKey) publicKey() (crypto.PublicKey, error) {
	switch k.Kty {
	case "RSA":
		n, err1 := b64Int(k.N)
		e, err2 := b64Int(k.E)
		if err := errors.Join(err1, err2); err != nil {
			return nil, err
		}
		if !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 {
			return nil, errors.New("bad RSA exponent")
		}
		return &rsa.PublicKey{N: n, E: int(e.Int64())}, nil
	case "EC":
		var curve elliptic.Curve
		switch k.Crv {
		case "P-256":
			curve = elliptic.P256()
		case "P-384":
			curve = elliptic.P384()
		default:
			return nil, fmt.Errorf("unsupported curve %q", k.Crv)
		}
		size := (curve.Params().BitSize + 7) / 8
		x, err1 := base64.RawURLEncoding.DecodeString(k.X)
		y, err2 := base64.RawURLEncoding.DecodeString(k.Y)
		if err := errors.Join(err1, err2); err != nil {
			return nil, err
		}
		if len(x) != size || len(y) != size {
			return nil, errors.New("bad EC coordinate length")
		}
		// ParseUncompressedPublicKey checks the point is on the curve.
		point := append(append([]byte{4}, x...), y...)
		return ecdsa.ParseUncompressedPublicKey(curve, point)
	case "OKP":
		if k.Crv != "Ed25519" {
			return nil, fmt.Errorf("unsupported OKP curve %q", k.Crv)
		}
		x, err := base64.RawURLEncoding.DecodeString(k.X)
		if err != nil {
			return nil, err
		}
		if len(x) != ed25519.PublicKeySize {
			return nil, errors.New("bad Ed25519 key length")
		}
		return ed25519.PublicKey(x), nil
	}
	return nil, fmt.Errorf("unsupported key type %q", k.Kty)
}

func b64Int(s string) (*big.Int, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, err
	}
	if len(b) == 0 {
		return nil, errors.New("empty integer")
	}
	return new(big.Int).SetBytes(b), nil
}
