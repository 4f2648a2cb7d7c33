package paysim

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/smartwalle/alipay/v3"
	"github.com/wechatpay-apiv3/wechatpay-go/core"
)

// createBoth issues one Alipay and one WeChat trade and reports the SDKs'
// answers; made tells whether each exists at the simulator afterwards.
func (m *merchant) createBoth(no string) (ali *alipay.TradePreCreateRsp, aliErr, wxErr error) {
	ali, aliErr = m.precreate(no+"-A", "1.00", "", m.in(time.Hour))
	_, wxErr = m.prepay(no+"-W", 100, "http://127.0.0.1:1/n", m.in(time.Hour))
	return ali, aliErr, wxErr
}

func (m *merchant) made(no string) (alipayMade, wechatMade bool) {
	_, alipayMade = findTrade(m.sim, ProviderAlipay, no+"-A")
	_, wechatMade = findTrade(m.sim, ProviderWechat, no+"-W")
	return
}

func (m *merchant) armBoth(mode string) {
	m.sim.SetFault(Fault{Operation: "alipay.trade.precreate", Mode: mode})
	m.sim.SetFault(Fault{Operation: "wechat.native.prepay", Mode: mode})
}

// TestRateLimitedAnswersEachProvidersLimitAndDoesNothing: WeChat answers
// 429 FREQUENCY_LIMITED, signed; Alipay its gateway's 40005
// isv.app-call-limited, unsigned (the SDK's *alipay.Error). Nothing is
// created.
func TestRateLimitedAnswersEachProvidersLimitAndDoesNothing(t *testing.T) {
	m := newMerchant(t, testConfig)
	m.armBoth(FaultRateLimited)
	_, aliErr, wxErr := m.createBoth("RATE")
	var ae *alipay.Error
	if !errors.As(aliErr, &ae) || ae.Code != alipay.CodeCallLimited || ae.SubCode != "isv.app-call-limited" {
		t.Fatalf("alipay: %v", aliErr)
	}
	we, signed := m.signedAPIError(wxErr)
	if we.StatusCode != 429 || we.Code != "FREQUENCY_LIMITED" || !signed {
		t.Fatalf("wechat: %d %s signed=%v", we.StatusCode, we.Code, signed)
	}
	if a, w := m.made("RATE"); a || w {
		t.Fatalf("rate limited calls created trades: alipay %v, wechat %v", a, w)
	}
}

// TestAlipayRateLimitWithShapeSignedComesUnderAlipaysSignature: shape
// signed makes Alipay's 40005 a signed answer, which the SDK returns as a
// verified business failure (err nil, code 40005), not a Go error: what
// payproxy must still not take for a refusal. Nothing is created.
func TestAlipayRateLimitWithShapeSignedComesUnderAlipaysSignature(t *testing.T) {
	m := newMerchant(t, testConfig)
	m.sim.SetFault(Fault{Operation: "alipay.trade.precreate", Mode: FaultRateLimited, Shape: ShapeSigned})
	rsp, err := m.precreate("RATE-SIGNED", "1.00", "", m.in(time.Hour))
	if err != nil || rsp.Code != alipay.CodeCallLimited || rsp.SubCode != "isv.app-call-limited" {
		t.Fatalf("signed 40005: %+v, %v", rsp, err)
	}
	if _, made := findTrade(m.sim, ProviderAlipay, "RATE-SIGNED"); made {
		t.Fatal("a rate-limited precreate created a trade")
	}
}

