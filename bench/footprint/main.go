// Command footprint measures what payproxy keeps in Redis per order, in
// each life stage (issue 17): created and unpaid; paid with its events
// delivered; paid then fully refunded; closed unpaid — each once the
// poller has compacted it (settled, inside its retention). Each stage runs
// on its own orders against one tollgate process and one Redis; the cost
// of a stage is the growth of Redis's used_memory (and of each kind of
// key, by MEMORY USAGE) over its orders, after its notifications, refunds
// and webhook deliveries have settled. Then tollgate is restarted with a
// retention of 1 s: "after retention" is what is left once the settled
// stages' orders are archived. With -steady, it instead creates and
// settles orders continuously for that long under -retention and prints
// used_memory every 10 s (flat once twice the retention has passed).
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
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/bench/tollgateproc"
	"github.com/tollgate/tollgate/internal/paysim"
)

func main() {
	bin := flag.String("bin", "", "tollgate binary")
	redisURL := flag.String("redis", "", "redis URL (a Redis of its own: every key counts)")
	n := flag.Int("n", 1000, "orders per stage (half Alipay, half WeChat)")
	conc := flag.Int("c", 16, "concurrent clients")
	steady := flag.Duration("steady", 0, "run orders continuously this long instead of the stages")
	retention := flag.Duration("retention", time.Minute, "payproxy's retention in the -steady run")
	flag.Parse()
	var err error
	if *steady > 0 {
		err = runSteady(*bin, *redisURL, *conc, *steady, *retention)
	} else {
		err = run(*bin, *redisURL, *n, *conc)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "footprint:", err)
		os.Exit(1)
	}
}

// env is one run: paysim, the webhook receiver, tollgate, Redis.
type env struct {
	sim     *paysim.Sim
	rdb     *redis.Client
	client  *http.Client
	base    string
	conc    int
	bin     string
	redis   string
	simURL  string
	hookURL string
	port    int
	proc    *tollgateproc.Proc
}

func newEnv(bin, redisURL string, conc int) (*env, func(), error) {
	sim, err := paysim.New(paysim.Config{WechatRefundDelay: 200 * time.Millisecond})
	if err != nil {
		return nil, nil, err
	}
	simSrv := httptest.NewServer(sim.Handler())
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	opt, err := redis.ParseURL(redisURL)
	if err != nil {
		return nil, nil, err
	}
	e := &env{sim: sim, rdb: redis.NewClient(opt), conc: conc, bin: bin, redis: redisURL, simURL: simSrv.URL, hookURL: backend.URL,
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc * 2}, Timeout: 30 * time.Second}}
	stop := func() {
		if e.proc != nil {
			e.proc.Stop()
		}
		e.rdb.Close()
		backend.Close()
		simSrv.Close()
		sim.Close()
	}
	return e, stop, nil
}

