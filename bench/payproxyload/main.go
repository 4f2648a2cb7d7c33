// Command payproxyload measures payproxy against the paysim engine: trades
// per second for distinct orders through a tollgate process, the same
// provider SDK calls made directly (through payproxy's adapters, which are
// thin wrappers of the official SDKs), the overhead per trade at the
// median, and the duplicate storm (100 concurrent creates of one order)
// against a burst of 100 concurrent creates of distinct orders: p50 and p99
// of each request's latency.
// bench/payproxy.sh builds tollgate, starts redis-server and runs it.
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
	"sync"
	"sync/atomic"
	"time"

	"github.com/tollgate/tollgate/bench/tollgateproc"
	"github.com/tollgate/tollgate/internal/paysim"
	"github.com/tollgate/tollgate/payproxy/alipay"
	"github.com/tollgate/tollgate/payproxy/provider"
	"github.com/tollgate/tollgate/payproxy/wechat"
)

func main() {
	bin := flag.String("bin", "", "tollgate binary")
	redisURL := flag.String("redis", "", "redis URL")
	n := flag.Int("n", 2000, "trades per channel and mode")
	conc := flag.Int("c", 16, "concurrent clients")
	storms := flag.Int("storms", 5, "duplicate storms of 100 creates")
	flag.Parse()
	if err := run(*bin, *redisURL, *n, *conc, *storms); err != nil {
		fmt.Fprintln(os.Stderr, "payproxyload:", err)
		os.Exit(1)
	}
}

func run(bin, redisURL string, n, conc, storms int) error {
	sim, err := paysim.New(paysim.Config{})
	if err != nil {
		return err
	}
	defer sim.Close()
	simSrv := httptest.NewServer(sim.Handler())
	defer simSrv.Close()
	port, err := freePort()
	if err != nil {
		return err
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	proc, err := tollgateproc.Start(bin, tollgateproc.Caddyfile(sim.Keys(), simSrv.URL, redisURL, port, ""), port)
	if err != nil {
		return err
	}
	defer proc.Stop()
	adapters, err := directAdapters(sim.Keys(), simSrv.URL, base)
	if err != nil {
		return err
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc * 2}, Timeout: 30 * time.Second}
	run := time.Now().UnixNano() % 1_000_000
	fmt.Printf("payproxy vs direct SDK calls against paysim\n")
	fmt.Printf("throughput: %d trades per channel and mode, %d concurrent clients (best of 2 interleaved rounds)\n", n, conc)
	fmt.Printf("latency: %d sequential trades per channel and mode (one client: no queueing for the CPU)\n\n", max(n/4, 50))
	fmt.Printf("%-8s %12s %12s %7s   %12s %12s %14s\n", "channel", "direct t/s", "payproxy t/s", "ratio", "direct p50", "payproxy p50", "overhead p50")
	seq := 0
	order := func(prefix, ch string) func(int) string {
		seq++
		tag := fmt.Sprintf("%s%d%s%d_", prefix, run, ch, seq)
		return func(i int) string { return fmt.Sprintf("%s%d", tag, i) }
	}
	for _, ch := range []string{"alipay", "wechat"} {
		dfn := func(name func(int) string) func(int) error {
			return func(i int) error { return direct(adapters[ch], name(i)) }
		}
		pfn := func(name func(int) string) func(int) error {
			return func(i int) error { return viaProxy(client, base, name(i), ch) }
		}
		// Warm up both paths (connections, script loading).
		if _, err := measure(50, conc, dfn(order("W", ch))); err != nil {
			return err
		}
		if _, err := measure(50, conc, pfn(order("W", ch))); err != nil {
			return err
		}
		var d, p result
		for round := 0; round < 2; round++ {
			dr, err := measure(n, conc, dfn(order("D", ch)))
			if err != nil {
				return err
			}
			pr, err := measure(n, conc, pfn(order("P", ch)))
			if err != nil {
				return err
			}
			d.rate, p.rate = max(d.rate, dr.rate), max(p.rate, pr.rate)
		}
		dl, err := measure(max(n/4, 50), 1, dfn(order("L", ch)))
		if err != nil {
			return err
		}
		pl, err := measure(max(n/4, 50), 1, pfn(order("M", ch)))
		if err != nil {
			return err
		}
		fmt.Printf("%-8s %12.0f %12.0f %7.2f   %12s %12s %14s\n", ch, d.rate, p.rate, p.rate/d.rate,
			dl.p50.Round(time.Microsecond), pl.p50.Round(time.Microsecond), (pl.p50 - dl.p50).Round(time.Microsecond))
	}
	fmt.Printf("\nduplicate storm (100 concurrent creates of one order) vs burst (100 concurrent creates of distinct orders), interleaved, latency per request:\n")
	fmt.Printf("%-8s %9s %9s %9s %9s %8s   %s\n", "channel", "storm p50", "storm p99", "burst p50", "burst p99", "p99 x", "provider creations per storm")
	for _, ch := range []string{"alipay", "wechat"} {
		var stormLat, burstLat []time.Duration
		op := map[string]string{"alipay": "alipay.trade.precreate", "wechat": "wechat.native.prepay"}[ch]
		var creations int
		for s := 0; s < storms; s++ {
			before := sim.Calls()[op]
			lat, err := burst(client, base, ch, func(int) string { return fmt.Sprintf("S%d%s%d", run, ch, s) })
			if err != nil {
				return err
			}
			creations += sim.Calls()[op] - before
			stormLat = append(stormLat, lat...)
			lat, err = burst(client, base, ch, func(i int) string { return fmt.Sprintf("B%d%s%d_%d", run, ch, s, i) })
			if err != nil {
				return err
			}
			burstLat = append(burstLat, lat...)
		}
		sp50, sp99 := percentiles(stormLat)
		bp50, bp99 := percentiles(burstLat)
		fmt.Printf("%-8s %9s %9s %9s %9s %8.2f   %.1f over %d storms\n", ch, ms(sp50), ms(sp99), ms(bp50), ms(bp99),
			float64(sp99)/float64(bp99), float64(creations)/float64(storms), storms)
	}
	return nil
}

