// Command reconcileload measures a reconciliation (issue 13) of a bill of
// N lines per channel against N records in Redis, through a tollgate
// process: its time (the admin API's POST, download and comparison
// included) and the process's peak RSS (VmHWM), and the Redis memory the
// per-day index takes per entry. The bill is paysim's synthetic day
// (served by paysim in this process, over HTTP, as the provider would);
// the records — a PAID trade per payment line, a SUCCESS refund per refund
// line, their indexes and the per-day index — are written by this driver
// directly in payproxy's record format, pipelined. It also times what the
// index replaces: a SCAN of the whole keyspace for the orders' trades.
// bench/reconcile.sh builds tollgate, starts redis-server and runs it.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/bench/tollgateproc"
	"github.com/tollgate/tollgate/internal/paysim"
	"github.com/tollgate/tollgate/payproxy/reconcile"
)

func main() {
	bin := flag.String("bin", "", "tollgate binary")
	redisURL := flag.String("redis", "", "redis URL (an empty database: it is flushed)")
	lines := flag.Int("lines", 1_000_000, "bill lines and records per channel")
	channels := flag.String("channels", "alipay,wechat", "channels to measure")
	flag.Parse()
	if err := run(*bin, *redisURL, *lines, strings.Split(*channels, ",")); err != nil {
		fmt.Fprintln(os.Stderr, "reconcileload:", err)
		os.Exit(1)
	}
}

var beijing = time.FixedZone("CST", 8*3600)

// result is one channel's measurement.
type result struct {
	channel                      string
	lines                        int
	write, scan, run             time.Duration
	scanned                      int
	indexBytes                   float64
	baseRSS, peakRSS             int // KiB
	reportLines, matched, differ int
}

func run(bin, redisURL string, lines int, channels []string) error {
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		return err
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	sim, err := paysim.New(paysim.Config{})
	if err != nil {
		return err
	}
	defer sim.Close()
	simSrv := httptest.NewServer(sim.Handler())
	defer simSrv.Close()
	date := time.Now().In(beijing).AddDate(0, 0, -1).Format(time.DateOnly)
	var results []result
	for _, ch := range channels {
		r, err := measure(bin, redisURL, rdb, sim, simSrv.URL, ch, date, lines)
		if err != nil {
			return fmt.Errorf("%s: %w", ch, err)
		}
		fmt.Printf("%s %d lines: records written in %.1f s, index %.0f B/entry, SCAN of %d keys %.1f s; reconciled in %.1f s, "+
			"tollgate RSS %.1f MiB before, peak %.1f MiB; report %d lines, %d matched, %d differences\n",
			ch, lines, r.write.Seconds(), r.indexBytes, r.scanned, r.scan.Seconds(), r.run.Seconds(),
			float64(r.baseRSS)/1024, float64(r.peakRSS)/1024, r.reportLines, r.matched, r.differ)
		if r.reportLines != lines || r.matched != lines || r.differ != 0 {
			return fmt.Errorf("%s: the report does not match the bill", ch)
		}
		results = append(results, r)
	}
	fmt.Println()
	fmt.Println("<!-- summary -->")
	fmt.Printf("Reconciliation of a synthetic bill of N lines per channel against N records in Redis, through a tollgate process " +
		"(POST /tollgate/payproxy/reconcile: the bill's download from paysim over HTTP, its checks, the comparison). Target: under 60 s and 200 MiB per channel.\n\n")
	fmt.Println("| channel | lines | reconcile s | tollgate RSS before MiB | tollgate peak RSS MiB | index B per entry | records written s | SCAN of the keyspace s (keys) |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range results {
		fmt.Printf("| %s | %d | %.1f | %.1f | %.1f | %.0f | %.1f | %.1f (%d) |\n", r.channel, r.lines, r.run.Seconds(),
			float64(r.baseRSS)/1024, float64(r.peakRSS)/1024, r.indexBytes, r.write.Seconds(), r.scan.Seconds(), r.scanned)
	}
	return nil
}

func measure(bin, redisURL string, rdb *redis.Client, sim *paysim.Sim, simURL, ch, date string, lines int) (result, error) {
	ctx := context.Background()
	r := result{channel: ch, lines: lines}
	if err := rdb.FlushDB(ctx).Err(); err != nil {
		return r, err
	}
	day := paysim.SyntheticDay{Channel: ch, Date: date, Lines: lines}
	if err := sim.AddSyntheticDay(day); err != nil {
		return r, err
	}
	start := time.Now()
	if err := writeRecords(ctx, rdb, day, false); err != nil {
		return r, err
	}
	before, err := usedMemory(ctx, rdb)
	if err != nil {
		return r, err
	}
	if err := writeRecords(ctx, rdb, day, true); err != nil {
		return r, err
	}
	r.write = time.Since(start)
	after, err := usedMemory(ctx, rdb)
	if err != nil {
		return r, err
	}
	r.indexBytes = float64(after-before) / float64(lines)
	if r.scan, r.scanned, err = scanTrades(ctx, rdb); err != nil {
		return r, err
	}

	port, admin, err := freePort()
	if err != nil {
		return r, err
	}
	proc, err := tollgateproc.Start(bin, tollgateproc.Caddyfile(sim.Keys(), simURL, redisURL, port, admin), port)
	if err != nil {
		return r, err
	}
	defer proc.Stop()
	r.baseRSS = proc.PeakKiB()
	start = time.Now()
	rep, err := reconcileNow(admin, ch, date)
	if err != nil {
		return r, fmt.Errorf("%w\ntollgate's log:\n%s", err, proc.Log(20))
	}
	r.run = time.Since(start)
	r.peakRSS = proc.PeakKiB()
	r.reportLines, r.matched, r.differ = rep.Lines, rep.Matched, len(rep.Differences)
	return r, nil
}

