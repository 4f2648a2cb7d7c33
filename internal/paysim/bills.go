package paysim

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sort"
	"time"
)

// Daily trade bills (对账单), served from the simulator's own state for any
// day up to today (Beijing time; today's bill holds what happened so far,
// where the real providers refuse today). The formats are the real ones
// as far as public sources show them (issue 13's research notes: real
// sample bills kept in public repositories, the providers' docs, the
// SDKs); each fact is stated where it is used, and every choice between
// uncertain readings is marked [?] there.
//
// A bill is fixed when its first step is answered: the link handed out
// serves that snapshot, so the WeChat file matches the hash given with it
// even if a refund settles in between.

// Bill operations, as counted by Calls and targeted by faults: the first
// step of each provider's bill download.
const (
	opAlipayBill = "alipay.bill"
	opWechatBill = "wechat.bill"
)

// Bill fault modes, valid on the bill operations only:
//
//	bill_not_ready  the provider has no bill yet: Alipay's unsigned 40004
//	                isp.bill_not_exist (the shape one live report saw),
//	                WeChat's 400 STATEMENT_CREATING
//	corrupt_bill    the link of this answer serves a damaged file: Alipay a
//	                truncated zip that cannot be opened, WeChat a file whose
//	                SHA1 is not the one in the signed answer
//
// The generic modes work on bill operations too (delay, error, reset;
// drop_response is a reset, the bill query changes nothing).
const (
	FaultBillNotReady = "bill_not_ready"
	FaultCorruptBill  = "corrupt_bill"
)

// isBillFault reports whether f uses a bill mode, and if so whether it
// names a bill operation: bill modes mean nothing elsewhere.
func isBillFault(f Fault) (billMode, valid bool) {
	if f.Mode != FaultBillNotReady && f.Mode != FaultCorruptBill {
		return false, false
	}
	return true, f.Operation == opAlipayBill || f.Operation == opWechatBill
}

// BillEntry is one detail line of a bill before formatting.
type BillEntry struct {
	Refund bool
	// Time is the payment's time, or the refund's: Alipay's completion
	// (完成时间), WeChat's application (交易时间 of a refund row) [?].
	Time time.Time
	// TradeCreatedAt is the trade's creation (Alipay's 创建时间, on refund
	// lines too).
	TradeCreatedAt time.Time
	OutTradeNo     string
	TradeNo        string
	OutRefundNo    string // Alipay out_request_no, WeChat out_refund_no
	RefundID       string // WeChat refund_id
	// AmountFen is the payment's total or the refund's amount.
	AmountFen    int64
	RefundStatus string // WeChat: PROCESSING, SUCCESS, …
	Subject      string
	Attach       string
}

// billLines is a day's entries in time order: a snapshot of the state, or
// a synthetic day computed line by line.
type billLines interface {
	count() int
	entry(i int) BillEntry
}

type stateLines []BillEntry

func (s stateLines) count() int            { return len(s) }
func (s stateLines) entry(i int) BillEntry { return s[i] }

// billFile is one bill as handed out: what it holds, when it was made,
// and whether a fault damages it.
type billFile struct {
	channel string
	day     time.Time // 00:00 Beijing
	lines   billLines
	made    time.Time
	corrupt bool
	gzip    bool   // WeChat tar_type=GZIP
	sha1    string // WeChat: of the uncompressed file
}

// billLink is a download link handed out by a first step.
type billLink struct {
	file    *billFile
	expires time.Time
}

// billState is the simulator's bill bookkeeping, under Sim.mu.
type billState struct {
	synthetic map[string]SyntheticDay // channel + " " + date
	links     map[string]billLink     // token
}

// Link lifetimes: Alipay "获取连接后30秒后未下载，链接地址失效"; WeChat
// download_url "该地址5min内有效".
const (
	alipayLinkTTL = 30 * time.Second
	wechatLinkTTL = 5 * time.Minute
)

