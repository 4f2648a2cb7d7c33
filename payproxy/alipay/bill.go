package alipay

import (
	"archive/zip"
	"encoding/csv"
	"errors"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/text/encoding/simplifiedchinese"
	"golang.org/x/text/transform"

	"github.com/tollgate/tollgate/payproxy/bill"
)

// Alipay's trade bill (bill_type trade) is a zip of two GBK CSV files,
// <account>_<yyyyMMdd>_业务明细.csv and …_业务明细(汇总).csv, their names
// GBK bytes without the zip's UTF-8 flag. The details file: four # lines
// (#支付宝业务明细查询, #账号, #起始日期…终止日期, the list marker), a header
// of 25 columns, one line per payment (业务类型 交易) or refund (退款:
// negative amounts, 退款批次号/请求号 = out_request_no, 完成时间 = the
// refund's), the end marker, then #交易合计 and #退款合计 with counts and
// 商家实收 sums, and #导出时间. Text fields carry a trailing TAB. Sources:
// a complete real bill kept as a test fixture (2019), a 2017 excerpt and
// many independent parsers; the summary file only from parsers [?].

// alipayDetailColumns are the details file's columns, all required, no
// other accepted: bank and ISV variants of the bill have other headers.
var alipayDetailColumns = []string{
	"支付宝交易号", "商户订单号", "业务类型", "商品名称", "创建时间", "完成时间", "门店编号", "门店名称", "操作员", "终端号",
	"对方账户", "订单金额（元）", "商家实收（元）", "支付宝红包（元）", "集分宝（元）", "支付宝优惠（元）", "商家优惠（元）",
	"券核销金额（元）", "券名称", "商家红包消费金额（元）", "卡消费金额（元）", "退款批次号/请求号", "服务费（元）", "分润（元）", "备注",
}

var alipaySummaryColumns = []string{
	"门店编号", "门店名称", "交易订单总笔数", "退款订单总笔数", "订单金额（元）", "商家实收（元）", "支付宝优惠（元）",
	"商家优惠（元）", "卡消费金额（元）", "服务费（元）", "分润（元）", "实收净额（元）",
}

// maxSummaryBytes bounds the summary file, a few lines per store.
const maxSummaryBytes = 4 << 20

// BillReader reads an Alipay trade bill line by line (see bill.Reader):
// the zip's directory and the summary are read when it opens, the details
// file is decompressed and decoded as it goes.
type BillReader struct {
	day, end time.Time
	details  io.ReadCloser
	csv      *csv.Reader
	col      map[string]int
	closers  []func() error

	line    int // the details file's line of the last record, for errors
	footer  bool
	foot    alipayFooter
	seen    bill.Totals
	receipt [2]int64 // Σ商家实收 of payments, of refunds (negative)
	summary alipaySummary
	stream  bill.Stream
}

// alipayFooter is #交易合计 and #退款合计 (-1: line absent).
type alipayFooter struct {
	trades, refunds           int
	tradeReceipt, refundRecpt int64
}

// alipaySummary is the summary file's 合计 line.
type alipaySummary struct {
	trades, refunds int
	orderNet        int64 // 订单金额: payments less refunds
	receiptNet      int64 // 商家实收
}

// OpenBillFile opens a bill zip on disk; Close closes the file.
func OpenBillFile(path string) (*BillReader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err == nil {
		var r *BillReader
		if r, err = OpenBill(f, st.Size()); err == nil {
			r.closers = append(r.closers, f.Close)
			return r, nil
		}
	}
	f.Close()
	return nil, err
}

// OpenBill opens a bill zip of size bytes: a zip needs random access, so r
// must stay readable until Close (a temporary file, not the whole file in
// memory). Every refusal wraps bill.ErrBadBill.
func OpenBill(r io.ReaderAt, size int64) (*BillReader, error) {
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return nil, bill.Bad("unreadable zip: %v", err)
	}
	details, summary, err := billEntries(zr)
	if err != nil {
		return nil, err
	}
	b := &BillReader{foot: alipayFooter{trades: -1, refunds: -1}}
	b.stream.Src = b.next
	if b.summary, err = readAlipaySummary(summary); err != nil {
		return nil, err
	}
	if b.details, err = details.Open(); err != nil {
		return nil, bill.Bad("details file: %v", err)
	}
	b.csv = newGBKCSV(b.details)
	if err := b.readPreamble(); err != nil {
		b.details.Close()
		return nil, err
	}
	return b, nil
}

