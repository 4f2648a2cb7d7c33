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

// Attempt is one POST of a notification and what the merchant answered.
type Attempt struct {
	At     time.Time `json:"at"`
	Status int       `json:"status,omitempty"`
	Answer string    `json:"answer,omitempty"` // the merchant's body (first 1 KiB)
	Error  string    `json:"error,omitempty"`  // transport error
}

// Delivery is one notification and its attempts. Delivered is set once the
// merchant gives the provider's success answer (Alipay: body "success";
// WeChat: 200 or 204). GaveUp is set when the retry schedule is exhausted.
type Delivery struct {
	ID          string    `json:"id"` // Alipay notify_id / WeChat event id
	Provider    string    `json:"provider"`
	Kind        string    `json:"kind"`  // payment | refund | signtest
	Event       string    `json:"event"` // trade_status or event_type
	OutTradeNo  string    `json:"out_trade_no"`
	OutRefundNo string    `json:"out_refund_no,omitempty"`
	URL         string    `json:"url"`
	Body        string    `json:"body"`
	Delivered   bool      `json:"delivered"`
	GaveUp      bool      `json:"gave_up"`
	Attempts    []Attempt `json:"attempts"`
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
		v := s.alipayNotifyValues(t)
		s.sendAlipayLocked(t, nil, v)
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
	s.sendAlipayLocked(t, rf, v)
}

func (s *Sim) alipayNotifyValues(t *Trade) url.Values {
	total := formatYuan(t.TotalFen)
	fund, _ := json.Marshal([]map[string]string{{"amount": total, "fundChannel": "ALIPAYACCOUNT"}})
	v := url.Values{}
	v.Set("notify_time", time.Now().In(chinaTZ).Format(alipayTimeFormat))
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
	v.Set("receipt_amount", total)
	v.Set("invoice_amount", total)
	v.Set("buyer_pay_amount", total)
	v.Set("point_amount", "0.00")
	v.Set("buyer_id", simBuyerUserID)
	v.Set("buyer_logon_id", simBuyerLogonID)
	v.Set("seller_id", simSellerID)
	v.Set("seller_email", "merchant@example.com")
	v.Set("subject", t.Subject)
	v.Set("gmt_create", t.CreatedAt.In(chinaTZ).Format(alipayTimeFormat))
	v.Set("gmt_payment", t.PaidAt.In(chinaTZ).Format(alipayTimeFormat))
	v.Set("fund_bill_list", string(fund))
	return v
}

