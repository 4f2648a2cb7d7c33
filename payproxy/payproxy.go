// Package payproxy is the Caddy module http.handlers.payproxy: a payment
// route that creates exactly one QR-code trade per order with Alipay
// (face-to-face) or WeChat Pay (Native), whatever the number of concurrent
// or retried requests and Caddy instances, and runs the rest of the
// trade's life: query, close, refunds, verified provider notifications,
// polling of unpaid trades, and signed webhooks to the backend.
package payproxy

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/go-redsync/redsync/v4"
	redsyncredis "github.com/go-redsync/redsync/v4/redis"
	goredsync "github.com/go-redsync/redsync/v4/redis/goredis/v9"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/tollgate/tollgate/internal/redisclient"
	"github.com/tollgate/tollgate/internal/resolve"
	"github.com/tollgate/tollgate/payproxy/provider"
	"github.com/tollgate/tollgate/payproxy/reconcile"
)

func init() {
	caddy.RegisterModule(PayProxy{})
}

// The defaults of the optional settings, applied by applyDefaults and
// named in the fields' comments (CONTRIBUTING.md).
const (
	defaultPrefix          = "/pay"
	defaultProviderTimeout = 10 * time.Second
	defaultLockTTL         = 10 * time.Second
	defaultPollInterval    = 5 * time.Second
	defaultPayTimeout      = 2 * time.Hour
	// defaultRetention: see retention.go and README's "Retention".
	defaultRetention       = 30 * 24 * time.Hour
	defaultDuplicateRefund = duplicateRefundAuto
	defaultMaxAttempts     = 10
	defaultBackoff         = time.Second
	defaultMaxBackoff      = 10 * time.Minute
)

// Lists of defaults: cloned when applied, never changed.
var (
	defaultOperations  = []string{opCreate, opStatus, opNotify}
	defaultOrderClaims = []string{"roles"}
)

// minWebhookSecret is the shortest webhook secret accepted: the size of
// HMAC-SHA256's output, as authjwt's hmac_secret.
const minWebhookSecret = 32

// apiv3KeySize is the size of WeChat Pay's APIv3 key (AES-256-GCM).
const apiv3KeySize = 32

// Provider is the interface each channel's adapter implements (defined in
// payproxy/provider so that the adapters need not import this package).
type Provider = provider.Provider