// billEntries finds the two files by the end of their names, decoded from
// GBK unless the entry says it is UTF-8. Other entries (old bills also
// carried 财务明细 files) are ignored.
func billEntries(zr *zip.Reader) (details, summary *zip.File, err error) {
	for _, f := range zr.File {
		name := f.Name
		if f.Flags&0x800 == 0 {
			if name, err = simplifiedchinese.GBK.NewDecoder().String(f.Name); err != nil {
				return nil, nil, bill.Bad("zip entry name: %v", err)
			}
		}
		var slot **zip.File
		switch {
		case strings.HasSuffix(name, "_业务明细.csv"):
			slot = &details
		case strings.HasSuffix(name, "_业务明细(汇总).csv"):
			slot = &summary
		default:
			continue
		}
		if *slot != nil {
			return nil, nil, bill.Bad("two zip entries named …%s", name[strings.LastIndex(name, "_"):])
		}
		*slot = f
	}
	switch {
	case details == nil:
		return nil, nil, bill.Bad("no details file (…_业务明细.csv) in the zip")
	case summary == nil:
		return nil, nil, bill.Bad("no summary file (…_业务明细(汇总).csv) in the zip")
	}
	return details, summary, nil
}

// newGBKCSV reads GBK CSV: no fixed field count (the # lines have one
// field), quotes tolerated, records reused (one allocation per line).
func newGBKCSV(r io.Reader) *csv.Reader {
	c := csv.NewReader(transform.NewReader(r, simplifiedchinese.GBK.NewDecoder()))
	c.FieldsPerRecord, c.LazyQuotes, c.ReuseRecord = -1, true, true
	return c
}

// readCSV reads one record; a decoder can never fail on GBK, so what
// proves the text is a bill are the anchors checked by the callers.
func readCSV(c *csv.Reader, what string) ([]string, error) {
	rec, err := c.Read()
	switch {
	case err == io.EOF:
		return nil, err
	case err != nil:
		return nil, bill.Bad("reading the %s file: %v", what, err)
	}
	return rec, nil
}

func isComment(rec []string) bool { return len(rec) == 1 && strings.HasPrefix(rec[0], "#") }

var periodRE = regexp.MustCompile(`^#起始日期：\[(\d{4}年\d{2}月\d{2}日 \d{2}:\d{2}:\d{2})\]\s*终止日期：\[(\d{4}年\d{2}月\d{2}日 \d{2}:\d{2}:\d{2})\]$`)

const periodLayout = "2006年01月02日 15:04:05"

// readPreamble checks the # lines and reads the header.
func (b *BillReader) readPreamble() error {
	rec, err := readCSV(b.csv, "details")
	if err != nil && err != io.EOF {
		return err
	}
	if err == io.EOF || !isComment(rec) || rec[0] != "#支付宝业务明细查询" {
		return bill.Bad("details file does not start with #支付宝业务明细查询")
	}
	listed := false
	for {
		rec, err := readCSV(b.csv, "details")
		if err == io.EOF {
			return bill.Bad("details file ends before its header")
		}
		if err != nil {
			return err
		}
		if !isComment(rec) {
			if !listed || b.day.IsZero() {
				return bill.Bad("details header before #起始日期 and the 业务明细列表 marker")
			}
			b.col, err = bill.ColumnIndex(rec, alipayDetailColumns, "details")
			return err
		}
		if m := periodRE.FindStringSubmatch(rec[0]); m != nil {
			start, err1 := time.ParseInLocation(periodLayout, m[1], chinaTZ)
			end, err2 := time.ParseInLocation(periodLayout, m[2], chinaTZ)
			// A daily bill: 00:00 to the next day's 00:00 (a monthly one
			// spans a month and is not what reconciliation asks for).
			if err1 != nil || err2 != nil || start.Hour()+start.Minute()+start.Second() != 0 || !end.Equal(start.AddDate(0, 0, 1)) {
				return bill.Bad("details period %q is not one day", rec[0])
			}
			b.day, b.end = start, end
		}
		listed = listed || strings.Contains(rec[0], "业务明细列表")
	}
}

// Day is the bill's day (00:00 Beijing), from its #起始日期 line.
func (b *BillReader) Day() time.Time { return b.day }

