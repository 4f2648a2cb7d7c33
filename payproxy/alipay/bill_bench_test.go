package alipay

import (
	"testing"

	"github.com/tollgate/tollgate/internal/paysim"
	"github.com/tollgate/tollgate/payproxy/bill"
	"github.com/tollgate/tollgate/payproxy/bill/billtest"
)

// BenchmarkParseBill reads a synthetic bill of a million lines (BILL_LINES)
// from a zip on disk, every line and every check, as reconciliation will.
// It reports the process's peak RSS; bench/bills.sh also measures it with
// /usr/bin/time -v.
func BenchmarkParseBill(b *testing.B) {
	billtest.BenchParse(b, paysim.ProviderAlipay, func(path, _ string) (bill.Reader, error) {
		r, err := OpenBillFile(path)
		if err != nil {
			return nil, err
		}
		return r, nil
	})
}

// BenchmarkFetchBill is the whole path through paysim: the signed first
// step, the download spooled to disk, every line read. Paysim makes the
// synthetic day in the same process.
func BenchmarkFetchBill(b *testing.B) {
	f := newBillFixture(b)
	billtest.BenchFetch(b, f.sim, paysim.ProviderAlipay, f.a.FetchBill)
}
