package alipay

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	sdk "github.com/smartwalle/alipay/v3"
	"golang.org/x/text/encoding/simplifiedchinese"

	"github.com/tollgate/tollgate/internal/paysim"
	"github.com/tollgate/tollgate/internal/paysim/paysimtest"
	"github.com/tollgate/tollgate/payproxy/bill"
	"github.com/tollgate/tollgate/payproxy/bill/billtest"
)

// billFixture is an adapter and a merchant SDK client on one paysim.
type billFixture struct {
	sim *paysim.Sim
	a   *Adapter
	sdk *sdk.Client
}

func newBillFixture(t testing.TB) *billFixture {
	t.Helper()
	// Alipay's 3 s rule between refunds of a trade is off: the bills'
	// days refund one trade twice in a row.
	sim, simURL := paysimtest.Start(t, paysim.Config{AlipayRefundGap: -1})
	k := sim.Keys()
	priv, pub := readFile(t, k.AlipayPrivateKeyFile), readFile(t, k.AlipayPublicKeyFile)
	a, err := New(Config{AppID: k.AlipayAppID, PrivateKeyPEM: priv, PublicKeyPEM: pub, Gateway: simURL + "/gateway.do"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := sdk.New(k.AlipayAppID, priv, false, sdk.WithSandboxGateway(simURL+"/gateway.do"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.LoadAliPayPublicKey(pub); err != nil {
		t.Fatal(err)
	}
	return &billFixture{sim: sim, a: a, sdk: c}
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// mixedDay: paid, partly refunded, fully refunded (twice), closed and
// unpaid trades, through the SDK and the buyer's side of paysim.
func (f *billFixture) mixedDay(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	for _, c := range []struct{ no, amount string }{{"A-PAY", "10.00"}, {"A-PART", "20.50"}, {"A-FULL", "3.01"}, {"A-CLOSED", "1.00"}, {"A-OPEN", "2.00"}} {
		p := sdk.TradePreCreate{}
		p.OutTradeNo, p.Subject, p.TotalAmount = c.no, "parcel, 2 kg", c.amount
		if r, err := f.sdk.TradePreCreate(ctx, p); err != nil || !r.IsSuccess() {
			t.Fatalf("precreate %+v %v", r, err)
		}
	}
	for _, no := range []string{"A-PAY", "A-PART", "A-FULL"} {
		if err := f.sim.Pay(no); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.sim.Scan("A-CLOSED"); err != nil {
		t.Fatal(err)
	}
	if r, err := f.sdk.TradeClose(ctx, sdk.TradeClose{OutTradeNo: "A-CLOSED"}); err != nil || !r.IsSuccess() {
		t.Fatalf("close %+v %v", r, err)
	}
	for _, rf := range []struct{ no, amount, req string }{{"A-PART", "5.25", "RA-1"}, {"A-FULL", "1.00", "RA-2"}, {"A-FULL", "2.01", "RA-3"}} {
		if r, err := f.sdk.TradeRefund(ctx, sdk.TradeRefund{OutTradeNo: rf.no, RefundAmount: rf.amount, OutRequestNo: rf.req}); err != nil || !r.IsSuccess() {
			t.Fatalf("refund %+v %v", r, err)
		}
	}
}

var (
	today   = billtest.Today
	readAll = billtest.ReadAll
)

func TestAlipayBillOfAMixedDayIsReadLineByLineAndEqualsPaysim(t *testing.T) {
	f := newBillFixture(t)
	billtest.FetchMatchesPaysim(t, f.sim, paysim.ProviderAlipay, func(ctx context.Context, date string) (bill.Reader, error) {
		r, err := f.a.FetchBill(ctx, date)
		if err == nil && r.(*BillReader).Day().Format("2006-01-02") != date {
			t.Errorf("the bill's day is %v", r.(*BillReader).Day())
		}
		return r, err
	}, f.mixedDay)

	// The control API's file is the same bill.
	var buf bytes.Buffer
	if err := f.sim.WriteBill(&buf, paysim.ProviderAlipay, today()); err != nil {
		t.Fatal(err)
	}
	r, err := OpenBill(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	billtest.MatchesPaysim(t, f.sim, paysim.ProviderAlipay, r)
}

// TestAlipayBillNotThereIsNotReadyAndACorruptOneIsBad: a day without
// trades (the signed isp.bill_not_exist) and bill_not_ready (the unsigned
// one) are not ready; a corrupted zip is a bad bill.
func TestAlipayBillNotThereIsNotReadyAndACorruptOneIsBad(t *testing.T) {
	f := newBillFixture(t)
	billtest.FetchRefusals(t, f.sim, "alipay.bill", f.a.FetchBill, f.mixedDay, "unreadable zip")
}

// goodBill is the mixed day's two files as text (UTF-8), to be damaged.
func goodBill(t *testing.T) (details, summary string) {
	t.Helper()
	f := newBillFixture(t)
	f.mixedDay(t)
	var buf bytes.Buffer
	if err := f.sim.WriteBill(&buf, paysim.ProviderAlipay, today()); err != nil {
		t.Fatal(err)
	}
	zr, err := zip.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range zr.File {
		rc, _ := e.Open()
		b, _ := io.ReadAll(rc)
		rc.Close()
		text, _ := simplifiedchinese.GBK.NewDecoder().Bytes(b)
		if strings.Contains(e.FileHeader.Name, "(") {
			summary = string(text)
		} else {
			details = string(text)
		}
	}
	return details, summary
}

// zipBill packs two texts as Alipay does: GBK bytes, GBK names.
func zipBill(t testing.TB, details, summary string) []byte {
	enc := func(s string) []byte {
		b, err := simplifiedchinese.GBK.NewEncoder().String(s)
		if err != nil {
			t.Fatal(err)
		}
		return []byte(b)
	}
	return zipRaw(t, enc(details), enc(summary))
}

// zipRaw packs the two files' bytes as they are; nil leaves a file out.
func zipRaw(t testing.TB, details, summary []byte) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range []struct {
		name string
		body []byte
	}{
		{"20881021778468800156_20261130_业务明细.csv", details},
		{"20881021778468800156_20261130_业务明细(汇总).csv", summary},
	} {
		if e.body == nil {
			continue
		}
		name, _ := simplifiedchinese.GBK.NewEncoder().String(e.name)
		w, err := zw.CreateHeader(&zip.FileHeader{Name: name, NonUTF8: true, Method: zip.Deflate})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(e.body)
	}
	zw.Close()
	return buf.Bytes()
}

func parseZip(b []byte) ([]bill.Line, error) {
	r, err := OpenBill(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return readAll(r)
}

func TestAlipayBadBillsAreRefusedNeverReadAsComplete(t *testing.T) {
	details, summary := goodBill(t)
	if _, err := parseZip(zipBill(t, details, summary)); err != nil {
		t.Fatalf("the good bill: %v", err)
	}
	lines := strings.Split(details, "\r\n")
	firstRow := lines[5]
	edit := func(s, old, new string) string {
		if !strings.Contains(s, old) {
			t.Fatalf("%q not in the bill", old)
		}
		return strings.Replace(s, old, new, 1)
	}
	good := zipBill(t, details, summary)
	flipped := append([]byte(nil), good...)
	zr, _ := zip.NewReader(bytes.NewReader(good), int64(len(good)))
	at, _ := zr.File[0].DataOffset()
	flipped[at+40] ^= 0x55 // inside the details file's deflated data
	gbkSummary, _ := simplifiedchinese.GBK.NewEncoder().String(summary)
	gbkDetails, _ := simplifiedchinese.GBK.NewEncoder().String(details)

	cases := []struct {
		name string
		zip  []byte
		want string
	}{
		{"truncated zip", good[:len(good)-30], "unreadable zip"},
		{"not a zip", []byte("<html>502 Bad Gateway</html>"), "unreadable zip"},
		{"damaged deflate data", flipped, "details"},
		{"no summary file", zipRaw(t, []byte(gbkDetails), nil), "summary"},
		{"not GBK but UTF-8", zipRaw(t, []byte(details), []byte(gbkSummary)), "支付宝业务明细查询"},
		{"an empty details file", zipRaw(t, []byte{}, []byte(gbkSummary)), "支付宝业务明细查询"},
		{"not an Alipay details file", zipBill(t, edit(details, "#支付宝业务明细查询", "#微信支付账单"), summary), "支付宝业务明细查询"},
		{"unknown column", zipBill(t, edit(details, ",备注", ",备注2"), summary), "unknown column"},
		{"missing column", zipBill(t, edit(details, ",分润（元）,备注", ",备注"), summary), "missing column"},
		{"a line with a field too many", zipBill(t, edit(details, firstRow, firstRow+",x"), summary), "26 fields"},
		{"unknown 业务类型", zipBill(t, edit(details, "交易\t", "撤销\t"), summary), "业务类型"},
		{"a payment with a negative amount", zipBill(t, edit(details, firstRow, strings.Replace(firstRow, ",10.00,10.00,", ",-10.00,-10.00,", 1)), summary), "amount"},
		{"an amount that is not yuan", zipBill(t, edit(details, firstRow, strings.Replace(firstRow, ",10.00,10.00,", ",10.001,10.00,", 1)), summary), "invalid amount"},
		{"a line from another day", zipBill(t, edit(details, firstRow, strings.Replace(firstRow, ","+today(), ",2001-01-01", 2)), summary), "outside"},
		{"a line more than the footer counts", zipBill(t, edit(details, firstRow, firstRow+"\r\n"+strings.Replace(firstRow, "A-PAY", "A-EXTRA", 1)), summary), "footer"},
		{"a line less", zipBill(t, edit(details, firstRow+"\r\n", ""), summary), "footer"},
		{"footer sums disagree", zipBill(t, edit(details, "商家实收共33.51元", "商家实收共33.52元"), summary), "footer"},
		{"no footer", zipBill(t, details[:strings.LastIndex(details, "#---")], summary), "footer"},
		{"summary counts disagree", zipBill(t, details, edit(summary, "合计,,3,3,", "合计,,4,3,")), "summary"},
		{"summary amounts disagree", zipBill(t, details, strings.ReplaceAll(summary, "25.25", "25.26")), "summary"},
		{"summary without 合计", zipBill(t, details, edit(summary, "合计,,", "小计,,")), "合计"},
		{"summary unknown column", zipBill(t, details, edit(summary, "实收净额（元）", "净额（元）")), "unknown column"},
		{"text after the footer", zipBill(t, details+firstRow+"\r\n", summary), "after"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			lines, err := parseZip(c.zip)
			if err == nil {
				t.Fatalf("accepted as complete with %d lines", len(lines))
			}
			if !errors.Is(err, bill.ErrBadBill) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q, want ErrBadBill mentioning %q", err, c.want)
			}
			t.Log(err)
		})
	}
}

// FuzzAlipayBill feeds damaged details and summary texts through the
// parser: it must never panic, and whatever it accepts as complete must be
// consistent with itself.
func FuzzAlipayBill(f *testing.F) {
	dir, _ := os.ReadDir(filepath.Join("testdata", "bills"))
	for _, e := range dir {
		if strings.HasSuffix(e.Name(), "_details.csv") {
			d, _ := os.ReadFile(filepath.Join("testdata", "bills", e.Name()))
			s, _ := os.ReadFile(filepath.Join("testdata", "bills", strings.Replace(e.Name(), "_details", "_summary", 1)))
			f.Add(string(d), string(s))
		}
	}
	f.Fuzz(func(t *testing.T, details, summary string) {
		zipped := zipBillLenient(details, summary)
		billtest.CheckFuzzed(t, func() (bill.Reader, error) {
			r, err := OpenBill(bytes.NewReader(zipped), int64(len(zipped)))
			if err != nil {
				return nil, err
			}
			return r, nil
		}, func(bill.Line) bool { return true })
	})
}

// zipBillLenient is zipBill for fuzz input: characters GBK lacks become
// substitutes.
func zipBillLenient(details, summary string) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range []struct{ name, text string }{
		{"2088_20261130_业务明细.csv", details}, {"2088_20261130_业务明细(汇总).csv", summary},
	} {
		name, _ := simplifiedchinese.GBK.NewEncoder().String(e.name)
		w, _ := zw.CreateHeader(&zip.FileHeader{Name: name, NonUTF8: true, Method: zip.Store})
		var b bytes.Buffer
		for _, r := range e.text {
			g, err := simplifiedchinese.GBK.NewEncoder().String(string(r))
			if err != nil {
				g = "?"
			}
			b.WriteString(g)
		}
		w.Write(b.Bytes())
	}
	zw.Close()
	return buf.Bytes()
}
