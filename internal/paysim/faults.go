package paysim

import (
	"bytes"
	"net/http"
	"sort"
	"time"
)

// Fault makes the next Count calls of Operation misbehave.
//
//	delay           sleep DelayMS, then answer normally
//	error           answer the provider's signed system error, do nothing
//	reset           close the connection without answering, do nothing
//	drop_response   do the work (state changes stick), then close the
//	                connection without answering: the case that makes naive
//	                gateways create duplicate trades
//	ignore          answer the operation's normal, signed success and change
//	                nothing: a close that did not take effect (the QR code
//	                can still be paid), a refund that never moved money
//	unsigned_error  answer HTTP Status with a provider-shaped error body
//	                carrying Code and no valid signature, as a proxy or any
//	                other hop in front of the provider could; change nothing
//
// Operation "*" matches every operation. Count 0 means 1. Mode "" or
// "none" clears the fault of that operation.
type Fault struct {
	Operation string `json:"operation"`
	Mode      string `json:"mode"`
	Count     int    `json:"count"`
	DelayMS   int    `json:"delay_ms,omitempty"`
	// Status and Code shape an unsigned_error answer (default 400 and
	// the provider's generic system error code).
	Status int    `json:"status,omitempty"`
	Code   string `json:"code,omitempty"`
}

// Fault modes.
const (
	FaultDelay         = "delay"
	FaultError         = "error"
	FaultReset         = "reset"
	FaultDropResponse  = "drop_response"
	FaultIgnore        = "ignore"
	FaultUnsignedError = "unsigned_error"
)

// SetFault arms (or with mode "none" clears) a fault.
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

func validFault(f Fault) bool {
	if billMode, ok := isBillFault(f); billMode {
		return ok
	}
	switch f.Mode {
	case "", "none", FaultDelay, FaultError, FaultReset, FaultDropResponse, FaultIgnore:
	case FaultUnsignedError:
		if f.Status != 0 && (f.Status < 200 || f.Status > 599) {
			return false
		}
	default:
		return false
	}
	if f.Operation == "*" {
		return true
	}
	for _, op := range Operations {
		if op == f.Operation {
			return true
		}
	}
	return false
}

// countAndTakeFault counts one call of op and consumes one use of its fault.
func (s *Sim) countAndTakeFault(op string) (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[op]++
	for _, key := range []string{op, "*"} {
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
// without doing anything (ignore), and an unsigned error body.
type opAnswers struct {
	work     func(http.ResponseWriter)
	sysError func(http.ResponseWriter)
	ignored  func(http.ResponseWriter)
	unsigned func(w http.ResponseWriter, status int, code string)
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
		a.work(&discardWriter{h: http.Header{}})
		dropConnection(w)
	case FaultIgnore:
		a.ignored(w)
	case FaultUnsignedError:
		a.unsigned(w, f.Status, f.Code)
	default:
		a.work(w)
	}
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

// discardWriter collects an answer that is never sent.
type discardWriter struct {
	h    http.Header
	body bytes.Buffer
	code int
}

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return d.body.Write(b) }
func (d *discardWriter) WriteHeader(code int)        { d.code = code }
