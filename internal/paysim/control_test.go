package paysim

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/smartwalle/alipay/v3"
	"github.com/wechatpay-apiv3/wechatpay-go/core"
	"github.com/wechatpay-apiv3/wechatpay-go/services/payments/native"
)

func do(t *testing.T, method, url, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func precreateAlipay(t *testing.T, c *alipay.Client, no, amount, notifyURL string) {
	t.Helper()
	p := alipay.TradePreCreate{}
	p.OutTradeNo, p.Subject, p.TotalAmount, p.NotifyURL = no, "parcel", amount, notifyURL
	if r, err := c.TradePreCreate(context.Background(), p); err != nil || !r.IsSuccess() {
		t.Fatalf("precreate %+v %v", r, err)
	}
}

// TestControlAPI drives trades through the HTTP control API and reads the
// JSON listings.
func TestControlAPI(t *testing.T) {
	sim, srv := startSim(t, testConfig)
	c := alipayFor(t, sim, srv)
	rc := newReceiver(t, func(int, *http.Request) (int, string) { return 200, "success" })
	precreateAlipay(t, c, "CTL-1", "3.00", rc.srv.URL)
	precreateAlipay(t, c, "CTL-2", "4.00", "")

	tests := []struct {
		name, method, path, body string
		status                   int
		wantIn                   string
	}{
		{"scan", "POST", "/_sim/trades/CTL-1/scan", "", 200, `"state": "WAIT_BUYER_PAY"`},
		{"pay", "POST", "/_sim/trades/CTL-1/pay", "", 200, `"state": "TRADE_SUCCESS"`},
		{"pay twice is a conflict", "POST", "/_sim/trades/CTL-1/pay", "", 409, `"error": "trade_state"`},
		{"expire", "POST", "/_sim/trades/CTL-2/expire?provider=alipay", "", 200, `"state": "TRADE_CLOSED"`},
		{"unknown trade", "POST", "/_sim/trades/NOPE/pay", "", 404, `"error": "no_trade"`},
		{"unknown action", "POST", "/_sim/trades/CTL-1/dance", "", 404, `"error": "not_found"`},
		{"signtest needs a WeChat trade", "POST", "/_sim/trades/CTL-1/signtest", "", 404, `"no_trade"`},
		{"trades", "GET", "/_sim/trades", "", 200, `"out_trade_no": "CTL-2"`},
		{"refunds", "GET", "/_sim/refunds", "", 200, `[]`},
		{"calls list every operation", "GET", "/_sim/calls", "", 200, `"wechat.refund.query": 0`},
		{"calls count", "GET", "/_sim/calls", "", 200, `"alipay.trade.precreate": 2`},
		{"fault", "POST", "/_sim/faults", `{"operation":"alipay.trade.query","mode":"error","count":1}`, 200, `"mode": "error"`},
		{"fault with an unknown mode", "POST", "/_sim/faults", `{"operation":"alipay.trade.query","mode":"explode"}`, 400, `invalid_request`},
		{"fault with an unknown operation", "POST", "/_sim/faults", `{"operation":"alipay.trade.pay","mode":"error"}`, 400, `invalid_request`},
		{"fault with an unknown field", "POST", "/_sim/faults", `{"op":"x"}`, 400, `invalid_request`},
		{"unknown endpoint", "GET", "/_sim/nothing", "", 404, `not_found`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body := do(t, tc.method, srv.URL+tc.path, tc.body)
			if status != tc.status || !strings.Contains(string(body), tc.wantIn) {
				t.Fatalf("%d %s", status, body)
			}
		})
	}
	waitFor(t, "the notification listing", func() bool {
		_, body := do(t, "GET", srv.URL+"/_sim/notifications", "")
		var ds []Delivery
		_ = json.Unmarshal(body, &ds)
		return len(ds) == 1 && ds[0].Delivered && ds[0].Attempts[0].Answer == "success" && ds[0].OutTradeNo == "CTL-1"
	})
	// The armed fault answers the next query with a signed system error.
	r, err := c.TradeQuery(context.Background(), alipay.TradeQuery{OutTradeNo: "CTL-1"})
	if err != nil || r.Code != "20000" || r.SubCode != "isp.unknow-error" {
		t.Fatalf("%+v %v", r, err)
	}
}

