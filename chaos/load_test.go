//go:build chaos

package chaos

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// phaseStats counts what the clients saw during one phase.
type phaseStats struct {
	requests   atomic.Int64
	connErrs   atomic.Int64 // no HTTP answer (killed instance, reset)
	orders     atomic.Int64
	payments   atomic.Int64 // buyer payments accepted by paysim
	refreshOK  atomic.Int64
	refreshErr atomic.Int64 // clean failures: 400 invalid_grant or 503
	invalid    atomic.Int64 // of which invalid_grant

	mu         sync.Mutex
	fiveXX     map[int]int
	badStatus  []string // 5xx other than 502/503/504
	badRefresh []string // refresh failures other than invalid_grant/503, or diverging rotations
	badAnswer  []string // answers below 500 that the API does not document for the request
}

func newPhaseStats() *phaseStats { return &phaseStats{fiveXX: map[int]int{}} }

func (s *phaseStats) note(list *[]string, format string, a ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(*list) < 1000 {
		*list = append(*list, fmt.Sprintf(format, a...))
	}
}

// answer is one HTTP exchange as the client saw it.
type answer struct {
	status int
	body   map[string]any
	raw    []byte
	err    error
}

func (a answer) str(k string) string { s, _ := a.body[k].(string); return s }

// load drives the instances like clients do: it never aborts a request in
// flight (phase ends are checked between requests), and records every
// status in the current phase.
type load struct {
	w      *world
	client *http.Client
	run    string // unique prefix of this run's orders and users
	phase  atomic.Pointer[phaseStats]
	seq    atomic.Int64

	mu        sync.Mutex
	answered  map[string]map[string]bool // order|channel|amount → trade numbers answered to clients
	rotations map[string]int64           // refresh token jti → generation it rotated into
	sessions  []*session
}

func newLoad(w *world) *load {
	tr := &http.Transport{MaxIdleConnsPerHost: 32, IdleConnTimeout: 30 * time.Second}
	return &load{
		w: w, client: &http.Client{Timeout: 20 * time.Second, Transport: tr},
		run:      fmt.Sprintf("%06x", mrand.IntN(1<<24)),
		answered: map[string]map[string]bool{}, rotations: map[string]int64{},
	}
}

func (l *load) stats() *phaseStats { return l.phase.Load() }

