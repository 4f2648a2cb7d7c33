//go:build chaos

package chaos

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// hookEvent is what payproxy POSTs to the backend.
type hookEvent struct {
	ID   string `json:"id"`
	Type string `json:"type"`
	Data struct {
		OrderNo   string `json:"order_no"`
		TradeNo   string `json:"trade_no"`
		AmountFen int64  `json:"amount_fen"`
		State     string `json:"state"`
		RefundNo  string `json:"refund_no"`
		Seq       int64  `json:"seq"`
	} `json:"data"`
}

// hookReceiver is the backend's webhook endpoint on a fixed loopback port.
// It verifies every signature independently of payproxy's code and keeps
// the events. "Down" closes the listener: connections are refused, as with
// a crashed backend.
type hookReceiver struct {
	t    *testing.T
	addr string

	mu       sync.Mutex
	srv      *http.Server
	events   map[string]hookEvent // by event id, first delivery
	received int                  // deliveries, duplicates included
	bad      int                  // bad signature or body
}

func startHookReceiver(t *testing.T) *hookReceiver {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &hookReceiver{t: t, addr: l.Addr().String(), events: map[string]hookEvent{}}
	h.serve(l)
	t.Cleanup(h.down)
	return h
}

func (h *hookReceiver) url() string { return "http://" + h.addr + "/webhooks/tollgate" }

func (h *hookReceiver) serve(l net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(h.handle)}
	h.mu.Lock()
	h.srv = srv
	h.mu.Unlock()
	go func() { _ = srv.Serve(l) }()
}

// down stops accepting connections (and drops open ones).
func (h *hookReceiver) down() {
	h.mu.Lock()
	srv := h.srv
	h.srv = nil
	h.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

// up listens again on the same port.
func (h *hookReceiver) up() {
	l, err := listenSamePort(h.addr)
	if err != nil {
		h.t.Fatalf("webhook receiver: %v", err)
	}
	h.serve(l)
}

func (h *hookReceiver) handle(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	var ev hookEvent
	ok := verifySignature(r.Header.Get("X-Tollgate-Signature"), body) && json.Unmarshal(body, &ev) == nil && ev.ID != ""
	h.mu.Lock()
	defer h.mu.Unlock()
	if !ok {
		h.bad++
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	h.received++
	if _, seen := h.events[ev.ID]; !seen {
		h.events[ev.ID] = ev
	}
	w.WriteHeader(http.StatusNoContent)
}

// verifySignature checks "t=<unix>,v1=<hex HMAC-SHA256(secret, t.body)>".
func verifySignature(header string, body []byte) bool {
	var ts, v1 string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			v1 = v
		}
	}
	mac := hmac.New(sha256.New, []byte(webhookSecret))
	mac.Write([]byte(ts + "." + string(body)))
	return ts != "" && hmac.Equal([]byte(hex.EncodeToString(mac.Sum(nil))), []byte(v1))
}

// snapshot returns the verified events and the counters.
func (h *hookReceiver) snapshot() (events map[string]hookEvent, received, bad int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	events = make(map[string]hookEvent, len(h.events))
	for k, v := range h.events {
		events[k] = v
	}
	return events, h.received, h.bad
}
