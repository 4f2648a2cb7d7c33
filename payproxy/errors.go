package payproxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/tollgate/tollgate/internal/httpjson"
	"github.com/tollgate/tollgate/payproxy/provider"
)

// Errors and the answers they get: an apiError is answered as it is; a
// failure of Redis or of the provider is mapped here (503, 502, 504),
// never taken for an answer.

// apiError is an error answer of the documented JSON shape.
type apiError struct {
	status int
	code   string
	desc   string
}

func (e *apiError) Error() string { return e.code + ": " + e.desc }

func badRequest(format string, a ...any) *apiError {
	return &apiError{http.StatusBadRequest, "invalid_request", fmt.Sprintf(format, a...)}
}

var (
	errNotFound      = &apiError{http.StatusNotFound, "not_found", "no such order"}
	errOrderPaid     = &apiError{http.StatusConflict, "order_paid", "the order is already paid"}
	errOrderArchived = &apiError{http.StatusConflict, "order_archived",
		"the order was archived after its retention (trade.archived): refund it on the provider's merchant platform"}
	errRedisDown     = &apiError{http.StatusServiceUnavailable, "redis_unavailable", "the trade store is unavailable"}
	errLockTimeout   = &apiError{http.StatusServiceUnavailable, "lock_timeout", "another request for this order is still running; retry"}
	errLockLostResp  = &apiError{http.StatusServiceUnavailable, "lock_lost", "the order lock was lost during the provider call; the trade state is UNKNOWN, retry"}
	errChanged       = &apiError{http.StatusConflict, "conflict", "the order changed meanwhile; retry"}
	errTooManyTrades = &apiError{http.StatusConflict, "too_many_trades",
		fmt.Sprintf("the order has had %d trades (each change of channel or amount makes one): pay one of them, or use a new order_no", maxTrades)}
)

var errAmountMismatch = &apiError{http.StatusBadRequest, "amount_mismatch", "the amount differs from the stored trade"}

var (
	errProviderUnknown = &apiError{http.StatusBadGateway, "provider_error", "the payment provider failed; the trade state is UNKNOWN, retry"}
	// errProviderBusy: the provider asked to slow down (WeChat 429, Alipay
	// 40005): nothing is known to be done; retry after Retry-After.
	errProviderBusy = &apiError{http.StatusServiceUnavailable, "provider_busy",
		"the payment provider asks to slow down; the state is UNKNOWN (a refund stays PROCESSING), retry later"}
)

// fail writes err as the documented JSON error; unexpected errors are
// Redis failures (503), logged without secrets.
func (p *PayProxy) fail(w http.ResponseWriter, err error) {
	status, code, desc := p.answerOf(err)
	var rl *retryLater
	if errors.As(err, &rl) && rl.after > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((rl.after+time.Second-1)/time.Second)))
	}
	writeError(w, status, code, desc)
}

// writeError is httpjson's error answer with payproxy's one rule on top:
// a 503 of ours (Redis, the lock) is worth retrying shortly (Retry-After:
// 1, as jwt_refresh's); a provider's rate limit carries only the wait the
// provider gave, if any (a second's hint would bring the clients back at
// a provider that asked them to slow down).
func writeError(w http.ResponseWriter, status int, code, desc string) {
	if status == http.StatusServiceUnavailable && code != errProviderBusy.code && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", "1")
	}
	httpjson.API.Error(w, status, code, desc)
}

// retryLater is an error answer with a Retry-After (the provider's).
type retryLater struct {
	*apiError
	after time.Duration
}

func (e *retryLater) Unwrap() error { return e.apiError }

// answerOf is the status, error code and description err is answered with.
func (p *PayProxy) answerOf(err error) (int, string, string) {
	var ae *apiError
	var oe *orderSourceError
	switch {
	case errors.As(err, &ae):
		return ae.status, ae.code, ae.desc
	case errors.As(err, &oe):
		return oe.status, oe.code, oe.desc
	}
	p.logger.Error("payment request failed", zap.Error(err))
	return errRedisDown.status, errRedisDown.code, errRedisDown.desc
}

// storeFailure is a Redis failure met on the way to or from the provider:
// answered as Redis down (503), never taken for the provider's answer.
type storeFailure struct{ err error }

func (e *storeFailure) Error() string { return e.err.Error() }
func (e *storeFailure) Unwrap() error { return e.err }

func describeProviderError(err error) error {
	var sf *storeFailure
	var ae *apiError
	if errors.As(err, &sf) || errors.As(err, &ae) {
		return err
	}
	if isTimeout(err) {
		return &apiError{http.StatusGatewayTimeout, "provider_timeout", "the payment provider did not answer in time; the trade state is UNKNOWN, retry"}
	}
	if wait, busy := provider.IsBusy(err); busy {
		return &retryLater{errProviderBusy, wait}
	}
	var pe *provider.Error
	if errors.As(err, &pe) {
		return &apiError{http.StatusBadGateway, "provider_rejected", "the payment provider refused: " + pe.ProviderCode}
	}
	return errProviderUnknown
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}
