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
	"net/http"
	"os"
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
	"github.com/tollgate/tollgate/payproxy/alipay"
	"github.com/tollgate/tollgate/payproxy/provider"
	"github.com/tollgate/tollgate/payproxy/reconcile"
	"github.com/tollgate/tollgate/payproxy/wechat"
)

func init() {
	caddy.RegisterModule(PayProxy{})
}

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
	// Redis URL (redis:// or rediss://) shared by every instance of the
	// payment route. Required. Configure Redis with appendonly yes and
	// maxmemory-policy noeviction.
	Redis string `json:"redis,omitempty"`
	// Redis URLs of independent servers that hold the per-order lock
	// instead of Redis: the lock is granted by a majority of them
	// (redsync's quorum), so it survives the loss of a minority. Use an odd
	// number, at least 3; every instance must list the same servers.
	// Trades and events stay on Redis. Default: the lock is on Redis.
	LockRedis []string `json:"lock_redis,omitempty"`
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
	OrderSource string `json:"order_source,omitempty"`
	// Claims of the caller's token sent to order_source, each as
	// X-User-<Claim> from authjwt's {http.auth.user.<claim>}, besides
	// X-User-Id ({http.auth.user.id}). Default: roles
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
	// Where trade and refund events are POSTed; omitted = no events.
	Webhook *WebhookConfig `json:"webhook,omitempty"`
	// What happens to a duplicate payment (a second trade of an already
	// paid order paid too, e.g. a QR code whose close did not take
	// effect): "auto" refunds it in full (refund_no DUP_<trade_no>);
	// "off" only records and reports it (trade.duplicate_paid), for a
	// person to refund. Default: auto
	DuplicateRefund string `json:"duplicate_refund,omitempty"`
	// Daily reconciliation of the providers' bills; omitted = off (runs on
	// demand through the admin API still work).
	Reconcile *ReconcileConfig `json:"reconcile,omitempty"`

	served        map[string]bool
	logger        *zap.Logger
	rdb           redis.UniversalClient
	store         *tradeStore
	locks         *redsync.Redsync
	lockServers   int // how many servers the lock spans
	lockClients   []redis.UniversalClient
	lockHeld      []string // lock_redis URLs acquired from redisclient
	providers     map[string]Provider
	metrics       *payMetrics
	mux           *http.ServeMux // the payment API under Prefix (routes)
	orderClient   *http.Client
	webhookClient *http.Client
	webhookSecret string
	wake          chan struct{}
	cancel        context.CancelFunc
	wg            *sync.WaitGroup
	redisHeld     bool
	reconciler    *reconcile.Reconciler
}

// AlipayConfig configures the Alipay channel (public-key mode).
type AlipayConfig struct {
	// The app's id on the Alipay open platform.
	AppID string `json:"app_id,omitempty"`
	// PEM file of the app's private key.
	PrivateKey string `json:"private_key,omitempty"`
	// PEM file of Alipay's public key.
	AlipayPublicKey string `json:"alipay_public_key,omitempty"`
	// Gateway URL. Default: Alipay's production gateway.
	Gateway string `json:"gateway,omitempty"`
	// Public URL of {prefix}/notify/alipay, given to Alipay.
	NotifyURL string `json:"notify_url,omitempty"`
	// Shortest time between two refunds of one trade reaching Alipay
	// ("同一笔交易的退款至少间隔3s后发起"), counted from the previous one's
	// answer: a refund asked sooner is accepted (PROCESSING) and sent once
	// it has passed. Default: 3s
	RefundGap caddy.Duration `json:"refund_gap,omitempty"`
}

// WechatConfig configures the WeChat Pay channel (API v3, public-key mode).
type WechatConfig struct {
	// Merchant id (mchid).
	MchID string `json:"mch_id,omitempty"`
	// App id bound to the merchant.
	AppID string `json:"app_id,omitempty"`
	// Serial number of the merchant API certificate.
	SerialNo string `json:"serial_no,omitempty"`
	// PEM file of the merchant API private key.
	PrivateKey string `json:"private_key,omitempty"`
	// APIv3 key: exactly 32 bytes. Use {env.X} or {file.X}.
	APIv3Key string `json:"apiv3_key,omitempty"`
	// PEM file of WeChat Pay's platform public key.
	PlatformPublicKey string `json:"platform_public_key,omitempty"`
	// Id of that key (PUB_KEY_ID_…).
	PlatformPublicKeyID string `json:"platform_public_key_id,omitempty"`
	// API base URL. Default: https://api.mch.weixin.qq.com
	BaseURL string `json:"base_url,omitempty"`
	// Public URL of {prefix}/notify/wechat, given to WeChat Pay.
	NotifyURL string `json:"notify_url,omitempty"`
}

