package paysim

import (
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// WeChat Pay API v3 (Native), public-key mode: every answer is signed with
// the platform key and carries Wechatpay-Serial: PUB_KEY_ID_….

type wechatError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (s *Sim) serveWechat(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		s.wechatReply(w, http.StatusBadRequest, wechatError{"PARAM_ERROR", "读取请求体失败"})
		return
	}
	path := r.URL.Path
	var op string
	var handle func(http.ResponseWriter, Fault)
	switch {
	case r.Method == http.MethodPost && path == "/v3/pay/transactions/native":
		op = "wechat.native.prepay"
		handle = func(w http.ResponseWriter, f Fault) { s.wechatPrepay(w, body, f) }
	case r.Method == http.MethodPost && strings.HasPrefix(path, "/v3/pay/transactions/out-trade-no/") && strings.HasSuffix(path, "/close"):
		no := strings.TrimSuffix(strings.TrimPrefix(path, "/v3/pay/transactions/out-trade-no/"), "/close")
		op = "wechat.close"
		handle = func(w http.ResponseWriter, _ Fault) { s.wechatClose(w, no, body) }
	case r.Method == http.MethodGet && strings.HasPrefix(path, "/v3/pay/transactions/out-trade-no/"):
		no := strings.TrimPrefix(path, "/v3/pay/transactions/out-trade-no/")
		op = "wechat.query"
		handle = func(w http.ResponseWriter, _ Fault) { s.wechatQuery(w, r.URL.Query(), no, "") }
	case r.Method == http.MethodGet && strings.HasPrefix(path, "/v3/pay/transactions/id/"):
		id := strings.TrimPrefix(path, "/v3/pay/transactions/id/")
		op = "wechat.query"
		handle = func(w http.ResponseWriter, _ Fault) { s.wechatQuery(w, r.URL.Query(), "", id) }
	case r.Method == http.MethodPost && path == "/v3/refund/domestic/refunds":
		op = "wechat.refund"
		handle = func(w http.ResponseWriter, f Fault) { s.wechatRefund(w, body, f) }
	case r.Method == http.MethodGet && strings.HasPrefix(path, "/v3/refund/domestic/refunds/"):
		no := strings.TrimPrefix(path, "/v3/refund/domestic/refunds/")
		op = "wechat.refund.query"
		handle = func(w http.ResponseWriter, _ Fault) { s.wechatRefundQuery(w, no) }
	default:
		s.wechatReply(w, http.StatusNotFound, wechatError{"NOT_FOUND", "请求的资源不存在"})
		return
	}
	authentic := func(w http.ResponseWriter, f Fault) {
		if msg := s.wechatAuth(r, body); msg != "" {
			s.wechatReply(w, http.StatusUnauthorized, wechatError{"SIGN_ERROR", msg})
			return
		}
		handle(w, f)
	}
	s.runOp(w, r, op, opAnswers{
		work: func(w http.ResponseWriter) { authentic(w, Fault{}) },
		sysError: func(w http.ResponseWriter) {
			s.wechatReply(w, http.StatusInternalServerError, wechatError{"SYSTEM_ERROR", "系统错误"})
		},
		ignored: func(w http.ResponseWriter) {
			s.wechatIgnored(w, op, body, func(w http.ResponseWriter) { handle(w, Fault{}) })
		},
		unsigned: func(w http.ResponseWriter, status int, code string) {
			if code == "" {
				code = "SYSTEM_ERROR"
			}
			b, _ := json.Marshal(wechatError{code, "paysim unsigned_error: an answer no provider signed"})
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.WriteHeader(status)
			_, _ = w.Write(b)
		},
		rateLimited: func(w http.ResponseWriter, _ Fault) {
			s.wechatReply(w, http.StatusTooManyRequests, wechatError{"FREQUENCY_LIMITED", "频率超限"})
		},
		resign:  s.wechatResign,
		variant: authentic,
	})
}