type result struct {
	rate float64
	p50  time.Duration
}

// measure runs fn n times over conc goroutines.
func measure(n, conc int, fn func(i int) error) (result, error) {
	lat := make([]time.Duration, n)
	var next atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				t0 := time.Now()
				if err := fn(i); err != nil {
					firstErr.CompareAndSwap(nil, err)
				}
				lat[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err, _ := firstErr.Load().(error); err != nil {
		return result{}, err
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return result{rate: float64(n) / elapsed.Seconds(), p50: lat[n/2]}, nil
}

func direct(p provider.Provider, tradeNo string) error {
	_, err := p.Create(context.Background(), provider.CreateRequest{
		TradeNo: tradeNo, AmountFen: 1230, Subject: "bench", ExpiresAt: time.Now().Add(time.Hour),
	})
	return err
}

func viaProxy(c *http.Client, base, order, ch string) error {
	body, _ := json.Marshal(map[string]any{"order_no": order, "amount_fen": 1230, "channel": ch, "subject": "bench"})
	resp, err := c.Post(base+"/pay/trades", "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("create %s: %d %s", order, resp.StatusCode, b)
	}
	return nil
}

// burst sends 100 creates at once, for the order numbers orderOf(0..99)
// gives (one number: the duplicate storm), and returns each one's latency.
func burst(c *http.Client, base, ch string, orderOf func(i int) string) ([]time.Duration, error) {
	var wg sync.WaitGroup
	var firstErr atomic.Value
	lat := make([]time.Duration, 100)
	for i := range lat {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			if err := viaProxy(c, base, orderOf(i), ch); err != nil {
				firstErr.CompareAndSwap(nil, err)
			}
			lat[i] = time.Since(t0)
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return nil, err
	}
	return lat, nil
}

func percentiles(lat []time.Duration) (p50, p99 time.Duration) {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return lat[len(lat)/2], lat[(len(lat)*99+99)/100-1]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }

func directAdapters(k paysim.Keys, simURL, base string) (map[string]provider.Provider, error) {
	read := func(p string) string { b, _ := os.ReadFile(p); return string(b) }
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	a, err := alipay.New(alipay.Config{AppID: k.AlipayAppID, PrivateKeyPEM: read(k.AlipayPrivateKeyFile),
		PublicKeyPEM: read(k.AlipayPublicKeyFile), Gateway: simURL + "/gateway.do", NotifyURL: base + "/pay/notify/alipay", HTTPClient: hc})
	if err != nil {
		return nil, err
	}
	w, err := wechat.New(wechat.Config{MchID: k.WechatMchID, AppID: k.WechatAppID, SerialNo: k.WechatSerialNo,
		PrivateKeyPEM: read(k.WechatPrivateKeyFile), APIv3Key: k.WechatAPIv3Key, PlatformPublicKeyPEM: read(k.WechatPlatformPublicKeyFile),
		PlatformPublicKeyID: k.WechatPlatformPublicKeyID, BaseURL: simURL, NotifyURL: base + "/pay/notify/wechat", HTTPClient: hc})
	if err != nil {
		return nil, err
	}
	return map[string]provider.Provider{"alipay": a, "wechat": w}, nil
}

// caddyfile: polling far beyond the run, so that only the create path is
// measured.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
