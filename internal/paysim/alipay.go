package paysim

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Alipay gateway: POST /gateway.do, form body, RSA2, public-key mode.

const alipayTimeFormat = "2006-01-02 15:04:05"

// alipayError is the body of every non-10000 answer.
type alipayError struct {
	Code    string `json:"code"`
	Msg     string `json:"msg"`
	SubCode string `json:"sub_code,omitempty"`
	SubMsg  string `json:"sub_msg,omitempty"`
}

func bizFail(subCode, subMsg string) alipayError {
	return alipayError{Code: "40004", Msg: "Business Failed", SubCode: subCode, SubMsg: subMsg}
}

var alipayOps = map[string]bool{
	"alipay.trade.precreate": true, "alipay.trade.query": true, "alipay.trade.close": true,
	"alipay.trade.cancel": true, "alipay.trade.refund": true, "alipay.trade.fastpay.refund.query": true,
}

func (s *Sim) serveAlipay(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		s.alipayUnsigned(w, "", alipayError{Code: "40002", Msg: "Invalid Arguments", SubCode: "isv.invalid-parameter", SubMsg: "参数无效"})
		return
	}
	method := r.Form.Get("method")
	if method == alipayBillMethod {
		s.serveAlipayBillURL(w, r)
		return
	}
	if !alipayOps[method] {
		// Unknown methods get Alipay's top-level error_response.
		s.alipayUnsigned(w, "", alipayError{Code: "40002", Msg: "Invalid Arguments", SubCode: "isv.invalid-method", SubMsg: "不存在的方法名"})
		return
	}
	s.runOp(w, r, method, opAnswers{
		work:     func(w http.ResponseWriter) { s.alipayHandle(w, r, method, Fault{}) },
		sysError: func(w http.ResponseWriter) { s.alipaySigned(w, method, alipaySystemError(ShapeISP)) },
		ignored:  func(w http.ResponseWriter) { s.alipayIgnored(w, r, method) },
		unsigned: func(w http.ResponseWriter, status int, code string) {
			if code == "" {
				code = "ACQ.SYSTEM_ERROR"
			}
			b, _ := json.Marshal(bizFail(code, "paysim unsigned_error: an answer no provider signed"))
			w.Header().Set("Content-Type", "text/html;charset=utf-8")
			w.WriteHeader(status)
			_, _ = w.Write([]byte(`{"` + strings.ReplaceAll(method, ".", "_") + `_response":` + string(b) + `}`))
		},
		// The gateway's own limit, answered like its other gateway errors:
		// unsigned, or signed with shape signed (whether Alipay signs it is
		// not documented).
		rateLimited: func(w http.ResponseWriter, f Fault) {
			e := alipayError{Code: "40005", Msg: "Call Limited", SubCode: "isv.app-call-limited", SubMsg: "应用调用次数超限，包含调用频率超限"}
			if f.Shape == ShapeSigned {
				s.alipaySigned(w, method, e)
				return
			}
			s.alipayUnsigned(w, method, e)
		},
		resign: s.alipayResign,
		variant: func(w http.ResponseWriter, f Fault) {
			if f.Mode == FaultSystemError {
				s.alipaySigned(w, method, alipaySystemError(f.Shape))
				return
			}
			s.alipayHandle(w, r, method, f)
		},
	})
}

// alipaySystemError is Alipay's signed "outcome unknown" answer in its two
// real shapes.
func alipaySystemError(shape string) alipayError {
	if shape == ShapeACQ {
		return bizFail("ACQ.SYSTEM_ERROR", "系统错误")
	}
	return alipayError{Code: "20000", Msg: "Service Currently Unavailable", SubCode: "isp.unknow-error", SubMsg: "系统繁忙"}
}

var alipaySignRE = regexp.MustCompile(`,"sign":"[^"]*"}$`)

// alipayResign (bad_signature) replaces a signed answer's sign with a
// valid signature of other bytes: well-formed, and it does not verify.
// Unsigned gateway answers stay as they are.
func (s *Sim) alipayResign(rec *recorder, _ string) {
	b := rec.body.Bytes()
	if loc := alipaySignRE.FindIndex(b); loc != nil {
		bad := signSHA256RSA(s.km.alipayPlatformPriv, []byte("paysim bad_signature"))
		out := append(append([]byte(nil), b[:loc[0]]...), `,"sign":"`+bad+`"}`...)
		rec.body.Reset()
		rec.body.Write(out)
	}
}