// wechatResign breaks a signed answer's signature the way a fault asks:
// bad_signature signs other bytes, signtest is WeChat's probe signature,
// stale_timestamp signs correctly over a timestamp 10 minutes old.
func (s *Sim) wechatResign(rec *recorder, mode string) {
	h, body := rec.h, rec.body.Bytes()
	ts, nonce := h.Get("Wechatpay-Timestamp"), h.Get("Wechatpay-Nonce")
	switch mode {
	case FaultBadSignature:
		h.Set("Wechatpay-Signature", signSHA256RSA(s.km.wechatPlatformPriv, wechatMessage(ts, nonce, append(append([]byte(nil), body...), ' '))))
	case FaultSigntest:
		h.Set("Wechatpay-Signature", signTestSignature())
	case FaultStaleTimestamp:
		ts = strconv.FormatInt(time.Now().Add(-10*time.Minute).Unix(), 10)
		h.Set("Wechatpay-Timestamp", ts)
		h.Set("Wechatpay-Signature", signSHA256RSA(s.km.wechatPlatformPriv, wechatMessage(ts, nonce, body)))
	}
}

// wechatIgnored answers an operation's normal, signed success without
// changing anything: a close that did not take effect, a prepay whose
// code_url leads nowhere, a refund that never moves money. Queries change
// nothing anyway and answer normally.
func (s *Sim) wechatIgnored(w http.ResponseWriter, op string, body []byte, handle func(http.ResponseWriter)) {
	switch op {
	case "wechat.close":
		s.wechatReply(w, http.StatusNoContent, nil)
	case "wechat.native.prepay":
		s.wechatReply(w, http.StatusOK, map[string]string{"code_url": newWechatCodeURL()})
	case "wechat.refund":
		var req wechatRefundReq
		_ = json.Unmarshal(body, &req)
		rf := &Refund{OutTradeNo: req.OutTradeNo, TradeNo: req.TransactionID, OutRefundNo: req.OutRefundNo,
			RefundID: "50" + randDigits(28), Status: "PROCESSING", CreatedAt: s.now()}
		t := &Trade{}
		if req.Amount != nil {
			rf.AmountFen, _ = parseFen(json.Number(req.Amount.Refund))
			t.TotalFen, _ = parseFen(json.Number(req.Amount.Total))
		}
		s.wechatReply(w, http.StatusOK, s.wechatRefundView(rf, t))
	default:
		handle(w)
	}
}

var authParamRE = regexp.MustCompile(`(\w+)="([^"]*)"`)

// wechatAuth checks the Authorization header the way WeChat Pay does: the
// scheme, the merchant, the merchant certificate serial, a fresh timestamp,
// and the signature over METHOD\nRequestURI\nts\nnonce\nbody\n with the
// merchant public key. It returns "" when the request is authentic.
func (s *Sim) wechatAuth(r *http.Request, body []byte) string {
	const scheme = "WECHATPAY2-SHA256-RSA2048 "
	h := r.Header.Get("Authorization")
	if !strings.HasPrefix(h, scheme) {
		return "Authorization 头不存在或认证类型不正确"
	}
	p := map[string]string{}
	for _, m := range authParamRE.FindAllStringSubmatch(h[len(scheme):], -1) {
		p[m[1]] = m[2]
	}
	if p["mchid"] != s.km.ids.WechatMchID {
		return "商户号与 Authorization 不匹配"
	}
	if p["serial_no"] != s.km.ids.WechatSerialNo {
		return "商户证书序列号有误"
	}
	ts, err := strconv.ParseInt(p["timestamp"], 10, 64)
	if err != nil || math.Abs(float64(time.Now().Unix()-ts)) >= 300 {
		return "请求时间戳已过期或无效"
	}
	if p["nonce_str"] == "" {
		return "nonce_str 为空"
	}
	msg := r.Method + "\n" + r.RequestURI + "\n" + p["timestamp"] + "\n" + p["nonce_str"] + "\n" + string(body) + "\n"
	if verifySHA256RSA(&s.km.wechatMchPriv.PublicKey, []byte(msg), p["signature"]) != nil {
		return "错误的签名，验签失败"
	}
	return ""
}

// wechatReply writes a signed answer; body nil means 204 with an empty body
// (signed over "ts\nnonce\n\n").
func (s *Sim) wechatReply(w http.ResponseWriter, status int, v any) {
	var body []byte
	if v != nil {
		body, _ = json.Marshal(v)
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
	}
	s.signWechatHeaders(w.Header(), body)
	w.Header().Set("Request-ID", newUUID())
	w.WriteHeader(status)
	if len(body) > 0 {
		_, _ = w.Write(body)
	}
}