// WebhookConfig configures event delivery to the backend.
type WebhookConfig struct {
	// Where events are POSTed.
	URL string `json:"url,omitempty"`
	// HMAC-SHA256 secret of X-Tollgate-Signature. Use {env.X} or {file.X}.
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

// Provision applies defaults, reads keys, builds the provider clients and
// starts the poller and the webhook sender. It never dials.
func (p *PayProxy) Provision(ctx caddy.Context) error {
	p.logger = ctx.Logger()
	p.mux = p.routes()
	p.applyDefaults()
	repl := caddy.NewReplacer()
	p.providers = map[string]Provider{}
	providerHTTP := &http.Client{Timeout: time.Duration(p.ProviderTimeout)}
	if p.Alipay != nil {
		a, err := p.Alipay.build(repl, providerHTTP)
		if err != nil {
			return err
		}
		p.providers["alipay"] = a
	}
	if p.Wechat != nil {
		w, err := p.Wechat.build(repl, providerHTTP)
		if err != nil {
			return err
		}
		p.providers["wechat"] = w
	}
	if p.Webhook != nil {
		p.webhookSecret = repl.ReplaceKnown(p.Webhook.Secret, "")
		p.webhookClient = &http.Client{Timeout: deliveryLimit}
	}
	p.orderClient = &http.Client{Timeout: time.Duration(p.ProviderTimeout)}
	m, err := newPayMetrics(ctx.GetMetricsRegistry())
	if err != nil {
		return err
	}
	p.metrics = m
	rdb, err := redisclient.Acquire(p.Redis)
	if err != nil {
		return fmt.Errorf("payproxy redis: %w", err)
	}
	p.rdb, p.redisHeld = rdb, true
	durability, err := redisclient.DurabilityOf(p.Redis)
	if err != nil {
		return fmt.Errorf("payproxy redis: %w", err)
	}
	p.store = &tradeStore{rdb: rdb, durability: durability}
	if err := p.provisionLocks(rdb); err != nil {
		return err
	}
	p.provisionReconcile()
	p.wake = make(chan struct{}, 1)
	p.start()
	return nil
}

// provisionLocks builds the lock on the lock_redis servers, or on Redis
// when there are none.
func (p *PayProxy) provisionLocks(rdb redis.UniversalClient) error {
	if len(p.LockRedis) == 0 {
		p.locks, p.lockServers = redsync.New(goredsync.NewPool(rdb)), 1
		p.lockClients = []redis.UniversalClient{rdb}
		return nil
	}
	if err := checkLockRedis(p.LockRedis); err != nil {
		return fmt.Errorf("payproxy: %w", err)
	}
	pools := make([]redsyncredis.Pool, 0, len(p.LockRedis))
	for _, url := range p.LockRedis {
		c, err := redisclient.Acquire(url)
		if err != nil {
			return fmt.Errorf("payproxy lock_redis: %w", err)
		}
		p.lockHeld = append(p.lockHeld, url)
		p.lockClients = append(p.lockClients, c)
		pools = append(pools, goredsync.NewPool(c))
	}
	p.locks, p.lockServers = redsync.New(pools...), len(pools)
	return nil
}

// checkLockRedis refuses lock server lists whose quorum would not survive
// the failure of one server, or would not be a quorum at all.
func checkLockRedis(urls []string) error {
	if n := len(urls); n < 3 {
		return fmt.Errorf("lock_redis needs 3 or more independent servers (3, 5, …), got %d: "+
			"the lock needs a majority, and with %d servers one failure leaves none", n, n)
	}
	seen := map[string]bool{}
	for _, url := range urls {
		if err := redisclient.Validate(url); err != nil {
			return fmt.Errorf("lock_redis: %w", err)
		}
		key := strings.TrimSpace(url)
		if seen[key] {
			return fmt.Errorf("lock_redis lists %q twice: each server must be a separate one", redisclient.Redact(key))
		}
		seen[key] = true
	}
	return nil
}

func (p *PayProxy) applyDefaults() {
	if p.Prefix == "" {
		p.Prefix = "/pay"
	}
	if len(p.Operations) == 0 {
		p.Operations = defaultOperations
	}
	p.served = map[string]bool{}
	for _, op := range p.Operations {
		p.served[op] = true
	}
	if p.OrderClaims == nil {
		p.OrderClaims = []string{"roles"}
	}
	p.Prefix = "/" + strings.Trim(p.Prefix, "/")
	setDefault(&p.ProviderTimeout, 10*time.Second)
	setDefault(&p.LockTTL, 10*time.Second)
	setDefault(&p.PollInterval, 5*time.Second)
	setDefault(&p.PayTimeout, 2*time.Hour)
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
		if w.MaxAttempts <= 0 {
			w.MaxAttempts = 10
		}
		setDefault(&w.Backoff, time.Second)
		setDefault(&w.MaxBackoff, 10*time.Minute)
	}
}

func setDefault(d *caddy.Duration, v time.Duration) {
	if *d <= 0 {
		*d = caddy.Duration(v)
	}
}

