package paysim

import (
	"encoding/json"
	"errors"
	"net/http"
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
	mux.HandleFunc("GET /_sim/faults", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, s.Faults()) })
	mux.HandleFunc("/_sim/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such control endpoint")
	})
}

// controlTradeAction: POST /_sim/trades/{out_trade_no}/scan|pay|expire|payerror|signtest.
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
	case "payerror":
		err = s.PayError(no)
	case "signtest":
		err = s.SendWechatSignTest(no)
	default:
		writeError(w, http.StatusNotFound, "not_found", "actions are scan, pay, expire, payerror and signtest")
		return
	}
	switch {
	case errors.Is(err, ErrNoTrade):
		writeError(w, http.StatusNotFound, "no_trade", "no trade with out_trade_no "+no)
		return
	case errors.Is(err, ErrTradeState):
		writeError(w, http.StatusConflict, "trade_state", "the trade's state does not allow "+action)
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
		writeError(w, http.StatusBadRequest, "invalid_request", "body must be {\"operation\",\"mode\",\"count\",\"delay_ms\",\"status\",\"code\"}: "+err.Error())
		return
	}
	if !validFault(f) || f.Count < 0 || f.DelayMS < 0 {
		writeError(w, http.StatusBadRequest, "invalid_request", "unknown operation or mode, negative count/delay_ms, or a status outside 200-599")
		return
	}
	s.SetFault(f)
	writeJSON(w, http.StatusOK, f)
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
