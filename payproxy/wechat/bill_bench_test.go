package wechat

import (
	"bufio"
	"os"
	"testing"

	"github.com/tollgate/tollgate/internal/paysim"
	"github.com/tollgate/tollgate/payproxy/bill"
	"github.com/tollgate/tollgate/payproxy/bill/billtest"
)

// BenchmarkParseBill reads a synthetic bill of a million lines (BILL_LINES)
// from a file on disk, hashing every byte, every line and every check, as
// reconciliation will. It reports the process's peak RSS; bench/bills.sh
// also measures it with /usr/bin/time -v.
func BenchmarkParseBill(b *testing.B) {
	billtest.BenchParse(b, paysim.ProviderWechat, func(path, sum string) (bill.Reader, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		r, err := ParseBill(bufio.NewReaderSize(f, 64<<10), "SHA1", sum)
		if err != nil {
			f.Close()
			return nil, err
		}
		r.closers = append(r.closers, f.Close)
		return r, nil
	})
}

// BenchmarkFetchBill is the whole path through paysim: the signed first
// step, the gzipped download hashed and spooled to disk, every line read.
// Paysim makes the synthetic day in the same process (twice: for the hash
// of the first step, then for the download).
func BenchmarkFetchBill(b *testing.B) {
	f := newBillFixture(b)
	billtest.BenchFetch(b, f.sim, paysim.ProviderWechat, f.a.FetchBill)
}