// alipayIgnored answers an operation's normal, signed success without
// changing anything: a close or cancel that did not take effect, a QR code
// that leads nowhere, a refund that never moves money. Queries change
// nothing anyway and answer normally.
func (s *Sim) alipayIgnored(w http.ResponseWriter, r *http.Request, method string) {
	biz := bizParams{}
	var m map[string]json.RawMessage
	if json.Unmarshal([]byte(r.Form.Get("biz_content")), &m) == nil {
		for k, v := range m {
			biz[k] = jsonScalar(v)
		}
	}
	no := biz.get("out_trade_no")
	switch method {
	case "alipay.trade.close":
		s.alipaySigned(w, method, alipayCloseRsp{Code: "10000", Msg: "Success", OutTradeNo: no})
	case "alipay.trade.cancel":
		s.alipaySigned(w, method, alipayCancelRsp{Code: "10000", Msg: "Success", OutTradeNo: no, RetryFlag: "N", Action: "close"})
	case "alipay.trade.precreate":
		s.alipaySigned(w, method, alipayPrecreateRsp{Code: "10000", Msg: "Success", OutTradeNo: no, QRCode: newAlipayQR()})
	case "alipay.trade.refund":
		s.alipaySigned(w, method, alipayRefundRsp{Code: "10000", Msg: "Success", OutTradeNo: no,
			BuyerLogonID: simBuyerLogonID, BuyerUserID: simBuyerUserID, FundChange: "Y",
			RefundFee: biz.get("refund_amount"), SendBackFee: biz.get("refund_amount"),
			GmtRefundPay: s.now().In(chinaTZ).Format(alipayTimeFormat)})
	default:
		s.alipayHandle(w, r, method, Fault{})
	}
}

// alipayHandle serves an authentic request; fault is an operation's own fault
// (fund_change_n, query_too_early, …) or the zero Fault.
func (s *Sim) alipayHandle(w http.ResponseWriter, r *http.Request, method string, fault Fault) {
	f := r.Form
	// Gateway checks come first and are answered unsigned, as Alipay does.
	if f.Get("app_id") != s.km.ids.AlipayAppID {
		s.alipayUnsigned(w, method, alipayError{Code: "40002", Msg: "Invalid Arguments", SubCode: "isv.invalid-app-id", SubMsg: "无效的AppID参数"})
		return
	}
	if f.Get("sign_type") != "RSA2" {
		s.alipayUnsigned(w, method, alipayError{Code: "40002", Msg: "Invalid Arguments", SubCode: "isv.invalid-signature-type", SubMsg: "无效的签名类型"})
		return
	}
	if err := verifySHA256RSA(&s.km.alipayAppPriv.PublicKey, alipaySignContent(f, "sign"), f.Get("sign")); err != nil {
		s.alipayUnsigned(w, method, alipayError{Code: "40002", Msg: "Invalid Arguments", SubCode: "isv.invalid-signature", SubMsg: "验签出错"})
		return
	}
	biz := bizParams{}
	if raw := f.Get("biz_content"); raw != "" {
		var m map[string]json.RawMessage
		if err := json.Unmarshal([]byte(raw), &m); err != nil {
			s.alipayUnsigned(w, method, alipayError{Code: "40002", Msg: "Invalid Arguments", SubCode: "isv.invalid-parameter", SubMsg: "biz_content 不是合法的 JSON"})
			return
		}
		for k, v := range m {
			biz[k] = jsonScalar(v)
		}
	}
	var out any
	switch method {
	case "alipay.trade.precreate":
		out = s.alipayPrecreate(biz, f.Get("notify_url"), fault)
	case "alipay.trade.query":
		out = s.alipayQuery(biz)
	case "alipay.trade.close":
		out = s.alipayClose(biz)
	case "alipay.trade.cancel":
		out = s.alipayCancel(biz)
	case "alipay.trade.refund":
		out = s.alipayRefund(biz, fault)
	case "alipay.trade.fastpay.refund.query":
		out = s.alipayRefundQuery(biz, fault)
	case alipayBillMethod:
		out = s.alipayBillURL(r, biz)
	}
	s.alipaySigned(w, method, out)
}

// bizParams holds biz_content with "" treated as absent (the SDK sends
// empty strings for fields without omitempty).
type bizParams map[string]string

