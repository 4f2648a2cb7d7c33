package paysim

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"
)

// The control API under /_sim/ (JSON) moves trades as a buyer or the
// provider would, and shows what happened. Errors follow tollgate's
// convention: {"error": "<code>", "error_description": "<text>"}.

func (s *Sim) controlRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /_sim/{$}", s.servePage)
	mux.HandleFunc("POST /_sim/trades/{no}/{action}", s.controlTradeAction)
	mux.HandleFunc("POST /_sim/refunds/{no}/{action}", s.controlRefundAction)
	mux.HandleFunc("GET /_sim/trades", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, s.Trades()) })
	mux.HandleFunc("GET /_sim/refunds", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, s.Refunds()) })
	mux.HandleFunc("GET /_sim/notifications", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.Notifications())
	})
	mux.HandleFunc("GET /_sim/calls", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, s.Calls()) })
	mux.HandleFunc("POST /_sim/faults", s.controlFault)
	mux.HandleFunc("GET /_sim/faults", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"modes": FaultModes(), "armed": s.Faults()})
	})
	mux.HandleFunc("GET /_sim/clock", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, clockView(s.Now())) })
	mux.HandleFunc("POST /_sim/clock", s.controlClock)
	mux.HandleFunc("/_sim/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such control endpoint")
	})
}

// controlTradeAction: POST /_sim/trades/{out_trade_no}/scan|pay|expire|finish|payerror|signtest.
// ?provider=alipay|wechat picks the trade when both providers hold the
// number. A form field redirect=1 (the HTML page) answers 303 to /_sim/.
func (s *Sim) controlTradeAction(w http.ResponseWriter, r *http.Request) {
	no, action, provider := r.PathValue("no"), r.PathValue("action"), r.URL.Query().Get("provider")
	var err error
	switch action {
	case "scan":
		err = s.scan(no, provider)
	case "pay":
		err = s.pay(no, provider)
	case "expire":
		err = s.expire(no, provider)
	case "finish":
		err = s.Finish(no)
	case "payerror":
		err = s.PayError(no)
	case "signtest":
		err = s.SendWechatSignTest(no)
	default:
		writeError(w, http.StatusNotFound, "not_found", "actions are scan, pay, expire, finish, payerror and signtest")
		return
	}
	switch {
	case errors.Is(err, ErrNoTrade):
		writeError(w, http.StatusNotFound, "no_trade", "no trade with out_trade_no "+no)
		return
	case errors.Is(err, ErrTradeState):
		writeError(w, http.StatusConflict, "trade_state", "the trade's state does not allow "+action)
		return
	case errors.Is(err, ErrQRExpired):
		writeError(w, http.StatusConflict, "qr_expired", "the QR code's 2-hour scan window has passed; the trade is still open and can be issued again")
		return
	case err != nil:
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	if r.FormValue("redirect") != "" {
		http.Redirect(w, r, "/_sim/", http.StatusSeeOther)
		return
	}
	s.mu.Lock()
	t := s.lookupAny(no, provider)
	view := *t
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, view)
}

// controlRefundAction: POST /_sim/refunds/{out_refund_no}/abnormal|succeed
// (WeChat refunds).
func (s *Sim) controlRefundAction(w http.ResponseWriter, r *http.Request) {
	no, action := r.PathValue("no"), r.PathValue("action")
	var err error
	switch action {
	case "abnormal":
		err = s.RefundAbnormal(no)
	case "succeed":
		err = s.RefundSucceed(no)
	default:
		writeError(w, http.StatusNotFound, "not_found", "actions are abnormal and succeed")
		return
	}
	switch {
	case errors.Is(err, ErrNoRefund):
		writeError(w, http.StatusNotFound, "no_refund", "no WeChat refund with out_refund_no "+no)
	case errors.Is(err, ErrTradeState):
		writeError(w, http.StatusConflict, "refund_state", "the refund's state does not allow "+action)
	case err != nil:
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
	default:
		writeJSON(w, http.StatusOK, map[string]string{"out_refund_no": no, "action": action})
	}
}

func (s *Sim) controlFault(w http.ResponseWriter, r *http.Request) {
	var f Fault
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", "body must be {\"operation\",\"mode\",\"count\",\"delay_ms\",\"status\",\"code\",\"shape\"}: "+err.Error())
		return
	}
	if err := CheckFault(f); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	s.SetFault(f)
	writeJSON(w, http.StatusOK, f)
}

// controlClock: POST /_sim/clock {"advance_ms": N} moves the simulator's
// clock forward (never back) and answers its time.
func (s *Sim) controlClock(w http.ResponseWriter, r *http.Request) {
	var req struct {
		AdvanceMS int64 `json:"advance_ms"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", "body must be {\"advance_ms\": N}: "+err.Error())
		return
	}
	if req.AdvanceMS <= 0 || req.AdvanceMS > maxAdvance.Milliseconds() {
		writeError(w, http.StatusBadRequest, "invalid_request", "advance_ms must be a positive number of milliseconds, at most a year's: the clock only moves forward")
		return
	}
	writeJSON(w, http.StatusOK, clockView(s.Advance(time.Duration(req.AdvanceMS)*time.Millisecond)))
}

// maxAdvance bounds one move of the clock (a Duration overflows at 292 years).
const maxAdvance = 366 * 24 * time.Hour

func clockView(now time.Time) map[string]string {
	return map[string]string{"now": now.Format(time.RFC3339Nano)}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}
