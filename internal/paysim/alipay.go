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
		work: func(w http.ResponseWriter) { s.alipayHandle(w, r, method) },
		sysError: func(w http.ResponseWriter) {
			s.alipaySigned(w, method, alipayError{Code: "20000", Msg: "Service Currently Unavailable", SubCode: "ACQ.SYSTEM_ERROR", SubMsg: "系统错误"})
		},
		ignored: func(w http.ResponseWriter) { s.alipayIgnored(w, r, method) },
		unsigned: func(w http.ResponseWriter, status int, code string) {
			if code == "" {
				code = "ACQ.SYSTEM_ERROR"
			}
			b, _ := json.Marshal(bizFail(code, "paysim unsigned_error: an answer no provider signed"))
			w.Header().Set("Content-Type", "text/html;charset=utf-8")
			w.WriteHeader(status)
			_, _ = w.Write([]byte(`{"` + strings.ReplaceAll(method, ".", "_") + `_response":` + string(b) + `}`))
		},
	})
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
		s.alipaySigned(w, method, alipayPrecreateRsp{Code: "10000", Msg: "Success", OutTradeNo: no,
			QRCode: "https://qr.alipay.com/bax0" + strings.ToLower(randAlnum(20))})
	case "alipay.trade.refund":
		s.alipaySigned(w, method, alipayRefundRsp{Code: "10000", Msg: "Success", OutTradeNo: no,
			BuyerLogonID: simBuyerLogonID, BuyerUserID: simBuyerUserID, FundChange: "Y",
			RefundFee: biz.get("refund_amount"), SendBackFee: biz.get("refund_amount"),
			GmtRefundPay: time.Now().In(chinaTZ).Format(alipayTimeFormat)})
	default:
		s.alipayHandle(w, r, method)
	}
}

func (s *Sim) alipayHandle(w http.ResponseWriter, r *http.Request, method string) {
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
		out = s.alipayPrecreate(biz, f.Get("notify_url"))
	case "alipay.trade.query":
		out = s.alipayQuery(biz)
	case "alipay.trade.close":
		out = s.alipayClose(biz)
	case "alipay.trade.cancel":
		out = s.alipayCancel(biz)
	case "alipay.trade.refund":
		out = s.alipayRefund(biz)
	case "alipay.trade.fastpay.refund.query":
		out = s.alipayRefundQuery(biz)
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

func (s *Sim) alipayPrecreate(biz bizParams, notifyURL string) any {
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
	now := time.Now()
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
		// Same out_trade_no and same parameters: the same QR code.
		return alipayPrecreateRsp{Code: "10000", Msg: "Success", OutTradeNo: no, QRCode: t.QRCode}
	}
	t := &Trade{
		Provider: ProviderAlipay, OutTradeNo: no, Subject: subject, TotalFen: fen, Total: formatYuan(fen),
		QRCode: "https://qr.alipay.com/bax0" + strings.ToLower(randAlnum(20)), NotifyURL: notifyURL,
		State: StateQRIssued, CreatedAt: now, ExpiresAt: expires, RequestedExpiry: []time.Time{expires},
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
				s.expireIfDue(t, time.Now())
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
	s.closeUnpaidLocked(t, time.Now())
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
	now := time.Now()
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
		rest := t.TotalFen - t.RefundedFen
		rf := &Refund{
			Provider: ProviderAlipay, OutTradeNo: t.OutTradeNo, TradeNo: t.TradeNo,
			OutRefundNo: "cancel-" + t.OutTradeNo, RefundID: t.TradeNo, AmountFen: rest,
			Status: "REFUND_SUCCESS", Reason: "cancel", CreatedAt: now, SuccessAt: now,
		}
		s.refunds = append(s.refunds, rf)
		t.RefundedFen = t.TotalFen
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
	GmtRefundPay string `json:"gmt_refund_pay"`
	BuyerUserID  string `json:"buyer_user_id"`
	SendBackFee  string `json:"send_back_fee"`
}

func (s *Sim) alipayRefund(biz bizParams) any {
	amount, err := parseYuan(biz.get("refund_amount"))
	if err != nil {
		return alipayError{Code: "40002", Msg: "Invalid Arguments", SubCode: "ACQ.INVALID_PARAMETER", SubMsg: "参数无效: refund_amount: " + err.Error()}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.alipayFind(biz)
	if t == nil {
		return tradeNotExist
	}
	reqNo := biz.get("out_request_no")
	explicitReqNo := reqNo != ""
	if !explicitReqNo {
		reqNo = t.OutTradeNo // Alipay's default out_request_no
	}
	now := time.Now()
	rsp := alipayRefundRsp{
		Code: "10000", Msg: "Success", TradeNo: t.TradeNo, OutTradeNo: t.OutTradeNo,
		BuyerLogonID: simBuyerLogonID, BuyerUserID: simBuyerUserID,
	}
	// The same out_request_no again is the same refund: no money moves.
	for _, rf := range s.refunds {
		if rf.Provider == ProviderAlipay && rf.OutTradeNo == t.OutTradeNo && rf.OutRefundNo == reqNo {
			rsp.FundChange = "N"
			rsp.RefundFee = formatYuan(t.RefundedFen)
			rsp.SendBackFee = "0.00"
			rsp.GmtRefundPay = rf.SuccessAt.In(chinaTZ).Format(alipayTimeFormat)
			return rsp
		}
	}
	switch t.State {
	case AlipayTradeSuccess:
	case AlipayTradeClosed:
		return bizFail("ACQ.TRADE_HAS_CLOSE", "交易已经关闭")
	case AlipayTradeFinish:
		return bizFail("ACQ.TRADE_HAS_FINISHED", "交易已完结")
	default:
		return bizFail("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
	}
	if amount > t.TotalFen-t.RefundedFen {
		return bizFail("ACQ.REASON_TRADE_REFUND_FEE_ERR", "退款金额超限")
	}
	if !explicitReqNo && amount != t.TotalFen {
		return bizFail("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额与交易金额不一致")
	}
	rf := &Refund{
		Provider: ProviderAlipay, OutTradeNo: t.OutTradeNo, TradeNo: t.TradeNo, OutRefundNo: reqNo,
		RefundID: t.TradeNo, AmountFen: amount, Status: "REFUND_SUCCESS", Reason: biz.get("refund_reason"),
		CreatedAt: now, SuccessAt: now,
	}
	s.refunds = append(s.refunds, rf)
	t.RefundedFen += amount
	if t.RefundedFen == t.TotalFen {
		t.State, t.ClosedAt = AlipayTradeClosed, now // a full refund closes the trade
	}
	s.notifyAlipayRefundLocked(t, rf)
	rsp.FundChange = "Y"
	rsp.RefundFee = formatYuan(t.RefundedFen)
	rsp.SendBackFee = formatYuan(amount)
	rsp.GmtRefundPay = now.In(chinaTZ).Format(alipayTimeFormat)
	return rsp
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

// alipayRefundQuery: an unknown refund is a success without refund_status
// ("未返回该字段表示退款请求未收到或者退款失败").
func (s *Sim) alipayRefundQuery(biz bizParams) any {
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
	for _, rf := range s.refunds {
		if rf.Provider == ProviderAlipay && rf.OutTradeNo == t.OutTradeNo && rf.OutRefundNo == reqNo {
			rsp.TotalAmount = formatYuan(t.TotalFen)
			rsp.RefundAmount = formatYuan(rf.AmountFen)
			rsp.RefundStatus = rf.Status
			rsp.GmtRefundPay = rf.SuccessAt.In(chinaTZ).Format(alipayTimeFormat)
		}
	}
	return rsp
}