// Totals implements bill.Reader.
func (b *BillReader) Totals() bill.Totals { return b.seen }

// Next implements bill.Reader.
func (b *BillReader) Next() (bill.Line, error) { return b.stream.Next() }

func (b *BillReader) next() (bill.Line, error) {
	for {
		rec, err := readCSV(b.csv, "details")
		if err == nil {
			b.line, _ = b.csv.FieldPos(0)
		}
		if err == io.EOF {
			return bill.Line{}, b.finish()
		}
		if err != nil {
			return bill.Line{}, err
		}
		if isComment(rec) {
			if err := b.comment(rec[0]); err != nil {
				return bill.Line{}, err
			}
			continue
		}
		if b.footer {
			return bill.Line{}, bill.Bad("details line %d after the footer", b.line)
		}
		return b.parseLine(rec)
	}
}

var (
	tradeFooterRE  = regexp.MustCompile(`^#交易合计：(\d+)笔，商家实收共(-?[0-9.]+)元`)
	refundFooterRE = regexp.MustCompile(`^#退款合计：(\d+)笔，商家实收退款共(-?[0-9.]+)元`)
)

// comment reads the end marker and the footer; any other # line inside the
// list is refused.
func (b *BillReader) comment(s string) error {
	if !b.footer {
		if !strings.Contains(s, "业务明细列表结束") {
			return bill.Bad("details line %d: unexpected %q inside the list", b.line, s)
		}
		b.footer = true
		return nil
	}
	var err error
	if m := tradeFooterRE.FindStringSubmatch(s); m != nil {
		b.foot.trades, _ = strconv.Atoi(m[1])
		b.foot.tradeReceipt, err = bill.ParseYuan(m[2])
	} else if m := refundFooterRE.FindStringSubmatch(s); m != nil {
		b.foot.refunds, _ = strconv.Atoi(m[1])
		b.foot.refundRecpt, err = bill.ParseYuan(m[2])
	} else if !strings.HasPrefix(s, "#导出时间：") {
		return bill.Bad("details line %d: unexpected %q after the list", b.line, s)
	}
	if err != nil {
		return bill.Bad("details footer %q: %v", s, err)
	}
	return nil
}

// parseLine normalizes one details line.
func (b *BillReader) parseLine(rec []string) (bill.Line, error) {
	if len(rec) != len(alipayDetailColumns) {
		return bill.Line{}, bill.Bad("details line %d has %d fields, the header %d", b.line, len(rec), len(alipayDetailColumns))
	}
	get := func(c string) string { return strings.TrimSpace(rec[b.col[c]]) }
	var l bill.Line
	switch k := get("业务类型"); k {
	case "交易":
		l.Kind = bill.Payment
	case "退款":
		l.Kind, l.RefundNo = bill.Refund, get("退款批次号/请求号")
	default:
		return l, bill.Bad("details line %d: unknown 业务类型 %q", b.line, k)
	}
	l.TradeNo, l.OrderNo = get("支付宝交易号"), get("商户订单号")
	if l.TradeNo == "" || l.OrderNo == "" {
		return l, bill.Bad("details line %d: no 支付宝交易号 or 商户订单号", b.line)
	}
	amount, err := bill.ParseYuan(get("订单金额（元）"))
	if err != nil {
		return l, bill.Bad("details line %d 订单金额（元）: %v", b.line, err)
	}
	receipt, err := bill.ParseYuan(get("商家实收（元）"))
	if err != nil {
		return l, bill.Bad("details line %d 商家实收（元）: %v", b.line, err)
	}
	// Payments are positive; refunds are written negative.
	if l.Kind == bill.Refund {
		amount, receipt = -amount, -receipt
	}
	if amount <= 0 || receipt < 0 {
		return l, bill.Bad("details line %d: %s amount %s / %s has the wrong sign", b.line, l.Kind, get("订单金额（元）"), get("商家实收（元）"))
	}
	l.AmountFen = amount
	if l.Time, err = time.ParseInLocation("2006-01-02 15:04:05", get("完成时间"), chinaTZ); err != nil {
		return l, bill.Bad("details line %d 完成时间: %v", b.line, err)
	}
	if l.Time.Before(b.day) || !l.Time.Before(b.end) {
		return l, bill.Bad("details line %d: 完成时间 %s outside the bill's day %s", b.line, get("完成时间"), b.day.Format("2006-01-02"))
	}
	b.seen.Add(l)
	b.receipt[l.Kind-bill.Payment] += receipt
	return l, nil
}

