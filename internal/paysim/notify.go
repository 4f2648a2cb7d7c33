package paysim

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Each provider's own notification retry schedule: one attempt, then one
// after each delay, until the merchant acknowledges.
var (
	// alipayNotifySchedule: "25小时以内完成8次通知（通知的间隔频率一般是：
	// 4m,10m,10m,1h,2h,6h,15h）" — 8 tries over 24 h 24 m.
	alipayNotifySchedule = []time.Duration{
		4 * time.Minute, 10 * time.Minute, 10 * time.Minute, time.Hour, 2 * time.Hour, 6 * time.Hour, 15 * time.Hour,
	}
	// wechatNotifySchedule: "15s/15s/30s/3m/10m/20m/30m/30m/30m/60m/3h/3h/3h/6h/6h
	// - 总计 24h4m" — 16 tries.
	wechatNotifySchedule = []time.Duration{
		15 * time.Second, 15 * time.Second, 30 * time.Second, 3 * time.Minute, 10 * time.Minute, 20 * time.Minute,
		30 * time.Minute, 30 * time.Minute, 30 * time.Minute, time.Hour, 3 * time.Hour, 3 * time.Hour, 3 * time.Hour,
		6 * time.Hour, 6 * time.Hour,
	}
)

// NotifySchedule returns the delays between a provider's notification
// attempts as this simulator runs them: Config.NotifyRetry if set, else
// the provider's own schedule divided by Config.NotifyDivisor.
func (s *Sim) NotifySchedule(provider string) []time.Duration {
	if s.cfg.NotifyRetry != nil {
		return append([]time.Duration(nil), s.cfg.NotifyRetry...)
	}
	own := wechatNotifySchedule
	if provider == ProviderAlipay {
		own = alipayNotifySchedule
	}
	out := make([]time.Duration, len(own))
	for i, d := range own {
		out[i] = d / time.Duration(s.cfg.NotifyDivisor)
	}
	return out
}

// Attempt is one POST of a notification and what the merchant answered.
type Attempt struct {
	At        time.Time `json:"at"`
	Status    int       `json:"status,omitempty"`
	Answer    string    `json:"answer,omitempty"`     // the merchant's body (first 1 KiB)
	Error     string    `json:"error,omitempty"`      // transport error
	RequestID string    `json:"request_id,omitempty"` // WeChat's Request-ID header
}

// Delivery is one notification and its attempts. Delivered is set once the
// merchant gives the provider's success answer (Alipay: status 200 and the
// exact body "success"; WeChat: 200 or 204). GaveUp is set when the retry
// schedule is exhausted. A duplicate (the duplicate fault) is a delivery of
// its own with the same ID and Duplicate set.
type Delivery struct {
	ID          string    `json:"id"` // Alipay notify_id / WeChat event id
	Provider    string    `json:"provider"`
	Kind        string    `json:"kind"`  // payment | refund | close | finish | signtest
	Event       string    `json:"event"` // trade_status or event_type
	OutTradeNo  string    `json:"out_trade_no"`
	OutRefundNo string    `json:"out_refund_no,omitempty"`
	URL         string    `json:"url"`
	Body        string    `json:"body"`
	Delivered   bool      `json:"delivered"`
	GaveUp      bool      `json:"gave_up"`
	Duplicate   bool      `json:"duplicate,omitempty"`
	Fault       string    `json:"fault,omitempty"` // the notify fault applied to it
	Attempts    []Attempt `json:"attempts"`
	NextAt      time.Time `json:"next_at,omitzero"` // when the next attempt is due (simulator clock)
	CreatedAt   time.Time `json:"created_at"`
}

// Notifications lists every delivery (deep copies).
func (s *Sim) Notifications() []Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Delivery, 0, len(s.deliveries))
	for _, d := range s.deliveries {
		c := *d
		c.Attempts = append([]Attempt(nil), d.Attempts...)
		out = append(out, c)
	}
	return out
}

// notifyPaidLocked sends the payment notification of a trade just paid.
func (s *Sim) notifyPaidLocked(t *Trade) {
	if t.Provider == ProviderAlipay {
		s.sendAlipayLocked(t, nil, "payment", s.alipayNotifyValues(t))
		return
	}
	plain, _ := json.Marshal(s.wechatTransaction(t))
	s.sendWechatLocked(t, nil, "payment", "TRANSACTION.SUCCESS", "支付成功", "transaction", plain, t.NotifyURL, false)
}

