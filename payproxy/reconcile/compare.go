package reconcile

import "github.com/tollgate/tollgate/payproxy/bill"

// The ledger's states, as payproxy stores them.
const (
	statePaid          = "PAID"
	stateClosed        = "CLOSED"
	stateRefundSuccess = "SUCCESS"
	stateRefundPending = "PROCESSING"
)

// classify compares one bill line with tollgate's record of it. It counts
// tollgate's amount of what agrees, and returns the difference to keep
// (encoded) or false when the line matches.
func (r *run) classify(l bill.Line, rec Record) (string, bool) {
	if l.Kind == bill.Refund {
		return r.classifyRefund(l, rec)
	}
	return r.classifyPayment(l, rec)
}

// classifyPayment: a payment line (Alipay: always a completed payment;
// WeChat: 交易状态 SUCCESS, or REVOKED for a payment taken back).
func (r *run) classifyPayment(l bill.Line, rec Record) (string, bool) {
	d := Difference{OrderNo: rec.OrderNo, TradeNo: l.OrderNo, ProviderFen: l.AmountFen}
	paid := rec.Found && rec.State == statePaid
	if paid {
		r.rep.Totals.LocalPaidFen += rec.AmountFen
	}
	if l.State == "REVOKED" {
		// Micropay only: the money went back to the buyer. Tollgate must
		// not hold it as paid.
		if !paid {
			return "", false
		}
		d.Kind, d.LocalFen = StateMismatch, rec.AmountFen
		return encode(pending{Difference: d}), true
	}
	p := pending{Difference: d}
	switch {
	case !rec.Found || (rec.Channel != "" && rec.Channel != r.job.Channel):
		// No record. If the trade's index names an order, an instance died
		// between the index and the record: the payment can be kept.
		p.Kind = MissingLocally
		p.Heal = !rec.Found && rec.OrderNo != ""
	case rec.AmountFen != l.AmountFen:
		p.Kind, p.LocalFen = AmountMismatch, rec.AmountFen
	case paid:
		return "", false
	case rec.State == stateClosed:
		// Closed here, paid at the provider: a close that did not take
		// effect, and a payment whose notification never came.
		p.Kind, p.Heal = StateMismatch, true
	default:
		// UNKNOWN or PAYING: tollgate has not learnt of the payment yet.
		p.Kind, p.Heal = MissingLocally, true
	}
	return encode(p), true
}

// classifyRefund: a refund line (Alipay: always a completed refund;
// WeChat: 退款状态 SUCCESS, or PROCESSING, CLOSED, ABNORMAL when the bill
// was made before the refund ended).
func (r *run) classifyRefund(l bill.Line, rec Record) (string, bool) {
	d := Difference{OrderNo: rec.OrderNo, TradeNo: l.OrderNo, RefundNo: l.RefundNo, ProviderFen: l.AmountFen}
	done := l.State == "" || l.State == stateRefundSuccess
	refunded := rec.Found && rec.State == stateRefundSuccess
	if refunded {
		r.rep.Totals.LocalRefundedFen += rec.AmountFen
	}
	p := pending{Difference: d, Record: rec}
	switch {
	case !rec.Found || (rec.TradeNo != "" && rec.TradeNo != l.OrderNo):
		// Never asked for here (a refund made on the merchant platform),
		// or this refund number belongs to another trade.
		p.Kind = MissingLocally
	case rec.AmountFen != l.AmountFen:
		p.Kind, p.LocalFen = AmountMismatch, rec.AmountFen
	case done && refunded:
		return "", false
	case done && rec.State == stateRefundPending:
		p.Kind, p.Heal = MissingLocally, true
	case done:
		// FAILED or ABNORMAL here, done at the provider.
		p.Kind, p.Heal = StateMismatch, true
	case refunded:
		// SUCCESS here, not done on the bill: the provider's query decides
		// whether the bill merely caught it before it completed.
		p.Kind, p.LocalFen, p.Explain, p.FromBill = StateMismatch, rec.AmountFen, true, true
	default:
		// Not done on either side: the poller follows it.
		return "", false
	}
	return encode(p), true
}
