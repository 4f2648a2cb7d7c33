// Package paysim is a protocol-faithful simulator of the two payment
// providers tollgate's payproxy talks to: Alipay's open API gateway
// (face-to-face precreate, RSA2, public-key mode) and WeChat Pay API v3
// (Native, public-key mode). The unmodified official SDKs
// (smartwalle/alipay/v3, wechatpay-go) accept its signed responses and
// notifications. See /work/shared/PROVIDERS.md for the wire facts.
package paysim

import (
	"context"
	"errors"
	"net/http"
	"os"
	"sort"
	"sync"
	"time"
)

// Config configures a simulator.
type Config struct {
	// KeyDir holds the keys; "" keeps them in memory (the Keys' files are
	// then written to a temporary folder removed by Close).
	KeyDir string
	// NotifyRetry, when not nil, is one list of delays between notification
	// attempts for both providers (one attempt first, then one more after
	// each delay), in place of their own schedules. Tests use it for short,
	// fixed schedules.
	NotifyRetry []time.Duration
	// NotifyDivisor compresses each provider's own retry schedule (Alipay
	// 8 tries over ~25 h, WeChat 16 over ~24 h; see NotifySchedule) when
	// NotifyRetry is nil: every delay is divided by it; 1 is real time, 0
	// means DefaultNotifyDivisor.
	NotifyDivisor int
	// WechatRefundDelay is how long a WeChat refund stays PROCESSING.
	WechatRefundDelay time.Duration
	// AlipayRefundGap is the shortest time between two refunds of one
	// Alipay trade ("同一笔交易的退款至少间隔3s后发起"); a refund sooner is
	// refused with 40004 ACQ.SYSTEM_ERROR. 0 means DefaultAlipayRefundGap
	// (what Alipay does); a negative gap leaves the rule off.
	AlipayRefundGap time.Duration
	// PublicURL is the base URL written into paysim.env (optional).
	PublicURL string
}

// DefaultNotifyDivisor compresses the providers' retry schedules so that
// retries come within a second and a delivery gives up within about a
// minute and a half (Alipay: 0.24 s, 0.6 s, 0.6 s, 3.6 s …; WeChat: 15 ms,
// 15 ms, 30 ms, 180 ms …).
const DefaultNotifyDivisor = 1000

// DefaultAlipayRefundGap is Alipay's own rule: 3 s between two refunds of
// one trade.
const DefaultAlipayRefundGap = 3 * time.Second

// Provider names.
const (
	ProviderAlipay = "alipay"
	ProviderWechat = "wechat"
)

// Trade states. Alipay and WeChat states keep the provider's own words;
// StateQRIssued is Alipay's "precreated, not scanned": no trade exists yet
// on Alipay's side, so query answers ACQ.TRADE_NOT_EXIST.
const (
	StateQRIssued = "QR_ISSUED"

	AlipayWaitBuyerPay = "WAIT_BUYER_PAY"
	AlipayTradeSuccess = "TRADE_SUCCESS"
	AlipayTradeClosed  = "TRADE_CLOSED"
	AlipayTradeFinish  = "TRADE_FINISHED"

	WechatNotPay  = "NOTPAY"
	WechatSuccess = "SUCCESS"
	WechatRefund  = "REFUND"
	WechatClosed  = "CLOSED"
	// WechatPayError: the buyer's payment failed (e.g. the bank refused);
	// the order is not closed until the merchant closes it.
	WechatPayError = "PAYERROR"
)

// Trade is one order as the provider sees it.
type Trade struct {
	Provider    string    `json:"provider"`
	OutTradeNo  string    `json:"out_trade_no"`
	TradeNo     string    `json:"trade_no"` // Alipay trade_no / WeChat transaction_id
	Subject     string    `json:"subject"`
	TotalFen    int64     `json:"total_fen"`
	Total       string    `json:"total"` // yuan, for people
	QRCode      string    `json:"qr_code"`
	NotifyURL   string    `json:"notify_url"`
	State       string    `json:"state"`
	Scanned     bool      `json:"scanned"`
	RefundedFen int64     `json:"refunded_fen"`
	CreatedAt   time.Time `json:"created_at"`
	ExpiresAt   time.Time `json:"expires_at"`
	PaidAt      time.Time `json:"paid_at,omitzero"`
	ClosedAt    time.Time `json:"closed_at,omitzero"`
	Attach      string    `json:"attach,omitempty"`
	// QRExpiresAt ends the QR code's scan window: two hours after it was
	// issued, whatever the trade's own timeout (both providers). A scan
	// after it fails while the trade stays open; issuing the trade again
	// gives a fresh code.
	QRExpiresAt time.Time `json:"qr_expires_at"`
	// RequestedExpiry is the deadline each Alipay precreate of this
	// out_trade_no asked for (timeout_express is relative to the call's
	// arrival, time_expire absolute): a retry that moves it shows here.
	RequestedExpiry []time.Time `json:"requested_expiry,omitempty"`

	// closedBeforeScan marks an Alipay QR that expired or was cancelled
	// before anyone scanned it: still no trade on Alipay's side.
	closedBeforeScan bool
	// pendingFen is refunded money not yet moved (Alipay fund_change_n):
	// reserved against further refunds, not yet in RefundedFen.
	pendingFen int64
	// lastRefundAt is when the trade's last Alipay refund was accepted
	// (the 3-second rule).
	lastRefundAt time.Time
}