func (c *AlipayConfig) build(repl *caddy.Replacer, client *http.Client) (Provider, error) {
	priv, err := readKeyFile("alipay private_key", repl.ReplaceKnown(c.PrivateKey, ""))
	if err != nil {
		return nil, err
	}
	pub, err := readKeyFile("alipay alipay_public_key", repl.ReplaceKnown(c.AlipayPublicKey, ""))
	if err != nil {
		return nil, err
	}
	return alipay.New(alipay.Config{
		AppID: c.AppID, PrivateKeyPEM: priv, PublicKeyPEM: pub,
		Gateway: c.Gateway, NotifyURL: c.NotifyURL, HTTPClient: client,
	})
}

func (c *WechatConfig) build(repl *caddy.Replacer, client *http.Client) (Provider, error) {
	priv, err := readKeyFile("wechat private_key", repl.ReplaceKnown(c.PrivateKey, ""))
	if err != nil {
		return nil, err
	}
	pub, err := readKeyFile("wechat platform_public_key", repl.ReplaceKnown(c.PlatformPublicKey, ""))
	if err != nil {
		return nil, err
	}
	return wechat.New(wechat.Config{
		MchID: c.MchID, AppID: c.AppID, SerialNo: c.SerialNo, PrivateKeyPEM: priv,
		APIv3Key: repl.ReplaceKnown(c.APIv3Key, ""), PlatformPublicKeyPEM: pub,
		PlatformPublicKeyID: c.PlatformPublicKeyID, BaseURL: c.BaseURL, NotifyURL: c.NotifyURL,
		HTTPClient: client,
	})
}

func readKeyFile(what, path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading %s %s: %w", what, path, err)
	}
	return string(b), nil
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

// Validate checks the configuration; it only reads.
func (p *PayProxy) Validate() error {
	if p.Redis == "" {
		return errors.New("payproxy: redis is required")
	}
	if err := redisclient.Validate(p.Redis); err != nil {
		return fmt.Errorf("payproxy: %w", err)
	}
	if len(p.LockRedis) > 0 {
		if err := checkLockRedis(p.LockRedis); err != nil {
			return fmt.Errorf("payproxy: %w", err)
		}
	}
	if p.Alipay == nil && p.Wechat == nil {
		return errors.New("payproxy: configure at least one channel (alipay or wechat)")
	}
	if p.Webhook != nil && (p.Webhook.URL == "" || p.webhookSecret == "") {
		return errors.New("payproxy: webhook needs a URL and a secret")
	}
	if p.OrderSource != "" && !strings.Contains(p.OrderSource, "{order_no}") {
		return errors.New("payproxy: order_source must contain {order_no}")
	}
	for _, op := range p.Operations {
		if !slices.Contains(allOperations, op) {
			return fmt.Errorf("payproxy: unknown operation %q (operations are %s)", op, strings.Join(allOperations, " "))
		}
	}
	for _, c := range p.OrderClaims {
		if !claimNameRE.MatchString(c) {
			return fmt.Errorf("payproxy: order_claims: %q is not a claim name (letters, digits, _ and -)", c)
		}
	}
	if p.QRLifetime < 0 || time.Duration(p.QRLifetime) > qrScanWindow {
		return fmt.Errorf("payproxy: qr_lifetime %s: must be positive and at most the providers' %s scan window", time.Duration(p.QRLifetime), qrScanWindow)
	}
	for _, d := range p.RefundChecks {
		if d <= 0 {
			return fmt.Errorf("payproxy: refund_checks: %s is not a positive duration", time.Duration(d))
		}
	}
	switch p.DuplicateRefund {
	case "", duplicateRefundAuto, duplicateRefundOff:
	default:
		return fmt.Errorf("payproxy: duplicate_refund must be auto or off, got %q", p.DuplicateRefund)
	}
	return p.Reconcile.validate()
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
	allOperations     = []string{opCreate, opStatus, opClose, opRefund, opNotify}
	defaultOperations = []string{opCreate, opStatus, opNotify}
	claimNameRE       = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]*$`)
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
	for _, url := range p.lockHeld {
		errs = append(errs, redisclient.Release(url))
	}
	p.lockHeld = nil
	if p.redisHeld {
		p.redisHeld = false
		errs = append(errs, redisclient.Release(p.Redis))
	}
	return errors.Join(errs...)
}

// ServeHTTP answers the payment endpoints under Prefix and passes every
// other request to next.
func (p *PayProxy) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	rest, ok := strings.CutPrefix(r.URL.Path, p.Prefix+"/")
	if !ok {
		return next.ServeHTTP(w, r)
	}
	api := routedRequest(r, rest)
	if _, pattern := p.mux.Handler(api); pattern == "" {
		return next.ServeHTTP(w, r) // under the prefix, but no endpoint's path
	}
	p.mux.ServeHTTP(w, api)
	return nil
}

// Interface guards.
var (
	_ caddy.Provisioner           = (*PayProxy)(nil)
	_ caddy.Validator             = (*PayProxy)(nil)
	_ caddy.CleanerUpper          = (*PayProxy)(nil)
	_ caddyhttp.MiddlewareHandler = (*PayProxy)(nil)
)