// finish checks the footer and the summary against the lines read.
func (b *BillReader) finish() error {
	s := b.seen
	switch {
	case !b.footer || b.foot.trades < 0 || b.foot.refunds < 0:
		return bill.Bad("details file ends without its footer (#交易合计, #退款合计)")
	case b.foot.trades != s.Payments || b.foot.tradeReceipt != b.receipt[0] ||
		b.foot.refunds != s.Refunds || b.foot.refundRecpt != -b.receipt[1]:
		return bill.Bad("the footer counts %d payments of %s and %d refunds of %s, the lines %d of %s and %d of %s (商家实收)",
			b.foot.trades, FormatYuan(b.foot.tradeReceipt), b.foot.refunds, FormatYuan(b.foot.refundRecpt),
			s.Payments, FormatYuan(b.receipt[0]), s.Refunds, FormatYuan(-b.receipt[1]))
	}
	sum := b.summary
	if sum.trades != s.Payments || sum.refunds != s.Refunds || sum.orderNet != s.PaymentFen-s.RefundFen || sum.receiptNet != b.receipt[0]-b.receipt[1] {
		return bill.Bad("the summary file's 合计 (%d payments, %d refunds, 订单金额 %s, 商家实收 %s) disagrees with the lines (%d, %d, %s, %s)",
			sum.trades, sum.refunds, FormatYuan(sum.orderNet), FormatYuan(sum.receiptNet),
			s.Payments, s.Refunds, FormatYuan(s.PaymentFen-s.RefundFen), FormatYuan(b.receipt[0]-b.receipt[1]))
	}
	return io.EOF
}

// readAlipaySummary reads the summary file's 合计 line.
func readAlipaySummary(f *zip.File) (alipaySummary, error) {
	var sum alipaySummary
	rc, err := f.Open()
	if err != nil {
		return sum, bill.Bad("summary file: %v", err)
	}
	defer rc.Close()
	c := newGBKCSV(io.LimitReader(rc, maxSummaryBytes))
	rec, err := readCSV(c, "summary")
	if err != nil && err != io.EOF {
		return sum, err
	}
	if err == io.EOF || !isComment(rec) || rec[0] != "#支付宝业务汇总查询" {
		return sum, bill.Bad("summary file does not start with #支付宝业务汇总查询")
	}
	var col map[string]int
	totals := 0
	for {
		rec, err := readCSV(c, "summary")
		if err == io.EOF {
			break
		}
		if err != nil {
			return sum, err
		}
		switch {
		case isComment(rec):
		case col == nil:
			if col, err = bill.ColumnIndex(rec, alipaySummaryColumns, "summary"); err != nil {
				return sum, err
			}
		case len(rec) != len(alipaySummaryColumns):
			return sum, bill.Bad("summary line has %d fields, the header %d", len(rec), len(alipaySummaryColumns))
		case strings.TrimSpace(rec[col["门店编号"]]) == "合计":
			totals++
			if sum, err = parseSummaryTotals(rec, col); err != nil {
				return sum, err
			}
		}
	}
	if totals != 1 {
		return sum, bill.Bad("summary file has %d 合计 lines, want one", totals)
	}
	return sum, nil
}

func parseSummaryTotals(rec []string, col map[string]int) (alipaySummary, error) {
	get := func(c string) string { return strings.TrimSpace(rec[col[c]]) }
	var sum alipaySummary
	var errs [4]error
	sum.trades, errs[0] = strconv.Atoi(get("交易订单总笔数"))
	sum.refunds, errs[1] = strconv.Atoi(get("退款订单总笔数"))
	sum.orderNet, errs[2] = bill.ParseYuan(get("订单金额（元）"))
	sum.receiptNet, errs[3] = bill.ParseYuan(get("商家实收（元）"))
	if err := errors.Join(errs[:]...); err != nil {
		return sum, bill.Bad("summary 合计 line: %v", err)
	}
	return sum, nil
}

// Close implements bill.Reader.
func (b *BillReader) Close() error {
	errs := []error{b.details.Close()}
	for _, c := range b.closers {
		errs = append(errs, c())
	}
	return errors.Join(errs...)
}

var _ bill.Reader = (*BillReader)(nil)