// PayProxy serves the payment API under Prefix and the providers'
// notifications, keeps every trade in Redis, polls unpaid trades, and
// forwards trade and refund events to Webhook.
//
// Placeholders set on every payment request: {http.payproxy.order_no},
// {http.payproxy.trade_no}, {http.payproxy.lock} (held, none, timeout,
// lost).
type PayProxy struct {
	// Redis URL (redis://, rediss://, redis+cluster://, redis+sentinel://)
	// shared by every instance of the payment route; one client per
	// address, shared across config reloads. `{env.*}` and `{file.*}` are
	// resolved when the config loads; a password in the URL must be
	// percent-encoded. Configure Redis with appendonly yes and
	// maxmemory-policy noeviction. Required.
	Redis string `json:"redis,omitempty"`
	// The Redis password, given apart from the URL: taken as it is (no
	// percent-encoding), `{env.*}` and `{file.*}` resolved when the config
	// loads. Default: the URL's.
	RedisPassword string `json:"redis_password,omitempty"`
	// Redis URLs of independent servers that hold the per-order lock
	// instead of Redis: the lock is granted by a majority of them
	// (redsync's quorum), so it survives the loss of a minority. Use an odd
	// number, at least 3; every instance must list the same servers.
	// Trades and events stay on Redis. `{env.*}` and `{file.*}` are
	// resolved when the config loads. Default: the lock is on Redis.
	LockRedis []string `json:"lock_redis,omitempty"`
	// The password of every lock_redis server, given apart from the URLs
	// (as RedisPassword). Default: each URL's.
	LockRedisPassword string `json:"lock_redis_password,omitempty"`
	// Prefix of the endpoints. Default: /pay
	Prefix string `json:"prefix,omitempty"`
	// Alipay channel; omitted = not offered.
	Alipay *AlipayConfig `json:"alipay,omitempty"`
	// WeChat Pay channel; omitted = not offered.
	Wechat *WechatConfig `json:"wechat,omitempty"`
	// URL template of the backend's order, e.g.
	// http://orders.internal/orders/{order_no}. When set, the amount and the
	// subject come from the backend's JSON ({"amount_fen", "subject"}) and a
	// client can never choose what it pays. Without it the request's amount
	// is trusted: put the route behind a service role or an internal listener.
	// `{env.*}` and `{file.*}` are resolved when the config loads (the URL
	// may carry credentials); the result must contain {order_no}.
	// Default: none.
	OrderSource string `json:"order_source,omitempty"`
	// Claims of the caller's token sent to order_source, each as
	// X-User-<Claim> from authjwt's {http.auth.user.<claim>}, besides
	// X-User-Id ({http.auth.user.id}); letters, digits, _ and -.
	// Default: roles
	OrderClaims []string `json:"order_claims,omitempty"`
	// The endpoints this route serves, from create (POST {prefix}/trades),
	// status (GET {prefix}/trades/{order_no}), close (POST
	// {prefix}/trades/{order_no}/close), refund (POST {prefix}/refunds and
	// GET {prefix}/refunds/{refund_no}) and notify (POST
	// {prefix}/notify/{channel}). Another operation's endpoint is answered
	// 404 not_found. Serve close and refund only on a route that only the
	// backend reaches. Default: create status notify
	Operations []string `json:"operations,omitempty"`
	// Deadline of one provider call. Default: 10s
	ProviderTimeout caddy.Duration `json:"provider_timeout,omitempty"`
	// Expiry of the per-order lock; renewed every lock_ttl/3 while a
	// provider call runs. Default: 10s
	LockTTL caddy.Duration `json:"lock_ttl,omitempty"`
	// How often unpaid trades and processing refunds are checked with the
	// provider. Default: 5s
	PollInterval caddy.Duration `json:"poll_interval,omitempty"`
	// How long a QR code can be paid; unpaid trades are closed after it,
	// here and at the provider. Default: 2h
	PayTimeout caddy.Duration `json:"pay_timeout,omitempty"`
	// How long after the provider issued a QR code payproxy hands it out.
	// Both providers let a QR code be scanned for 2 hours whatever the
	// trade's timeout; past qr_lifetime a create renews the code (same
	// trade when the provider issues a fresh one, else a new trade after
	// a confirmed close) and the status shows none. At most 2h; the
	// margin under it is the time a buyer has to scan the last code
	// handed out. Default: 1h50m
	QRLifetime caddy.Duration `json:"qr_lifetime,omitempty"`
	// Delays between a processing refund's checks with the provider (its
	// query; a refund the provider never received is sent again with the
	// same number), counted from when it was sent; the last one repeats.
	// Every check moves one step on, answered or not, and a provider's
	// Retry-After is honoured up to the last step. Default: 10s 1m 5m 10m
	// 20m 30m (Alipay: not sooner than 10 s after the refund; WeChat: 1, 5,
	// 10, 20, 30 minutes)
	RefundChecks []caddy.Duration `json:"refund_checks,omitempty"`
	// How long an order whose state is final (paid with no refund in
	// progress, closed, fully refunded) stays in Redis after its last
	// change. Past it the poller sends trade.archived (everything the
	// backend keeps: order, trade, channel, paid and refunded amounts,
	// refunds) and removes the order's records; a refund of it then
	// answers 409 order_archived. Until then a settled order keeps only
	// a compact record. Default: 720h (30 days)
	Retention caddy.Duration `json:"retention,omitempty"`
	// Where trade and refund events are POSTed. Default: none (no events).
	Webhook *WebhookConfig `json:"webhook,omitempty"`
	// What happens to a duplicate payment (a second trade of an already
	// paid order paid too, e.g. a QR code whose close did not take
	// effect): "auto" refunds it in full (refund_no DUP_<trade_no>);
	// "off" only records and reports it (trade.duplicate_paid), for a
	// person to refund. Default: auto
	DuplicateRefund string `json:"duplicate_refund,omitempty"`
	// Daily reconciliation of the providers' bills. Default: none (off;
	// runs on demand through the admin API still work).
	Reconcile *ReconcileConfig `json:"reconcile,omitempty"`

	prefix        string          // Prefix, one leading slash, none trailing
	served        map[string]bool // Operations
	redis         redisclient.Config
	lockRedis     []redisclient.Config
	orderSource   string // OrderSource, resolved
	webhookURL    string // Webhook.URL, resolved
	webhookSecret string // Webhook.Secret, resolved
	logger        *zap.Logger
	rdb           redis.UniversalClient
	store         *tradeStore
	locks         *redsync.Redsync
	lockServers   int // how many servers the lock spans
	lockClients   []redis.UniversalClient
	lockHeld      []redisclient.Config // lock servers whose clients are held
	providers     map[string]Provider
	metrics       *payMetrics
	mux           *http.ServeMux // the payment API under Prefix (routes)
	notifyPaths   caddyhttp.MatchPath
	orderClient   *http.Client
	webhookClient *http.Client
	wake          chan struct{}
	cancel        context.CancelFunc
	wg            *sync.WaitGroup
	redisHeld     bool
	reconciler    *reconcile.Reconciler
}

