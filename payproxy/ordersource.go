package payproxy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// With order_source, the backend decides what an order costs: payproxy GETs
// the template URL with {order_no} filled in and takes amount_fen and
// subject from the JSON answer.
//
// Forwarded headers: Authorization and every X-User-* header. authjwt
// removes X-User-* headers sent by clients and sets its own from the
// verified token, so the backend sees who is asking and can answer 403 for
// an order that is not theirs.

// backendOrder is the backend's answer.
type backendOrder struct {
	AmountFen json.RawMessage `json:"amount_fen"`
	Subject   string          `json:"subject"`
}

// orderSourceError carries the status the client gets.
type orderSourceError struct {
	status int
	code   string
	desc   string
}

func (e *orderSourceError) Error() string { return e.desc }

func (p *PayProxy) fetchOrder(ctx context.Context, r *http.Request, order string) (int64, string, error) {
	u := strings.ReplaceAll(p.OrderSource, "{order_no}", url.PathEscape(order))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, "", fmt.Errorf("order_source request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	for name, vals := range r.Header {
		if name == "Authorization" || strings.HasPrefix(name, "X-User-") {
			req.Header[name] = vals
		}
	}
	resp, err := p.orderClient.Do(req)
	if err != nil {
		return 0, "", &orderSourceError{http.StatusBadGateway, "order_source_unavailable", "the order service did not answer"}
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return 0, "", &orderSourceError{http.StatusNotFound, "not_found", "no such order"}
	case resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusUnauthorized:
		return 0, "", &orderSourceError{http.StatusForbidden, "forbidden", "the order service refused this order"}
	case resp.StatusCode != http.StatusOK:
		return 0, "", &orderSourceError{http.StatusBadGateway, "order_source_unavailable", fmt.Sprintf("the order service answered %d", resp.StatusCode)}
	}
	var bo backendOrder
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&bo); err != nil {
		return 0, "", &orderSourceError{http.StatusBadGateway, "order_source_unavailable", "the order service answered invalid JSON"}
	}
	fen, present, err := parseFen(bo.AmountFen)
	if err != nil || !present || fen <= 0 {
		return 0, "", &orderSourceError{http.StatusBadGateway, "order_source_unavailable", "the order service answered no valid amount_fen"}
	}
	return fen, bo.Subject, nil
}
