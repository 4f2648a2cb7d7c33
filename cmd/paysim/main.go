// Command paysim runs the payment-provider simulator (Alipay gateway and
// WeChat Pay API v3) as a standalone server for the demo and manual work:
//
//	paysim -listen 127.0.0.1:8090 -keys ./var/paysim
//
// On first start it generates every key and secret into the keys folder
// (PEM files, the APIv3 key, ids.json) and writes paysim.env there, one
// NAME=value a line, for payproxy's Caddyfile to read as {env.*}. Later
// starts reuse them. Open http://127.0.0.1:8090/_sim/ to pay trades by hand.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tollgate/tollgate/internal/paysim"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "paysim:", err)
		os.Exit(1)
	}
}

type options struct {
	listen            string
	keys              string
	publicURL         string
	notifyRetry       []time.Duration // nil: each provider's own schedule
	notifyDivisor     int             // compresses the providers' own schedules
	wechatRefundDelay time.Duration
	alipayRefundGap   time.Duration
}

func parseFlags(args []string, out io.Writer) (options, error) {
	fs := flag.NewFlagSet("paysim", flag.ContinueOnError)
	fs.SetOutput(out)
	o := options{}
	retry := ""
	fs.StringVar(&o.listen, "listen", "127.0.0.1:8090", "address to listen on")
	fs.StringVar(&o.keys, "keys", "./var/paysim", "folder for the generated keys and paysim.env")
	fs.StringVar(&o.publicURL, "public-url", "", "base URL written into paysim.env (default http://<listen address>)")
	fs.StringVar(&retry, "notify-retry", fmt.Sprintf("/%d", paysim.DefaultNotifyDivisor),
		"notification retries: /N runs each provider's own schedule (Alipay 8 tries over ~25 h, WeChat 16 over ~24 h) N times faster, "+
			"real (or /1) in real time; or comma-separated delays, one schedule for both")
	fs.DurationVar(&o.wechatRefundDelay, "wechat-refund-delay", time.Second, "how long a WeChat refund stays PROCESSING")
	fs.DurationVar(&o.alipayRefundGap, "alipay-refund-gap", paysim.DefaultAlipayRefundGap,
		"refuse a refund of an Alipay trade sooner than this after its previous one, as Alipay does (0: off)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.alipayRefundGap < 0 {
		return o, fmt.Errorf("-alipay-refund-gap must not be negative")
	}
	if o.alipayRefundGap == 0 {
		o.alipayRefundGap = -1 // the engine's "off"
	}
	var err error
	if o.notifyRetry, o.notifyDivisor, err = parseRetry(retry); err != nil {
		return o, fmt.Errorf("-notify-retry: %w", err)
	}
	return o, nil
}

func run(args []string, out io.Writer) error {
	o, err := parseFlags(args, out)
	if err != nil {
		return err
	}
	sim, ln, base, err := prepare(o)
	if err != nil {
		return err
	}
	defer sim.Close()
	fmt.Fprintf(out, "paysim listening on %s\n  page: %s/_sim/\n  env:  %s\n", base, base, filepath.Join(sim.Keys().Dir(), "paysim.env"))

	srv := &http.Server{Handler: sim.Handler(), ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// prepare listens first so that paysim.env can name the real address (also
// when -listen asks for port 0), then loads or creates the keys and writes
// paysim.env through the engine.
func prepare(o options) (*paysim.Sim, net.Listener, string, error) {
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return nil, nil, "", err
	}
	base := strings.TrimRight(o.publicURL, "/")
	if base == "" {
		base = "http://" + ln.Addr().String()
	}
	sim, err := paysim.New(paysim.Config{
		KeyDir: o.keys, NotifyRetry: o.notifyRetry, NotifyDivisor: o.notifyDivisor,
		WechatRefundDelay: o.wechatRefundDelay, AlipayRefundGap: o.alipayRefundGap, PublicURL: base,
	})
	if err != nil {
		ln.Close()
		return nil, nil, "", err
	}
	return sim, ln, base, nil
}

// parseRetry reads -notify-retry: "/N" or "real" (the providers' own
// schedules, divided by N or in real time), or a list of delays.
func parseRetry(s string) ([]time.Duration, int, error) {
	s = strings.TrimSpace(s)
	if s == "real" {
		return nil, 1, nil
	}
	if n, ok := strings.CutPrefix(s, "/"); ok {
		d, err := strconv.Atoi(n)
		if err != nil || d < 1 {
			return nil, 0, fmt.Errorf("%q: want /N with N a positive integer", s)
		}
		return nil, d, nil
	}
	ds, err := parseDurations(s)
	return ds, 0, err
}

func parseDurations(s string) ([]time.Duration, error) {
	if strings.TrimSpace(s) == "" {
		return []time.Duration{}, nil // no retries
	}
	var out []time.Duration
	for _, part := range strings.Split(s, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(part))
		if err != nil {
			return nil, err
		}
		if d <= 0 {
			return nil, fmt.Errorf("delay %s must be positive", d)
		}
		out = append(out, d)
	}
	return out, nil
}