// AlipayConfig configures the Alipay channel (public-key mode).
type AlipayConfig struct {
	// The app's id on the Alipay open platform. Required.
	AppID string `json:"app_id,omitempty"`
	// PEM file of the app's RSA private key; a file without one is
	// refused. `{env.*}` and `{file.*}` are resolved when the config loads.
	// Required.
	PrivateKey string `json:"private_key,omitempty"`
	// PEM file of Alipay's RSA public key; a file holding a private key is
	// refused. `{env.*}` and `{file.*}` are resolved when the config loads.
	// Required.
	AlipayPublicKey string `json:"alipay_public_key,omitempty"`
	// Gateway URL; `{env.*}` and `{file.*}` are resolved when the config
	// loads. Default: Alipay's production gateway.
	Gateway string `json:"gateway,omitempty"`
	// Public URL of {prefix}/notify/alipay, given to Alipay. Default: none.
	NotifyURL string `json:"notify_url,omitempty"`
	// Shortest time between two refunds of one trade reaching Alipay
	// ("同一笔交易的退款至少间隔3s后发起"), counted from the previous one's
	// answer: a refund asked sooner is accepted (PROCESSING) and sent once
	// it has passed. Default: 3s
	RefundGap caddy.Duration `json:"refund_gap,omitempty"`
}

// WechatConfig configures the WeChat Pay channel (API v3, public-key mode).
type WechatConfig struct {
	// Merchant id (mchid). Required.
	MchID string `json:"mch_id,omitempty"`
	// App id bound to the merchant. Required.
	AppID string `json:"app_id,omitempty"`
	// Serial number of the merchant API certificate. Required.
	SerialNo string `json:"serial_no,omitempty"`
	// PEM file of the merchant API RSA private key (apiclient_key.pem).
	// `{env.*}` and `{file.*}` are resolved when the config loads. Required.
	PrivateKey string `json:"private_key,omitempty"`
	// APIv3 key: exactly 32 bytes, checked when the config loads (after
	// placeholders). A secret: give it as {env.X} or {file.X}. Required.
	APIV3Key string `json:"apiv3_key,omitempty"`
	// PEM file of WeChat Pay's platform RSA public key (pub_key.pem); a file
	// holding a private key is refused. `{env.*}` and `{file.*}` are
	// resolved when the config loads. Required.
	PlatformPublicKey string `json:"platform_public_key,omitempty"`
	// Id of that key (PUB_KEY_ID_…). Required.
	PlatformPublicKeyID string `json:"platform_public_key_id,omitempty"`
	// API base URL; `{env.*}` and `{file.*}` are resolved when the config
	// loads. Default: https://api.mch.weixin.qq.com
	BaseURL string `json:"base_url,omitempty"`
	// Public URL of {prefix}/notify/wechat, given to WeChat Pay.
	// Default: none.
	NotifyURL string `json:"notify_url,omitempty"`
}

