// Package reconcile compares a payment provider's daily bill (对账单) with
// tollgate's trade ledger, line by line in both directions, heals what the
// provider's signed query confirms, and reports every difference.
//
// It streams: the bill is read a batch of lines at a time (payproxy/bill's
// Reader), each batch looked up in the ledger in a few pipelined round
// trips, and tollgate's records of the day are found through a per-day
// index in Redis (index.go), scanned a batch at a time against the set of
// what the bill's lines named: what is not in it, the bill lacks (no
// Redis command ever works on a whole day at once). Differences
// wait in a Redis list until the bill has proved whole (its summary, its
// hash): a bad bill is an error, never a partial comparison, and nothing is
// healed or reported from it. So neither a day's lines nor its records are
// ever all in memory.
//
// The ledger is reached through the small Ledger interface, which payproxy
// implements: reconciliation never touches trade records itself.
package reconcile

import (
	"context"
	"time"

	"github.com/tollgate/tollgate/payproxy/bill"
)

// Kinds of difference.
const (
	// MissingLocally: a payment or refund the provider has that tollgate
	// does not know as such — no record of it, a trade not yet known as
	// paid (UNKNOWN, PAYING), a refund not yet known as done (PROCESSING).
	MissingLocally = "missing_locally"
	// MissingAtProvider: a trade PAID or a refund SUCCESS here, of that
	// day, absent from the bill, and not confirmed by the provider's signed
	// query either.
	MissingAtProvider = "missing_at_provider"
	// AmountMismatch: both sides have it, for different amounts.
	AmountMismatch = "amount_mismatch"
	// StateMismatch: both sides have it in contradicting final states — a
	// trade CLOSED here that the provider lists as paid, a refund FAILED or
	// ABNORMAL here that the provider lists as done, a refund SUCCESS here
	// that the provider's bill and query do not show done, a payment
	// REVOKED at the provider and PAID here.
	StateMismatch = "state_mismatch"
)

// Kinds lists every kind of difference.
var Kinds = []string{MissingLocally, MissingAtProvider, AmountMismatch, StateMismatch}

// Report states.
const (
	StateDone    = "done"
	StateError   = "error"
	StatePending = "pending"
)

// Report is the outcome of reconciling one channel's bill of one day,
// stored in Redis for 90 days and answered by the admin API.
type Report struct {
	Channel string `json:"channel"`
	Date    string `json:"date"`
	// State: done (compared), pending (the provider has no bill yet; it is
	// asked again later in the day) or error (the bill was bad or could not
	// be fetched: nothing was compared, healed or reported from it).
	State string `json:"state"`
	Error string `json:"error"`
	// Lines is the number of bill lines read, Matched those on which the
	// bill and tollgate agree, Healed the differences healed.
	Lines   int    `json:"lines"`
	Matched int    `json:"matched"`
	Healed  int    `json:"healed"`
	Totals  Totals `json:"totals"`
	// Differences lists every difference found (healed ones marked), up
	// to MaxDifferences.
	Differences []Difference `json:"differences"`
	// LastAttempt is the latest run of the date that could not compare
	// (pending or error) after this report was made: a failed re-check
	// never replaces a completed comparison, whose differences are what
	// ops act on; it is told beside it.
	LastAttempt *Attempt `json:"last_attempt,omitempty"`
}

// Attempt is a run that compared nothing.
type Attempt struct {
	State string    `json:"state"`
	Error string    `json:"error"`
	At    time.Time `json:"at"`
}

// Totals are the bill's sums and tollgate's for the same payments and
// refunds (after healing), plus tollgate's records of the day the bill
// lacks: on a clean day they are equal.
type Totals struct {
	ProviderPaidFen     int64 `json:"provider_paid_fen"`
	LocalPaidFen        int64 `json:"local_paid_fen"`
	ProviderRefundedFen int64 `json:"provider_refunded_fen"`
	LocalRefundedFen    int64 `json:"local_refunded_fen"`
}

// Difference is one disagreement between the bill and the ledger.
type Difference struct {
	Kind string `json:"kind"`
	// OrderNo is tollgate's order ("" when no record names one); TradeNo
	// the trade tollgate sent the provider (out_trade_no, the bill's
	// 商户订单号); RefundNo the refund's number, "" for a payment.
	OrderNo  string `json:"order_no"`
	TradeNo  string `json:"trade_no"`
	RefundNo string `json:"refund_no"`
	// ProviderFen is the bill's amount (0 when the bill lacks it), LocalFen
	// tollgate's (0 when tollgate has no record of it as paid or refunded).
	ProviderFen int64 `json:"provider_fen"`
	LocalFen    int64 `json:"local_fen"`
	Healed      bool  `json:"healed"`
}

// MaxDifferences bounds a report's list: a bill that disagrees with the
// ledger on more lines than this is a configuration mistake (another
// merchant's bill, another Redis), reported as an error with the first
// ones listed.
const MaxDifferences = 10_000

// Ref names a payment (by trade number) or a refund (by refund number).
type Ref struct {
	Refund   bool
	TradeNo  string
	RefundNo string
}

// Record is tollgate's record of a Ref.
type Record struct {
	Ref
	// Found: tollgate has a record of it. OrderNo may be set without it:
	// the trade's index names an order whose record does not hold the
	// trade (an instance died between the two writes).
	Found   bool
	OrderNo string
	// Channel of the trade ("" for refunds, whose channel is their trade's).
	Channel string
	// State is the trade's (PAID, PAYING, UNKNOWN, CLOSED) or the
	// refund's (SUCCESS, PROCESSING, FAILED, ABNORMAL).
	State     string
	AmountFen int64
}

// Ledger is tollgate's trade ledger, as payproxy offers it to
// reconciliation for one channel.
type Ledger interface {
	// Records returns tollgate's record of each ref, in order.
	Records(ctx context.Context, refs []Ref) ([]Record, error)
	// Heal asks the provider, by a signed query, about the payment or
	// refund of d, and records only what that answer confirms, for the
	// amount d.ProviderFen: a payment (PAID, or a duplicate payment), a
	// refund SUCCESS, each with its events. It reports whether the record
	// is now as the provider has it. An error means the provider or Redis
	// could not be asked.
	Heal(ctx context.Context, d Difference) (bool, error)
	// Confirmed reports whether the provider's signed query shows rec as
	// tollgate has it: paid (or the refund done) for its amount.
	Confirmed(ctx context.Context, rec Record) (bool, error)
	// Publish sends the reconcile.discrepancy event of an open difference
	// to the webhook, once per difference whatever the number of runs.
	Publish(ctx context.Context, date string, d Difference) error
}

// Job is one reconciliation: a channel's bill of one day.
type Job struct {
	Channel string
	// Date is the bill's day (yyyy-MM-dd); Start and End bound it [Start,
	// End) in the bill's time zone.
	Date       string
	Start, End time.Time
	// Fetch downloads and opens the bill.
	Fetch func(context.Context) (bill.Reader, error)
	// NoBillIsEmpty: the provider's "no bill" means there was no trade
	// that day (asked long enough after the day for the bill to exist),
	// so it is compared as an empty bill; otherwise it is "not ready yet".
	NoBillIsEmpty bool
	Ledger        Ledger
}