var (
	// ErrNoBill means the provider has no bill for that day (no payment or
	// refund happened).
	ErrNoBill = errors.New("paysim: no bill for that day")
	// ErrBillDate means the date is not yyyy-MM-dd or lies after today.
	ErrBillDate = errors.New("paysim: bill date must be yyyy-MM-dd and not after today (Beijing time)")
	// ErrBillChannel means the channel is neither alipay nor wechat.
	ErrBillChannel = errors.New("paysim: bill channel must be alipay or wechat")
)

// parseBillDate accepts exactly yyyy-MM-dd and returns the day's start in
// Beijing time.
func parseBillDate(s string) (time.Time, bool) {
	d, err := time.ParseInLocation("2006-01-02", s, chinaTZ)
	return d, err == nil && d.Format("2006-01-02") == s
}

// billDay resolves a date up to today.
func billDay(date string, now time.Time) (time.Time, error) {
	d, ok := parseBillDate(date)
	if !ok || d.After(now) {
		return time.Time{}, ErrBillDate
	}
	return d, nil
}

// snapshotBill fixes the bill of one channel and date (up to today):
// ErrBillChannel, ErrBillDate, or ErrNoBill for a day without lines.
func (s *Sim) snapshotBill(channel, date string) (*billFile, error) {
	if channel != ProviderAlipay && channel != ProviderWechat {
		return nil, ErrBillChannel
	}
	now := s.now()
	day, err := billDay(date, now)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var lines billLines
	if d, ok := s.bills.synthetic[channel+" "+date]; ok {
		lines = d
	} else {
		lines = s.dayEntriesLocked(channel, day, now)
	}
	if lines.count() == 0 {
		return nil, ErrNoBill
	}
	return &billFile{channel: channel, day: day, lines: lines, made: now}, nil
}

