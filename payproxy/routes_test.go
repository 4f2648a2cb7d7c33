package payproxy_test

import (
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// routeCase is one request and where it must end: answered by payproxy
// (status, error code, and for a 405 the Allow header) or passed on to the
// next handler ("upstream").
type routeCase struct {
	name, method, path string
	body               any
	status             int
	code               string // "upstream": the next handler answered
	allow              string
}

// checkRoutes sends each case and checks the answer, that Redis did not
// change and that the provider was not called.
func checkRoutes(t *testing.T, e *env, cases []routeCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before, calls := e.redis.Dump(), e.sim.Calls()
			r := do(t, c.method, e.base+c.path, c.body)
			switch {
			case c.code == "upstream":
				if r.Status != http.StatusOK || string(r.Raw) != "upstream" {
					t.Fatalf("%s %s: got %d %s, want the next handler", c.method, c.path, r.Status, r.Raw)
				}
			case c.method == http.MethodHead:
				if r.Status != c.status || string(r.Raw) == "upstream" {
					t.Fatalf("%s %s: got %d, want %d from payproxy", c.method, c.path, r.Status, c.status)
				}
			default:
				wantStatus(t, r, c.status, c.code)
				if r.str("error_description") == "" {
					t.Errorf("no error_description: %s", r.Raw)
				}
			}
			if got := r.Header.Get("Allow"); got != c.allow {
				t.Errorf("Allow %q, want %q", got, c.allow)
			}
			if !reflect.DeepEqual(before, e.redis.Dump()) {
				t.Error("redis changed")
			}
			if !reflect.DeepEqual(calls, e.sim.Calls()) {
				t.Error("the provider was called")
			}
		})
	}
}

// TestTrailingSlashesDotSegmentsAndEncodedSlashesRouteAsTheyAlwaysHave:
// paths that a router could clean, redirect or split differently reach
// the same endpoint, the same refusal or the next handler as they always
// have: payproxy splits the decoded path at every "/" (an encoded slash
// too) and takes "", "." and ".." as the segment they are, never cleaning
// the path or redirecting.
func TestTrailingSlashesDotSegmentsAndEncodedSlashesRouteAsTheyAlwaysHave(t *testing.T) {
	e := newEnv(t)
	e.options["poll_interval"] = "1h"
	e.start()
	checkRoutes(t, e, []routeCase{
		// A trailing slash: an empty order_no, refund_no or channel.
		{"status with an empty order_no", "GET", "/pay/trades/", nil, 400, "invalid_request", ""},
		{"create with a trailing slash is a status", "POST", "/pay/trades/", `{}`, 405, "method_not_allowed", "GET"},
		{"refund status with an empty refund_no", "GET", "/pay/refunds/", nil, 400, "invalid_request", ""},
		{"notify with an empty channel", "POST", "/pay/notify/", nil, 404, "not_found", ""},
		{"status with a trailing slash", "GET", "/pay/trades/ORD_EDGE_1/", nil, 0, "upstream", ""},
		{"close with a trailing slash", "POST", "/pay/trades/ORD_EDGE_1/close/", nil, 0, "upstream", ""},
		{"two trailing slashes", "GET", "/pay/trades//", nil, 0, "upstream", ""},
		{"the prefix alone with a slash", "GET", "/pay/", nil, 0, "upstream", ""},
		// Empty segments inside the path.
		{"close with an empty order_no", "POST", "/pay/trades//close", nil, 400, "invalid_request", ""},
		{"an empty segment before trades", "GET", "/pay//trades/ORD_EDGE_1", nil, 0, "upstream", ""},
		// Dot segments are never resolved.
		{"status of order ..", "GET", "/pay/trades/..", nil, 400, "invalid_request", ""},
		{"status of order .", "GET", "/pay/trades/.", nil, 400, "invalid_request", ""},
		{"status of order %2E%2E", "GET", "/pay/trades/%2E%2E", nil, 400, "invalid_request", ""},
		{"close of order ..", "POST", "/pay/trades/../close", nil, 400, "invalid_request", ""},
		{"refund status of ..", "GET", "/pay/refunds/..", nil, 400, "invalid_request", ""},
		{"notify of channel ..", "POST", "/pay/notify/..", nil, 404, "not_found", ""},
		{"status then ..", "GET", "/pay/trades/ORD_EDGE_1/..", nil, 0, "upstream", ""},
		{"close through ..", "POST", "/pay/trades/ORD_EDGE_1/../close", nil, 0, "upstream", ""},
		{"create through .", "POST", "/pay/./trades", `{}`, 0, "upstream", ""},
		{"back out of the prefix and in again", "GET", "/pay/../pay/trades/ORD_EDGE_1", nil, 0, "upstream", ""},
		// An encoded slash separates segments, as a slash does.
		{"encoded slash in order_no of a status", "GET", "/pay/trades/ORD%2FEDGE", nil, 0, "upstream", ""},
		{"encoded slash makes a close path", "GET", "/pay/trades/ORD_EDGE_1%2Fclose", nil, 405, "method_not_allowed", "POST"},
		{"encoded slash makes a close", "POST", "/pay/trades/NOPE_EDGE%2Fclose", nil, 404, "not_found", ""},
		{"encoded slash in order_no of a close", "POST", "/pay/trades/ORD%2FEDGE/close", nil, 0, "upstream", ""},
		{"encoded slash in refund_no", "GET", "/pay/refunds/RF%2F1", nil, 0, "upstream", ""},
		{"encoded slash in channel", "POST", "/pay/notify/alipay%2Fx", nil, 404, "not_found", ""},
		{"encoded slash after the prefix", "POST", "/pay%2Ftrades", `{"order_no":`, 400, "invalid_request", ""},
		// Other characters stay in their segment.
		{"encoded brace in order_no", "GET", "/pay/trades/a%7Bb%7D", nil, 400, "invalid_request", ""},
		{"encoded percent in order_no", "GET", "/pay/trades/a%25b", nil, 400, "invalid_request", ""},
		{"encoded question mark in order_no", "GET", "/pay/trades/a%3Fb", nil, 400, "invalid_request", ""},
		{"a query is not part of order_no", "GET", "/pay/trades/NOPE_EDGE?x=/close", nil, 404, "not_found", ""},
	})
}

