package payproxy_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	_ "github.com/tollgate/tollgate/authjwt" // the courier route's authentication
	"github.com/tollgate/tollgate/internal/testkeys"
)

const courierSecret = "courier-hmac-secret-0123456789abcdef"

// orderService is the backend's order service: each order belongs to one
// courier; it answers 404 for unknown orders and 403 unless X-User-Id is
// the owner, and records the identity headers it was sent.
type orderService struct {
	srv    *httptest.Server
	mu     sync.Mutex
	owners map[string]string
	seen   []http.Header
}

func newOrderService(t *testing.T, owners map[string]string) *orderService {
	o := &orderService{owners: owners}
	o.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.seen = append(o.seen, r.Header.Clone())
		owner, ok := o.owners[r.PathValue("no")]
		o.mu.Unlock()
		switch {
		case !ok:
			w.WriteHeader(http.StatusNotFound)
		case r.Header.Get("X-User-Id") != owner:
			w.WriteHeader(http.StatusForbidden)
		default:
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{"amount_fen": 1000, "subject": "freight"})
		}
	}))
	mux := http.NewServeMux()
	mux.Handle("GET /orders/{no}", o.srv.Config.Handler)
	o.srv.Config.Handler = mux
	t.Cleanup(o.srv.Close)
	return o
}

func (o *orderService) headers() []http.Header {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]http.Header(nil), o.seen...)
}

// courierToken is an access token of courier id.
func courierToken(t *testing.T, id string) string {
	return "Bearer " + testkeys.Sign(t, jwt.SigningMethodHS256, []byte(courierSecret), "", jwt.MapClaims{
		"sub": id, "roles": []string{"courier"}, "exp": time.Now().Add(time.Hour).Unix(),
	})
}

// courierSite is the authjwt in front of payproxy on a courier route.
func courierSite(userHeader string) string {
	return "\tauthjwt {\n\t\thmac_secret " + courierSecret + "\n\t\tallow /pay/notify/*\n\t\trequire_role courier\n" +
		"\t\tuser_header " + userHeader + "\n\t}\n"
}

// TestClientSentIdentityHeadersNeverReachTheOrderService: the identity
// payproxy sends to order_source is built from authjwt's verified
// placeholders, never from request headers: a courier who sends another
// courier's X-User-Id (and an X-User-Roles of their choosing) is still
// asked about as himself, and cannot pay for the other's order.
func TestClientSentIdentityHeadersNeverReachTheOrderService(t *testing.T) {
	orders := newOrderService(t, map[string]string{"IDORD_1": "c1"})
	e := newEnv(t)
	// authjwt hands the user to the upstream as X-Courier-Id here: it does
	// not touch X-User-* headers.
	e.site = courierSite("X-Courier-Id")
	e.options["operations"] = "" // the default: create status notify
	e.extra = "\t\torder_source " + orders.srv.URL + "/orders/{order_no}\n"
	e.start()
	spoof := []string{"Authorization", courierToken(t, "c2"), "X-User-Id", "c1", "X-User-Roles", "dispatcher"}
	r := do(t, "POST", e.base+"/pay/trades", map[string]any{"order_no": "IDORD_1", "channel": "wechat"}, spoof...)
	wantStatus(t, r, http.StatusForbidden, "forbidden")
	for _, h := range orders.headers() {
		if got := h.Values("X-User-Id"); !reflect.DeepEqual(got, []string{"c2"}) {
			t.Fatalf("the order service was sent X-User-Id %q, want the verified c2", got)
		}
		if got := h.Values("X-User-Roles"); !reflect.DeepEqual(got, []string{"courier"}) {
			t.Fatalf("the order service was sent X-User-Roles %q, want the token's courier", got)
		}
	}
	r = do(t, "POST", e.base+"/pay/trades", map[string]any{"order_no": "IDORD_1", "channel": "wechat"},
		"Authorization", courierToken(t, "c1"), "X-User-Id", "c2")
	wantStatus(t, r, http.StatusOK, "")
}