func (b bizParams) get(k string) string { return b[k] }

// jsonScalar returns a string's value or a number's literal; objects and
// arrays are kept as raw JSON.
func jsonScalar(v json.RawMessage) string {
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s
	}
	if string(v) == "null" {
		return ""
	}
	return string(v)
}

// alipaySigned writes the response framing with the signature over the
// exact bytes of the "<method>_response" value. No alipay_cert_sn: the SDK
// in public-key mode refuses responses that carry one.
func (s *Sim) alipaySigned(w http.ResponseWriter, method string, biz any) {
	b, err := json.Marshal(biz)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	sig := signSHA256RSA(s.km.alipayPlatformPriv, b)
	body := `{"` + strings.ReplaceAll(method, ".", "_") + `_response":` + string(b) + `,"sign":"` + sig + `"}`
	w.Header().Set("Content-Type", "text/html;charset=utf-8")
	_, _ = w.Write([]byte(body))
}

// alipayUnsigned is the gateway's unsigned error answer; method "" gives
// the top-level error_response.
func (s *Sim) alipayUnsigned(w http.ResponseWriter, method string, e alipayError) {
	b, _ := json.Marshal(e)
	key := "error_response"
	if method != "" {
		key = strings.ReplaceAll(method, ".", "_") + "_response"
	}
	w.Header().Set("Content-Type", "text/html;charset=utf-8")
	_, _ = w.Write([]byte(`{"` + key + `":` + string(b) + `}`))
}

// qrScanWindow: "预下单请求生成的二维码有效时间为2小时" (Alipay);
// "code_url有效期为2小时，过期后扫码不能再发起支付" (WeChat Native).
const qrScanWindow = 2 * time.Hour

func newAlipayQR() string { return "https://qr.alipay.com/bax0" + strings.ToLower(randAlnum(20)) }

type alipayPrecreateRsp struct {
	Code       string `json:"code"`
	Msg        string `json:"msg"`
	OutTradeNo string `json:"out_trade_no"`
	QRCode     string `json:"qr_code"`
}

var timeoutExpressRE = regexp.MustCompile(`^([1-9][0-9]*)([mhd])$|^1c$`)

// parseAlipayExpiry turns timeout_express ("90m", "2h", "1d", "1c" — range
// 1m..15d) or time_expire ("yyyy-MM-dd HH:mm:ss", Beijing time) into a
// deadline. Without either the QR code lives two hours.
func parseAlipayExpiry(now time.Time, timeoutExpress, timeExpire string) (time.Time, bool) {
	if timeExpire != "" {
		t, err := time.ParseInLocation(alipayTimeFormat, timeExpire, chinaTZ)
		if err != nil {
			return time.Time{}, false
		}
		return t, true
	}
	if timeoutExpress == "" {
		return now.Add(2 * time.Hour), true
	}
	m := timeoutExpressRE.FindStringSubmatch(timeoutExpress)
	if m == nil {
		return time.Time{}, false
	}
	if timeoutExpress == "1c" { // closes at the next midnight, Beijing time
		y, mo, d := now.In(chinaTZ).Date()
		return time.Date(y, mo, d+1, 0, 0, 0, 0, chinaTZ), true
	}
	n, err := strconv.Atoi(m[1])
	if err != nil {
		return time.Time{}, false
	}
	unit := map[string]time.Duration{"m": time.Minute, "h": time.Hour, "d": 24 * time.Hour}[m[2]]
	d := time.Duration(n) * unit
	if d > 15*24*time.Hour {
		return time.Time{}, false
	}
	return now.Add(d), true
}