// notifyAlipayRefundLocked: Alipay reports refunds through the same
// trade_status_sync notification, with refund_fee and gmt_refund; a full
// refund shows TRADE_CLOSED.
func (s *Sim) notifyAlipayRefundLocked(t *Trade, rf *Refund) {
	v := s.alipayNotifyValues(t)
	v.Set("refund_fee", formatYuan(t.RefundedFen))
	v.Set("gmt_refund", rf.SuccessAt.In(chinaTZ).Format("2006-01-02 15:04:05.000"))
	v.Set("out_biz_no", rf.OutRefundNo)
	if t.State == AlipayTradeClosed {
		v.Set("gmt_close", rf.SuccessAt.In(chinaTZ).Format(alipayTimeFormat))
	}
	s.sendAlipayLocked(t, rf, "refund", v)
}

// notifyAlipayClosedLocked: a scanned trade closed unpaid (its timeout, a
// close or a cancel) sends TRADE_CLOSED with gmt_close.
func (s *Sim) notifyAlipayClosedLocked(t *Trade) {
	v := s.alipayNotifyValues(t)
	v.Set("gmt_close", t.ClosedAt.In(chinaTZ).Format(alipayTimeFormat))
	s.sendAlipayLocked(t, nil, "close", v)
}

// notifyAlipayFinishedLocked: a paid trade past its refund period sends
// TRADE_FINISHED (paid, no longer refundable).
func (s *Sim) notifyAlipayFinishedLocked(t *Trade) {
	v := s.alipayNotifyValues(t)
	v.Set("gmt_close", t.ClosedAt.In(chinaTZ).Format(alipayTimeFormat))
	s.sendAlipayLocked(t, nil, "finish", v)
}

// alipayNotifyValues are the fields of a trade_status_sync notification;
// the payment's fields only once the trade is paid.
func (s *Sim) alipayNotifyValues(t *Trade) url.Values {
	total := formatYuan(t.TotalFen)
	v := url.Values{}
	v.Set("notify_time", s.now().In(chinaTZ).Format(alipayTimeFormat))
	v.Set("notify_type", "trade_status_sync")
	v.Set("notify_id", strings.ToLower(randHex(16)))
	v.Set("app_id", s.km.ids.AlipayAppID)
	v.Set("auth_app_id", s.km.ids.AlipayAppID)
	v.Set("charset", "utf-8")
	v.Set("version", "1.0")
	v.Set("sign_type", "RSA2")
	v.Set("trade_no", t.TradeNo)
	v.Set("out_trade_no", t.OutTradeNo)
	v.Set("trade_status", t.State)
	v.Set("total_amount", total)
	v.Set("buyer_id", simBuyerUserID)
	v.Set("buyer_logon_id", simBuyerLogonID)
	v.Set("seller_id", simSellerID)
	v.Set("seller_email", "merchant@example.com")
	v.Set("subject", t.Subject)
	v.Set("gmt_create", t.CreatedAt.In(chinaTZ).Format(alipayTimeFormat))
	if !t.PaidAt.IsZero() {
		fund, _ := json.Marshal([]map[string]string{{"amount": total, "fundChannel": "ALIPAYACCOUNT"}})
		v.Set("receipt_amount", total)
		v.Set("invoice_amount", total)
		v.Set("buyer_pay_amount", total)
		v.Set("point_amount", "0.00")
		v.Set("gmt_payment", t.PaidAt.In(chinaTZ).Format(alipayTimeFormat))
		v.Set("fund_bill_list", string(fund))
	}
	return v
}

// sendAlipayLocked signs the form (every field but sign and sign_type, as
// the SDK's VerifySign expects) and starts the delivery.
func (s *Sim) sendAlipayLocked(t *Trade, rf *Refund, kind string, v url.Values) {
	v.Set("sign", signSHA256RSA(s.km.alipayPlatformPriv, alipaySignContent(v, "sign", "sign_type")))
	body := v.Encode()
	d := &Delivery{
		ID: v.Get("notify_id"), Provider: ProviderAlipay, Kind: kind, Event: v.Get("trade_status"),
		OutTradeNo: t.OutTradeNo, URL: t.NotifyURL, Body: body, CreatedAt: s.now(),
	}
	if rf != nil {
		d.OutRefundNo = rf.OutRefundNo
	}
	s.startDeliveryLocked(d, delivery{
		op: "alipay.notify",
		build: func() (*http.Request, error) {
			return s.notifyRequest(d.URL, []byte(body), "application/x-www-form-urlencoded; charset=utf-8")
		},
		// Only the 7 bytes "success" acknowledge: "success\n", "SUCCESS" or
		// a JSON {"success":true} make Alipay send it again.
		ok:    func(status int, answer []byte) bool { return status == http.StatusOK && string(answer) == "success" },
		retry: s.NotifySchedule(ProviderAlipay),
	})
}