// Refund is one refund request.
type Refund struct {
	Provider    string    `json:"provider"`
	OutTradeNo  string    `json:"out_trade_no"`
	TradeNo     string    `json:"trade_no"`
	OutRefundNo string    `json:"out_refund_no"` // Alipay out_request_no
	RefundID    string    `json:"refund_id"`
	AmountFen   int64     `json:"amount_fen"`
	Status      string    `json:"status"` // Alipay PROCESSING/REFUND_SUCCESS; WeChat PROCESSING/SUCCESS/ABNORMAL/CLOSED
	NotifyURL   string    `json:"notify_url,omitempty"`
	Reason      string    `json:"reason,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	SuccessAt   time.Time `json:"success_at,omitzero"`
}

// Sim is one simulator instance. All state is in memory.
type Sim struct {
	cfg    Config
	km     *keyMaterial
	keys   Keys
	tmpDir string

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	client *http.Client
	clock  *clock

	mu         sync.Mutex
	trades     map[string]map[string]*Trade // provider -> out_trade_no
	order      []*Trade                     // creation order, for listings
	refunds    []*Refund
	deliveries []*Delivery
	calls      map[string]int
	faults     map[string]*Fault
	seq        int64
	closed     bool
	bills      billState

	handler http.Handler
}

// Operations, as counted by Calls and targeted by faults.
var Operations = []string{
	"alipay.trade.precreate", "alipay.trade.query", "alipay.trade.close", "alipay.trade.cancel",
	"alipay.trade.refund", "alipay.trade.fastpay.refund.query",
	"wechat.native.prepay", "wechat.query", "wechat.close", "wechat.refund", "wechat.refund.query",
	opAlipayBill, opWechatBill,
}

// New starts a simulator. Call Close when done.
func New(cfg Config) (*Sim, error) {
	if cfg.NotifyDivisor <= 0 {
		cfg.NotifyDivisor = DefaultNotifyDivisor
	}
	if cfg.WechatRefundDelay <= 0 {
		cfg.WechatRefundDelay = time.Second
	}
	if cfg.AlipayRefundGap == 0 {
		cfg.AlipayRefundGap = DefaultAlipayRefundGap
	}
	s := &Sim{
		cfg:    cfg,
		trades: map[string]map[string]*Trade{ProviderAlipay: {}, ProviderWechat: {}},
		calls:  map[string]int{},
		faults: map[string]*Fault{},
		client: &http.Client{Timeout: 5 * time.Second}, // WeChat: the merchant must answer within 5 s
		clock:  newClock(),
	}
	var err error
	dir := cfg.KeyDir
	if dir == "" {
		if s.km, err = memoryKeyMaterial(); err != nil {
			return nil, err
		}
		if s.tmpDir, err = os.MkdirTemp("", "paysim-keys-"); err != nil {
			return nil, err
		}
		dir = s.tmpDir
		if err = s.km.write(dir); err != nil {
			os.RemoveAll(s.tmpDir)
			return nil, err
		}
	} else if s.km, err = loadOrCreateKeyMaterial(dir); err != nil {
		return nil, err
	}
	if s.keys, err = s.km.keys(dir); err != nil {
		return nil, err
	}
	if cfg.KeyDir != "" && cfg.PublicURL != "" {
		if _, err = s.keys.WriteEnvFile(s.keys.Dir(), cfg.PublicURL); err != nil {
			return nil, err
		}
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.handler = s.routes()
	return s, nil
}

// Handler serves /gateway.do (Alipay), /v3/... (WeChat) and /_sim/... (control).
func (s *Sim) Handler() http.Handler { return s.handler }

// Keys returns the merchant-side identifiers and key files.
func (s *Sim) Keys() Keys { return s.keys }

// Close stops notification retries and refund settling and removes the
// temporary key folder of an in-memory simulator.
func (s *Sim) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	if s.tmpDir != "" {
		os.RemoveAll(s.tmpDir)
	}
}

func (s *Sim) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/gateway.do", s.serveAlipay)
	mux.HandleFunc("/v3/", s.serveWechat)
	s.controlRoutes(mux)
	s.billRoutes(mux)
	mux.HandleFunc("/_sim", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/_sim/", http.StatusFound)
	})
	return mux
}

// Calls returns a count per operation, with every operation present.
func (s *Sim) Calls() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(Operations))
	for _, op := range Operations {
		out[op] = s.calls[op]
	}
	return out
}

// Trades lists every trade in creation order (copies).
func (s *Sim) Trades() []Trade {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	out := make([]Trade, 0, len(s.order))
	for _, t := range s.order {
		s.expireIfDue(t, now)
		out = append(out, *t)
	}
	return out
}

// Refunds lists every refund in creation order (copies).
func (s *Sim) Refunds() []Refund {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Refund, 0, len(s.refunds))
	for _, r := range s.refunds {
		out = append(out, *r)
	}
	return out
}

var (
	// ErrNoTrade means no trade has that out_trade_no.
	ErrNoTrade = errors.New("paysim: no such trade")
	// ErrNoRefund means no refund has that number.
	ErrNoRefund = errors.New("paysim: no such refund")
	// ErrTradeState means the trade cannot make that move.
	ErrTradeState = errors.New("paysim: trade is not in a state that allows this")
	// ErrQRExpired means the QR code's two-hour scan window has passed;
	// the trade itself may still be open.
	ErrQRExpired = errors.New("paysim: the QR code's scan window has passed")
)

// Scan is the buyer scanning the QR code without paying: an Alipay trade
// starts to exist (WAIT_BUYER_PAY); a WeChat trade stays NOTPAY.
func (s *Sim) Scan(outTradeNo string) error { return s.scan(outTradeNo, "") }

// Pay is the buyer scanning (if not yet) and paying. The notification is
// sent in the background.
func (s *Sim) Pay(outTradeNo string) error { return s.pay(outTradeNo, "") }

// Expire is the provider's own timeout: an unpaid trade closes now.
func (s *Sim) Expire(outTradeNo string) error { return s.expire(outTradeNo, "") }

// Finish is an Alipay trade passing its refund period: a paid trade
// (TRADE_SUCCESS, also partly refunded) becomes TRADE_FINISHED, still
// paid but no longer refundable, and TRADE_FINISHED is notified.
func (s *Sim) Finish(outTradeNo string) error {
	return s.transition(ProviderAlipay, outTradeNo, AlipayTradeSuccess, func(t *Trade) {
		t.State, t.ClosedAt = AlipayTradeFinish, s.now()
		s.notifyAlipayFinishedLocked(t)
	})
}

// PayError is a WeChat buyer's payment failing: the trade reads PAYERROR
// until the merchant closes it.
func (s *Sim) PayError(outTradeNo string) error {
	return s.transition(ProviderWechat, outTradeNo, WechatNotPay, func(t *Trade) {
		t.State, t.Scanned = WechatPayError, true
	})
}

// transition runs move (with s.mu held) on a provider's trade that is in
// state from.
func (s *Sim) transition(provider, no, from string, move func(*Trade)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.lookup(provider, no)
	if t == nil {
		return ErrNoTrade
	}
	if t.State != from {
		return ErrTradeState
	}
	move(t)
	return nil
}

func (s *Sim) scan(no, provider string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.lookupAny(no, provider)
	if t == nil {
		return ErrNoTrade
	}
	return s.scanLocked(t)
}

// scanLocked is the buyer scanning the trade's QR code: refused once its
// two-hour window has passed (the trade stays open). A scanned Alipay
// trade starts to exist, and closes itself at its timeout.
func (s *Sim) scanLocked(t *Trade) error {
	switch t.State {
	case StateQRIssued, AlipayWaitBuyerPay, WechatNotPay:
	default:
		return ErrTradeState
	}
	if t.Scanned {
		return nil
	}
	if !s.now().Before(t.QRExpiresAt) {
		return ErrQRExpired
	}
	t.Scanned = true
	if t.State == StateQRIssued {
		t.State = AlipayWaitBuyerPay
		t.TradeNo = s.newAlipayTradeNo()
		s.closeAtTimeoutLocked(t)
	}
	return nil
}

// closeAtTimeoutLocked closes a scanned Alipay trade at its timeout even
// if nobody looks at it, so that its TRADE_CLOSED notification is sent.
// A timer, not a waiting goroutine: trades are many and most are paid
// first. Advance closes the trades a moved clock makes due.
func (s *Sim) closeAtTimeoutLocked(t *Trade) {
	if t.ExpiresAt.IsZero() {
		return
	}
	left, _ := s.clock.until(t.ExpiresAt)
	time.AfterFunc(left, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if !s.closed {
			s.expireIfDue(t, s.now())
		}
	})
}

func (s *Sim) pay(no, provider string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.lookupAny(no, provider)
	if t == nil {
		return ErrNoTrade
	}
	if err := s.scanLocked(t); err != nil {
		return err
	}
	now := s.now()
	switch t.State {
	case AlipayWaitBuyerPay:
		t.State = AlipayTradeSuccess
	case WechatNotPay:
		t.State = WechatSuccess
		t.TradeNo = s.newWechatTransactionID()
	default:
		return ErrTradeState
	}
	t.PaidAt = now
	s.notifyPaidLocked(t)
	return nil
}

func (s *Sim) expire(no, provider string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.lookupAny(no, provider)
	if t == nil {
		return ErrNoTrade
	}
	if !s.closeUnpaidLocked(t, s.now()) {
		return ErrTradeState
	}
	return nil
}

// closeUnpaidLocked closes a trade that has not been paid. It reports
// whether the trade was open. A scanned Alipay trade (one that exists at
// Alipay) sends TRADE_CLOSED; a QR code nobody scanned has no trade to
// notify about, and WeChat does not notify closes.
func (s *Sim) closeUnpaidLocked(t *Trade, now time.Time) bool {
	switch t.State {
	case StateQRIssued:
		t.closedBeforeScan = true
		t.State = AlipayTradeClosed
	case AlipayWaitBuyerPay:
		t.State = AlipayTradeClosed
	case WechatNotPay, WechatPayError:
		t.State = WechatClosed
	default:
		return false
	}
	t.ClosedAt = now
	if t.Provider == ProviderAlipay && !t.closedBeforeScan {
		s.notifyAlipayClosedLocked(t)
	}
	return true
}

// expireIfDue applies timeout_express / time_expire lazily: every read of a
// trade goes through it, so no timer goroutine is needed.
func (s *Sim) expireIfDue(t *Trade, now time.Time) {
	if !t.ExpiresAt.IsZero() && !now.Before(t.ExpiresAt) {
		s.closeUnpaidLocked(t, t.ExpiresAt)
	}
}

// lookup finds a trade of one provider, applying expiry.
func (s *Sim) lookup(provider, no string) *Trade {
	t := s.trades[provider][no]
	if t != nil {
		s.expireIfDue(t, s.now())
	}
	return t
}

// lookupAny serves the control API, which names trades by out_trade_no
// only: provider "" means either, and when both providers hold the number
// the most recently created trade wins.
func (s *Sim) lookupAny(no, provider string) *Trade {
	if provider != "" {
		return s.lookup(provider, no)
	}
	a, w := s.lookup(ProviderAlipay, no), s.lookup(ProviderWechat, no)
	switch {
	case a == nil:
		return w
	case w == nil:
		return a
	case w.CreatedAt.After(a.CreatedAt):
		return w
	}
	return a
}

func (s *Sim) addTrade(t *Trade) {
	s.trades[t.Provider][t.OutTradeNo] = t
	s.order = append(s.order, t)
}

func (s *Sim) nextSeq() int64 {
	s.seq++
	return s.seq
}

// newAlipayTradeNo looks like Alipay's: date + 20 digits (28 chars).
func (s *Sim) newAlipayTradeNo() string {
	return s.now().In(chinaTZ).Format("20060102") + padSeq(s.nextSeq(), 8) + randDigits(12)
}

// newWechatTransactionID looks like WeChat's: 4200 + 28 digits.
func (s *Sim) newWechatTransactionID() string {
	return "4200" + padSeq(s.nextSeq(), 8) + s.now().In(chinaTZ).Format("20060102") + randDigits(12)
}

func padSeq(n int64, width int) string {
	b := []byte{}
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	for len(b) < width {
		b = append([]byte{'0'}, b...)
	}
	return string(b)
}

// chinaTZ is UTC+8 without relying on the tzdata of the machine.
var chinaTZ = time.FixedZone("CST", 8*3600)

// sortedOps returns the operations in a stable order (for the page).
func sortedOps(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
