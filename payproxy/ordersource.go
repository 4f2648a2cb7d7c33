package payproxy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2"
)

// With order_source, the backend decides what an order costs and who may
// touch it: payproxy GETs the template URL with {order_no} filled in, for a
// create (taking amount_fen and subject from the JSON answer) and for the
// status and close of an order, and the backend answers 403 for an order
// that is not the caller's.
//
// The caller's identity is sent as X-User-Id (authjwt's verified
// {http.auth.user.id}) and X-User-<Claim> for each of order_claims
// ({http.auth.user.<claim>}), read from the request's replacer: never from
// the request's own headers, which a client may have set.

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
	u := strings.ReplaceAll(p.orderSource, "{order_no}", url.PathEscape(order))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, "", fmt.Errorf("order_source request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	for name, v := range p.identity(r) {
		req.Header[name] = v
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

// authorize asks order_source whether the caller may see or change order
// (403 forbidden, 404 not_found as for a create). Without order_source the
// route itself must be limited to callers who may touch every order.
func (p *PayProxy) authorize(r *http.Request, order string) error {
	if p.OrderSource == "" {
		return nil
	}
	_, _, err := p.fetchOrder(r.Context(), r, order)
	return err
}

// identity is the caller as authjwt verified it: X-User-Id and one
// X-User-<Claim> per order_claims entry, from the request's replacer.
func (p *PayProxy) identity(r *http.Request) http.Header {
	h := http.Header{}
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !ok {
		return h
	}
	set := func(header, placeholder string) {
		if v, ok := repl.GetString(placeholder); ok && v != "" && !strings.ContainsAny(v, "\r\n\x00") {
			h.Set(header, v)
		}
	}
	set("X-User-Id", "http.auth.user.id")
	for _, c := range p.OrderClaims {
		set("X-User-"+textproto.CanonicalMIMEHeaderKey(c), "http.auth.user."+c)
	}
	return h
}