// writeRecords writes what payproxy would hold after the day: a PAID
// trade per payment line with its trade index, a SUCCESS refund per refund
// line with its refund index (the trade's refunded amount summed) — or,
// with index, only the per-day index entries. Pipelined, 1 000 lines at
// a time.
func writeRecords(ctx context.Context, rdb *redis.Client, day paysim.SyntheticDay, index bool) error {
	const batch = 1000
	refunded := map[string]int64{}
	for from := 0; from < day.Lines; from += batch {
		_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := from; i < min(from+batch, day.Lines); i++ {
				writeLine(ctx, p, day.Channel, day.Entry(i), index, refunded)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func writeLine(ctx context.Context, p redis.Pipeliner, channel string, e paysim.BillEntry, index bool, refunded map[string]int64) {
	order := e.OutTradeNo // one order per trade
	ms := e.Time.UnixMilli()
	tradeKey := "tollgate:pay:{o:" + order + "}:trade"
	switch {
	case index:
		ref := reconcile.Ref{TradeNo: e.OutTradeNo}
		if e.Refund {
			ref = reconcile.Ref{Refund: true, TradeNo: e.OutTradeNo, RefundNo: e.OutRefundNo}
		}
		reconcile.Index(ctx, p, channel, ref, e.Time)
	case e.Refund:
		body, _ := json.Marshal(map[string]any{"refund_no": e.OutRefundNo, "amount_fen": e.AmountFen, "state": "SUCCESS",
			"reason": "synthetic", "created_at": ms, "trade_no": e.OutTradeNo, "settled_at": ms})
		p.HSet(ctx, "tollgate:pay:{o:"+order+"}:refunds", e.OutRefundNo, body)
		p.Set(ctx, "tollgate:pay:{r:"+e.OutRefundNo+"}", order, 0)
		refunded[order] += e.AmountFen
		p.HSet(ctx, tradeKey, "refunded_fen", refunded[order])
	default:
		created := e.TradeCreatedAt.UnixMilli()
		p.HSet(ctx, tradeKey, "order_no", order, "trade_no", e.OutTradeNo, "channel", channel, "amount_fen", e.AmountFen,
			"subject", e.Subject, "state", "PAID", "qr_code", "", "created_at", created, "expires_at", created+7_200_000,
			"refunded_fen", refunded[order], "provider_trade_id", e.TradeNo, "paid_at", ms, "seq", 1)
		p.Set(ctx, "tollgate:pay:{t:"+e.OutTradeNo+"}", order, 0)
	}
}

func usedMemory(ctx context.Context, rdb *redis.Client) (int64, error) {
	info, err := rdb.Info(ctx, "memory").Result()
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("no used_memory in INFO")
}

// scanTrades walks the keyspace for the orders' trade records, as a
// reconciliation without the index would have to (and then read each
// one to know its day).
func scanTrades(ctx context.Context, rdb *redis.Client) (time.Duration, int, error) {
	start := time.Now()
	n := 0
	var cursor uint64
	for {
		keys, next, err := rdb.Scan(ctx, cursor, "tollgate:pay:{o:*}:trade", 1000).Result()
		if err != nil {
			return 0, 0, err
		}
		n += len(keys)
		if cursor = next; cursor == 0 {
			return time.Since(start), n, nil
		}
	}
}

type report struct {
	State       string            `json:"state"`
	Error       string            `json:"error"`
	Lines       int               `json:"lines"`
	Matched     int               `json:"matched"`
	Differences []json.RawMessage `json:"differences"`
}

func reconcileNow(admin, ch, date string) (report, error) {
	body := fmt.Sprintf(`{"channel":%q,"date":%q}`, ch, date)
	req, _ := http.NewRequest("POST", "http://"+admin+"/tollgate/payproxy/reconcile", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", "http://"+admin)
	resp, err := (&http.Client{Timeout: 10 * time.Minute}).Do(req)
	if err != nil {
		return report{}, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var rep report
	if resp.StatusCode != 200 || json.Unmarshal(raw, &rep) != nil || rep.State != "done" {
		return rep, fmt.Errorf("reconcile answered %d %s", resp.StatusCode, bytes.TrimSpace(raw))
	}
	return rep, nil
}

// freePort returns a free port for the site and an address for the admin API.
func freePort() (int, string, error) {
	var ports [2]int
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, "", err
		}
		defer l.Close()
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports[0], fmt.Sprintf("127.0.0.1:%d", ports[1]), nil
}