// sendAlipayLocked signs the form (every field but sign and sign_type, as
// the SDK's VerifySign expects) and starts the delivery.
func (s *Sim) sendAlipayLocked(t *Trade, rf *Refund, v url.Values) {
	v.Set("sign", signSHA256RSA(s.km.alipayPlatformPriv, alipaySignContent(v, "sign", "sign_type")))
	body := v.Encode()
	d := &Delivery{
		ID: v.Get("notify_id"), Provider: ProviderAlipay, Kind: "payment", Event: v.Get("trade_status"),
		OutTradeNo: t.OutTradeNo, URL: t.NotifyURL, Body: body, CreatedAt: time.Now(),
	}
	if rf != nil {
		d.Kind, d.OutRefundNo = "refund", rf.OutRefundNo
	}
	s.startDeliveryLocked(d, func() (*http.Request, error) {
		req, err := http.NewRequestWithContext(s.ctx, http.MethodPost, d.URL, strings.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
		return req, nil
	}, func(status int, answer []byte) bool {
		return status == http.StatusOK && strings.TrimSpace(string(answer)) == "success"
	}, s.cfg.NotifyRetry)
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
// timestamps older than five minutes). signTest sends WeChat's deliberately
// wrong probe signature once, without retries.
func (s *Sim) sendWechatLocked(t *Trade, rf *Refund, kind, event, summary, originalType string, plain []byte, notifyURL string, signTest bool) *Delivery {
	nonce := randAlnum(12)
	ct, err := aeadSeal(s.km.ids.WechatAPIv3Key, nonce, originalType, plain)
	if err != nil {
		panic(err) // the key is always 32 bytes
	}
	env := wechatEnvelope{
		ID: newUUID(), CreateTime: time.Now().In(chinaTZ).Format(time.RFC3339),
		ResourceType: "encrypt-resource", EventType: event, Summary: summary,
		Resource: wechatResource{OriginalType: originalType, Algorithm: "AEAD_AES_256_GCM", Ciphertext: ct, AssociatedData: originalType, Nonce: nonce},
	}
	body, _ := json.Marshal(env)
	d := &Delivery{
		ID: env.ID, Provider: ProviderWechat, Kind: kind, Event: event, OutTradeNo: t.OutTradeNo,
		URL: notifyURL, Body: string(body), CreatedAt: time.Now(),
	}
	if rf != nil {
		d.OutRefundNo = rf.OutRefundNo
	}
	retry := s.cfg.NotifyRetry
	if signTest {
		retry = nil
	}
	s.startDeliveryLocked(d, func() (*http.Request, error) {
		req, err := http.NewRequestWithContext(s.ctx, http.MethodPost, d.URL, bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		s.signWechatHeaders(req.Header, body)
		if signTest {
			junk := make([]byte, 256)
			copy(junk, randAlnum(256))
			req.Header.Set("Wechatpay-Signature", "WECHATPAY/SIGNTEST/"+base64.StdEncoding.EncodeToString(junk))
		}
		return req, nil
	}, func(status int, _ []byte) bool {
		if signTest {
			return status < 200 || status > 299 // the merchant did its job: it refused
		}
		return status == http.StatusOK || status == http.StatusNoContent
	}, retry)
	return d
}

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
	view.State, view.PaidAt = WechatSuccess, time.Now()
	plain, _ := json.Marshal(s.wechatTransaction(&view))
	s.sendWechatLocked(t, nil, "signtest", "TRANSACTION.SUCCESS", "支付成功", "transaction", plain, t.NotifyURL, true)
	return nil
}

// startDeliveryLocked records d and runs its attempts in the background.
func (s *Sim) startDeliveryLocked(d *Delivery, build func() (*http.Request, error), ok func(int, []byte) bool, retry []time.Duration) {
	s.deliveries = append(s.deliveries, d)
	if d.URL == "" {
		d.GaveUp = true
		d.Attempts = append(d.Attempts, Attempt{At: time.Now(), Error: "no notify_url"})
		return
	}
	if !s.goLocked() {
		return
	}
	go func() {
		defer s.wg.Done()
		for i := 0; ; i++ {
			a := s.attempt(build, ok)
			s.mu.Lock()
			d.Attempts = append(d.Attempts, a.Attempt)
			if a.ok {
				d.Delivered = true
			} else if i >= len(retry) {
				d.GaveUp = true
			}
			done := d.Delivered || d.GaveUp
			s.mu.Unlock()
			if done {
				return
			}
			timer := time.NewTimer(retry[i])
			select {
			case <-timer.C:
			case <-s.ctx.Done():
				timer.Stop()
				return
			}
		}
	}()
}

type attemptResult struct {
	Attempt
	ok bool
}

func (s *Sim) attempt(build func() (*http.Request, error), ok func(int, []byte) bool) attemptResult {
	a := attemptResult{Attempt: Attempt{At: time.Now()}}
	req, err := build()
	if err != nil {
		a.Error = err.Error()
		return a
	}
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

// afterLocked runs fn (with s.mu held) after d, unless Close comes first.
func (s *Sim) afterLocked(d time.Duration, fn func()) {
	if !s.goLocked() {
		return
	}
	go func() {
		defer s.wg.Done()
		timer := time.NewTimer(d)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-s.ctx.Done():
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
