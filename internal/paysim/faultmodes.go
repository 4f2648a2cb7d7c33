package paysim

import "strings"

// FaultMode is one fault mode as GET /_sim/faults lists it: the
// operations it applies to, the Fault fields it reads, and one line of
// what it models.
type FaultMode struct {
	Mode       string   `json:"mode"`
	Operations []string `json:"operations"`
	Fields     []string `json:"fields,omitempty"`
	Models     string   `json:"models"`
}

// faultModes is every mode, one entry each; a new mode is one more entry
// (its name constant in faults.go, its behaviour where its operations are
// served). Sources and certainty: ../shared/PROVIDERS.md and the issue 15
// notes.
var faultModes = []FaultMode{
	// Transport and generic answers (issues 9 and 12).
	{FaultDelay, plus(plus(everyOp(), NotifyOperations...), billOperations...), []string{"delay_ms"},
		"the answer (or the notification) comes delay_ms late: later notifications overtake a delayed one"},
	{FaultError, plus(everyOp(), billOperations...), nil, "the provider's signed system error (Alipay 20000 isp.unknow-error, WeChat 500 SYSTEM_ERROR); nothing done"},
	{FaultReset, plus(everyOp(), billOperations...), nil, "the connection closes without an answer; nothing done"},
	{FaultDropResponse, everyOp(), nil, "the work is done, then the connection closes without an answer"},
	{FaultIgnore, everyOp(), nil, "the normal signed success and nothing done: a close that did not take effect, a refund that moved no money"},
	{FaultUnsignedError, everyOp(), []string{"status", "code"},
		"HTTP status (default 400) with a provider-shaped error carrying code and no signature, from a hop in front of the provider; nothing done"},

	// Notifications (issue 15).
	{FaultDuplicate, NotifyOperations, nil,
		"an acknowledged notification is sent again, same notify_id / event id, as both providers warn"},

	// Refunds (issue 15).
	{FaultAbnormal, []string{"wechat.refund"}, nil,
		"the refund is accepted (PROCESSING), then turns ABNORMAL with REFUND.ABNORMAL: the bank refused, a person must act"},
	{FaultClosed, []string{"wechat.refund"}, nil,
		"the refund is accepted (PROCESSING), then turns CLOSED with REFUND.CLOSED: it failed, no money moved"},
	{FaultStuck, []string{"wechat.refund"}, nil,
		"the refund is accepted and stays PROCESSING, with no notification, until POST /_sim/refunds/{no}/succeed"},
	{FaultFundChangeN, []string{"alipay.trade.refund"}, []string{"delay_ms"},
		"10000 with fund_change=N: not yet a success, the query shows no refund_status until it completes delay_ms later (default 1000)"},
	{FaultQueryTooEarly, []string{"alipay.trade.fastpay.refund.query"}, []string{"delay_ms"},
		"10000 without refund_status (nor refund data) while the refund is younger than delay_ms (default 10000), as when queried too soon"},
	{FaultLegacyQueryShape, []string{"alipay.trade.fastpay.refund.query"}, nil,
		"the older documented answer: refund_amount and the refund's data present, no refund_status"},
	{FaultBalanceNotEnough, []string{"alipay.trade.refund", "wechat.refund"}, nil,
		"the merchant's balance cannot cover the refund: Alipay 40004 ACQ.SELLER_BALANCE_NOT_ENOUGH, WeChat 403 NOT_ENOUGH; nothing done"},

	// Answers (issue 15).
	{FaultRateLimited, everyOp(), []string{"shape"},
		"rate limited: WeChat 429 FREQUENCY_LIMITED (signed), Alipay 40005 isv.app-call-limited (gateway answer, unsigned; shape signed: signed); nothing done"},
	{FaultBadSignature, everyOp(), nil, "the work is done and answered 200 under a signature that does not verify"},
	{FaultSigntest, wechatOperations(), nil, "the work is done and answered under a WECHATPAY/SIGNTEST/ probe signature"},
	{FaultStaleTimestamp, wechatOperations(), nil,
		"the work is done and answered correctly signed over a Wechatpay-Timestamp 10 minutes old"},
	{FaultHTML502, everyOp(), nil, "502 with an HTML body from a proxy in front of the provider; nothing done"},
	{FaultSystemError, alipayOperations(), []string{"shape"},
		"Alipay's signed system error in its real shapes: shape isp (20000 isp.unknow-error, default) or acq (40004 ACQ.SYSTEM_ERROR); nothing done"},

	// Bills (issue 13): the first step of a bill download.
	{FaultBillNotReady, billOperations, nil,
		"no bill yet: Alipay's unsigned 40004 isp.bill_not_exist, WeChat's 400 STATEMENT_CREATING"},
	{FaultCorruptBill, billOperations, nil,
		"the link of this answer serves a damaged file: Alipay a truncated zip, WeChat a file whose SHA1 is not the signed hash_value"},

	// QR codes (issue 15).
	{FaultQRNotRenewed, []string{"alipay.trade.precreate", "wechat.native.prepay"}, nil,
		"issuing an open trade again answers the QR code it already has, even past its 2-hour scan window"},
}

// FaultModes lists every fault mode (copies).
func FaultModes() []FaultMode {
	out := make([]FaultMode, len(faultModes))
	for i, m := range faultModes {
		m.Operations = append([]string(nil), m.Operations...)
		m.Fields = append([]string(nil), m.Fields...)
		out[i] = m
	}
	return out
}

func faultMode(name string) (FaultMode, bool) {
	for _, m := range faultModes {
		if m.Mode == name {
			return m, true
		}
	}
	return FaultMode{}, false
}

// appliesTo: op is one of the mode's operations, or "*" and the mode
// applies to every provider operation.
func (m FaultMode) appliesTo(op string) bool {
	has := func(o string) bool {
		for _, x := range m.Operations {
			if x == o {
				return true
			}
		}
		return false
	}
	if op != "*" {
		return has(op)
	}
	for _, o := range everyOp() {
		if !has(o) {
			return false
		}
	}
	return true
}

// billOperations are the bills' first steps: only the transport modes and
// the bill modes apply to them.
var billOperations = []string{opAlipayBill, opWechatBill}

// everyOp is every trade operation (Operations without the bills).
func everyOp() []string {
	var out []string
	for _, op := range Operations {
		if op != opAlipayBill && op != opWechatBill {
			out = append(out, op)
		}
	}
	return out
}

func alipayOperations() []string { return opsWithPrefix("alipay.") }

func wechatOperations() []string { return opsWithPrefix("wechat.") }

func opsWithPrefix(p string) []string {
	var out []string
	for _, op := range everyOp() {
		if strings.HasPrefix(op, p) {
			out = append(out, op)
		}
	}
	return out
}

func plus(a []string, b ...string) []string { return append(a, b...) }