// do sends one request to base+path and records its outcome.
func (l *load) do(method, base, path string, body any, hdr ...string) answer {
	st := l.stats()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		return answer{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	st.requests.Add(1)
	resp, err := l.client.Do(req)
	if err != nil {
		st.connErrs.Add(1)
		return answer{err: err}
	}
	defer resp.Body.Close()
	a := answer{status: resp.StatusCode}
	a.raw, _ = io.ReadAll(resp.Body)
	_ = json.Unmarshal(a.raw, &a.body)
	if a.status >= 500 {
		st.mu.Lock()
		st.fiveXX[a.status]++
		st.mu.Unlock()
		if a.status != 502 && a.status != 503 && a.status != 504 {
			st.note(&st.badStatus, "%s %s%s → %d %s", method, base, path, a.status, trim(a.raw))
		}
	}
	return a
}

func trim(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 160 {
		s = s[:160] + "…"
	}
	return s
}

// retryable is an answer after which a client retries the same request:
// no answer, or one of the documented temporary 5xx.
func retryable(a answer) bool {
	return a.err != nil || a.status == 502 || a.status == 503 || a.status == 504
}

// sleepOr sleeps d unless stop ends first; it reports whether to go on.
func sleepOr(stop context.Context, d time.Duration) bool {
	select {
	case <-stop.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// runPhase runs the workers until stop ends and waits for them.
func (l *load) runPhase(stop context.Context, orderWorkers, refreshWorkers int) {
	var wg sync.WaitGroup
	for i := range orderWorkers {
		wg.Add(1)
		go func() { defer wg.Done(); l.orderWorker(stop, i) }()
	}
	for i := range refreshWorkers {
		s := l.session(i)
		wg.Add(1)
		go func() { defer wg.Done(); l.refreshWorker(stop, s) }()
	}
	wg.Wait()
}

// ── payments ────────────────────────────────────────────────────────────

func (l *load) orderWorker(stop context.Context, id int) {
	for stop.Err() == nil {
		n := l.seq.Add(1)
		channel := "alipay"
		if n%2 == 0 {
			channel = "wechat"
		}
		order := fmt.Sprintf("CH%s_%d", l.run, n)
		l.orderLife(stop, order, channel, 1+mrand.Int64N(99999))
		sleepOr(stop, time.Duration(20+mrand.IntN(80))*time.Millisecond)
	}
}

// subjectPrefix marks this run's trades at the provider, so that trades are
// mapped to orders from paysim's own records too.
const subjectPrefix = "chaos "

// orderLife is one order: several concurrent creations on different
// instances, sometimes a change of amount or channel (which closes the
// first trade), the buyer's payment — of the current QR code, or of the
// first one a buyer had already scanned, or of both — then usually
// refunds.
func (l *load) orderLife(stop context.Context, order, channel string, amount int64) {
	l.stats().orders.Add(1)
	tradeNo := l.createMany(stop, order, channel, amount)
	if tradeNo == "" || mrand.IntN(100) >= 85 {
		return
	}
	pay := []string{tradeNo}
	if mrand.IntN(100) < 20 {
		pay = l.change(stop, order, channel, amount, tradeNo)
	}
	paid := false
	for _, tn := range pay {
		if l.w.sim.Pay(tn) == nil {
			l.stats().payments.Add(1)
			paid = true
		}
	}
	if !paid || mrand.IntN(100) >= 65 {
		return
	}
	if amount, ok := l.waitPaid(stop, order); ok {
		l.refundAll(stop, order, amount)
	}
}

// change asks for the order again with another amount or channel; it
// returns the trades the buyer then pays: the new one, the first one (its
// close may not have taken effect), or both.
func (l *load) change(stop context.Context, order, channel string, amount int64, first string) []string {
	if mrand.IntN(2) == 0 {
		channel = map[string]string{"alipay": "wechat", "wechat": "alipay"}[channel]
	} else {
		amount++
	}
	body := map[string]any{"order_no": order, "amount_fen": amount, "channel": channel, "subject": subjectPrefix + order}
	next := l.createOne(stop, order, body)
	switch r := mrand.IntN(10); {
	case next == "" || next == first:
		return []string{first}
	case r < 5:
		return []string{next}
	case r < 8:
		return []string{next, first}
	}
	return []string{first, next}
}

// createMany sends three creations of one order at once, each to its own
// instance, each retried like a client would; it returns a trade number
// answered (all answers must name the same trade).
func (l *load) createMany(stop context.Context, order, channel string, amount int64) string {
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := ""
	body := map[string]any{"order_no": order, "amount_fen": amount, "channel": channel, "subject": subjectPrefix + order}
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if tn := l.createOne(stop, order, body); tn != "" {
				mu.Lock()
				got = tn
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return got
}

func (l *load) createOne(stop context.Context, order string, body map[string]any) string {
	last := ""
	key := fmt.Sprintf("%s|%s|%d", order, body["channel"], body["amount_fen"])
	for attempt := 0; attempt < 10 && stop.Err() == nil; attempt++ {
		last = l.w.pick(last)
		a := l.do("POST", last, "/pay/trades", body)
		switch {
		case a.status == 200:
			tn := a.str("trade_no")
			l.mu.Lock()
			if l.answered[key] == nil {
				l.answered[key] = map[string]bool{}
			}
			l.answered[key][tn] = true
			l.mu.Unlock()
			return tn
		case a.status == 409 && a.str("error") == "order_paid":
			return ""
		case retryable(a) || a.status == 409:
			sleepOr(stop, time.Duration(100+mrand.IntN(200))*time.Millisecond)
		default:
			l.stats().note(&l.stats().badAnswer, "create %s: unexpected %d %s", order, a.status, trim(a.raw))
			return ""
		}
	}
	return ""
}

// waitPaid polls the order until tollgate says PAID (the notification or,
// every few polls, ?sync=1 asking the provider), and returns the amount
// paid by the order's trade.
func (l *load) waitPaid(stop context.Context, order string) (int64, bool) {
	for i := 0; i < 60 && stop.Err() == nil; i++ {
		q := ""
		if i%5 == 4 {
			q = "?sync=1"
		}
		a := l.do("GET", l.w.pick(""), "/pay/trades/"+order+q, nil)
		if a.status == 200 && a.str("state") == "PAID" {
			amount, _ := a.body["amount_fen"].(float64)
			return int64(amount), true
		}
		sleepOr(stop, 200*time.Millisecond)
	}
	return 0, false
}

// refundAll refunds the order in two parts, sometimes sending the first
// one to two instances at once, then tries one fen more than was paid
// (which must be refused).
func (l *load) refundAll(stop context.Context, order string, amount int64) {
	half := amount / 2
	parts := []int64{half, amount - half}
	if half == 0 {
		parts = []int64{amount}
	}
	for i, part := range parts {
		no := fmt.Sprintf("%sR%d", order, i)
		if i == 0 && mrand.IntN(3) == 0 {
			var wg sync.WaitGroup
			for range 2 {
				wg.Add(1)
				go func() { defer wg.Done(); l.refundOne(stop, order, no, part) }()
			}
			wg.Wait()
			continue
		}
		l.refundOne(stop, order, no, part)
	}
	if mrand.IntN(2) == 0 {
		l.refundOne(stop, order, order+"RX", 1)
	}
}

func (l *load) refundOne(stop context.Context, order, no string, amount int64) {
	body := map[string]any{"order_no": order, "refund_no": no, "amount_fen": amount, "reason": "chaos"}
	last := ""
	for attempt := 0; attempt < 10 && stop.Err() == nil; attempt++ {
		last = l.w.pick(last)
		a := l.do("POST", last, "/pay/refunds", body)
		switch {
		case a.status == 200:
			return
		case a.status == 409 && a.str("error") == "refund_exceeds_paid":
			return
		case retryable(a) || a.status == 409:
			sleepOr(stop, time.Duration(150+mrand.IntN(200))*time.Millisecond)
		default:
			l.stats().note(&l.stats().badAnswer, "refund %s: unexpected %d %s", no, a.status, trim(a.raw))
			return
		}
	}
}

// ── sessions ────────────────────────────────────────────────────────────

// session is one user's chain of refresh tokens, kept across phases.
type session struct {
	user string
	rt   string
}

func (l *load) session(i int) *session {
	l.mu.Lock()
	defer l.mu.Unlock()
	for len(l.sessions) <= i {
		l.sessions = append(l.sessions, &session{user: fmt.Sprintf("u%s_%d", l.run, len(l.sessions))})
	}
	return l.sessions[i]
}

func (l *load) refreshWorker(stop context.Context, s *session) {
	for stop.Err() == nil {
		if s.rt == "" {
			l.login(stop, s)
		} else {
			l.refresh(stop, s)
		}
		sleepOr(stop, time.Duration(30+mrand.IntN(70))*time.Millisecond)
	}
}

func (l *load) login(stop context.Context, s *session) {
	a := l.do("POST", l.w.pick(""), "/login", map[string]string{"user": s.user})
	if a.status == 200 {
		s.rt = a.str("refresh_token")
		return
	}
	if !retryable(a) && a.status < 500 {
		l.stats().note(&l.stats().badAnswer, "login %s: unexpected %d %s", s.user, a.status, trim(a.raw))
	}
	sleepOr(stop, 200*time.Millisecond)
}

// refresh presents the session's token, now and then to two instances at
// once, and keeps presenting the same token until it gets an answer: a
// lost answer must be retryable (reuse_grace), never fatal.
func (l *load) refresh(stop context.Context, s *session) {
	n := 1
	if mrand.IntN(10) == 0 {
		n = 2
	}
	results := make([]answer, n)
	var wg sync.WaitGroup
	first := l.w.pick("")
	for i := range n {
		base := first
		if i > 0 {
			base = l.w.pick(first)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = l.do("POST", base, "/auth/refresh", nil, "Refresh-Token", s.rt)
		}()
	}
	wg.Wait()
	next := ""
	for _, a := range results {
		if nt := l.judgeRefresh(s.rt, a); nt != "" && next == "" {
			next = nt
		}
		if a.status == 400 {
			next = "-"
		}
	}
	switch next {
	case "":
		sleepOr(stop, 200*time.Millisecond) // no answer or 503: same token again
	case "-":
		s.rt = "" // the session is gone: log in again
	default:
		s.rt = next
	}
}

// judgeRefresh records one refresh answer and returns the new refresh
// token of a success.
func (l *load) judgeRefresh(presented string, a answer) string {
	st := l.stats()
	switch {
	case a.err != nil:
		return ""
	case a.status == 200:
		st.refreshOK.Add(1)
		nt := a.str("refresh_token")
		l.checkRotation(presented, nt)
		return nt
	case a.status == 503 || (a.status == 400 && a.str("error") == "invalid_grant"):
		st.refreshErr.Add(1)
		if a.status == 400 {
			st.invalid.Add(1)
		}
		return ""
	default:
		st.refreshErr.Add(1)
		st.note(&st.badRefresh, "refresh answered %d %s", a.status, trim(a.raw))
		return ""
	}
}

// checkRotation: a token rotates into exactly one generation, its own + 1,
// however many times (and on however many instances) it is presented.
func (l *load) checkRotation(presented, next string) {
	st := l.stats()
	pc, nc := claims(presented), claims(next)
	pjti, _ := pc["jti"].(string)
	pg, _ := pc["gen"].(float64)
	ng, _ := nc["gen"].(float64)
	if pc["sid"] != nc["sid"] || int64(ng) != int64(pg)+1 {
		st.note(&st.badRefresh, "token gen %d of sid %v rotated into gen %d of sid %v", int64(pg), pc["sid"], int64(ng), nc["sid"])
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if prev, ok := l.rotations[pjti]; ok && prev != int64(ng) {
		st.note(&st.badRefresh, "token %s rotated into gen %d and gen %d", pjti, prev, int64(ng))
	}
	l.rotations[pjti] = int64(ng)
}

// claims decodes a JWT's payload without verifying it (the client's view).
func claims(tok string) map[string]any {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return map[string]any{}
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return map[string]any{}
	}
	m := map[string]any{}
	_ = json.Unmarshal(raw, &m)
	return m
}