// WebhookConfig configures event delivery to the backend.
type WebhookConfig struct {
	// Where events are POSTed; `{env.*}` and `{file.*}` are resolved when
	// the config loads (the URL may carry credentials). Required.
	URL string `json:"url,omitempty"`
	// HMAC-SHA256 key of X-Tollgate-Signature: at least 32 bytes, checked
	// when the config loads (after placeholders). A secret: give it as
	// {env.X} or {file.X}. Required.
	Secret string `json:"secret,omitempty"`
	// Attempts before an event goes to the dead-letter list. Default: 10
	MaxAttempts int `json:"max_attempts,omitempty"`
	// Delay before the second attempt; doubled after each failure. Default: 1s
	Backoff caddy.Duration `json:"backoff,omitempty"`
	// Longest delay between attempts. Default: 10m
	MaxBackoff caddy.Duration `json:"max_backoff,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (PayProxy) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.payproxy",
		New: func() caddy.Module { return new(PayProxy) },
	}
}

// Provision applies the defaults, refuses a config Validate refuses
// before it takes anything, resolves the placeholders of every secret, key
// path and URL, reads the key files and builds the provider clients, then
// takes the shared Redis clients (asking Redis once, briefly, whether it
// takes the credentials) and starts the poller and the webhook sender.
func (p *PayProxy) Provision(ctx caddy.Context) error {
	p.logger = ctx.Logger()
	p.mux = p.routes()
	p.applyDefaults()
	if err := p.Validate(); err != nil {
		return err
	}
	p.prefix = "/" + strings.Trim(p.Prefix, "/")
	// The paths authjwt's allow would let through as the notifications':
	// Caddy's path matcher, which ignores case and merges slashes.
	p.notifyPaths = caddyhttp.MatchPath{p.prefix + "/notify", p.prefix + "/notify/*"}
	if err := p.notifyPaths.Provision(ctx); err != nil {
		return err
	}
	if r := time.Duration(p.Retention); r < 24*time.Hour {
		// Accepted (tests and load runs use seconds), but past twice the
		// retention payproxy forgets that an order was paid: only the
		// order service then stands between a stale checkout page and a
		// second charge.
		p.logger.Warn("retention under a day: an order is forgotten two retentions after its last change; order_source must refuse paid orders",
			zap.Duration("retention", r))
	}
	p.served = map[string]bool{}
	for _, op := range p.Operations {
		p.served[op] = true
	}
	if err := p.resolveSettings(); err != nil {
		return err
	}
	if err := p.buildProviders(); err != nil {
		return err
	}
	m, err := newPayMetrics(ctx.GetMetricsRegistry())
	if err != nil {
		return err
	}
	p.metrics = m
	p.orderClient = &http.Client{Timeout: time.Duration(p.ProviderTimeout)}
	if p.Webhook != nil {
		p.webhookClient = &http.Client{Timeout: deliveryLimit}
	}
	if err := p.provisionRedis(); err != nil {
		return err
	}
	if err := p.provisionLocks(); err != nil {
		return err
	}
	p.provisionReconcile()
	p.wake = make(chan struct{}, 1)
	p.start()
	return nil
}

// applyDefaults fills every unset optional setting with its default.
func (p *PayProxy) applyDefaults() {
	if p.Prefix == "" {
		p.Prefix = defaultPrefix
	}
	if len(p.Operations) == 0 {
		p.Operations = slices.Clone(defaultOperations)
	}
	if p.OrderClaims == nil {
		p.OrderClaims = slices.Clone(defaultOrderClaims)
	}
	if p.DuplicateRefund == "" {
		p.DuplicateRefund = defaultDuplicateRefund
	}
	setDefault(&p.ProviderTimeout, defaultProviderTimeout)
	setDefault(&p.LockTTL, defaultLockTTL)
	setDefault(&p.PollInterval, defaultPollInterval)
	setDefault(&p.PayTimeout, defaultPayTimeout)
	setDefault(&p.Retention, defaultRetention)
	setDefault(&p.QRLifetime, defaultQRLifetime)
	if len(p.RefundChecks) == 0 {
		for _, d := range defaultRefundChecks {
			p.RefundChecks = append(p.RefundChecks, caddy.Duration(d))
		}
	}
	if p.Alipay != nil {
		setDefault(&p.Alipay.RefundGap, defaultAlipayRefundGap)
	}
	if w := p.Webhook; w != nil {
		if w.MaxAttempts == 0 {
			w.MaxAttempts = defaultMaxAttempts
		}
		setDefault(&w.Backoff, defaultBackoff)
		setDefault(&w.MaxBackoff, defaultMaxBackoff)
	}
	p.Reconcile.applyDefaults()
}

// setDefault sets an unset (zero) duration; a negative one stays for
// Validate to refuse.
func setDefault(d *caddy.Duration, v time.Duration) {
	if *d == 0 {
		*d = caddy.Duration(v)
	}
}

// resolveSettings resolves {env.*} and {file.*} in the Redis settings,
// order_source and the webhook, and checks each value where it is
// resolved (the rule holds for what the placeholder gave, not for the
// placeholder).
func (p *PayProxy) resolveSettings() error {
	var err error
	if p.redis, err = redisclient.Resolve("redis", p.Redis, p.RedisPassword); err != nil {
		return err
	}
	if err := p.resolveLockRedis(); err != nil {
		return err
	}
	if p.OrderSource != "" {
		if p.orderSource, err = resolve.Value(p.OrderSource); err != nil {
			return fmt.Errorf("order_source: %w", err)
		}
		if !strings.Contains(p.orderSource, "{order_no}") {
			return fmt.Errorf("order_source %s%s: must contain {order_no}", redactURL(p.orderSource), resolve.Origin(p.OrderSource))
		}
	}
	if w := p.Webhook; w != nil {
		if p.webhookURL, err = resolve.Value(w.URL); err != nil {
			return fmt.Errorf("webhook: %w", err)
		}
		if p.webhookSecret, err = resolve.Value(w.Secret); err != nil {
			return fmt.Errorf("webhook secret: %w", err)
		}
		if n := len(p.webhookSecret); n < minWebhookSecret {
			return fmt.Errorf("webhook secret: %d bytes; at least %d (e.g. openssl rand -hex 32)", n, minWebhookSecret)
		}
	}
	return nil
}

// resolveLockRedis resolves the lock servers and refuses a list whose
// quorum would not survive the failure of one server, or would not be a
// quorum at all.
func (p *PayProxy) resolveLockRedis() error {
	if len(p.LockRedis) == 0 {
		return nil
	}
	if n := len(p.LockRedis); n < 3 {
		return fmt.Errorf("lock_redis needs 3 or more independent servers (3, 5, …), got %d: "+
			"the lock needs a majority, and with %d servers one failure leaves none", n, n)
	}
	p.lockRedis = nil
	seen := map[string]bool{}
	for _, raw := range p.LockRedis {
		cfg, err := redisclient.Resolve("lock_redis", raw, p.LockRedisPassword)
		if err != nil {
			return err
		}
		if seen[cfg.Key()] {
			return fmt.Errorf("lock_redis lists %s twice: each server must be a separate one", cfg)
		}
		seen[cfg.Key()] = true
		p.lockRedis = append(p.lockRedis, cfg)
	}
	return nil
}

// provisionRedis takes the shared client of the trade store and asks Redis
// once, briefly, whether it takes the credentials: a wrong or empty
// password fails the load instead of answering 503 to every payment; a
// Redis that does not answer yet only gets a warning.
func (p *PayProxy) provisionRedis() error {
	rdb, err := p.redis.Acquire()
	if err != nil {
		return fmt.Errorf("redis %s: %w", p.redis, err)
	}
	p.rdb, p.redisHeld = rdb, true
	if err := p.redis.CheckAtLoad(rdb, p.logger); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	durability, err := p.redis.Durability()
	if err != nil {
		return fmt.Errorf("redis %s: %w", p.redis, err)
	}
	p.store = &tradeStore{rdb: rdb, durability: durability}
	return nil
}

// provisionLocks builds the lock on the lock_redis servers, or on Redis
// when there are none.
func (p *PayProxy) provisionLocks() error {
	if len(p.lockRedis) == 0 {
		p.locks, p.lockServers = redsync.New(goredsync.NewPool(p.rdb)), 1
		p.lockClients = []redis.UniversalClient{p.rdb}
		return nil
	}
	pools := make([]redsyncredis.Pool, 0, len(p.lockRedis))
	for _, cfg := range p.lockRedis {
		c, err := cfg.Acquire()
		if err != nil {
			return fmt.Errorf("lock_redis %s: %w", cfg, err)
		}
		p.lockHeld = append(p.lockHeld, cfg)
		if err := cfg.CheckAtLoad(c, p.logger); err != nil {
			return fmt.Errorf("lock_redis: %w", err)
		}
		p.lockClients = append(p.lockClients, c)
		pools = append(pools, goredsync.NewPool(c))
	}
	p.locks, p.lockServers = redsync.New(pools...), len(pools)
	return nil
}

// start runs the background work of this instance until Cleanup.
func (p *PayProxy) start() {
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.wg = new(sync.WaitGroup)
	registerInstance(p)
	p.wg.Add(1)
	go func() { defer p.wg.Done(); p.runPoller(ctx) }()
	if p.Webhook != nil {
		p.wg.Add(1)
		go func() { defer p.wg.Done(); p.runSender(ctx) }()
	}
	if p.Reconcile != nil {
		p.wg.Add(1)
		go func() { defer p.wg.Done(); p.runReconciler(ctx) }()
	}
}

// Validate checks the settings as written, for Caddyfile and JSON configs
// alike; it only reads. The values that may hold placeholders (Redis URLs
// and passwords, key paths, secrets, order_source, the webhook) are
// checked where Provision resolves them.
func (p *PayProxy) Validate() error {
	switch {
	case p.Redis == "":
		return errors.New("redis <url> is required")
	case p.Alipay == nil && p.Wechat == nil:
		return errors.New("configure at least one channel (alipay or wechat)")
	}
	if err := p.Alipay.validate(); err != nil {
		return err
	}
	if err := p.Wechat.validate(); err != nil {
		return err
	}
	if err := p.Webhook.validate(); err != nil {
		return err
	}
	if err := p.validateValues(); err != nil {
		return err
	}
	if err := validatePositive(map[string]caddy.Duration{"provider_timeout": p.ProviderTimeout, "lock_ttl": p.LockTTL,
		"poll_interval": p.PollInterval, "pay_timeout": p.PayTimeout, "retention": p.Retention}); err != nil {
		return err
	}
	if err := p.Reconcile.validate(); err != nil {
		return err
	}
	return p.validateRetention()
}

// validateRetention refuses a retention that would archive orders whose
// day reconciliation still re-checks: their bill lines would find no
// record and be reported as differences.
func (p *PayProxy) validateRetention() error {
	if p.Reconcile == nil || p.Retention <= 0 {
		return nil
	}
	if least := time.Duration(p.Reconcile.Days+2) * 24 * time.Hour; time.Duration(p.Retention) < least {
		return fmt.Errorf("retention %s: must be at least %s with reconcile days %d (the re-checked days, the bill's day and the day it is run)",
			time.Duration(p.Retention), least, p.Reconcile.Days)
	}
	return nil
}

// validateValues checks the settings that take one of a set of words.
func (p *PayProxy) validateValues() error {
	for _, op := range p.Operations {
		if !slices.Contains(allOperations, op) {
			return fmt.Errorf("operations %s: unknown operation (%s)", op, strings.Join(allOperations, " "))
		}
	}
	for _, c := range p.OrderClaims {
		if !claimNameRE.MatchString(c) {
			return fmt.Errorf("order_claims %s: not a claim name (letters, digits, _ and -)", c)
		}
	}
	if time.Duration(p.PayTimeout) > maxPayTimeout {
		return fmt.Errorf("pay_timeout %s: must be at most %s (Alipay's longest timeout_express)", time.Duration(p.PayTimeout), maxPayTimeout)
	}
	if p.QRLifetime < 0 || time.Duration(p.QRLifetime) > qrScanWindow {
		return fmt.Errorf("qr_lifetime %s: must be positive and at most the providers' %s scan window", time.Duration(p.QRLifetime), qrScanWindow)
	}
	for _, d := range p.RefundChecks {
		if d <= 0 {
			return fmt.Errorf("refund_checks: %s is not a positive duration", time.Duration(d))
		}
	}
	if p.Alipay != nil && p.Alipay.RefundGap < 0 {
		return fmt.Errorf("alipay refund_gap %s: must be positive", time.Duration(p.Alipay.RefundGap))
	}
	switch p.DuplicateRefund {
	case "", duplicateRefundAuto, duplicateRefundOff:
		return nil
	}
	return fmt.Errorf("duplicate_refund %s: must be auto or off", p.DuplicateRefund)
}

// validatePositive refuses a negative duration (zero is unset: the
// default). Names are checked in order, so the error is always the same.
func validatePositive(durations map[string]caddy.Duration) error {
	for _, name := range slices.Sorted(maps.Keys(durations)) {
		if d := durations[name]; d < 0 {
			return fmt.Errorf("%s %s: must be positive", name, time.Duration(d))
		}
	}
	return nil
}

func (c *AlipayConfig) validate() error {
	if c != nil && (c.AppID == "" || c.PrivateKey == "" || c.AlipayPublicKey == "") {
		return errors.New("alipay: app_id, private_key and alipay_public_key are required")
	}
	return nil
}

func (c *WechatConfig) validate() error {
	if c != nil && (c.MchID == "" || c.AppID == "" || c.SerialNo == "" || c.PrivateKey == "" || c.APIV3Key == "" ||
		c.PlatformPublicKey == "" || c.PlatformPublicKeyID == "") {
		return errors.New("wechat: mch_id, app_id, serial_no, private_key, apiv3_key, platform_public_key and " +
			"platform_public_key_id are required")
	}
	return nil
}

func (c *WebhookConfig) validate() error {
	switch {
	case c == nil:
		return nil
	case c.URL == "" || c.Secret == "":
		return errors.New("webhook: url and secret are required")
	case c.MaxAttempts < 0:
		return fmt.Errorf("webhook max_attempts %d: must be positive", c.MaxAttempts)
	}
	return validatePositive(map[string]caddy.Duration{"webhook backoff": c.Backoff, "webhook max_backoff": c.MaxBackoff})
}

// Operations a route can serve.
const (
	opCreate = "create"
	opStatus = "status"
	opClose  = "close"
	opRefund = "refund"
	opNotify = "notify"
)

var (
	allOperations = []string{opCreate, opStatus, opClose, opRefund, opNotify}
	claimNameRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]*$`)
)