// start (re)starts tollgate with the given retention.
func (e *env) start(retention time.Duration) error {
	if e.proc != nil {
		e.proc.Stop()
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	extra := "poll_interval 1s\nretention " + retention.String() + "\noperations create status close refund notify\nwebhook " + e.hookURL +
		" {\n\tsecret " + strings.Repeat("w", 32) + "\n}"
	e.proc, err = tollgateproc.Start(e.bin, tollgateproc.CaddyfileWith(e.sim.Keys(), e.simURL, e.redis, port, "", extra), port)
	e.port, e.base = port, fmt.Sprintf("http://127.0.0.1:%d", port)
	return err
}

func run(bin, redisURL string, n, conc int) error {
	e, stop, err := newEnv(bin, redisURL, conc)
	if err != nil {
		return err
	}
	defer stop()
	if err := e.start(time.Hour); err != nil {
		return err
	}
	if err := e.stages(n); err != nil {
		return fmt.Errorf("%w\ntollgate log:\n%s", err, e.proc.Log(20))
	}
	return nil
}

// stage is a life stage: what is done to each of its orders.
type stage struct {
	name string
	do   func(e *env, order, channel string) error
	// open: the stage's orders stay in the due set (the poller queries
	// an unpaid trade until pay_timeout).
	open bool
}

func (e *env) stages(n int) error {
	stages := []stage{
		{"created (unpaid)", (*env).create, true},
		{"paid, events delivered", (*env).pay, false},
		{"paid, fully refunded", (*env).refund, false},
		{"closed unpaid", (*env).closeUnpaid, false},
	}
	run := time.Now().UnixNano() % 1_000_000
	fmt.Printf("payproxy's Redis footprint per order, %d orders per stage (half Alipay, half WeChat)\n", n)
	fmt.Printf("bytes = growth of used_memory_dataset / orders, and of the sum of MEMORY USAGE; keys by kind = growth of MEMORY USAGE per kind / orders\n\n")
	before, err := e.snapshot()
	if err != nil {
		return err
	}
	start := before
	var settledOrders []string
	for i, st := range stages {
		orders := make([]string, n)
		for j := range orders {
			orders[j] = fmt.Sprintf("FP%d_%d_%d", run, i, j)
		}
		err := e.parallel(n, func(j int) error {
			return st.do(e, orders[j], []string{"alipay", "wechat"}[j%2])
		})
		if err != nil {
			return fmt.Errorf("%s: %w", st.name, err)
		}
		if st.open {
			orders = nil
		}
		settledOrders = append(settledOrders, orders...)
		if err := e.settled(orders); err != nil {
			return fmt.Errorf("%s: %w", st.name, err)
		}
		after, err := e.snapshot()
		if err != nil {
			return err
		}
		after.report(st.name, before, n)
		before = after
	}
	// Retention: the settled stages' orders are archived by a tollgate
	// whose retention is 1 s. They were scheduled for the end of the 1 h
	// retention they settled under: the hour is made to pass by making
	// them due now (a retention lowered by a reload applies to an order
	// from its next visit).
	if err := e.start(time.Second); err != nil {
		return err
	}
	if err := e.dueNow(settledOrders); err != nil {
		return err
	}
	if err := e.archived(settledOrders); err != nil {
		return fmt.Errorf("after retention: %w", err)
	}
	after, err := e.snapshot()
	if err != nil {
		return err
	}
	fmt.Printf("\nretention 1s: the %d settled orders archived (growth per settled order, negative = freed)\n", len(settledOrders))
	after.report("after retention", before, len(settledOrders))
	fmt.Printf("\nall stages, then retention: used_memory_dataset %+d bytes for %d unpaid orders left open\n", after.used-start.used, n)
	return nil
}

// dueNow makes orders due at once (ZADD XX: only those in the due set).
func (e *env) dueNow(orders []string) error {
	ctx := context.Background()
	pipe := e.rdb.Pipeline()
	now := float64(time.Now().UnixMilli())
	for _, o := range orders {
		pipe.ZAddXX(ctx, "tollgate:pay:{due}", redis.Z{Score: now, Member: o})
	}
	_, err := pipe.Exec(ctx)
	return err
}

// archived waits until none of orders has a trade left in Redis and every
// event has been delivered.
func (e *env) archived(orders []string) error {
	ctx := context.Background()
	for deadline := time.Now().Add(5 * time.Minute); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		left := 0
		pipe := e.rdb.Pipeline()
		cmds := make([]*redis.IntCmd, len(orders))
		for i, o := range orders {
			cmds[i] = pipe.Exists(ctx, "tollgate:pay:{o:"+o+"}:trade")
		}
		q := pipe.ZCard(ctx, "tollgate:pay:{wh}:queue")
		if _, err := pipe.Exec(ctx); err != nil {
			return err
		}
		for _, c := range cmds {
			left += int(c.Val())
		}
		if left == 0 && q.Val() == 0 {
			return nil
		}
	}
	return fmt.Errorf("orders not archived after 5 minutes")
}