// TestWrongMethodIsAnswered405WithAllowAndNeverPassedOn: every endpoint
// answers another method with 405 method_not_allowed in the API's JSON and
// an Allow of its one method (HEAD is not GET here), after bounding the
// body (413), and never hands it to the next handler.
func TestWrongMethodIsAnswered405WithAllowAndNeverPassedOn(t *testing.T) {
	e := newEnv(t)
	e.options["poll_interval"] = "1h"
	e.start()
	big := strings.Repeat("a", 65<<10)
	checkRoutes(t, e, []routeCase{
		{"DELETE trades", "DELETE", "/pay/trades", nil, 405, "method_not_allowed", "POST"},
		{"GET trades", "GET", "/pay/trades", nil, 405, "method_not_allowed", "POST"},
		{"HEAD trades", "HEAD", "/pay/trades", nil, 405, "", "POST"},
		{"POST a status", "POST", "/pay/trades/ORD_EDGE_1", `{}`, 405, "method_not_allowed", "GET"},
		{"PUT a status", "PUT", "/pay/trades/ORD_EDGE_1", nil, 405, "method_not_allowed", "GET"},
		{"HEAD a status", "HEAD", "/pay/trades/ORD_EDGE_1", nil, 405, "", "GET"},
		{"GET a close", "GET", "/pay/trades/ORD_EDGE_1/close", nil, 405, "method_not_allowed", "POST"},
		{"GET refunds", "GET", "/pay/refunds", nil, 405, "method_not_allowed", "POST"},
		{"POST a refund status", "POST", "/pay/refunds/RF_EDGE_1", nil, 405, "method_not_allowed", "GET"},
		{"GET a notify", "GET", "/pay/notify/alipay", nil, 405, "method_not_allowed", "POST"},
		{"GET a notify of an unknown channel", "GET", "/pay/notify/paypal", nil, 405, "method_not_allowed", "POST"},
		{"a body over 64 KiB is refused before the method", "PUT", "/pay/trades", big, 413, "request_too_large", ""},
		{"OPTIONS trades", "OPTIONS", "/pay/trades", nil, 405, "method_not_allowed", "POST"},
	})
}

// TestOperationNotServedIs404WhateverTheMethod: a route that does not
// serve an operation answers its endpoints 404 not_found, before any
// method check, and never passes them on.
func TestOperationNotServedIs404WhateverTheMethod(t *testing.T) {
	d := newEnv(t)
	d.options["operations"] = "" // the default: create status notify
	d.options["poll_interval"] = "1h"
	d.start()
	checkRoutes(t, d, []routeCase{
		{"GET a close not served", "GET", "/pay/trades/ORD_EDGE_1/close", nil, 404, "not_found", ""},
		{"GET refunds not served", "GET", "/pay/refunds", nil, 404, "not_found", ""},
		{"POST a refund status not served", "POST", "/pay/refunds/RF_EDGE_1", nil, 404, "not_found", ""},
		{"a refund status with an encoded slash is not ours", "GET", "/pay/refunds/RF%2F1", nil, 0, "upstream", ""},
		{"a close through .. not served", "POST", "/pay/trades/../close", nil, 404, "not_found", ""},
	})
}
