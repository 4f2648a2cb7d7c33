// Command memload drives one tollgate process with a fixed number of
// requests and samples its resident size (VmRSS and VmHWM from
// /proc/<pid>/status) as it goes, for bench/memory.sh:
//
//	tokengen -alg ES256 -key k.pem -n 1000000 | memload -mode tokens -url http://127.0.0.1:8080/ -pid 123
//	memload -mode trades -url http://127.0.0.1:8080/pay/trades -n 100000 -pid 123
//
// tokens: each line of stdin is sent once as "Authorization: Bearer <line>"
// (expects 200). trades: POSTs n distinct orders (alternately alipay and
// wechat, 1 fen each; expects 200). It stops after the input or n requests,
// prints a sample line every -every requests and a final line, and exits 1
// if any request failed.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	mode := flag.String("mode", "tokens", "tokens (stdin, one per line) or trades")
	url := flag.String("url", "", "target URL")
	n := flag.Int("n", 0, "trades to create (mode trades)")
	conc := flag.Int("c", 32, "concurrent requests")
	pid := flag.Int("pid", 0, "process whose memory is sampled")
	every := flag.Int("every", 100000, "print a sample every this many requests")
	run := flag.String("run", strconv.FormatInt(time.Now().Unix()%100000, 36), "order number prefix (mode trades)")
	flag.Parse()

	jobs := make(chan string, 4**conc)
	switch *mode {
	case "tokens":
		go func() {
			sc := bufio.NewScanner(os.Stdin)
			sc.Buffer(make([]byte, 64<<10), 64<<10)
			for sc.Scan() {
				jobs <- sc.Text()
			}
			close(jobs)
		}()
	case "trades":
		go func() {
			for i := range *n {
				ch := "alipay"
				if i%2 == 1 {
					ch = "wechat"
				}
				jobs <- fmt.Sprintf(`{"order_no":"bm%s%08d","amount_fen":1,"channel":"%s"}`, *run, i, ch)
			}
			close(jobs)
		}()
	default:
		fmt.Fprintln(os.Stderr, "memload: -mode is tokens or trades")
		os.Exit(2)
	}

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *conc}, Timeout: 30 * time.Second}
	var done, failed atomic.Int64
	var firstErr atomic.Value
	var mu sync.Mutex // one sample line at a time
	start := time.Now()
	fmt.Printf("start rss_kib=%d\n", rss(*pid, "VmRSS"))
	var wg sync.WaitGroup
	for range *conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				var req *http.Request
				if *mode == "tokens" {
					req, _ = http.NewRequest(http.MethodGet, *url, nil)
					req.Header.Set("Authorization", "Bearer "+j)
				} else {
					req, _ = http.NewRequest(http.MethodPost, *url, strings.NewReader(j))
					req.Header.Set("Content-Type", "application/json")
				}
				if err := send(client, req); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
				if d := done.Add(1); d%int64(*every) == 0 {
					mu.Lock()
					fmt.Printf("requests=%d failed=%d seconds=%.1f rss_kib=%d\n", d, failed.Load(), time.Since(start).Seconds(), rss(*pid, "VmRSS"))
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	fmt.Printf("final requests=%d failed=%d seconds=%.1f per_s=%.0f rss_kib=%d hwm_kib=%d\n",
		done.Load(), failed.Load(), secs, float64(done.Load())/secs, rss(*pid, "VmRSS"), rss(*pid, "VmHWM"))
	if failed.Load() > 0 {
		fmt.Fprintln(os.Stderr, "memload: first failure:", firstErr.Load())
		os.Exit(1)
	}
}

func send(c *http.Client, req *http.Request) error {
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d: %s", resp.StatusCode, bytes.TrimSpace(body))
	}
	return nil
}

// rss reads one "Vm…: N kB" field of /proc/<pid>/status; 0 when unknown.
func rss(pid int, field string) int {
	if pid == 0 {
		return 0
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				k, _ := strconv.Atoi(f[0])
				return k
			}
		}
	}
	return 0
}