// TestAnswerWithABrokenSignatureIsRefusedByTheSDKsAfterTheWorkIsDone:
// bad_signature (both), signtest and stale_timestamp (WeChat) do the work
// and answer 200 under a signature the SDK refuses: the trade exists
// although the merchant saw an error.
func TestAnswerWithABrokenSignatureIsRefusedByTheSDKsAfterTheWorkIsDone(t *testing.T) {
	m := newMerchant(t, testConfig)
	for _, tc := range []struct {
		mode, wantWechat string
	}{
		{FaultBadSignature, "verification error"},
		{FaultSigntest, "verify fail"},
		{FaultStaleTimestamp, "expires"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			no := "SIG-" + tc.mode
			if tc.mode == FaultBadSignature {
				m.armBoth(tc.mode)
			} else {
				m.sim.SetFault(Fault{Operation: "wechat.native.prepay", Mode: tc.mode})
			}
			_, aliErr, wxErr := m.createBoth(no)
			if wxErr == nil || !strings.Contains(wxErr.Error(), tc.wantWechat) {
				t.Fatalf("wechat: %v, want %q", wxErr, tc.wantWechat)
			}
			var ae *core.APIError
			if errors.As(wxErr, &ae) {
				t.Fatalf("wechat: a 200 reported as an API error %v", ae)
			}
			if _, w := m.made(no); !w {
				t.Fatal("the WeChat order was not created")
			}
			if tc.mode != FaultBadSignature {
				return
			}
			var aliAPI *alipay.Error
			if aliErr == nil || errors.As(aliErr, &aliAPI) || !strings.Contains(aliErr.Error(), "verification error") {
				t.Fatalf("alipay: %v", aliErr)
			}
			if a, _ := m.made(no); !a {
				t.Fatal("the Alipay trade was not created")
			}
		})
	}
}

// TestHTML502IsAProxysPageAndNothingIsDone: html_502 answers 502 with an
// nginx page. wechatpay-go reports a *core.APIError without a code; the
// Alipay SDK, which ignores the status, fails to parse JSON. Nothing is
// created.
func TestHTML502IsAProxysPageAndNothingIsDone(t *testing.T) {
	m := newMerchant(t, testConfig)
	m.armBoth(FaultHTML502)
	_, aliErr, wxErr := m.createBoth("HTML")
	var syntax *json.SyntaxError
	if !errors.As(aliErr, &syntax) {
		t.Fatalf("alipay: %T %v", aliErr, aliErr)
	}
	var ae *core.APIError
	if !errors.As(wxErr, &ae) || ae.StatusCode != 502 || ae.Code != "" || !strings.HasPrefix(ae.Body, "<html>") {
		t.Fatalf("wechat: %v", wxErr)
	}
	if a, w := m.made("HTML"); a || w {
		t.Fatalf("html_502 created trades: alipay %v, wechat %v", a, w)
	}
}

// TestAlipaySystemErrorComesInBothRealShapes: system_error answers the
// signed 20000 isp.unknow-error (shape isp, the default) or 40004
// ACQ.SYSTEM_ERROR (shape acq): not Go errors for the SDK, nothing done.
func TestAlipaySystemErrorComesInBothRealShapes(t *testing.T) {
	m := newMerchant(t, testConfig)
	for _, tc := range []struct{ shape, code, sub string }{
		{"", "20000", "isp.unknow-error"},
		{ShapeISP, "20000", "isp.unknow-error"},
		{ShapeACQ, "40004", "ACQ.SYSTEM_ERROR"},
	} {
		t.Run("shape "+tc.shape, func(t *testing.T) {
			no := "SYS-" + tc.shape
			m.sim.SetFault(Fault{Operation: "alipay.trade.precreate", Mode: FaultSystemError, Shape: tc.shape})
			r, err := m.precreate(no, "1.00", "", m.in(time.Hour))
			if err != nil || string(r.Code) != tc.code || r.SubCode != tc.sub || r.SubMsg == "" {
				t.Fatalf("%+v %v", r, err)
			}
			if _, made := findTrade(m.sim, ProviderAlipay, no); made {
				t.Fatal("a system error created the trade")
			}
		})
	}
}

