package paysim

import (
	"bytes"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"
)

// Fault makes the next Count calls of Operation misbehave (for the notify
// operations: the next Count notifications). The modes, the operations
// each applies to and what each models are in faultModes (faultmodes.go),
// which GET /_sim/faults lists.
//
// Operation "*" matches every provider operation (not the notify
// operations: a delivery is not a call), and only takes the modes that
// apply to all of them. Count 0 means 1. Mode "" or "none" clears the
// fault of that operation.
type Fault struct {
	Operation string `json:"operation"`
	Mode      string `json:"mode"`
	Count     int    `json:"count"`
	DelayMS   int    `json:"delay_ms,omitempty"`
	// Status and Code shape an unsigned_error answer (default 400 and
	// the provider's generic system error code).
	Status int    `json:"status,omitempty"`
	Code   string `json:"code,omitempty"`
	// Shape picks system_error's answer: "isp" (20000 isp.unknow-error,
	// the default) or "acq" (40004 ACQ.SYSTEM_ERROR); and rate_limited's
	// on Alipay: "signed" (40005 under Alipay's signature; default
	// unsigned, as the gateway's other errors).
	Shape string `json:"shape,omitempty"`
}

// Fault modes.
const (
	FaultDelay         = "delay"
	FaultError         = "error"
	FaultReset         = "reset"
	FaultDropResponse  = "drop_response"
	FaultIgnore        = "ignore"
	FaultUnsignedError = "unsigned_error"

	// Issue 15: the providers at their worst.
	FaultDuplicate        = "duplicate"
	FaultAbnormal         = "abnormal"
	FaultClosed           = "closed"
	FaultStuck            = "stuck"
	FaultFundChangeN      = "fund_change_n"
	FaultQueryTooEarly    = "query_too_early"
	FaultLegacyQueryShape = "legacy_query_shape"
	FaultBalanceNotEnough = "balance_not_enough"
	FaultRateLimited      = "rate_limited"
	FaultBadSignature     = "bad_signature"
	FaultSigntest         = "signtest"
	FaultStaleTimestamp   = "stale_timestamp"
	FaultHTML502          = "html_502"
	FaultSystemError      = "system_error"
	FaultQRNotRenewed     = "qr_not_renewed"
)

// system_error shapes.
const (
	ShapeISP = "isp" // 20000 Service Currently Unavailable, isp.unknow-error
	ShapeACQ = "acq" // 40004 Business Failed, ACQ.SYSTEM_ERROR
	// ShapeSigned: Alipay's rate limit (40005) signed. Whether Alipay signs
	// it is not documented; payproxy must not take it for a refusal either way.
	ShapeSigned = "signed"
)

// NotifyOperations are the notification deliveries faults can target.
var NotifyOperations = []string{"alipay.notify", "wechat.notify"}

// SetFault arms (or with mode "none" clears) a fault. It does not check
// the fault: CheckFault does, for the control API.
func (s *Sim) SetFault(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f.Mode == "" || f.Mode == "none" {
		delete(s.faults, f.Operation)
		return
	}
	if f.Count <= 0 {
		f.Count = 1
	}
	if f.Mode == FaultUnsignedError && f.Status == 0 {
		f.Status = http.StatusBadRequest
	}
	s.faults[f.Operation] = &f
}

// Faults lists the armed faults (copies, by operation).
func (s *Sim) Faults() []Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Fault, 0, len(s.faults))
	for _, f := range s.faults {
		out = append(out, *f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Operation < out[j].Operation })
	return out
}

// CheckFault says what is wrong with a fault the control API received:
// an unknown operation or mode, a mode that does not apply to the
// operation, a negative count or delay, a status outside 200-599, a shape
// other than isp or acq. nil means it can be armed.
func CheckFault(f Fault) error {
	if f.Count < 0 || f.DelayMS < 0 {
		return fmt.Errorf("count and delay_ms must not be negative")
	}
	if !knownOperation(f.Operation) {
		return fmt.Errorf("unknown operation %q: operations are *, %s and %s",
			f.Operation, strings.Join(Operations, ", "), strings.Join(NotifyOperations, ", "))
	}
	if f.Mode == "" || f.Mode == "none" {
		return nil
	}
	m, ok := faultMode(f.Mode)
	if !ok {
		return fmt.Errorf("unknown mode %q: GET /_sim/faults lists them", f.Mode)
	}
	if !m.appliesTo(f.Operation) {
		return fmt.Errorf("mode %s applies to %s, not to %s", f.Mode, strings.Join(m.Operations, ", "), f.Operation)
	}
	if f.Mode == FaultUnsignedError && f.Status != 0 && (f.Status < 200 || f.Status > 599) {
		return fmt.Errorf("status %d is outside 200-599", f.Status)
	}
	if f.Shape != "" && !shapeFits(f) {
		return fmt.Errorf("shape is %s or %s, for system_error only, or %s for rate_limited", ShapeISP, ShapeACQ, ShapeSigned)
	}
	return nil
}