// wechatEnvelope is the notification body; the resource is encrypted.
type wechatEnvelope struct {
	ID           string         `json:"id"`
	CreateTime   string         `json:"create_time"`
	ResourceType string         `json:"resource_type"`
	EventType    string         `json:"event_type"`
	Summary      string         `json:"summary"`
	Resource     wechatResource `json:"resource"`
}

type wechatResource struct {
	OriginalType   string `json:"original_type"`
	Algorithm      string `json:"algorithm"`
	Ciphertext     string `json:"ciphertext"`
	AssociatedData string `json:"associated_data"`
	Nonce          string `json:"nonce"`
}

// sendWechatLocked encrypts plaintext into the resource and starts the
// delivery. Headers are signed afresh on every attempt (the merchant refuses
// timestamps older than five minutes) and carry a new Request-ID each time:
// only the body's event id stays. signTest sends WeChat's deliberately
// wrong probe signature once, without retries or faults.
func (s *Sim) sendWechatLocked(t *Trade, rf *Refund, kind, event, summary, originalType string, plain []byte, notifyURL string, signTest bool) *Delivery {
	nonce := randAlnum(12)
	ct, err := aeadSeal(s.km.ids.WechatAPIv3Key, nonce, originalType, plain)
	if err != nil {
		panic(err) // the key is always 32 bytes
	}
	env := wechatEnvelope{
		ID: newUUID(), CreateTime: s.now().In(chinaTZ).Format(time.RFC3339),
		ResourceType: "encrypt-resource", EventType: event, Summary: summary,
		Resource: wechatResource{OriginalType: originalType, Algorithm: "AEAD_AES_256_GCM", Ciphertext: ct, AssociatedData: originalType, Nonce: nonce},
	}
	body, _ := json.Marshal(env)
	d := &Delivery{
		ID: env.ID, Provider: ProviderWechat, Kind: kind, Event: event, OutTradeNo: t.OutTradeNo,
		URL: notifyURL, Body: string(body), CreatedAt: s.now(),
	}
	if rf != nil {
		d.OutRefundNo = rf.OutRefundNo
	}
	dl := delivery{
		op: "wechat.notify",
		build: func() (*http.Request, error) {
			req, err := s.notifyRequest(d.URL, body, "application/json")
			if err != nil {
				return nil, err
			}
			req.Header.Set("Request-ID", newRequestID())
			s.signWechatHeaders(req.Header, body)
			if signTest {
				req.Header.Set("Wechatpay-Signature", signTestSignature())
			}
			return req, nil
		},
		ok:    func(status int, _ []byte) bool { return status == http.StatusOK || status == http.StatusNoContent },
		retry: s.NotifySchedule(ProviderWechat),
	}
	if signTest {
		dl.op, dl.retry = "", nil
		dl.ok = func(status int, _ []byte) bool { return status < 200 || status > 299 } // the merchant did its job: it refused
	}
	s.startDeliveryLocked(d, dl)
	return d
}

// signTestSignature is WeChat's probe: WECHATPAY/SIGNTEST/ and base64 junk.
func signTestSignature() string {
	junk := make([]byte, 256)
	copy(junk, randAlnum(256))
	return "WECHATPAY/SIGNTEST/" + base64.StdEncoding.EncodeToString(junk)
}

// newRequestID looks like WeChat's: 40 upper-case hex digits and "-0".
func newRequestID() string { return strings.ToUpper(randHex(20)) + "-0" }

// SendWechatSignTest sends WeChat's probe notification — a payment
// notification for the trade whose Wechatpay-Signature starts with
// WECHATPAY/SIGNTEST/ — once. Its delivery counts as Delivered when the
// merchant refuses it (any non-2xx answer).
func (s *Sim) SendWechatSignTest(outTradeNo string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.lookup(ProviderWechat, outTradeNo)
	if t == nil {
		return ErrNoTrade
	}
	view := *t
	if view.TradeNo == "" {
		view.TradeNo = "4200" + randDigits(28)
	}
	view.State, view.PaidAt = WechatSuccess, s.now()
	plain, _ := json.Marshal(s.wechatTransaction(&view))
	s.sendWechatLocked(t, nil, "signtest", "TRANSACTION.SUCCESS", "支付成功", "transaction", plain, t.NotifyURL, true)
	return nil
}