// serves reports whether this route serves op.
func (p *PayProxy) serves(op string) bool { return p.served[op] }

// duplicate_refund values.
const (
	duplicateRefundAuto = "auto"
	duplicateRefundOff  = "off"
)

// Cleanup stops the background goroutines and releases the Redis clients.
// It is safe after a failed Provision.
func (p *PayProxy) Cleanup() error {
	if p.cancel != nil {
		p.cancel()
		p.wg.Wait()
		unregisterInstance(p)
	}
	var errs []error
	for _, cfg := range p.lockHeld {
		errs = append(errs, cfg.Release())
	}
	p.lockHeld = nil
	if p.redisHeld {
		p.redisHeld = false
		errs = append(errs, p.redis.Release())
	}
	return errors.Join(errs...)
}

// ServeHTTP answers the payment endpoints under Prefix and passes every
// other request to next — but never one under {prefix}/notify/: the
// providers' notifications carry no token, so sites let that path through
// authentication, and whatever the next handler serves there would be open
// to anyone.
func (p *PayProxy) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if rest, ok := strings.CutPrefix(r.URL.Path, p.prefix+"/"); ok {
		api := routedRequest(r, rest)
		if _, pattern := p.mux.Handler(api); pattern != "" {
			p.mux.ServeHTTP(w, api)
			return nil
		}
	}
	// No endpoint's path. Under {prefix}/notify as Caddy's path matcher
	// sees it (any case, doubled slashes), it is answered here.
	if p.notifyPaths.Match(r) {
		writeError(w, http.StatusNotFound, "not_found", "no such notification endpoint")
		return nil
	}
	return next.ServeHTTP(w, r)
}

// Interface guards.
var (
	_ caddy.Provisioner           = (*PayProxy)(nil)
	_ caddy.Validator             = (*PayProxy)(nil)
	_ caddy.CleanerUpper          = (*PayProxy)(nil)
	_ caddyhttp.MiddlewareHandler = (*PayProxy)(nil)
)