// TestCourierCannotReadCloseOrRefundAnotherCouriersOrder: with
// order_source, status and close ask the order service with the
// caller's verified identity, as create does: another courier gets 403
// and changes nothing; a refund on the public route is not served (404,
// never passed on) and changes nothing in Redis or at the provider.
func TestCourierCannotReadCloseOrRefundAnotherCouriersOrder(t *testing.T) {
	orders := newOrderService(t, map[string]string{"AZORD_1": "c1"})
	e := newEnv(t)
	e.site = courierSite("X-User-Id")
	e.options["operations"] = "create status close notify"
	e.options["poll_interval"] = "1h"
	e.extra = "\t\torder_source " + orders.srv.URL + "/orders/{order_no}\n"
	e.start()
	c1, c2 := courierToken(t, "c1"), courierToken(t, "c2")
	created := do(t, "POST", e.base+"/pay/trades", map[string]any{"order_no": "AZORD_1", "channel": "alipay"}, "Authorization", c1)
	wantStatus(t, created, http.StatusOK, "")
	if err := e.sim.Pay(created.str("trade_no")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "PAID", func() bool {
		return do(t, "GET", e.base+"/pay/trades/AZORD_1", nil, "Authorization", c1).str("state") == "PAID"
	})
	e.quiesce()
	cases := []struct {
		name, method, path string
		body               any
		token              string
		status             int
		code               string
	}{
		{"read another courier's order", "GET", "/pay/trades/AZORD_1", nil, c2, 403, "forbidden"},
		{"sync another courier's order", "GET", "/pay/trades/AZORD_1?sync=1", nil, c2, 403, "forbidden"},
		{"close another courier's order", "POST", "/pay/trades/AZORD_1/close", nil, c2, 403, "forbidden"},
		{"read an order the order service does not know", "GET", "/pay/trades/AZORD_9", nil, c1, 404, "not_found"},
		{"refund another courier's order", "POST", "/pay/refunds", map[string]any{"order_no": "AZORD_1", "refund_no": "AZ_RF_1", "amount_fen": 1000}, c2, 404, "not_found"},
		{"refund one's own order on the public route", "POST", "/pay/refunds", map[string]any{"order_no": "AZORD_1", "refund_no": "AZ_RF_2", "amount_fen": 1000}, c1, 404, "not_found"},
		{"read a refund on the public route", "GET", "/pay/refunds/AZ_RF_1", nil, c1, 404, "not_found"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before, calls, refunds := e.redis.Dump(), e.sim.Calls(), e.sim.Refunds()
			r := do(t, c.method, e.base+c.path, c.body, "Authorization", c.token)
			wantStatus(t, r, c.status, c.code)
			if r.str("error_description") == "" {
				t.Errorf("no error_description: %s", r.Raw)
			}
			if !reflect.DeepEqual(before, e.redis.Dump()) {
				t.Error("redis changed")
			}
			if !reflect.DeepEqual(calls, e.sim.Calls()) || !reflect.DeepEqual(refunds, e.sim.Refunds()) {
				t.Error("the provider was called")
			}
		})
	}
	if r := do(t, "GET", e.base+"/pay/trades/AZORD_1", nil, "Authorization", c1); r.Status != 200 || r.str("state") != "PAID" {
		t.Fatalf("the owner reads %d %s", r.Status, r.Raw)
	}
}

// TestOperationsTheRouteDoesNotServeAre404AndNeverPassedOn: by default a
// route serves create, status and notify; close and refunds are answered
// 404 not_found by payproxy itself (never by the next handler) and change
// nothing.
func TestOperationsTheRouteDoesNotServeAre404AndNeverPassedOn(t *testing.T) {
	e := newEnv(t)
	e.options["operations"] = ""
	e.options["poll_interval"] = "1h"
	e.start()
	tradeNo := e.paidOrder("OPS_PAID_1", "wechat", 600)
	e.quiesce()
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{"POST", "/pay/trades/OPS_PAID_1/close", nil},
		{"POST", "/pay/refunds", map[string]any{"order_no": "OPS_PAID_1", "refund_no": "OPS_RF_1", "amount_fen": 600}},
		{"GET", "/pay/refunds/OPS_RF_1", nil},
	} {
		before, calls := e.redis.Dump(), e.sim.Calls()
		r := do(t, c.method, e.base+c.path, c.body)
		wantStatus(t, r, http.StatusNotFound, "not_found")
		if !reflect.DeepEqual(before, e.redis.Dump()) || !reflect.DeepEqual(calls, e.sim.Calls()) {
			t.Errorf("%s %s changed something", c.method, c.path)
		}
	}
	if r := e.get("OPS_PAID_1"); r.str("trade_no") != tradeNo || r.str("state") != "PAID" {
		t.Fatalf("status: %s", r.Raw)
	}
}