// parallel runs fn for 0..n-1 over e.conc goroutines; the first error wins.
func (e *env) parallel(n int, fn func(i int) error) error {
	var next atomic.Int64
	var first atomic.Value
	var wg sync.WaitGroup
	for w := 0; w < e.conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				if err := fn(i); err != nil {
					first.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := first.Load().(error); err != nil {
		return err
	}
	return nil
}

const amountFen = 1230

func (e *env) create(order, channel string) error {
	_, err := e.createTrade(order, channel)
	return err
}

func (e *env) createTrade(order, channel string) (string, error) {
	var t struct {
		TradeNo string `json:"trade_no"`
	}
	err := e.call("POST", "/pay/trades", map[string]any{"order_no": order, "amount_fen": amountFen, "channel": channel, "subject": "footprint"}, &t)
	return t.TradeNo, err
}

func (e *env) pay(order, channel string) error {
	tradeNo, err := e.createTrade(order, channel)
	if err != nil {
		return err
	}
	if err := e.sim.Pay(tradeNo); err != nil {
		return fmt.Errorf("paysim pay %s: %w", tradeNo, err)
	}
	return e.await("/pay/trades/"+order, "PAID")
}

func (e *env) refund(order, channel string) error {
	if err := e.pay(order, channel); err != nil {
		return err
	}
	no := "R" + order
	if err := e.call("POST", "/pay/refunds", map[string]any{"order_no": order, "refund_no": no, "amount_fen": amountFen, "reason": "footprint"}, nil); err != nil {
		return err
	}
	return e.await("/pay/refunds/"+no, "SUCCESS")
}

func (e *env) closeUnpaid(order, channel string) error {
	if _, err := e.createTrade(order, channel); err != nil {
		return err
	}
	if err := e.call("POST", "/pay/trades/"+order+"/close", nil, nil); err != nil {
		return err
	}
	return e.await("/pay/trades/"+order, "CLOSED")
}

// await polls a GET until its state is want (notifications, the poller
// and the providers' refund delays move it), for at most two minutes.
func (e *env) await(path, want string) error {
	var got struct {
		State string `json:"state"`
	}
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if err := e.call("GET", path, nil, &got); err != nil {
			return err
		}
		if got.State == want {
			return nil
		}
	}
	return fmt.Errorf("%s: state %q after 2 minutes, want %s", path, got.State, want)
}

// call sends a JSON request and decodes a 200's body into out.
func (e *env) call(method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, e.base+path, rd)
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}

// settled waits until every event has been delivered to the backend
// (the webhook queue and its event bodies are empty) and none of orders
// has work left: each is due only when its retention ends (the poller
// found it settled and compacted it).
func (e *env) settled(orders []string) error {
	ctx := context.Background()
	for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		pipe := e.rdb.Pipeline()
		q := pipe.ZCard(ctx, "tollgate:pay:{wh}:queue")
		ev := pipe.HLen(ctx, "tollgate:pay:{wh}:events")
		due := redis.NewFloatSliceCmd(ctx)
		if len(orders) > 0 {
			due = pipe.ZMScore(ctx, "tollgate:pay:{due}", orders...)
		}
		if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
			return err
		}
		if q.Val() == 0 && ev.Val() == 0 && allRetained(due.Val()) {
			return nil
		}
	}
	return fmt.Errorf("events or due orders left after 3 minutes")
}

// allRetained: every score is more than 10 minutes away (the stages run
// under a retention of 1 h; work left is due within seconds), or none
// (0: the order is off the due zset, parked until its retention ends).
func allRetained(scores []float64) bool {
	limit := float64(time.Now().Add(10 * time.Minute).UnixMilli())
	for _, s := range scores {
		if s != 0 && s < limit {
			return false
		}
	}
	return true
}

// snapshot is Redis's used_memory_dataset (used_memory less Redis's own
// overhead: client and replication buffers, scripts, the AOF buffer,
// which move with the load rather than with what is stored) and, per kind of key, their count and
// MEMORY USAGE.
type snapshot struct {
	used  int64
	kinds map[string]*kindTotal
}

type kindTotal struct{ keys, bytes int64 }

func (e *env) snapshot() (snapshot, error) {
	ctx := context.Background()
	s := snapshot{kinds: map[string]*kindTotal{}}
	iter := e.rdb.Scan(ctx, 0, "*", 1000).Iterator()
	for iter.Next(ctx) {
		bytes, err := e.rdb.MemoryUsage(ctx, iter.Val(), 0).Result()
		if err == redis.Nil {
			continue // expired since the scan
		}
		if err != nil {
			return s, err
		}
		k := s.kinds[kindOf(iter.Val())]
		if k == nil {
			k = &kindTotal{}
			s.kinds[kindOf(iter.Val())] = k
		}
		k.keys++
		k.bytes += bytes
	}
	if err := iter.Err(); err != nil {
		return s, err
	}
	info, err := e.rdb.Info(ctx, "memory").Result()
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory_dataset:"); ok {
			s.used, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	return s, nil
}

