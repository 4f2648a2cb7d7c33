package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/tollgate/tollgate/payproxy/bill"
)

// batchSize is how many bill lines, or index entries, are looked up in
// the ledger at once (one pipelined batch), and how many differences are
// read back at once.
const batchSize = 1000

// Reconciler runs reconciliations against one Redis.
type Reconciler struct {
	Redis  redis.UniversalClient
	Logger *zap.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (rc *Reconciler) now() time.Time {
	if rc.Now != nil {
		return rc.Now()
	}
	return time.Now()
}

// Run reconciles job and stores its report. If another run of the same
// channel and date is under way (another instance, an admin request), it
// waits for it and returns its report. retry says the run should be tried
// again later: the bill was not ready or could not be fetched, or some
// signed queries failed. An error means no report could be made or
// stored (Redis failed, or ctx ended).
func (rc *Reconciler) Run(ctx context.Context, job Job) (rep *Report, retry bool, err error) {
	l, runCtx, ok, err := TryLease(ctx, rc.Redis, runKey(job.Channel, job.Date))
	if err != nil {
		return nil, true, fmt.Errorf("taking the run's lease: %w", err)
	}
	if !ok {
		rep, err := rc.await(ctx, job)
		return rep, false, err
	}
	defer l.Release(ctx)
	r := &run{rc: rc, job: job, rep: newReport(job), token: newToken()}
	counts, retry := r.execute(runCtx)
	if runCtx.Err() != nil {
		return nil, true, fmt.Errorf("reconciliation of %s %s interrupted: %w", job.Channel, job.Date, context.Cause(runCtx))
	}
	if err := save(ctx, rc.Redis, r.rep, counts, rc.now()); err != nil {
		return r.rep, true, err
	}
	return r.rep, retry, nil
}

// await waits for the run holding the lease to end, then loads its report.
func (rc *Reconciler) await(ctx context.Context, job Job) (*Report, error) {
	for {
		n, err := rc.Redis.Exists(ctx, runKey(job.Channel, job.Date)).Result()
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return Load(ctx, rc.Redis, job.Channel, job.Date)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func newReport(job Job) *Report {
	return &Report{Channel: job.Channel, Date: job.Date, State: StateDone, Differences: []Difference{}}
}

// run is one reconciliation in progress.
type run struct {
	rc    *Reconciler
	job   Job
	rep   *Report
	token string
	// found counts every difference (the report lists MaxDifferences).
	found    int
	failures int // signed queries that could not be made
}

// pending is a difference found while the bill is read, kept in Redis
// until the bill has proved whole; then it is healed or explained.
type pending struct {
	Difference
	// Heal: a signed query may confirm the provider's side and heal it.
	Heal bool `json:"heal,omitempty"`
	// Explain: it is no difference if the provider's signed query shows
	// tollgate's record right (a record on a neighbouring day's bill, a
	// refund the bill caught before it completed); FromBill when it came
	// from a bill line (then it counts as matched).
	Explain  bool   `json:"explain,omitempty"`
	FromBill bool   `json:"from_bill,omitempty"`
	Record   Record `json:"record"`
}

// execute fetches and compares; it returns the open counts of a completed
// comparison (nil otherwise) and whether to retry later.
func (r *run) execute(ctx context.Context) (map[string]int, bool) {
	rd, err := r.job.Fetch(ctx)
	switch {
	case errors.Is(err, bill.ErrNotReady) && r.job.NoBillIsEmpty:
		if had, err := r.hadBill(ctx); err != nil || had > 0 {
			r.fail(StateError, r.noBillAfterBill(had, err))
			return nil, true
		}
		rd = emptyBill{}
	case errors.Is(err, bill.ErrNotReady):
		r.fail(StatePending, "the provider has no bill for this day yet (not generated, or no trade that day); asked again later")
		return nil, true
	case err != nil:
		r.fail(StateError, "fetching the bill: "+err.Error())
		return nil, true
	}
	defer rd.Close()
	seen, diffs := seenKey(r.job.Channel, r.job.Date, r.token), diffsKey(r.job.Channel, r.job.Date, r.token)
	defer func() {
		// UNLINK: a set of a million members is freed off Redis's thread.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = r.rc.Redis.Unlink(cctx, seen, diffs).Err()
	}()
	if err := r.compareBill(ctx, rd, seen, diffs); err != nil {
		// A bad bill, or Redis failing: the differences found so far are
		// dropped with the list, nothing was healed or reported.
		r.fail(StateError, err.Error())
		return nil, !errors.Is(err, bill.ErrBadBill)
	}
	if err := r.compareIndex(ctx, seen, diffs); err != nil {
		r.fail(StateError, err.Error())
		return nil, true
	}
	counts, err := r.act(ctx, diffs)
	if err != nil {
		r.fail(StateError, err.Error())
		return nil, true
	}
	if r.found > MaxDifferences {
		r.rep.State = StateError
		r.rep.Error = fmt.Sprintf("%d differences, more than %d (another merchant's bill, another Redis?): the first %d are listed",
			r.found, MaxDifferences, MaxDifferences)
	}
	return counts, r.failures > 0
}

// hadBill is the number of lines of the date's completed report, if any.
// Read under the run's lease: no other run of the date writes meanwhile.
func (r *run) hadBill(ctx context.Context) (int, error) {
	rep, err := Load(ctx, r.rc.Redis, r.job.Channel, r.job.Date)
	if errors.Is(err, ErrNoReport) {
		return 0, nil
	}
	if err != nil || rep.State != StateDone {
		return 0, err
	}
	return rep.Lines, nil
}

// noBillAfterBill explains why a "no bill" answer was not taken as a day
// without trades. Such an answer is not signed by either provider (Alipay
// answers isp.bill_not_exist unsigned; WeChat's error answers are not
// verified), so a hop can forge it: it must not erase a bill already had.
func (r *run) noBillAfterBill(had int, err error) string {
	if err != nil {
		return "the provider has no bill for this day, and the last report could not be read: " + err.Error() + "; asked again later"
	}
	return fmt.Sprintf("the provider answered that it has no bill for this day, whose bill had %d lines at an earlier run: not taken as a day without trades; asked again later", had)
}

// fail makes the report an error or pending one: nothing compared.
func (r *run) fail(state, msg string) {
	*r.rep = *newReport(r.job)
	r.rep.State, r.rep.Error = state, msg
}

// compareBill reads the bill to its end, a batch at a time.
func (r *run) compareBill(ctx context.Context, rd bill.Reader, seen, diffs string) error {
	batch := make([]bill.Line, 0, batchSize)
	for {
		l, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		r.rep.Lines++
		if batch = append(batch, l); len(batch) == batchSize {
			if err := r.lines(ctx, batch, seen, diffs); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	if err := r.lines(ctx, batch, seen, diffs); err != nil {
		return err
	}
	t := rd.Totals()
	r.rep.Totals.ProviderPaidFen, r.rep.Totals.ProviderRefundedFen = t.PaymentFen, t.RefundFen
	return nil
}

// lines compares one batch of bill lines with their records, adds them to
// the run's seen set and keeps the differences.
func (r *run) lines(ctx context.Context, batch []bill.Line, seen, diffs string) error {
	if len(batch) == 0 {
		return nil
	}
	refs := make([]Ref, len(batch))
	members := make([]any, len(batch))
	for i, l := range batch {
		refs[i] = Ref{Refund: l.Kind == bill.Refund, TradeNo: l.OrderNo, RefundNo: l.RefundNo}
		members[i] = member(refs[i])
	}
	recs, err := r.job.Ledger.Records(ctx, refs)
	if err != nil {
		return fmt.Errorf("looking up the ledger: %w", err)
	}
	var found []any
	for i, l := range batch {
		if p, ok := r.classify(l, recs[i]); ok {
			found = append(found, p)
		} else {
			r.rep.Matched++
		}
	}
	return r.keep(ctx, diffs, found, func(p redis.Pipeliner) {
		p.SAdd(ctx, seen, members...)
		p.Expire(ctx, seen, workTTL)
	})
}

// keep stores differences in the run's list, with more commands of the
// same round trip.
func (r *run) keep(ctx context.Context, diffs string, found []any, more func(redis.Pipeliner)) error {
	_, err := r.rc.Redis.Pipelined(ctx, func(p redis.Pipeliner) error {
		more(p)
		if len(found) > 0 {
			p.RPush(ctx, diffs, found...)
			p.Expire(ctx, diffs, workTTL)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("keeping differences: %w", err)
	}
	return nil
}

// compareIndex finds tollgate's records of the day that no bill line
// named: the index entries of the day not in the seen set (each added to
// it, which also drops an entry the scan gives twice).
func (r *run) compareIndex(ctx context.Context, seen, diffs string) error {
	return scanIndex(ctx, r.rc.Redis, r.job.Channel, r.job.Start, r.job.End, func(entries []indexEntry) error {
		added := make([]*redis.IntCmd, len(entries))
		_, err := r.rc.Redis.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, e := range entries {
				added[i] = p.SAdd(ctx, seen, e.member)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("reading the day's index: %w", err)
		}
		var refs []Ref
		for i, e := range entries {
			if ref, ok := refOf(e.member); ok && added[i].Val() == 1 {
				refs = append(refs, ref)
			}
		}
		if len(refs) == 0 {
			return nil
		}
		recs, err := r.job.Ledger.Records(ctx, refs)
		if err != nil {
			return fmt.Errorf("looking up the ledger: %w", err)
		}
		var found []any
		for _, rec := range recs {
			if p, ok := r.unlisted(rec); ok {
				found = append(found, p)
			}
		}
		return r.keep(ctx, diffs, found, func(redis.Pipeliner) {})
	})
}

// unlisted makes a record absent from the bill a difference, if tollgate
// still has it as paid or refunded (an index entry may outlive a record).
func (r *run) unlisted(rec Record) (string, bool) {
	switch {
	case !rec.Found:
		return "", false
	case rec.Refund && rec.State != stateRefundSuccess:
		return "", false
	case !rec.Refund && (rec.State != statePaid || rec.Channel != r.job.Channel):
		return "", false
	}
	d := Difference{Kind: MissingAtProvider, OrderNo: rec.OrderNo, TradeNo: rec.TradeNo, RefundNo: rec.RefundNo, LocalFen: rec.AmountFen}
	return encode(pending{Difference: d, Explain: true, Record: rec}), true
}

func encode(p pending) string {
	b, _ := json.Marshal(p)
	return string(b)
}

// act reads the differences back once the bill proved whole: explains,
// heals, publishes and lists them; it returns the open ones by kind.
func (r *run) act(ctx context.Context, diffs string) (map[string]int, error) {
	counts := make(map[string]int, len(Kinds))
	for _, k := range Kinds {
		counts[k] = 0
	}
	for start := int64(0); ; start += batchSize {
		items, err := r.rc.Redis.LRange(ctx, diffs, start, start+batchSize-1).Result()
		if err != nil {
			return nil, fmt.Errorf("reading differences back: %w", err)
		}
		for _, raw := range items {
			var p pending
			if err := json.Unmarshal([]byte(raw), &p); err != nil {
				return nil, fmt.Errorf("decoding a difference: %w", err)
			}
			if d, open, ok := r.settle(ctx, p); ok {
				r.list(ctx, d, open, counts)
			}
		}
		if len(items) < batchSize {
			return counts, nil
		}
	}
}

// settle explains or heals one difference. It reports the difference as it
// stands, whether it is still open, and false when it was explained away.
func (r *run) settle(ctx context.Context, p pending) (Difference, bool, bool) {
	d := p.Difference
	switch {
	case p.Explain:
		ok, err := r.job.Ledger.Confirmed(ctx, p.Record)
		if err != nil {
			r.queryFailed(d, err)
		} else if ok {
			if p.FromBill {
				r.rep.Matched++
			}
			return d, false, false
		}
		if !p.FromBill {
			r.addLocal(d, d.LocalFen)
		}
	case p.Heal:
		healed, err := r.job.Ledger.Heal(ctx, d)
		if err != nil {
			r.queryFailed(d, err)
		}
		if healed {
			d.Healed = true
			r.rep.Healed++
			r.addLocal(d, d.ProviderFen)
		}
	}
	return d, !d.Healed, true
}

func (r *run) queryFailed(d Difference, err error) {
	r.failures++
	if r.rc.Logger != nil {
		r.rc.Logger.Warn("reconciliation: a signed query failed; the difference stays open and the run is retried",
			zap.String("channel", r.job.Channel), zap.String("date", r.job.Date), zap.String("kind", d.Kind),
			zap.String("trade_no", d.TradeNo), zap.String("refund_no", d.RefundNo), zap.Error(err))
	}
}

// list puts a difference into the report (up to MaxDifferences) and, if
// open, counts and publishes it.
func (r *run) list(ctx context.Context, d Difference, open bool, counts map[string]int) {
	r.found++
	if r.found <= MaxDifferences {
		r.rep.Differences = append(r.rep.Differences, d)
	}
	if !open {
		return
	}
	counts[d.Kind]++
	if r.found > MaxDifferences {
		// Past the bound the bill is not this ledger's (another
		// merchant, another Redis): the report is an error, and its
		// differences must not flood the webhook and Redis as events.
		return
	}
	if err := r.job.Ledger.Publish(ctx, r.job.Date, d); err != nil && r.rc.Logger != nil {
		r.rc.Logger.Warn("reconciliation: publishing reconcile.discrepancy failed; the next run sends it",
			zap.String("channel", r.job.Channel), zap.String("date", r.job.Date), zap.String("trade_no", d.TradeNo), zap.Error(err))
	}
}

// addLocal counts amount as tollgate's, paid or refunded.
func (r *run) addLocal(d Difference, amount int64) {
	if d.RefundNo != "" {
		r.rep.Totals.LocalRefundedFen += amount
	} else {
		r.rep.Totals.LocalPaidFen += amount
	}
}

// emptyBill is the bill of a day on which the provider had no trade.
type emptyBill struct{}

func (emptyBill) Next() (bill.Line, error) { return bill.Line{}, io.EOF }
func (emptyBill) Totals() bill.Totals      { return bill.Totals{} }
func (emptyBill) Close() error             { return nil }
