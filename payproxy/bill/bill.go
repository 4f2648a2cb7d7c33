// Package bill is the provider-neutral shape of a payment provider's daily
// trade bill (对账单): one Line per payment or refund the provider lists,
// and the bill's own totals. The parsers live beside their adapters
// (payproxy/alipay, payproxy/wechat) and yield these lines one at a time,
// so a bill of a million lines is read in bounded memory; reconciliation
// consumes them without knowing either provider's format.
package bill

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Kind tells a payment line from a refund line.
type Kind uint8

// Line kinds.
const (
	Payment Kind = iota + 1
	Refund
)

func (k Kind) String() string {
	switch k {
	case Payment:
		return "payment"
	case Refund:
		return "refund"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Line is one detail line of a bill, normalized.
type Line struct {
	Kind Kind
	// OrderNo is the merchant's order number (商户订单号: out_trade_no).
	OrderNo string
	// TradeNo is the provider's trade number (支付宝交易号, 微信订单号).
	TradeNo string
	// RefundNo is the merchant's refund number on refund lines (Alipay
	// 退款批次号/请求号 = out_request_no, WeChat 商户退款单号 =
	// out_refund_no); "" on payment lines.
	RefundNo string
	// AmountFen is the payment's order amount or the refund's amount, in
	// fen, never negative (Alipay writes refunds negative; the sign is the
	// Kind here).
	AmountFen int64
	// State is WeChat's own word: 交易状态 on payment lines (SUCCESS,
	// REVOKED), 退款状态 on refund lines (SUCCESS, PROCESSING, …). Alipay's
	// bill has no state column and lists only completed payments and
	// refunds: State is "" there.
	State string
	// Time is when the line happened, Beijing time: Alipay 完成时间, WeChat
	// 交易时间.
	Time time.Time
}

// Totals are a bill's counts and sums. A parser returns io.EOF only once
// the totals of the lines it yielded agree with the bill's own summary.
type Totals struct {
	Payments   int
	PaymentFen int64
	Refunds    int
	RefundFen  int64
}

// Add counts one line.
func (t *Totals) Add(l Line) {
	if l.Kind == Refund {
		t.Refunds++
		t.RefundFen += l.AmountFen
		return
	}
	t.Payments++
	t.PaymentFen += l.AmountFen
}

// Reader yields a bill's lines one at a time.
//
// Next returns the next line, or io.EOF once every line was read and the
// bill proved whole: its summary agrees with the lines (and, for WeChat,
// the file's SHA1 is the one the signed answer gave). Any other error means
// the bill is bad: every line read before it must be discarded, never used
// as a complete bill. Close releases the file or connection behind it.
type Reader interface {
	Next() (Line, error)
	Totals() Totals
	Close() error
}

var (
	// ErrNotReady is the provider saying it has no bill for that day: not
	// generated yet, or (Alipay cannot tell the two apart, and WeChat
	// answers the same) no trade that day. Ask again later; after the
	// provider's usual hour it means "no bill".
	ErrNotReady = errors.New("bill not ready")
	// ErrBadBill wraps every reason a bill is refused: an unreadable zip, a
	// hash that does not match, unknown or missing columns, a line that
	// does not parse, a summary that disagrees with the lines.
	ErrBadBill = errors.New("bad bill")
)

// Bad wraps a reason to refuse a bill in ErrBadBill.
func Bad(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadBill, fmt.Sprintf(format, args...))
}

// Stream gives a parser's line source the Reader contract's end: once Src
// returned io.EOF or an error, every later Next returns the same.
type Stream struct {
	Src func() (Line, error)
	err error
}

// Next returns Src's next line, or the end it already reached.
func (s *Stream) Next() (Line, error) {
	if s.err != nil {
		return Line{}, s.err
	}
	l, err := s.Src()
	if err != nil {
		s.err = err
	}
	return l, err
}

// ColumnIndex maps a bill's header to column positions: every known column
// present once and nothing else, or a bad bill naming the first column
// that is unknown, repeated or missing. what names the file in errors.
func ColumnIndex(header, known []string, what string) (map[string]int, error) {
	isKnown := make(map[string]bool, len(known))
	for _, k := range known {
		isKnown[k] = true
	}
	col := make(map[string]int, len(known))
	for i, h := range header {
		h = strings.TrimSpace(h)
		if _, dup := col[h]; dup {
			return nil, Bad("%s header names column %q twice", what, h)
		}
		if !isKnown[h] {
			return nil, Bad("%s header: unknown column %q", what, h)
		}
		col[h] = i
	}
	for _, k := range known {
		if _, ok := col[k]; !ok {
			return nil, Bad("%s header: missing column %q", what, k)
		}
	}
	return col, nil
}