// kindOf names a key by its layout (payproxy/store.go), without the
// order, trade or event it belongs to.
func kindOf(key string) string {
	rest, ok := strings.CutPrefix(key, "tollgate:pay:")
	if !ok {
		return "other"
	}
	switch {
	case strings.HasPrefix(rest, "{o:"):
		_, suffix, _ := strings.Cut(rest, "}")
		if strings.HasPrefix(suffix, ":gap:") {
			return "order:gap (a refund's gap, seconds)"
		}
		return "order" + suffix
	case strings.HasPrefix(rest, "{t:"):
		return "trade index {t:}"
	case strings.HasPrefix(rest, "{ti:"):
		return "trade index bucket {ti:}"
	case strings.HasPrefix(rest, "{r:"):
		return "refund index {r:}"
	case strings.HasPrefix(rest, "{wh}:done:"):
		return "event tombstone {wh}:done:"
	case strings.HasPrefix(rest, "{rc:"):
		return "reconcile day index {rc:}"
	}
	return rest
}

// report prints the growth from before to s over n orders.
func (s snapshot) report(name string, before snapshot, n int) {
	var keys, total int64
	type row struct {
		kind        string
		keys, bytes float64
	}
	var rows []row
	for kind, k := range s.kinds {
		b := before.kinds[kind]
		if b == nil {
			b = &kindTotal{}
		}
		if dk, db := k.keys-b.keys, k.bytes-b.bytes; dk != 0 || db != 0 {
			keys += dk
			total += db
			rows = append(rows, row{kind, float64(dk) / float64(n), float64(db) / float64(n)})
		}
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].bytes > rows[j].bytes })
	fmt.Printf("%-24s %6.0f bytes/order (used_memory_dataset)  %6.0f bytes/order (MEMORY USAGE)  %5.2f keys/order\n",
		name, float64(s.used-before.used)/float64(n), float64(total)/float64(n), float64(keys)/float64(n))
	for _, r := range rows {
		fmt.Printf("    %-34s %5.2f keys %7.0f bytes\n", r.kind, r.keys, r.bytes)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// runSteady creates and settles orders without pause for d under a
// retention of retention (7 in 10 paid, 1 paid then refunded, 2 closed
// unpaid) and prints Redis's used_memory_dataset and key count every 10 s.
// Past twice the retention (plus the poller's interval) every kind of key
// is as often removed as written — an order is archived a retention after
// it settled, its marker, trade indexes and the tombstones (at most a
// retention) expire one more retention later — so the memory stays flat.
func runSteady(bin, redisURL string, conc int, d, retention time.Duration) error {
	e, stop, err := newEnv(bin, redisURL, conc)
	if err != nil {
		return err
	}
	defer stop()
	if err := e.start(retention); err != nil {
		return err
	}
	var done atomic.Bool
	var count atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, conc)
	run := time.Now().UnixNano() % 1_000_000
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !done.Load() {
				i := count.Add(1)
				order := fmt.Sprintf("ST%d_%d", run, i)
				ch := []string{"alipay", "wechat"}[i%2]
				var err error
				switch i % 10 {
				case 7:
					err = e.refund(order, ch)
				case 8, 9:
					err = e.closeUnpaid(order, ch)
				default:
					err = e.pay(order, ch)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	fmt.Printf("steady run: %s, retention %s, %d clients\n%8s %10s %16s %8s\n", d, retention, conc, "elapsed", "orders", "used_memory_data", "keys")
	begin := time.Now()
	var samples []int64
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for time.Since(begin) < d {
		select {
		case err := <-errs:
			done.Store(true)
			wg.Wait()
			return fmt.Errorf("%w\ntollgate log:\n%s", err, e.proc.Log(20))
		case <-tick.C:
		}
		s, keys, err := e.usedMemory()
		if err != nil {
			return err
		}
		elapsed := time.Since(begin).Round(time.Second)
		fmt.Printf("%8s %10d %16d %8d\n", elapsed, count.Load(), s, keys)
		if elapsed > 2*retention+20*time.Second {
			samples = append(samples, s)
		}
	}
	done.Store(true)
	wg.Wait()
	if len(samples) > 1 {
		lo, hi := samples[0], samples[0]
		for _, s := range samples {
			lo, hi = min(lo, s), max(hi, s)
		}
		fmt.Printf("past twice the retention: used_memory_dataset between %d and %d (spread %.1f %% of the low)\n",
			lo, hi, 100*float64(hi-lo)/float64(lo))
	}
	return nil
}

// usedMemory is Redis's used_memory_dataset and its number of keys.
func (e *env) usedMemory() (int64, int64, error) {
	ctx := context.Background()
	info, err := e.rdb.Info(ctx, "memory").Result()
	if err != nil {
		return 0, 0, err
	}
	var used int64
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory_dataset:"); ok {
			used, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	keys, err := e.rdb.DBSize(ctx).Result()
	return used, keys, err
}