func (s *Sim) signWechatHeaders(h http.Header, body []byte) {
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	nonce := randAlnum(32)
	h.Set("Wechatpay-Timestamp", ts)
	h.Set("Wechatpay-Nonce", nonce)
	h.Set("Wechatpay-Serial", s.km.ids.WechatPlatformPublicKeyID)
	h.Set("Wechatpay-Signature", signSHA256RSA(s.km.wechatPlatformPriv, wechatMessage(ts, nonce, body)))
	h.Set("Wechatpay-Signature-Type", "WECHATPAY2-SHA256-RSA2048")
}

type wechatPrepayReq struct {
	Appid       string `json:"appid"`
	Mchid       string `json:"mchid"`
	Description string `json:"description"`
	OutTradeNo  string `json:"out_trade_no"`
	TimeExpire  string `json:"time_expire"`
	Attach      string `json:"attach"`
	NotifyURL   string `json:"notify_url"`
	Amount      *struct {
		Total    json.RawMessage `json:"total"`
		Currency string          `json:"currency"`
	} `json:"amount"`
}

var wechatOutTradeNoRE = regexp.MustCompile(`^[0-9A-Za-z_\-|*]{6,32}$`)

func paramError(msg string) wechatError { return wechatError{"PARAM_ERROR", msg} }

