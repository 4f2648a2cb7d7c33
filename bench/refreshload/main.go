// Command refreshload drives jwt_refresh's refresh endpoint at a given
// concurrency: each worker logs in once, then refreshes in a loop with the
// refresh token of its previous answer (each token is single-use, so the
// chain must be kept per worker). It prints refreshes per second.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	base := flag.String("url", "http://127.0.0.1:8080", "tollgate base URL")
	conc := flag.Int("c", 16, "concurrent workers (connections)")
	dur := flag.Duration("d", 10*time.Second, "how long to refresh")
	flag.Parse()

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *conc}, Timeout: 10 * time.Second}
	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(*dur)
	start := time.Now()
	for i := range *conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rt, err := call(client, *base+"/login", "X-User", fmt.Sprintf("w%d", i))
			if err != nil {
				fmt.Fprintln(os.Stderr, "login:", err)
				failed.Add(1)
				return
			}
			for time.Now().Before(deadline) {
				next, err := call(client, *base+"/auth/refresh", "Refresh-Token", rt)
				if err != nil {
					failed.Add(1)
					fmt.Fprintln(os.Stderr, "refresh:", err)
					return
				}
				rt = next
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	fmt.Printf("refreshes=%d failed=%d seconds=%.2f refreshes_per_s=%.1f\n", ok.Load(), failed.Load(), elapsed, float64(ok.Load())/elapsed)
}

// call POSTs with one header and returns the refresh_token of the answer.
func call(c *http.Client, url, header, value string) (string, error) {
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(""))
	if err != nil {
		return "", err
	}
	req.Header.Set(header, value)
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %d %s", url, resp.StatusCode, body)
	}
	var v struct {
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.Unmarshal(body, &v); err != nil || v.RefreshToken == "" {
		return "", fmt.Errorf("%s: no refresh_token in %s", url, body)
	}
	return v.RefreshToken, nil
}
