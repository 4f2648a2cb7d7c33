package paysim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// SyntheticDay is a generated bill day, for benchmarks: line i follows
// from i alone, so a day of a million lines is served (and streamed)
// without one trade in memory, and a test can build the matching ledger
// from the same Entry calls.
//
// In each block of ten lines, lines 0–7 are payments, line 8 refunds half
// of line 0's payment and line 9 refunds all of line 1's. Lines are spread
// evenly over the day in index order; WeChat refunds are SUCCESS.
type SyntheticDay struct {
	Channel string // ProviderAlipay or ProviderWechat
	Date    string // yyyy-MM-dd, Beijing time, up to today
	Lines   int
}

// AddSyntheticDay makes the bill of d.Channel and d.Date come from d; the
// simulator's own trades of that day are then left out of it.
func (s *Sim) AddSyntheticDay(d SyntheticDay) error {
	if d.Channel != ProviderAlipay && d.Channel != ProviderWechat {
		return ErrBillChannel
	}
	if _, err := billDay(d.Date, s.now()); err != nil {
		return err
	}
	if d.Lines < 1 {
		return fmt.Errorf("paysim: a synthetic day needs at least one line, got %d", d.Lines)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bills.synthetic == nil {
		s.bills.synthetic = map[string]SyntheticDay{}
	}
	s.bills.synthetic[d.Channel+" "+d.Date] = d
	return nil
}

// controlSyntheticDay: POST /_sim/bills/{channel}/{date}/synthetic
// {"lines": N} does AddSyntheticDay for a simulator in its own process
// (cmd/paysim), for benchmarks.
func (s *Sim) controlSyntheticDay(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Lines int `json:"lines"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", `body must be {"lines": N}: `+err.Error())
		return
	}
	d := SyntheticDay{Channel: r.PathValue("channel"), Date: r.PathValue("date"), Lines: req.Lines}
	if err := s.AddSyntheticDay(d); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"channel": d.Channel, "date": d.Date, "lines": d.Lines})
}

func (d SyntheticDay) count() int            { return d.Lines }
func (d SyntheticDay) entry(i int) BillEntry { return d.Entry(i) }

// Entry returns line i (0 ≤ i < Lines).
func (d SyntheticDay) Entry(i int) BillEntry {
	day, _ := parseBillDate(d.Date)
	ymd := day.Format("20060102")
	at := func(j int) time.Time { return day.Add(time.Duration(int64(j)*86400/int64(d.Lines)) * time.Second) }
	block := i - i%10
	paid := i
	switch i % 10 {
	case 8:
		paid = block
	case 9:
		paid = block + 1
	}
	e := BillEntry{Time: at(i), TradeCreatedAt: at(paid).Add(-time.Minute), OutTradeNo: "SYN" + ymd + zeroPad(paid, 8),
		AmountFen: 1 + int64(paid)*7919%99999, Subject: "synthetic parcel"}
	if d.Channel == ProviderWechat {
		e.TradeNo = "4200" + zeroPad(paid, 16) + ymd
	} else {
		e.TradeNo = ymd + "2200" + zeroPad(paid, 16)
	}
	if i%10 < 8 {
		return e
	}
	e.Refund, e.RefundStatus = true, "SUCCESS"
	e.OutRefundNo, e.RefundID = "SYNR"+ymd+zeroPad(i, 8), "50"+ymd+zeroPad(i, 20)
	if i%10 == 8 {
		e.AmountFen = max(1, e.AmountFen/2)
	}
	return e
}

// zeroPad formats n with at least width digits.
func zeroPad(n, width int) string {
	var buf [24]byte
	b := strconv.AppendInt(buf[:0], int64(n), 10)
	if len(b) >= width {
		return string(b)
	}
	out := make([]byte, width)
	for i := range out[:width-len(b)] {
		out[i] = '0'
	}
	copy(out[width-len(b):], b)
	return string(out)
}