// wechatPrepay creates a Native order. Its code_url can be scanned for two
// hours, whatever time_expire says; the same order again answers the same
// code_url while it is scannable and a fresh one after (unless
// qr_not_renewed).
func (s *Sim) wechatPrepay(w http.ResponseWriter, body []byte, fault Fault) {
	var req wechatPrepayReq
	if err := json.Unmarshal(body, &req); err != nil {
		s.wechatReply(w, http.StatusBadRequest, paramError("请求体格式错误: "+err.Error()))
		return
	}
	if req.Appid != s.km.ids.WechatAppID || req.Mchid != s.km.ids.WechatMchID {
		s.wechatReply(w, http.StatusBadRequest, wechatError{"APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配"})
		return
	}
	if req.Description == "" || len(req.Description) > 127*3 {
		s.wechatReply(w, http.StatusBadRequest, paramError("description 必填且不超过127个字符"))
		return
	}
	if !wechatOutTradeNoRE.MatchString(req.OutTradeNo) {
		s.wechatReply(w, http.StatusBadRequest, paramError("out_trade_no 须为6-32位数字、大小写字母或_-|*"))
		return
	}
	if u, err := url.Parse(req.NotifyURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		s.wechatReply(w, http.StatusBadRequest, paramError("notify_url 必须是可访问的 http(s) 地址"))
		return
	}
	if req.Amount == nil {
		s.wechatReply(w, http.StatusBadRequest, paramError("amount 必填"))
		return
	}
	fen, err := parseFen(json.Number(req.Amount.Total))
	if err != nil {
		s.wechatReply(w, http.StatusBadRequest, paramError("amount.total: "+err.Error()))
		return
	}
	if req.Amount.Currency != "" && req.Amount.Currency != "CNY" {
		s.wechatReply(w, http.StatusBadRequest, paramError("amount.currency 仅支持 CNY"))
		return
	}
	now := s.now()
	expires := now.Add(7 * 24 * time.Hour)
	if req.TimeExpire != "" {
		if expires, err = time.Parse(time.RFC3339, req.TimeExpire); err != nil {
			s.wechatReply(w, http.StatusBadRequest, paramError("time_expire 须为 RFC3339 格式"))
			return
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.lookup(ProviderWechat, req.OutTradeNo); t != nil {
		switch {
		case t.State == WechatSuccess || t.State == WechatRefund:
			s.wechatReply(w, http.StatusForbidden, wechatError{"ORDERPAID", "该订单已支付"})
		case t.State == WechatClosed:
			s.wechatReply(w, http.StatusBadRequest, wechatError{"ORDER_CLOSED", "订单已关闭"})
		case t.TotalFen != fen || t.Subject != req.Description:
			s.wechatReply(w, http.StatusBadRequest, wechatError{"INVALID_REQUEST", "201 商户订单号重复"})
		default:
			if t.State == WechatNotPay && !now.Before(t.QRExpiresAt) && fault.Mode != FaultQRNotRenewed {
				t.QRCode, t.QRExpiresAt = newWechatCodeURL(), now.Add(qrScanWindow)
			}
			s.wechatReply(w, http.StatusOK, map[string]string{"code_url": t.QRCode})
		}
		return
	}
	t := &Trade{
		Provider: ProviderWechat, OutTradeNo: req.OutTradeNo, Subject: req.Description, TotalFen: fen,
		Total: formatYuan(fen), QRCode: newWechatCodeURL(), NotifyURL: req.NotifyURL,
		State: WechatNotPay, CreatedAt: now, ExpiresAt: expires, Attach: req.Attach, QRExpiresAt: now.Add(qrScanWindow),
	}
	s.addTrade(t)
	s.wechatReply(w, http.StatusOK, map[string]string{"code_url": t.QRCode})
}

func newWechatCodeURL() string { return "weixin://wxpay/bizpayurl?pr=" + randAlnum(7) }

type wechatTxAmount struct {
	Total         int64  `json:"total"`
	PayerTotal    *int64 `json:"payer_total,omitempty"`
	Currency      string `json:"currency"`
	PayerCurrency string `json:"payer_currency"`
}

type wechatTx struct {
	Appid          string            `json:"appid"`
	Mchid          string            `json:"mchid"`
	OutTradeNo     string            `json:"out_trade_no"`
	TransactionID  string            `json:"transaction_id,omitempty"`
	TradeType      string            `json:"trade_type,omitempty"`
	TradeState     string            `json:"trade_state"`
	TradeStateDesc string            `json:"trade_state_desc"`
	BankType       string            `json:"bank_type,omitempty"`
	Attach         string            `json:"attach"`
	SuccessTime    string            `json:"success_time,omitempty"`
	Payer          map[string]string `json:"payer,omitempty"`
	Amount         wechatTxAmount    `json:"amount"`
}

var wechatStateDesc = map[string]string{
	WechatNotPay: "订单未支付", WechatSuccess: "支付成功", WechatRefund: "转入退款", WechatClosed: "订单已关闭",
	WechatPayError: "支付失败，请重新下单支付",
}

// wechatTransaction is the Transaction of the query answer and of the
// payment notification's resource.
func (s *Sim) wechatTransaction(t *Trade) wechatTx {
	tx := wechatTx{
		Appid: s.km.ids.WechatAppID, Mchid: s.km.ids.WechatMchID, OutTradeNo: t.OutTradeNo,
		TradeState: t.State, TradeStateDesc: wechatStateDesc[t.State], Attach: t.Attach,
		Amount: wechatTxAmount{Total: t.TotalFen, Currency: "CNY", PayerCurrency: "CNY"},
	}
	if !t.PaidAt.IsZero() {
		paid := t.TotalFen
		tx.TransactionID, tx.TradeType, tx.BankType = t.TradeNo, "NATIVE", "OTHERS"
		tx.SuccessTime = t.PaidAt.In(chinaTZ).Format(time.RFC3339)
		tx.Payer = map[string]string{"openid": simOpenID}
		tx.Amount.PayerTotal = &paid
	}
	return tx
}

func (s *Sim) wechatQuery(w http.ResponseWriter, q url.Values, no, transactionID string) {
	if q.Get("mchid") != s.km.ids.WechatMchID {
		s.wechatReply(w, http.StatusBadRequest, paramError("mchid 与请求商户号不一致"))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var t *Trade
	if no != "" {
		t = s.lookup(ProviderWechat, no)
	} else {
		t = s.wechatByTransactionID(transactionID)
	}
	if t == nil {
		s.wechatReply(w, http.StatusNotFound, wechatError{"ORDER_NOT_EXIST", "订单不存在"})
		return
	}
	s.wechatReply(w, http.StatusOK, s.wechatTransaction(t))
}

func (s *Sim) wechatByTransactionID(id string) *Trade {
	if id == "" {
		return nil
	}
	for _, t := range s.trades[ProviderWechat] {
		if t.TradeNo == id {
			s.expireIfDue(t, s.now())
			return t
		}
	}
	return nil
}

// wechatClose answers 204 (signed, empty body) for an open, already closed
// or unknown order — the real API does the same for the last two — and
// refuses a paid one.
func (s *Sim) wechatClose(w http.ResponseWriter, no string, body []byte) {
	var req struct {
		Mchid string `json:"mchid"`
	}
	if err := json.Unmarshal(body, &req); err != nil || req.Mchid != s.km.ids.WechatMchID {
		s.wechatReply(w, http.StatusBadRequest, paramError("mchid 必填且须与请求商户号一致"))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.lookup(ProviderWechat, no); t != nil {
		switch t.State {
		case WechatNotPay, WechatPayError:
			s.closeUnpaidLocked(t, s.now())
		case WechatSuccess, WechatRefund:
			s.wechatReply(w, http.StatusBadRequest, wechatError{"ORDERPAID", "订单已支付"})
			return
		}
	}
	s.wechatReply(w, http.StatusNoContent, nil)
}

type wechatRefundReq struct {
	TransactionID string `json:"transaction_id"`
	OutTradeNo    string `json:"out_trade_no"`
	OutRefundNo   string `json:"out_refund_no"`
	Reason        string `json:"reason"`
	NotifyURL     string `json:"notify_url"`
	Amount        *struct {
		Refund   json.RawMessage `json:"refund"`
		Total    json.RawMessage `json:"total"`
		Currency string          `json:"currency"`
	} `json:"amount"`
}

type wechatRefundAmount struct {
	Total            int64         `json:"total"`
	Refund           int64         `json:"refund"`
	From             []interface{} `json:"from"`
	PayerTotal       int64         `json:"payer_total"`
	PayerRefund      int64         `json:"payer_refund"`
	SettlementRefund int64         `json:"settlement_refund"`
	SettlementTotal  int64         `json:"settlement_total"`
	DiscountRefund   int64         `json:"discount_refund"`
	Currency         string        `json:"currency"`
}

type wechatRefundRsp struct {
	RefundID            string             `json:"refund_id"`
	OutRefundNo         string             `json:"out_refund_no"`
	TransactionID       string             `json:"transaction_id"`
	OutTradeNo          string             `json:"out_trade_no"`
	Channel             string             `json:"channel"`
	UserReceivedAccount string             `json:"user_received_account"`
	SuccessTime         string             `json:"success_time,omitempty"`
	CreateTime          string             `json:"create_time"`
	Status              string             `json:"status"`
	FundsAccount        string             `json:"funds_account"`
	Amount              wechatRefundAmount `json:"amount"`
	PromotionDetail     []interface{}      `json:"promotion_detail"`
}

func (s *Sim) wechatRefundView(rf *Refund, t *Trade) wechatRefundRsp {
	v := wechatRefundRsp{
		RefundID: rf.RefundID, OutRefundNo: rf.OutRefundNo, TransactionID: rf.TradeNo, OutTradeNo: rf.OutTradeNo,
		Channel: "ORIGINAL", UserReceivedAccount: "支付用户零钱", CreateTime: rf.CreatedAt.In(chinaTZ).Format(time.RFC3339),
		Status: rf.Status, FundsAccount: "AVAILABLE", PromotionDetail: []interface{}{},
		Amount: wechatRefundAmount{
			Total: t.TotalFen, Refund: rf.AmountFen, From: []interface{}{}, PayerTotal: t.TotalFen, PayerRefund: rf.AmountFen,
			SettlementRefund: rf.AmountFen, SettlementTotal: t.TotalFen, Currency: "CNY",
		},
	}
	if !rf.SuccessAt.IsZero() {
		v.SuccessTime = rf.SuccessAt.In(chinaTZ).Format(time.RFC3339)
	}
	return v
}

// wechatRefund accepts a refund as PROCESSING; WechatRefundDelay later it
// ends SUCCESS, or ABNORMAL or CLOSED (faults abnormal, closed), or never
// (stuck). Refused: an unpaid order (404 RESOURCE_NOT_EXISTS, "未支付的订单
// 不能发起退款"), a 51st refund of one order (400 INVALID_REQUEST: the cap is
// documented, its code is not), and balance_not_enough (403 NOT_ENOUGH).
func (s *Sim) wechatRefund(w http.ResponseWriter, body []byte, fault Fault) {
	var req wechatRefundReq
	if err := json.Unmarshal(body, &req); err != nil {
		s.wechatReply(w, http.StatusBadRequest, paramError("请求体格式错误: "+err.Error()))
		return
	}
	if req.OutRefundNo == "" || len(req.OutRefundNo) > 64 || (req.OutTradeNo == "" && req.TransactionID == "") || req.Amount == nil {
		s.wechatReply(w, http.StatusBadRequest, paramError("out_refund_no、amount 以及 out_trade_no 或 transaction_id 必填"))
		return
	}
	refund, err := parseFen(json.Number(req.Amount.Refund))
	if err != nil {
		s.wechatReply(w, http.StatusBadRequest, paramError("amount.refund: "+err.Error()))
		return
	}
	total, err := parseFen(json.Number(req.Amount.Total))
	if err != nil {
		s.wechatReply(w, http.StatusBadRequest, paramError("amount.total: "+err.Error()))
		return
	}
	if req.Amount.Currency != "" && req.Amount.Currency != "CNY" {
		s.wechatReply(w, http.StatusBadRequest, paramError("amount.currency 仅支持 CNY"))
		return
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	var t *Trade
	if req.OutTradeNo != "" {
		t = s.lookup(ProviderWechat, req.OutTradeNo)
	} else {
		t = s.wechatByTransactionID(req.TransactionID)
	}
	if t == nil {
		s.wechatReply(w, http.StatusNotFound, wechatError{"RESOURCE_NOT_EXISTS", "订单不存在"})
		return
	}
	// The same out_refund_no is the same refund.
	for _, rf := range s.refunds {
		if rf.Provider == ProviderWechat && rf.OutRefundNo == req.OutRefundNo {
			if rf.OutTradeNo != t.OutTradeNo || rf.AmountFen != refund {
				s.wechatReply(w, http.StatusBadRequest, wechatError{"INVALID_REQUEST", "退款单号重复，但请求参数与之前不一致"})
				return
			}
			s.wechatReply(w, http.StatusOK, s.wechatRefundView(rf, t))
			return
		}
	}
	if status, e, refused := s.wechatRefusesRefund(t, refund, total, fault); refused {
		s.wechatReply(w, status, e)
		return
	}
	now := s.now()
	rf := &Refund{
		Provider: ProviderWechat, OutTradeNo: t.OutTradeNo, TradeNo: t.TradeNo, OutRefundNo: req.OutRefundNo,
		RefundID: "50" + padSeq(s.nextSeq(), 8) + randDigits(20), AmountFen: refund, Status: "PROCESSING",
		NotifyURL: req.NotifyURL, Reason: req.Reason, CreatedAt: now,
	}
	s.refunds = append(s.refunds, rf)
	t.RefundedFen += refund
	t.State = WechatRefund
	s.wechatReply(w, http.StatusOK, s.wechatRefundView(rf, t))
	if fault.Mode == FaultStuck {
		return // PROCESSING until POST /_sim/refunds/{no}/succeed
	}
	s.afterLocked(s.cfg.WechatRefundDelay, func() {
		if rf.Status != "PROCESSING" { // an ABNORMAL refund waits for a person
			return
		}
		switch fault.Mode {
		case FaultAbnormal:
			s.abnormalWechatRefundLocked(rf, t)
		case FaultClosed:
			s.closeWechatRefundLocked(rf, t)
		default:
			s.settleWechatRefundLocked(rf, t)
		}
	})
}

// wechatMaxRefunds: "每个支付订单的部分退款次数不能超过50次".
const wechatMaxRefunds = 50

// wechatRefusesRefund checks a new refund: the order paid, the total and
// the refundable amount, the 50-refund cap, a balance_not_enough fault.
func (s *Sim) wechatRefusesRefund(t *Trade, refund, total int64, fault Fault) (int, wechatError, bool) {
	if t.State != WechatSuccess && t.State != WechatRefund {
		return http.StatusNotFound, wechatError{"RESOURCE_NOT_EXISTS", "订单不存在"}, true
	}
	if total != t.TotalFen {
		return http.StatusBadRequest, wechatError{"INVALID_REQUEST", "订单金额与原订单不一致"}, true
	}
	if refund > t.TotalFen-t.RefundedFen {
		return http.StatusBadRequest, wechatError{"INVALID_REQUEST", "申请退款金额超过订单可退金额"}, true
	}
	n := 0
	for _, rf := range s.refunds {
		if rf.Provider == ProviderWechat && rf.OutTradeNo == t.OutTradeNo {
			n++
		}
	}
	if n >= wechatMaxRefunds {
		return http.StatusBadRequest, wechatError{"INVALID_REQUEST", "每个支付订单的部分退款次数不能超过50次"}, true
	}
	if fault.Mode == FaultBalanceNotEnough {
		return http.StatusForbidden, wechatError{"NOT_ENOUGH", "基本账户余额不足，请充值后重新发起"}, true
	}
	return 0, wechatError{}, false
}

// settleWechatRefundLocked turns a PROCESSING (or ABNORMAL) refund into
// SUCCESS and sends REFUND.SUCCESS.
func (s *Sim) settleWechatRefundLocked(rf *Refund, t *Trade) {
	if rf.Status != "PROCESSING" && rf.Status != "ABNORMAL" {
		return
	}
	rf.Status, rf.SuccessAt = "SUCCESS", s.now()
	s.notifyWechatRefundLocked(rf, t, "REFUND.SUCCESS", "退款成功")
}

// abnormalWechatRefundLocked: the money could not go back (the buyer's
// card closed, the account frozen): ABNORMAL and REFUND.ABNORMAL; the
// amount stays taken until a person resolves it.
func (s *Sim) abnormalWechatRefundLocked(rf *Refund, t *Trade) {
	rf.Status = "ABNORMAL"
	s.notifyWechatRefundLocked(rf, t, "REFUND.ABNORMAL", "退款异常")
}

// closeWechatRefundLocked: the refund failed for good (CLOSED, "退款关闭")
// and REFUND.CLOSED is sent; its amount can be refunded again. A trade
// left with no refunded money reads SUCCESS again (inferred: the docs do
// not say).
func (s *Sim) closeWechatRefundLocked(rf *Refund, t *Trade) {
	rf.Status = "CLOSED"
	t.RefundedFen -= rf.AmountFen
	if t.RefundedFen == 0 && t.State == WechatRefund {
		t.State = WechatSuccess
	}
	s.notifyWechatRefundLocked(rf, t, "REFUND.CLOSED", "退款关闭")
}

// notifyWechatRefundLocked sends the refund's notification of event to
// the refund's notify_url (the trade's when none was given).
func (s *Sim) notifyWechatRefundLocked(rf *Refund, t *Trade, event, summary string) {
	body := map[string]any{
		"mchid": s.km.ids.WechatMchID, "out_trade_no": rf.OutTradeNo, "transaction_id": rf.TradeNo,
		"out_refund_no": rf.OutRefundNo, "refund_id": rf.RefundID, "refund_status": rf.Status,
		"user_received_account": "支付用户零钱",
		"amount":                map[string]int64{"total": t.TotalFen, "refund": rf.AmountFen, "payer_total": t.TotalFen, "payer_refund": rf.AmountFen},
	}
	if !rf.SuccessAt.IsZero() {
		body["success_time"] = rf.SuccessAt.In(chinaTZ).Format(time.RFC3339)
	}
	plain, _ := json.Marshal(body)
	to := rf.NotifyURL
	if to == "" {
		to = t.NotifyURL
	}
	s.sendWechatLocked(t, rf, "refund", event, summary, "refund", plain, to, false)
}

// RefundAbnormal is WeChat failing to return a PROCESSING refund's money
// (the buyer's card closed, the account frozen): the refund reads
// ABNORMAL, REFUND.ABNORMAL is sent, and it stays so until a person
// resolves it (RefundSucceed).
func (s *Sim) RefundAbnormal(outRefundNo string) error {
	return s.withWechatRefund(outRefundNo, func(rf *Refund, t *Trade) error {
		if rf.Status != "PROCESSING" {
			return ErrTradeState
		}
		s.abnormalWechatRefundLocked(rf, t)
		return nil
	})
}

// RefundSucceed settles a PROCESSING or ABNORMAL WeChat refund now (for
// ABNORMAL: the merchant resolved it on the merchant platform).
func (s *Sim) RefundSucceed(outRefundNo string) error {
	return s.withWechatRefund(outRefundNo, func(rf *Refund, t *Trade) error {
		if rf.Status != "PROCESSING" && rf.Status != "ABNORMAL" {
			return ErrTradeState
		}
		s.settleWechatRefundLocked(rf, t)
		return nil
	})
}

func (s *Sim) withWechatRefund(outRefundNo string, fn func(*Refund, *Trade) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rf := range s.refunds {
		if rf.Provider == ProviderWechat && rf.OutRefundNo == outRefundNo {
			return fn(rf, s.trades[ProviderWechat][rf.OutTradeNo])
		}
	}
	return ErrNoRefund
}

func (s *Sim) wechatRefundQuery(w http.ResponseWriter, no string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rf := range s.refunds {
		if rf.Provider == ProviderWechat && rf.OutRefundNo == no {
			s.wechatReply(w, http.StatusOK, s.wechatRefundView(rf, s.trades[ProviderWechat][rf.OutTradeNo]))
			return
		}
	}
	s.wechatReply(w, http.StatusNotFound, wechatError{"RESOURCE_NOT_EXISTS", "退款单不存在"})
}