// alipayPrecreate issues a QR code, scannable for two hours whatever the
// timeout. The same out_trade_no with the same parameters answers the same
// code while it is scannable, and a fresh one once its window has passed
// (unless qr_not_renewed).
func (s *Sim) alipayPrecreate(biz bizParams, notifyURL string, fault Fault) any {
	no, subject := biz.get("out_trade_no"), biz.get("subject")
	if no == "" || len(no) > 64 || subject == "" || biz.get("total_amount") == "" {
		return alipayError{Code: "40002", Msg: "Invalid Arguments", SubCode: "ACQ.INVALID_PARAMETER", SubMsg: "参数无效: out_trade_no, subject and total_amount are required"}
	}
	fen, err := parseYuan(biz.get("total_amount"))
	if err != nil {
		return alipayError{Code: "40002", Msg: "Invalid Arguments", SubCode: "ACQ.INVALID_PARAMETER", SubMsg: "参数无效: total_amount: " + err.Error()}
	}
	if pc := biz.get("product_code"); pc != "" && pc != "FACE_TO_FACE_PAYMENT" {
		return bizFail("ACQ.ACCESS_FORBIDDEN", "无权限使用接口: product_code must be FACE_TO_FACE_PAYMENT")
	}
	now := s.now()
	expires, ok := parseAlipayExpiry(now, biz.get("timeout_express"), biz.get("time_expire"))
	if !ok {
		return alipayError{Code: "40002", Msg: "Invalid Arguments", SubCode: "ACQ.INVALID_PARAMETER", SubMsg: "参数无效: timeout_express/time_expire"}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.lookup(ProviderAlipay, no); t != nil {
		switch t.State {
		case AlipayTradeSuccess, AlipayTradeFinish:
			return bizFail("ACQ.TRADE_HAS_SUCCESS", "交易已被支付")
		case AlipayTradeClosed:
			return bizFail("ACQ.TRADE_HAS_CLOSE", "交易已经关闭")
		}
		if t.TotalFen != fen || t.Subject != subject {
			return bizFail("ACQ.CONTEXT_INCONSISTENT", "交易信息被篡改")
		}
		t.RequestedExpiry = append(t.RequestedExpiry, expires)
		if !now.Before(t.QRExpiresAt) && fault.Mode != FaultQRNotRenewed {
			t.QRCode, t.QRExpiresAt = newAlipayQR(), now.Add(qrScanWindow)
		}
		return alipayPrecreateRsp{Code: "10000", Msg: "Success", OutTradeNo: no, QRCode: t.QRCode}
	}
	t := &Trade{
		Provider: ProviderAlipay, OutTradeNo: no, Subject: subject, TotalFen: fen, Total: formatYuan(fen),
		QRCode: newAlipayQR(), NotifyURL: notifyURL, State: StateQRIssued, CreatedAt: now, ExpiresAt: expires,
		RequestedExpiry: []time.Time{expires}, QRExpiresAt: now.Add(qrScanWindow),
	}
	s.addTrade(t)
	return alipayPrecreateRsp{Code: "10000", Msg: "Success", OutTradeNo: no, QRCode: t.QRCode}
}

// alipayFind looks a trade up by out_trade_no or trade_no. Trades nobody
// scanned do not exist for Alipay.
func (s *Sim) alipayFind(biz bizParams) *Trade {
	var t *Trade
	if no := biz.get("out_trade_no"); no != "" {
		t = s.lookup(ProviderAlipay, no)
	} else if tn := biz.get("trade_no"); tn != "" {
		for _, x := range s.trades[ProviderAlipay] {
			if x.TradeNo == tn {
				t = x
				s.expireIfDue(t, s.now())
				break
			}
		}
	}
	if t == nil || t.State == StateQRIssued || t.closedBeforeScan {
		return nil
	}
	return t
}

var tradeNotExist = bizFail("ACQ.TRADE_NOT_EXIST", "交易不存在")

type alipayFundBill struct {
	FundChannel string `json:"fund_channel"`
	Amount      string `json:"amount"`
	RealAmount  string `json:"real_amount"`
}

type alipayQueryRsp struct {
	Code           string           `json:"code"`
	Msg            string           `json:"msg"`
	TradeNo        string           `json:"trade_no"`
	OutTradeNo     string           `json:"out_trade_no"`
	BuyerLogonID   string           `json:"buyer_logon_id"`
	TradeStatus    string           `json:"trade_status"`
	TotalAmount    string           `json:"total_amount"`
	BuyerPayAmount string           `json:"buyer_pay_amount"`
	PointAmount    string           `json:"point_amount"`
	InvoiceAmount  string           `json:"invoice_amount"`
	SendPayDate    string           `json:"send_pay_date,omitempty"`
	ReceiptAmount  string           `json:"receipt_amount"`
	FundBillList   []alipayFundBill `json:"fund_bill_list,omitempty"`
	BuyerUserID    string           `json:"buyer_user_id"`
	Subject        string           `json:"subject,omitempty"`
}

const (
	simBuyerLogonID = "159****5620"
	simBuyerUserID  = "2088102177846875"
	simSellerID     = "2088102177846880"
	simOpenID       = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
)

func (s *Sim) alipayQuery(biz bizParams) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.alipayFind(biz)
	if t == nil {
		return tradeNotExist
	}
	rsp := alipayQueryRsp{
		Code: "10000", Msg: "Success", TradeNo: t.TradeNo, OutTradeNo: t.OutTradeNo,
		BuyerLogonID: simBuyerLogonID, TradeStatus: t.State, TotalAmount: formatYuan(t.TotalFen),
		BuyerPayAmount: "0.00", PointAmount: "0.00", InvoiceAmount: "0.00", ReceiptAmount: "0.00",
		BuyerUserID: simBuyerUserID, Subject: t.Subject,
	}
	if !t.PaidAt.IsZero() {
		paid := formatYuan(t.TotalFen)
		rsp.BuyerPayAmount, rsp.InvoiceAmount, rsp.ReceiptAmount = paid, paid, paid
		rsp.SendPayDate = t.PaidAt.In(chinaTZ).Format(alipayTimeFormat)
		rsp.FundBillList = []alipayFundBill{{FundChannel: "ALIPAYACCOUNT", Amount: paid, RealAmount: paid}}
	}
	return rsp
}

