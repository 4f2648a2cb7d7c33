package paysim

import (
	"bytes"
	"net/http"
	"time"
)

// Fault makes the next Count calls of Operation misbehave.
//
//	delay          sleep DelayMS, then answer normally
//	error          answer the provider's signed system error, do nothing
//	reset          close the connection without answering, do nothing
//	drop_response  do the work (state changes stick), then close the
//	               connection without answering: the case that makes naive
//	               gateways create duplicate trades
//
// Operation "*" matches every operation. Count 0 means 1. Mode "" or
// "none" clears the fault of that operation.
type Fault struct {
	Operation string `json:"operation"`
	Mode      string `json:"mode"`
	Count     int    `json:"count"`
	DelayMS   int    `json:"delay_ms"`
}

// Fault modes.
const (
	FaultDelay        = "delay"
	FaultError        = "error"
	FaultReset        = "reset"
	FaultDropResponse = "drop_response"
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
	s.faults[f.Operation] = &f
}

func validFault(f Fault) bool {
	if billMode, ok := isBillFault(f); billMode {
		return ok
	}
	switch f.Mode {
	case "", "none", FaultDelay, FaultError, FaultReset, FaultDropResponse:
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

// runOp is the single entry of every provider operation: it counts the call,
// applies a pending fault, and otherwise runs work. sysError writes the
// provider's signed system-error answer.
func (s *Sim) runOp(w http.ResponseWriter, r *http.Request, op string, sysError, work func(http.ResponseWriter)) {
	f, ok := s.countAndTakeFault(op)
	if !ok {
		work(w)
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
		work(w)
	case FaultError:
		sysError(w)
	case FaultReset:
		dropConnection(w)
	case FaultDropResponse:
		work(&discardWriter{h: http.Header{}})
		dropConnection(w)
	default:
		work(w)
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