// dayEntriesLocked lists the day's payments and refunds of one channel.
// Only paid trades appear: closed and unpaid ones never do. A payment is
// on the day it was paid; an Alipay refund on the day it completed, a
// WeChat refund on the day it was applied for, with the state it has now
// (the bill then lists a PROCESSING refund, as 2016's sample does) [?].
func (s *Sim) dayEntriesLocked(channel string, day, now time.Time) stateLines {
	end := day.AddDate(0, 0, 1)
	in := func(t time.Time) bool { return !t.IsZero() && !t.Before(day) && t.Before(end) }
	var out stateLines
	for _, t := range s.order {
		s.expireIfDue(t, now)
		if t.Provider == channel && in(t.PaidAt) {
			out = append(out, BillEntry{Time: t.PaidAt, TradeCreatedAt: t.CreatedAt, OutTradeNo: t.OutTradeNo,
				TradeNo: t.TradeNo, AmountFen: t.TotalFen, Subject: t.Subject, Attach: t.Attach})
		}
	}
	for _, rf := range s.refunds {
		at := rf.SuccessAt
		if channel == ProviderWechat {
			at = rf.CreatedAt
		}
		t := s.trades[channel][rf.OutTradeNo]
		if rf.Provider != channel || !in(at) || t == nil {
			continue
		}
		out = append(out, BillEntry{Refund: true, Time: at, TradeCreatedAt: t.CreatedAt, OutTradeNo: rf.OutTradeNo,
			TradeNo: rf.TradeNo, OutRefundNo: rf.OutRefundNo, RefundID: rf.RefundID, AmountFen: rf.AmountFen,
			RefundStatus: rf.Status, Subject: t.Subject, Attach: t.Attach})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out
}

// issueBillLink snapshots a bill and hands out a token for its download.
func (s *Sim) issueBillLink(channel, date string, corrupt, gzip bool) (*billFile, string, error) {
	f, err := s.snapshotBill(channel, date)
	if err != nil {
		return nil, "", err
	}
	f.corrupt, f.gzip = corrupt, gzip
	ttl := alipayLinkTTL
	if channel == ProviderWechat {
		ttl = wechatLinkTTL
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bills.links == nil {
		s.bills.links = map[string]billLink{}
	}
	for tok, l := range s.bills.links {
		if f.made.After(l.expires) {
			delete(s.bills.links, tok)
		}
	}
	token := randHex(16)
	s.bills.links[token] = billLink{file: f, expires: f.made.Add(ttl)}
	return f, token, nil
}

// billByToken finds a live link of one channel.
func (s *Sim) billByToken(channel, token string) *billFile {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.bills.links[token]
	if !ok || l.file.channel != channel || s.now().After(l.expires) {
		return nil
	}
	return l.file
}

// WriteBill writes the bill of channel ("alipay" or "wechat") for date
// (yyyy-MM-dd, Beijing, up to today) as the provider's download serves it:
// Alipay's zip, WeChat's CSV (uncompressed). It streams: a synthetic day
// of a million lines never sits in memory.
func (s *Sim) WriteBill(w io.Writer, channel, date string) error {
	f, err := s.snapshotBill(channel, date)
	if err != nil {
		return err
	}
	return s.writeBillFile(w, f)
}

func (s *Sim) writeBillFile(w io.Writer, f *billFile) error {
	if f.channel == ProviderAlipay {
		return writeAlipayZip(w, f)
	}
	return s.writeWechatCSV(w, f, f.corrupt)
}

// takeBillFault counts one call of a bill operation and applies its fault.
// It reports whether the answer was already given, and whether the bill
// handed out must be corrupted.
func (s *Sim) takeBillFault(w http.ResponseWriter, r *http.Request, op string, sysError, notReady func()) (answered, corrupt bool) {
	f, ok := s.countAndTakeFault(op)
	if !ok {
		return false, false
	}
	switch f.Mode {
	case FaultBillNotReady:
		notReady()
		return true, false
	case FaultCorruptBill:
		return false, true
	case FaultError:
		sysError()
		return true, false
	case FaultReset, FaultDropResponse:
		dropConnection(w)
		return true, false
	case FaultDelay:
		return !s.waitFault(r.Context(), time.Duration(f.DelayMS)*time.Millisecond), false
	}
	return false, false
}

// waitFault sleeps d; false means the client or the simulator went away.
func (s *Sim) waitFault(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-s.ctx.Done():
		return true
	}
}

// billRoutes registers the bill endpoints: WeChat's two steps (more
// specific than serveWechat's /v3/), Alipay's download link (its first
// step is a /gateway.do method) and the control API's file and synthetic
// days.
func (s *Sim) billRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v3/bill/tradebill", s.serveWechatTradeBill)
	mux.HandleFunc("GET /v3/billdownload/file", s.serveWechatBillDownload)
	mux.HandleFunc("GET /downloadBillFile.resource", s.serveAlipayBillDownload)
	mux.HandleFunc("GET /_sim/bills/{channel}/{date}", s.controlBill)
	mux.HandleFunc("POST /_sim/bills/{channel}/{date}/synthetic", s.controlSyntheticDay)
}

// controlBill: GET /_sim/bills/{channel}/{date} answers the bill file as
// the provider's download would, without a first step, a fault or a count.
func (s *Sim) controlBill(w http.ResponseWriter, r *http.Request) {
	channel, date := r.PathValue("channel"), r.PathValue("date")
	f, err := s.snapshotBill(channel, date)
	switch {
	case errors.Is(err, ErrBillChannel):
		writeError(w, http.StatusNotFound, "not_found", "bills are /_sim/bills/alipay|wechat/{yyyy-MM-dd}")
		return
	case errors.Is(err, ErrBillDate):
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	case errors.Is(err, ErrNoBill):
		writeError(w, http.StatusNotFound, "no_bill", "no payment or refund on "+date)
		return
	}
	if channel == ProviderAlipay {
		w.Header().Set("Content-Type", "application/zip")
		w.Header().Set("Content-Disposition", `attachment; filename="`+alipayAccount+"_"+f.day.Format("20060102")+`.csv.zip"`)
	} else {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	}
	_ = s.writeBillFile(w, f) // a write error is the client gone
}