type alipayCloseRsp struct {
	Code       string `json:"code"`
	Msg        string `json:"msg"`
	TradeNo    string `json:"trade_no"`
	OutTradeNo string `json:"out_trade_no"`
}

func (s *Sim) alipayClose(biz bizParams) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.alipayFind(biz)
	if t == nil {
		return tradeNotExist
	}
	if t.State != AlipayWaitBuyerPay {
		return bizFail("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
	}
	s.closeUnpaidLocked(t, s.now())
	return alipayCloseRsp{Code: "10000", Msg: "Success", TradeNo: t.TradeNo, OutTradeNo: t.OutTradeNo}
}

type alipayCancelRsp struct {
	Code       string `json:"code"`
	Msg        string `json:"msg"`
	TradeNo    string `json:"trade_no,omitempty"`
	OutTradeNo string `json:"out_trade_no"`
	RetryFlag  string `json:"retry_flag"`
	Action     string `json:"action"`
}

// alipayCancel closes an unpaid trade (also one nobody scanned, so a later
// scan fails) or refunds a paid one in full.
func (s *Sim) alipayCancel(biz bizParams) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	var t *Trade
	if no := biz.get("out_trade_no"); no != "" {
		t = s.lookup(ProviderAlipay, no)
	}
	if t == nil {
		t = s.alipayFind(biz)
	}
	if t == nil {
		return tradeNotExist
	}
	rsp := alipayCancelRsp{Code: "10000", Msg: "Success", TradeNo: t.TradeNo, OutTradeNo: t.OutTradeNo, RetryFlag: "N", Action: "close"}
	switch t.State {
	case StateQRIssued, AlipayWaitBuyerPay:
		s.closeUnpaidLocked(t, now)
	case AlipayTradeClosed:
		if t.RefundedFen > 0 {
			rsp.Action = "refund"
		}
	case AlipayTradeSuccess:
		rest := t.TotalFen - t.RefundedFen - t.pendingFen
		rf := &Refund{
			Provider: ProviderAlipay, OutTradeNo: t.OutTradeNo, TradeNo: t.TradeNo,
			OutRefundNo: "cancel-" + t.OutTradeNo, RefundID: t.TradeNo, AmountFen: rest,
			Status: "REFUND_SUCCESS", Reason: "cancel", CreatedAt: now, SuccessAt: now,
		}
		s.refunds = append(s.refunds, rf)
		t.RefundedFen += rest
		t.State, t.ClosedAt = AlipayTradeClosed, now
		rsp.Action = "refund"
		s.notifyAlipayRefundLocked(t, rf)
	default:
		return bizFail("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
	}
	return rsp
}

type alipayRefundRsp struct {
	Code         string `json:"code"`
	Msg          string `json:"msg"`
	TradeNo      string `json:"trade_no"`
	OutTradeNo   string `json:"out_trade_no"`
	BuyerLogonID string `json:"buyer_logon_id"`
	FundChange   string `json:"fund_change"`
	RefundFee    string `json:"refund_fee"`
	GmtRefundPay string `json:"gmt_refund_pay,omitempty"`
	BuyerUserID  string `json:"buyer_user_id"`
	SendBackFee  string `json:"send_back_fee"`
}

