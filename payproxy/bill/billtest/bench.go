package billtest

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/paysim"
	"github.com/tollgate/tollgate/payproxy/bill"
)

// BenchLines is the size of the benchmarks' bill: BILL_LINES, or a million.
func BenchLines(b *testing.B) int {
	if s := os.Getenv("BILL_LINES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("BILL_LINES=%q", s)
		}
		return n
	}
	return 1_000_000
}

// BenchFile returns the path of a synthetic bill of the channel and the
// SHA1 of its bytes: BILL_FILE when set (made beforehand by bench/billgen,
// so that a run measures the parser alone), otherwise a file paysim writes
// into the benchmark's temporary folder.
func BenchFile(b *testing.B, channel string) (path, sum string) {
	b.Helper()
	path = os.Getenv("BILL_FILE")
	if path == "" {
		path = filepath.Join(b.TempDir(), channel+".bill")
		if _, err := WriteSynthetic(path, channel, BenchLines(b)); err != nil {
			b.Fatal(err)
		}
	}
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	h := sha1.New()
	if _, err := io.Copy(h, f); err != nil {
		b.Fatal(err)
	}
	return path, hex.EncodeToString(h.Sum(nil))
}

// WriteSynthetic writes a synthetic day of lines as the channel's bill
// file (yesterday's, Beijing time), streamed by paysim, and says how long
// the writing took (paysim's start, which makes keys, left out).
func WriteSynthetic(path, channel string, lines int) (time.Duration, error) {
	sim, err := paysim.New(paysim.Config{})
	if err != nil {
		return 0, err
	}
	defer sim.Close()
	date := time.Now().In(chinaTZ).AddDate(0, 0, -1).Format("2006-01-02")
	if err := sim.AddSyntheticDay(paysim.SyntheticDay{Channel: channel, Date: date, Lines: lines}); err != nil {
		return 0, err
	}
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if err := sim.WriteBill(f, channel, date); err != nil {
		f.Close()
		return 0, err
	}
	took := time.Since(start)
	return took, f.Close()
}

// ReportPeakRSS reports the process's peak resident size so far (VmHWM,
// Linux only) as peak-RSS-MiB: with BILL_FILE set, the parser's own.
func ReportPeakRSS(b *testing.B) {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			if kib, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB"))); err == nil {
				b.ReportMetric(float64(kib)/1024, "peak-RSS-MiB")
			}
		}
	}
}

// BenchParse measures open — a bill on disk at path, of SHA1 sum — read
// to its end without keeping its lines, and reports the peak RSS.
func BenchParse(b *testing.B, channel string, open func(path, sum string) (bill.Reader, error)) {
	path, sum := BenchFile(b, channel)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		r, err := open(path, sum)
		if err != nil {
			b.Fatal(err)
		}
		countAndClose(b, r)
	}
	ReportPeakRSS(b)
}

// BenchFetch measures fetch of a synthetic day of BenchLines lines from
// sim, read to its end.
func BenchFetch(b *testing.B, sim *paysim.Sim, channel string, fetch Fetcher) {
	date := time.Now().In(chinaTZ).AddDate(0, 0, -1).Format("2006-01-02")
	if err := sim.AddSyntheticDay(paysim.SyntheticDay{Channel: channel, Date: date, Lines: BenchLines(b)}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		r, err := fetch(context.Background(), date)
		if err != nil {
			b.Fatal(err)
		}
		countAndClose(b, r)
	}
}

func countAndClose(b *testing.B, r bill.Reader) {
	n, err := Count(r)
	if err != nil {
		b.Fatal(err)
	}
	if err := r.Close(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(n), "lines/op")
}