// notifyRequest is one POST of a notification body.
func (s *Sim) notifyRequest(url string, body []byte, contentType string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(s.ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", contentType)
	return req, nil
}

// delivery is how one notification is posted: the operation whose faults
// apply to it ("" for none), a request builder (called per attempt), what
// counts as acknowledged, and the delays between attempts.
type delivery struct {
	op    string
	build func() (*http.Request, error)
	ok    func(status int, answer []byte) bool
	retry []time.Duration
}

// startDeliveryLocked records d, takes the notify fault of its operation,
// and runs its attempts in the background.
func (s *Sim) startDeliveryLocked(d *Delivery, dl delivery) {
	s.deliveries = append(s.deliveries, d)
	var f Fault
	armed := false
	if dl.op != "" {
		f, armed = s.takeFaultLocked(dl.op, false)
		if armed {
			d.Fault = f.Mode
		}
	}
	if d.URL == "" {
		d.GaveUp = true
		d.Attempts = append(d.Attempts, Attempt{At: s.now(), Error: "no notify_url"})
		return
	}
	if !s.goLocked() {
		return
	}
	go func() {
		defer s.wg.Done()
		if armed && f.Mode == FaultDelay && !s.holdDelivery(d, time.Duration(f.DelayMS)*time.Millisecond) {
			return
		}
		if !s.deliver(d, dl) || !armed || f.Mode != FaultDuplicate {
			return
		}
		// Acknowledged, and sent again after the provider's first retry
		// delay: the same notify_id / event id, a delivery of its own.
		if len(dl.retry) > 0 && !s.holdDelivery(d, dl.retry[0]) {
			return
		}
		s.mu.Lock()
		d.NextAt = time.Time{}
		dup := &Delivery{ID: d.ID, Provider: d.Provider, Kind: d.Kind, Event: d.Event, OutTradeNo: d.OutTradeNo,
			OutRefundNo: d.OutRefundNo, URL: d.URL, Body: d.Body, Duplicate: true, CreatedAt: s.now()}
		s.deliveries = append(s.deliveries, dup)
		s.mu.Unlock()
		s.deliver(dup, dl)
	}()
}

// holdDelivery waits d on the simulator's clock, showing when the next
// attempt is due; false if the simulator closes first.
func (s *Sim) holdDelivery(dv *Delivery, d time.Duration) bool {
	s.mu.Lock()
	dv.NextAt = s.now().Add(d)
	next := dv.NextAt
	s.mu.Unlock()
	return s.clock.waitUntil(s.ctx, next)
}

// deliver posts d until it is acknowledged (true) or the schedule is
// exhausted or the simulator closes (false).
func (s *Sim) deliver(d *Delivery, dl delivery) bool {
	for i := 0; ; i++ {
		a := s.attempt(dl.build, dl.ok)
		s.mu.Lock()
		d.Attempts = append(d.Attempts, a.Attempt)
		d.NextAt = time.Time{}
		switch {
		case a.ok:
			d.Delivered = true
		case i >= len(dl.retry):
			d.GaveUp = true
		default:
			d.NextAt = a.At.Add(dl.retry[i])
		}
		next, delivered, done := d.NextAt, d.Delivered, d.Delivered || d.GaveUp
		s.mu.Unlock()
		if done {
			return delivered
		}
		if !s.clock.waitUntil(s.ctx, next) {
			return false
		}
	}
}

type attemptResult struct {
	Attempt
	ok bool
}

func (s *Sim) attempt(build func() (*http.Request, error), ok func(int, []byte) bool) attemptResult {
	a := attemptResult{Attempt: Attempt{At: s.now()}}
	req, err := build()
	if err != nil {
		a.Error = err.Error()
		return a
	}
	a.RequestID = req.Header.Get("Request-ID")
	resp, err := s.client.Do(req)
	if err != nil {
		a.Error = err.Error()
		return a
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	a.Status, a.Answer = resp.StatusCode, string(answer)
	a.ok = ok(resp.StatusCode, answer)
	return a
}

// goLocked reserves a background goroutine; false once Close has begun, so
// that no goroutine starts after Close waits.
func (s *Sim) goLocked() bool {
	if s.closed {
		return false
	}
	s.wg.Add(1)
	return true
}

// afterLocked runs fn (with s.mu held) once d has passed on the
// simulator's clock, unless Close comes first.
func (s *Sim) afterLocked(d time.Duration, fn func()) { s.atLocked(s.now().Add(d), fn) }

// atLocked runs fn (with s.mu held) when the simulator's clock reads
// deadline, unless Close comes first.
func (s *Sim) atLocked(deadline time.Time, fn func()) {
	if !s.goLocked() {
		return
	}
	go func() {
		defer s.wg.Done()
		if !s.clock.waitUntil(s.ctx, deadline) {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if !s.closed {
			fn()
		}
	}()
}

func newUUID() string {
	h := strings.ToLower(randHex(16))
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