// TestFaultListNamesEveryModeWithWhatItModels: GET /_sim/faults lists
// every mode by its contract name with its operations and one line of
// what it models, beside the armed faults; POST /_sim/faults refuses a
// mode on an operation it does not apply to with a message that says so.
func TestFaultListNamesEveryModeWithWhatItModels(t *testing.T) {
	m := newMerchant(t, testConfig)
	m.sim.SetFault(Fault{Operation: "wechat.refund", Mode: FaultStuck, Count: 3})
	status, body := do(t, "GET", m.srv.URL+"/_sim/faults", "")
	var got struct {
		Modes []FaultMode `json:"modes"`
		Armed []Fault     `json:"armed"`
	}
	if err := json.Unmarshal(body, &got); err != nil || status != 200 {
		t.Fatalf("%d %s %v", status, body, err)
	}
	listed := map[string]FaultMode{}
	for _, fm := range got.Modes {
		if fm.Models == "" || len(fm.Operations) == 0 || strings.Contains(fm.Models, "\n") {
			t.Errorf("mode %s: %+v", fm.Mode, fm)
		}
		listed[fm.Mode] = fm
	}
	contract := map[string][]string{
		"delay": {"alipay.notify", "wechat.notify", "alipay.trade.precreate"}, "error": nil, "reset": nil, "drop_response": nil,
		"ignore": nil, "unsigned_error": nil,
		"duplicate": {"alipay.notify", "wechat.notify"},
		"abnormal":  {"wechat.refund"}, "closed": {"wechat.refund"}, "stuck": {"wechat.refund"},
		"fund_change_n":      {"alipay.trade.refund"},
		"query_too_early":    {"alipay.trade.fastpay.refund.query"},
		"legacy_query_shape": {"alipay.trade.fastpay.refund.query"},
		"balance_not_enough": {"alipay.trade.refund", "wechat.refund"},
		"rate_limited":       {"alipay.trade.query", "wechat.query"},
		"bad_signature":      {"alipay.trade.refund", "wechat.refund"},
		"signtest":           {"wechat.native.prepay"}, "stale_timestamp": {"wechat.query"},
		"html_502": {"alipay.trade.close", "wechat.close"}, "system_error": {"alipay.trade.query"},
		"qr_not_renewed": {"alipay.trade.precreate", "wechat.native.prepay"},
	}
	for mode, ops := range contract {
		fm, ok := listed[mode]
		if !ok {
			t.Errorf("mode %s is not listed", mode)
			continue
		}
		for _, op := range ops {
			if !fm.appliesTo(op) {
				t.Errorf("mode %s does not list %s", mode, op)
			}
		}
	}
	if len(got.Armed) != 1 || got.Armed[0].Mode != FaultStuck || got.Armed[0].Count != 3 {
		t.Fatalf("armed %+v", got.Armed)
	}
	for _, tc := range []struct{ body, want string }{
		{`{"operation":"alipay.trade.refund","mode":"abnormal"}`, "applies to wechat.refund, not to alipay.trade.refund"},
		{`{"operation":"*","mode":"stuck"}`, "not to *"},
		{`{"operation":"alipay.notify","mode":"error"}`, "not to alipay.notify"},
		{`{"operation":"alipay.trade.query","mode":"system_error","shape":"xml"}`, "shape is isp or acq"},
		{`{"operation":"alipay.trade.query","mode":"error","shape":"acq"}`, "for system_error only"},
		{`{"operation":"alipay.trade.query","mode":"rate_limited","shape":"acq"}`, "signed for rate_limited"},
		{`{"operation":"alipay.trade.pay","mode":"error"}`, `unknown operation "alipay.trade.pay"`},
		{`{"operation":"wechat.notify","mode":"delay","delay_ms":-1}`, "must not be negative"},
	} {
		status, body := do(t, "POST", m.srv.URL+"/_sim/faults", tc.body)
		var e map[string]string
		_ = json.Unmarshal(body, &e)
		if status != 400 || e["error"] != "invalid_request" || !strings.Contains(e["error_description"], tc.want) {
			t.Errorf("%s: %d %s", tc.body, status, body)
		}
	}
	if got := m.sim.Faults(); len(got) != 1 {
		t.Fatalf("a refused fault was armed: %+v", got)
	}
	if status, body := do(t, "POST", m.srv.URL+"/_sim/faults", `{"operation":"wechat.notify","mode":"duplicate","count":2}`); status != 200 {
		t.Fatalf("duplicate on wechat.notify: %d %s", status, body)
	}
}
