// Command footprint measures what payproxy keeps in Redis per order, in
// each life stage (issue 17: measure before retention): created and
// unpaid; paid with its events delivered; paid then fully refunded;
// closed unpaid. Each stage runs on its own orders against one tollgate
// process and one Redis; the cost of a stage is the growth of Redis's
// used_memory (and of each kind of key, by MEMORY USAGE) over its orders,
// after its notifications, refunds and webhook deliveries have settled.
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
	flag.Parse()
	if err := run(*bin, *redisURL, *n, *conc); err != nil {
		fmt.Fprintln(os.Stderr, "footprint:", err)
		os.Exit(1)
	}
}

// env is one run: paysim, the webhook receiver, tollgate, Redis.
type env struct {
	sim    *paysim.Sim
	rdb    *redis.Client
	client *http.Client
	base   string
	conc   int
}

func run(bin, redisURL string, n, conc int) error {
	sim, err := paysim.New(paysim.Config{WechatRefundDelay: 200 * time.Millisecond})
	if err != nil {
		return err
	}
	defer sim.Close()
	simSrv := httptest.NewServer(sim.Handler())
	defer simSrv.Close()
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	defer backend.Close()
	port, err := freePort()
	if err != nil {
		return err
	}
	extra := "poll_interval 1s\noperations create status close refund notify\nwebhook " + backend.URL +
		" {\n\tsecret " + strings.Repeat("w", 32) + "\n}"
	proc, err := tollgateproc.Start(bin, tollgateproc.CaddyfileWith(sim.Keys(), simSrv.URL, redisURL, port, "", extra), port)
	if err != nil {
		return err
	}
	defer proc.Stop()
	opt, err := redis.ParseURL(redisURL)
	if err != nil {
		return err
	}
	e := &env{sim: sim, rdb: redis.NewClient(opt), base: fmt.Sprintf("http://127.0.0.1:%d", port), conc: conc,
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc * 2}, Timeout: 30 * time.Second}}
	defer e.rdb.Close()
	if err := e.stages(n); err != nil {
		return fmt.Errorf("%w\ntollgate log:\n%s", err, proc.Log(20))
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
	return nil
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
// has work left (none is in the due set).
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
		if q.Val() == 0 && ev.Val() == 0 && allZero(due.Val()) {
			return nil
		}
	}
	return fmt.Errorf("events or due orders left after 3 minutes")
}

// allZero: ZMSCORE answers 0 for a member that is not in the set (go-redis
// maps nil to 0; no score payproxy writes is 0, they are times in ms).
func allZero(scores []float64) bool {
	for _, s := range scores {
		if s != 0 {
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
		return "order" + suffix
	case strings.HasPrefix(rest, "{t:"):
		return "trade index {t:}"
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