// alipayRefundError is a refused refund: refund_fee and send_back_fee are
// "0.00" whatever was refunded before (a real answer's shape).
type alipayRefundError struct {
	alipayError
	RefundFee   string `json:"refund_fee"`
	SendBackFee string `json:"send_back_fee"`
}

func refundFail(e alipayError) alipayRefundError { return alipayRefundError{e, "0.00", "0.00"} }

// alipayRefund: a new out_request_no refunds (fund_change=Y); the same
// one again is the same refund (fund_change=N), refused with another
// amount; refunds of one trade closer together than AlipayRefundGap are
// refused with ACQ.SYSTEM_ERROR (the code for that rule is not
// documented: the one that forces a query).
func (s *Sim) alipayRefund(biz bizParams, fault Fault) any {
	amount, err := parseYuan(biz.get("refund_amount"))
	if err != nil {
		return alipayError{Code: "40002", Msg: "Invalid Arguments", SubCode: "ACQ.INVALID_PARAMETER", SubMsg: "参数无效: refund_amount: " + err.Error()}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.alipayFind(biz)
	if t == nil {
		return refundFail(tradeNotExist)
	}
	reqNo := biz.get("out_request_no")
	explicitReqNo := reqNo != ""
	if !explicitReqNo {
		reqNo = t.OutTradeNo // Alipay's default out_request_no
	}
	now := s.now()
	rsp := alipayRefundRsp{
		Code: "10000", Msg: "Success", TradeNo: t.TradeNo, OutTradeNo: t.OutTradeNo,
		BuyerLogonID: simBuyerLogonID, BuyerUserID: simBuyerUserID,
	}
	if rf := s.alipayRefundOf(t, reqNo); rf != nil {
		if rf.AmountFen != amount {
			return refundFail(bizFail("ACQ.DISCORDANT_REPEAT_REQUEST", "退款金额不一致"))
		}
		rsp.FundChange, rsp.RefundFee, rsp.SendBackFee = "N", formatYuan(t.RefundedFen), "0.00"
		if !rf.SuccessAt.IsZero() {
			rsp.GmtRefundPay = rf.SuccessAt.In(chinaTZ).Format(alipayTimeFormat)
		}
		return rsp
	}
	if e, refused := s.alipayRefusesRefund(t, amount, explicitReqNo, now, fault); refused {
		return refundFail(e)
	}
	rf := &Refund{
		Provider: ProviderAlipay, OutTradeNo: t.OutTradeNo, TradeNo: t.TradeNo, OutRefundNo: reqNo,
		RefundID: t.TradeNo, AmountFen: amount, Status: "PROCESSING", Reason: biz.get("refund_reason"), CreatedAt: now,
	}
	s.refunds = append(s.refunds, rf)
	t.lastRefundAt = now
	t.pendingFen += amount
	if fault.Mode == FaultFundChangeN {
		delay := time.Duration(fault.DelayMS) * time.Millisecond
		if delay == 0 {
			delay = time.Second
		}
		s.afterLocked(delay, func() { s.completeAlipayRefundLocked(t, rf) })
		rsp.FundChange, rsp.RefundFee, rsp.SendBackFee = "N", formatYuan(t.RefundedFen), "0.00"
		return rsp
	}
	s.completeAlipayRefundLocked(t, rf)
	rsp.FundChange = "Y"
	rsp.RefundFee = formatYuan(t.RefundedFen)
	rsp.SendBackFee = formatYuan(amount)
	rsp.GmtRefundPay = rf.SuccessAt.In(chinaTZ).Format(alipayTimeFormat)
	return rsp
}

// alipayRefusesRefund checks a new refund against the trade's state and
// balance, the 3-second rule and a balance_not_enough fault.
func (s *Sim) alipayRefusesRefund(t *Trade, amount int64, explicitReqNo bool, now time.Time, fault Fault) (alipayError, bool) {
	switch t.State {
	case AlipayTradeSuccess:
	case AlipayTradeClosed:
		return bizFail("ACQ.TRADE_HAS_CLOSE", "交易已经关闭"), true
	case AlipayTradeFinish:
		return bizFail("ACQ.TRADE_HAS_FINISHED", "交易已完结"), true
	default:
		return bizFail("ACQ.TRADE_STATUS_ERROR", "交易状态不合法"), true
	}
	switch {
	case amount > t.TotalFen-t.RefundedFen-t.pendingFen:
		return bizFail("ACQ.REASON_TRADE_REFUND_FEE_ERR", "退款金额超限"), true
	case !explicitReqNo && amount != t.TotalFen:
		return bizFail("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额与交易金额不一致"), true
	case s.cfg.AlipayRefundGap > 0 && !t.lastRefundAt.IsZero() && now.Sub(t.lastRefundAt) < s.cfg.AlipayRefundGap:
		return alipaySystemError(ShapeACQ), true
	case fault.Mode == FaultBalanceNotEnough:
		return bizFail("ACQ.SELLER_BALANCE_NOT_ENOUGH", "卖家余额不足"), true
	}
	return alipayError{}, false
}

// alipayRefundOf finds a trade's refund by out_request_no.
func (s *Sim) alipayRefundOf(t *Trade, reqNo string) *Refund {
	for _, rf := range s.refunds {
		if rf.Provider == ProviderAlipay && rf.OutTradeNo == t.OutTradeNo && rf.OutRefundNo == reqNo {
			return rf
		}
	}
	return nil
}

// completeAlipayRefundLocked moves a PROCESSING refund's money: the trade's
// refunded total grows (a full refund closes it) and the refund's
// notification is sent.
func (s *Sim) completeAlipayRefundLocked(t *Trade, rf *Refund) {
	if rf.Status != "PROCESSING" {
		return
	}
	now := s.now()
	rf.Status, rf.SuccessAt = "REFUND_SUCCESS", now
	t.pendingFen -= rf.AmountFen
	t.RefundedFen += rf.AmountFen
	if t.RefundedFen == t.TotalFen {
		t.State, t.ClosedAt = AlipayTradeClosed, now // a full refund closes the trade
	}
	s.notifyAlipayRefundLocked(t, rf)
}

type alipayRefundQueryRsp struct {
	Code         string `json:"code"`
	Msg          string `json:"msg"`
	TradeNo      string `json:"trade_no"`
	OutTradeNo   string `json:"out_trade_no"`
	OutRequestNo string `json:"out_request_no"`
	TotalAmount  string `json:"total_amount,omitempty"`
	RefundAmount string `json:"refund_amount,omitempty"`
	RefundStatus string `json:"refund_status,omitempty"`
	GmtRefundPay string `json:"gmt_refund_pay,omitempty"`
}

// alipayRefundQuery: an unknown refund, or one not yet completed, is a
// success without refund_status ("未返回该字段表示退款请求未收到或者退款失败").
// query_too_early answers so while the refund is younger than delay_ms
// (default 10 s: "建议商户在退款发起后间隔10秒以上再发起退款查询请求");
// legacy_query_shape answers the older shape: the refund's data, no
// refund_status.
func (s *Sim) alipayRefundQuery(biz bizParams, fault Fault) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.alipayFind(biz)
	if t == nil {
		return tradeNotExist
	}
	reqNo := biz.get("out_request_no")
	if reqNo == "" {
		reqNo = t.OutTradeNo
	}
	rsp := alipayRefundQueryRsp{Code: "10000", Msg: "Success", TradeNo: t.TradeNo, OutTradeNo: t.OutTradeNo, OutRequestNo: reqNo}
	rf := s.alipayRefundOf(t, reqNo)
	early := time.Duration(fault.DelayMS) * time.Millisecond
	if early == 0 {
		early = 10 * time.Second
	}
	switch {
	case rf == nil || rf.Status != "REFUND_SUCCESS":
	case fault.Mode == FaultQueryTooEarly && s.now().Sub(rf.CreatedAt) < early:
	case fault.Mode == FaultLegacyQueryShape:
		rsp.TotalAmount, rsp.RefundAmount = formatYuan(t.TotalFen), formatYuan(rf.AmountFen)
	default:
		rsp.TotalAmount, rsp.RefundAmount = formatYuan(t.TotalFen), formatYuan(rf.AmountFen)
		rsp.RefundStatus = rf.Status
		rsp.GmtRefundPay = rf.SuccessAt.In(chinaTZ).Format(alipayTimeFormat)
	}
	return rsp
}
