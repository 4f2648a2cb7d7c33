// Command walkthrough narrates tollgate's mission against a running demo
// (see demo/run.sh): auth at the edge, the double-token lifecycle, a
// payment from QR code to refund, and the day's reconciliation. Each step prints ✓ or ✗; the exit status
// is non-zero if any step failed.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

type demo struct {
	customer, courier, paysim, backend string
	internal, serviceKey, admin        string
	outDir                             string
	grace                              time.Duration
	client                             *http.Client
	failed                             int
}

func main() {
	d := &demo{client: &http.Client{Timeout: 15 * time.Second}}
	flag.StringVar(&d.customer, "customer", "http://127.0.0.1:8081", "customer API site")
	flag.StringVar(&d.courier, "courier", "http://127.0.0.1:8082", "courier API site")
	flag.StringVar(&d.paysim, "paysim", "http://127.0.0.1:8090", "payment simulator")
	flag.StringVar(&d.backend, "backend", "http://127.0.0.1:9000", "demo backend")
	flag.StringVar(&d.internal, "internal", "http://127.0.0.1:8083", "internal payments site (closes and refunds)")
	flag.StringVar(&d.serviceKey, "service-key", "", "JWT signing key (PEM) to mint the payments backend's service token")
	flag.StringVar(&d.admin, "admin", "http://127.0.0.1:2999", "tollgate's admin API (reconciliation)")
	flag.StringVar(&d.outDir, "out", ".", "folder for the QR code PNG")
	flag.DurationVar(&d.grace, "grace", 2*time.Second, "the refresh reuse_grace the demo runs with")
	flag.Parse()

	d.authSteps()
	d.paymentSteps()
	d.reconcileSteps()

	fmt.Println()
	if d.failed > 0 {
		fmt.Printf("✗ %d step(s) failed\n", d.failed)
		os.Exit(1)
	}
	fmt.Println("✓ every step passed")
}

// exchange is one HTTP request and its answer, printed compactly.
type exchange struct {
	status int
	header http.Header
	body   []byte
}

func (e exchange) json() map[string]any {
	var m map[string]any
	_ = json.Unmarshal(e.body, &m)
	return m
}

func (d *demo) do(method, url string, headers map[string]string, body any) exchange {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return exchange{status: -1, body: []byte(err.Error())}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := d.client.Do(req)
	if err != nil {
		fmt.Printf("    → %s %s\n    ← error: %v\n", method, url, err)
		return exchange{status: -1, body: []byte(err.Error())}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	fmt.Printf("    → %s %s%s\n", method, url, showHeaders(headers))
	fmt.Printf("    ← %d %s\n", resp.StatusCode, compact(resp.Header.Get("Content-Type"), b))
	return exchange{status: resp.StatusCode, header: resp.Header, body: b}
}

// step prints a heading and then ✓ or ✗ with the reason.
func (d *demo) step(title string, run func() error) {
	fmt.Printf("\n▸ %s\n", title)
	if err := run(); err != nil {
		d.failed++
		fmt.Printf("  ✗ %v\n", err)
		return
	}
	fmt.Println("  ✓")
}

func showHeaders(h map[string]string) string {
	var parts []string
	for k, v := range h {
		parts = append(parts, k+": "+short(v, 24))
	}
	if len(parts) == 0 {
		return ""
	}
	return "  [" + strings.Join(parts, "; ") + "]"
}

func compact(contentType string, b []byte) string {
	if strings.HasPrefix(contentType, "image/") {
		return fmt.Sprintf("<%s, %d bytes>", contentType, len(b))
	}
	s := strings.TrimSpace(string(b))
	var v any
	if json.Unmarshal(b, &v) == nil {
		v = shorten(v)
		out, _ := json.Marshal(v)
		s = string(out)
	}
	return short(s, 220)
}

// shorten abbreviates long strings (tokens) inside a JSON value.
func shorten(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			t[k] = shorten(x)
		}
	case []any:
		for i, x := range t {
			t[i] = shorten(x)
		}
	case string:
		return short(t, 40)
	}
	return v
}

func short(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

func str(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}

func want(cond bool, format string, args ...any) error {
	if cond {
		return nil
	}
	return fmt.Errorf(format, args...)
}