// TestPage shows trades with their QR codes and pays one with its button.
func TestPage(t *testing.T) {
	sim, srv := startSim(t, testConfig)
	precreateAlipay(t, alipayFor(t, sim, srv), "PAGE-1", "1.00", "")
	status, body := do(t, "GET", srv.URL+"/_sim/", "")
	page := string(body)
	if status != 200 || !strings.Contains(page, "PAGE-1") || !strings.Contains(page, `src="data:image/png;base64,`) || !strings.Contains(page, "<button>pay</button>") {
		t.Fatalf("%d %s", status, page)
	}
	req, _ := http.NewRequest("POST", srv.URL+"/_sim/trades/PAGE-1/pay?provider=alipay", strings.NewReader("redirect=1"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/_sim/" {
		t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if tr, _ := findTrade(sim, ProviderAlipay, "PAGE-1"); tr.State != AlipayTradeSuccess {
		t.Fatalf("state %s", tr.State)
	}
}

// TestFaults: each mode with each SDK. drop_response commits the work but
// the caller sees a transport error — the duplicate-trade trap.
func TestFaults(t *testing.T) {
	sim, srv := startSim(t, testConfig)
	ali := alipayFor(t, sim, srv)
	wx := &native.NativeApiService{Client: newWechatClient(t, srv, wechatCredsFor(t, sim), nil)}
	k := sim.Keys()
	ctx := context.Background()
	alipayCreate := func(no string) (bool, error) {
		p := alipay.TradePreCreate{}
		p.OutTradeNo, p.Subject, p.TotalAmount = no, "s", "1.00"
		r, err := ali.TradePreCreate(ctx, p)
		if err != nil {
			return false, err
		}
		if r.Code == "20000" && r.SubCode == "isp.unknow-error" {
			return false, errors.New("system error")
		}
		return r.IsSuccess(), nil
	}
	wechatCreate := func(no string) (bool, error) {
		_, _, err := wx.Prepay(ctx, native.PrepayRequest{
			Appid: core.String(k.WechatAppID), Mchid: core.String(k.WechatMchID), Description: core.String("d"),
			OutTradeNo: core.String(no), NotifyUrl: core.String("http://127.0.0.1:1/n"), Amount: &native.Amount{Total: core.Int64(100)},
		})
		var ae *core.APIError
		if errors.As(err, &ae) && (ae.StatusCode != 500 || ae.Code != "SYSTEM_ERROR") {
			t.Fatalf("unexpected API error %v", ae)
		}
		return err == nil, err
	}
	tests := []struct {
		name     string
		provider string
		op       string
		mode     string
		create   func(string) (bool, error)
		wantErr  bool
		wantMade bool
	}{
		{"alipay delay then normal answer", ProviderAlipay, "alipay.trade.precreate", FaultDelay, alipayCreate, false, true},
		{"alipay error answers a signed system error, creates nothing", ProviderAlipay, "alipay.trade.precreate", FaultError, alipayCreate, true, false},
		{"alipay reset creates nothing", ProviderAlipay, "alipay.trade.precreate", FaultReset, alipayCreate, true, false},
		{"alipay drop_response creates the trade", ProviderAlipay, "alipay.trade.precreate", FaultDropResponse, alipayCreate, true, true},
		{"wechat delay then normal answer", ProviderWechat, "wechat.native.prepay", FaultDelay, wechatCreate, false, true},
		{"wechat error answers 500 SYSTEM_ERROR, creates nothing", ProviderWechat, "wechat.native.prepay", FaultError, wechatCreate, true, false},
		{"wechat reset creates nothing", ProviderWechat, "wechat.native.prepay", FaultReset, wechatCreate, true, false},
		{"wechat drop_response creates the trade", ProviderWechat, "wechat.native.prepay", FaultDropResponse, wechatCreate, true, true},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			no := "FAULT-" + string(rune('A'+i)) + "-0001"
			before := sim.Calls()[tc.op]
			sim.SetFault(Fault{Operation: tc.op, Mode: tc.mode, Count: 1, DelayMS: 20})
			ok, err := tc.create(no)
			if (err != nil) != tc.wantErr || (err == nil && !ok) {
				t.Fatalf("ok=%v err=%v", ok, err)
			}
			if _, made := findTrade(sim, tc.provider, no); made != tc.wantMade {
				t.Fatalf("trade made=%v, want %v", made, tc.wantMade)
			}
			if got := sim.Calls()[tc.op]; got != before+1 {
				t.Fatalf("calls %d, want %d", got, before+1)
			}
			// The fault is used up: the retry succeeds and, after a
			// committed drop, answers the same trade.
			if ok, err := tc.create(no); err != nil || !ok {
				t.Fatalf("retry: ok=%v err=%v", ok, err)
			}
		})
	}
	t.Run("count covers the next N calls only", func(t *testing.T) {
		sim.SetFault(Fault{Operation: "*", Mode: FaultError, Count: 2})
		for i, want := range []bool{true, true, false} {
			if _, err := alipayCreate("FAULT-N-0001"); (err != nil) != want {
				t.Fatalf("call %d: err=%v", i, err)
			}
		}
	})
}
