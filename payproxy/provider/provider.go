// Package provider is the one small interface between payproxy and a
// payment provider's adapter (payproxy/alipay, payproxy/wechat), with the
// value types both sides use. It lives in its own package only because the
// adapters cannot import payproxy (payproxy imports them); payproxy
// re-exports it as payproxy.Provider.
//
// Amounts are int64 fen everywhere in this package. Only the adapters know
// how their provider spells money.
package provider

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Provider is one payment channel. Every method is safe for concurrent use.
type Provider interface {
	// Name is the channel name used in the API: "alipay" or "wechat".
	Name() string
	// Create issues the QR code of a trade. Calling it again with the same
	// TradeNo and parameters returns the same QR code.
	Create(ctx context.Context, req CreateRequest) (qrCode string, err error)
	// Query asks the provider for the state of a trade; it is the source of
	// truth.
	Query(ctx context.Context, tradeNo string) (QueryResult, error)
	// Close asks the provider to stop an unpaid trade so its QR code can
	// no longer be paid. A nil error means the provider accepted the close,
	// not that it took effect: only a query tells. A paid trade yields an
	// error whose Code is CodeTradePaid.
	Close(ctx context.Context, tradeNo string) error
	// Refund asks for a refund; RefundNo is the provider's idempotency key.
	Refund(ctx context.Context, req RefundRequest) (RefundResult, error)
	// QueryRefund asks for the state of a refund.
	QueryRefund(ctx context.Context, tradeNo, refundNo string) (RefundResult, error)
	// ParseNotification verifies and decodes an asynchronous notification.
	// Any error means the request must not be trusted.
	ParseNotification(r *http.Request) (*Notification, error)
	// Acknowledge writes the answer the provider expects for a notification
	// that was processed (and whose effects are stored).
	Acknowledge(w http.ResponseWriter)
	// Refuse writes a failure answer the provider takes as "not received,
	// retry" (status, tollgate's error code and a description).
	Refuse(w http.ResponseWriter, status int, code, description string)
}

// CreateRequest is a new trade.
type CreateRequest struct {
	TradeNo   string
	AmountFen int64
	Subject   string
	ExpiresAt time.Time
}

// TradeStatus is the provider's view of a trade, in payproxy's words.
type TradeStatus string

// Trade statuses reported by Query.
const (
	// TradeWaiting: created (or, for Alipay, not scanned yet), not paid.
	TradeWaiting TradeStatus = "WAITING"
	// TradePaid: paid (including partially or fully refunded later).
	TradePaid TradeStatus = "PAID"
	// TradeClosed: closed without payment.
	TradeClosed TradeStatus = "CLOSED"
	// TradePayFailed: the buyer's payment failed (WeChat PAYERROR) but
	// the trade is not closed: it must be closed at the provider.
	TradePayFailed TradeStatus = "PAY_FAILED"
	// TradeNotCreated: the provider holds no such trade (signed answer):
	// an Alipay QR code nobody scanned yet (the trade exists at Alipay
	// only from the scan on), a WeChat prepay that never arrived. Not
	// paid; whether it can still be paid depends on what was done to it.
	TradeNotCreated TradeStatus = "NOT_CREATED"
)

// QueryResult is what Query learned.
type QueryResult struct {
	Status          TradeStatus
	AmountFen       int64
	ProviderTradeID string // Alipay trade_no / WeChat transaction_id
}

// RefundRequest is a refund of part or all of a paid trade.
type RefundRequest struct {
	TradeNo   string
	RefundNo  string
	AmountFen int64
	TotalFen  int64
	Reason    string
}

// RefundStatus is the provider's view of a refund.
type RefundStatus string

// Refund statuses.
const (
	RefundProcessing RefundStatus = "PROCESSING"
	RefundSucceeded  RefundStatus = "SUCCESS"
	RefundFailed     RefundStatus = "FAILED"
	// RefundAbnormal: WeChat could not return the money (the buyer's card
	// closed, the account frozen); not final, it waits for a person.
	RefundAbnormal RefundStatus = "ABNORMAL"
	// RefundNotFound: the provider has no such refund (Alipay's answer
	// without refund_status or refund data): it never arrived or failed;
	// re-sending the same refund number is safe.
	RefundNotFound RefundStatus = "NOT_FOUND"
	// RefundUnconfirmed: the provider holds the refund's data but does not
	// say it succeeded (Alipay's older query answer: refund_amount without
	// refund_status, which its old documentation calls a success and its
	// current one "not received or failed"). Neither a success nor a
	// failure: another signed source must confirm it.
	RefundUnconfirmed RefundStatus = "UNCONFIRMED"
)