func shapeFits(f Fault) bool {
	switch f.Mode {
	case FaultSystemError:
		return f.Shape == ShapeISP || f.Shape == ShapeACQ
	case FaultRateLimited:
		return f.Shape == ShapeSigned
	}
	return false
}

func knownOperation(op string) bool {
	if op == "*" {
		return true
	}
	for _, ops := range [][]string{Operations, NotifyOperations} {
		for _, o := range ops {
			if o == op {
				return true
			}
		}
	}
	return false
}

// countAndTakeFault counts one call of op and consumes one use of its fault.
func (s *Sim) countAndTakeFault(op string) (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[op]++
	return s.takeFaultLocked(op, true)
}

// takeFaultLocked consumes one use of the fault armed for op (or, when
// wildcard, for "*").
func (s *Sim) takeFaultLocked(op string, wildcard bool) (Fault, bool) {
	keys := []string{op}
	if wildcard {
		keys = append(keys, "*")
	}
	for _, key := range keys {
		f := s.faults[key]
		if f == nil {
			continue
		}
		taken := *f
		if f.Count--; f.Count <= 0 {
			delete(s.faults, key)
		}
		return taken, true
	}
	return Fault{}, false
}

// opAnswers are the ways one provider operation can answer: its work (the
// real thing), the provider's signed system error, the normal success
// without doing anything (ignore), an unsigned error body, its rate-limit
// answer, its work answered under a broken signature (resign), and its
// work changed by an operation's own fault (variant: fund_change_n,
// abnormal, …).
type opAnswers struct {
	work        func(http.ResponseWriter)
	sysError    func(http.ResponseWriter)
	ignored     func(http.ResponseWriter)
	unsigned    func(w http.ResponseWriter, status int, code string)
	rateLimited func(w http.ResponseWriter, f Fault)
	resign      func(rec *recorder, mode string)
	variant     func(w http.ResponseWriter, f Fault)
}

// runOp is the single entry of every provider operation: it counts the call,
// applies a pending fault, and otherwise runs the work.
func (s *Sim) runOp(w http.ResponseWriter, r *http.Request, op string, a opAnswers) {
	f, ok := s.countAndTakeFault(op)
	if !ok {
		a.work(w)
		return
	}
	switch f.Mode {
	case FaultDelay:
		t := time.NewTimer(time.Duration(f.DelayMS) * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return
		case <-s.ctx.Done():
		}
		a.work(w)
	case FaultError:
		a.sysError(w)
	case FaultReset:
		dropConnection(w)
	case FaultDropResponse:
		a.work(newRecorder())
		dropConnection(w)
	case FaultIgnore:
		a.ignored(w)
	case FaultUnsignedError:
		a.unsigned(w, f.Status, f.Code)
	case FaultRateLimited:
		a.rateLimited(w, f)
	case FaultHTML502:
		writeHTML502(w)
	case FaultBadSignature, FaultSigntest, FaultStaleTimestamp:
		rec := newRecorder()
		a.work(rec)
		a.resign(rec, f.Mode)
		rec.flushTo(w)
	default:
		a.variant(w, f)
	}
}

// writeHTML502 is what an nginx in front of the provider answers when it
// cannot reach it: nothing was done.
func writeHTML502(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/html")
	w.WriteHeader(http.StatusBadGateway)
	_, _ = w.Write([]byte("<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"))
}

// dropConnection closes the client's connection without an answer.
func dropConnection(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// HTTP/2 or a wrapped writer: aborting the handler resets the stream.
		panic(http.ErrAbortHandler)
	}
	conn.Close()
}

// recorder collects an answer, to drop it or to change it before sending.
type recorder struct {
	h    http.Header
	body bytes.Buffer
	code int
}

func newRecorder() *recorder { return &recorder{h: http.Header{}} }

func (d *recorder) Header() http.Header         { return d.h }
func (d *recorder) Write(b []byte) (int, error) { return d.body.Write(b) }
func (d *recorder) WriteHeader(code int) {
	if d.code == 0 {
		d.code = code
	}
}

// flushTo sends the recorded answer.
func (d *recorder) flushTo(w http.ResponseWriter) {
	for k, v := range d.h {
		w.Header()[k] = v
	}
	if d.code == 0 {
		d.code = http.StatusOK
	}
	w.WriteHeader(d.code)
	_, _ = w.Write(d.body.Bytes())
}