// RefundResult is what Refund or QueryRefund learned.
type RefundResult struct {
	Status    RefundStatus
	AmountFen int64
	// RefundedTotalFen is the trade's cumulative successfully refunded
	// amount, as this signed answer states it (Alipay's refund answer,
	// refund_fee, on code 10000 only); valid when HasRefundedTotal.
	RefundedTotalFen int64
	HasRefundedTotal bool
}

// NotificationKind tells what a notification is about.
type NotificationKind string

// Notification kinds.
const (
	NotifyTrade  NotificationKind = "trade"
	NotifyRefund NotificationKind = "refund"
)

// Notification is a verified asynchronous notification.
type Notification struct {
	Kind        NotificationKind
	ID          string // notify_id / event id, for logs
	TradeNo     string // our out_trade_no
	Status      TradeStatus
	AmountFen   int64 // the trade's total
	RefundNo    string
	RefundState RefundStatus
	RefundFen   int64
	// Merchant is the app id / merchant id the notification names; the
	// adapter has already checked it against its configuration.
	Merchant string
}

// Error codes of a definite answer from the provider.
const (
	CodeTradePaid      = "TRADE_PAID"
	CodeTradeNotFound  = "TRADE_NOT_FOUND"
	CodeTradeClosed    = "TRADE_CLOSED"
	CodeRefundRejected = "REFUND_REJECTED"
	CodeRejected       = "REJECTED"
	// CodeRefundConflict: the provider already holds this refund number
	// with other parameters and says it carried it out (Alipay
	// ACQ.DISCORDANT_REPEAT_REQUEST). Not a refusal of the refund: its
	// query tells what became of the number.
	CodeRefundConflict = "REFUND_CONFLICT"
)

// Error is a definite, signed answer from the provider saying no. Anything
// else (network errors, timeouts, system errors, unsigned answers) leaves the
// outcome unknown.
type Error struct {
	Code         string // one of the Code constants
	ProviderCode string // the provider's own code, for logs
	Message      string
}

func (e *Error) Error() string {
	return fmt.Sprintf("provider said %s (%s): %s", e.Code, e.ProviderCode, e.Message)
}

// ErrRefusedNotification marks a notification refused for its shape before
// any verification (e.g. naming a key payproxy does not use): a 400.
var ErrRefusedNotification = errors.New("notification refused")

// Busy is a provider asking to slow down: WeChat 429 FREQUENCY_LIMITED,
// Alipay 40005 (isv.app-call-limited / isv.method-call-limited, signed or
// not), or a 5xx carrying Retry-After. It is never a refusal, whatever its
// signature: the outcome is unknown, and the call is retried later.
type Busy struct {
	// RetryAfter is the wait the answer asked for (its Retry-After
	// header); 0 when it gave none.
	RetryAfter time.Duration
	Err        error
}

func (b *Busy) Error() string {
	if b.RetryAfter > 0 {
		return fmt.Sprintf("provider busy (retry after %s): %v", b.RetryAfter, b.Err)
	}
	return fmt.Sprintf("provider busy: %v", b.Err)
}

func (b *Busy) Unwrap() error { return b.Err }

// IsBusy reports whether err is a provider's "slow down", and the wait it
// asked for (0: none given).
func IsBusy(err error) (time.Duration, bool) {
	var b *Busy
	if errors.As(err, &b) {
		return b.RetryAfter, true
	}
	return 0, false
}

// ParseRetryAfter reads an HTTP Retry-After value (delay-seconds or an
// HTTP date) relative to now; 0 when absent or unreadable.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// IsCode reports whether err is a definite provider answer with code.
func IsCode(err error, code string) bool {
	var pe *Error
	return errors.As(err, &pe) && pe.Code == code
}

// IsDefinite reports whether err is a definite provider answer.
func IsDefinite(err error) bool {
	var pe *Error
	return errors.As(err, &pe)
}
