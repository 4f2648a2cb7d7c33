package wechat

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/payproxy/bill"
)

// WeChat Pay's trade bill (bill_type ALL): UTF-8 with a BOM, CRLF line
// ends; a header line without backticks; one row per payment (交易状态
// SUCCESS) or refund (REFUND: the payment's numbers, 商户退款单号, 退款金额
// and 申请退款金额 positive, 退款状态 SUCCESS or PROCESSING, …), every value
// prefixed with a backtick; then the summary header and its one row. The
// file is unsigned: its SHA1 comes in the signed tradebill answer. Sources:
// a real v3 file (merchant 1601959334, 2021-01-28) whose BOM and CRLF its
// published SHA1 proves, WxJava's fixtures, the v3 doc.

// wechatBillColumns are the 27 columns of the 2019+ ALL bill, all required
// and nothing else: matched by name, not position ("列名的顺序非一直固定"),
// and the pre-2019 header (总金额, 企业红包金额, …) is refused.
var wechatBillColumns = []string{
	"交易时间", "公众账号ID", "商户号", "特约商户号", "设备号", "微信订单号", "商户订单号", "用户标识", "交易类型", "交易状态",
	"付款银行", "货币种类", "应结订单金额", "代金券金额", "微信退款单号", "商户退款单号", "退款金额", "充值券退款金额", "退款类型",
	"退款状态", "商品名称", "商户数据包", "手续费", "费率", "订单金额", "申请退款金额", "费率备注",
}

var wechatSummaryColumns = []string{"总交易单数", "应结订单总金额", "退款总金额", "充值券退款总金额", "手续费总金额", "订单总金额", "申请退款总金额"}

// The columns a row is read from, by name.
const (
	colTime = iota
	colTradeNo
	colOrderNo
	colTradeState
	colSettled
	colRefundNo
	colRefunded
	colVoucherRefunded
	colRefundState
	colFee
	colOrdered
	colApplied
	nCols
)

var wechatUsed = [nCols]string{"交易时间", "微信订单号", "商户订单号", "交易状态", "应结订单金额", "商户退款单号", "退款金额",
	"充值券退款金额", "退款状态", "手续费", "订单金额", "申请退款金额"}

// maxBillLine bounds one line; real rows are a few hundred bytes.
const maxBillLine = 1 << 20

// wechatSums are the six amounts the summary row totals, in its order
// after 总交易单数; the fee in units of 0.00001 yuan.
type wechatSums [6]int64

// BillReader reads a WeChat trade bill line by line (see bill.Reader),
// hashing every byte it reads: the last Next compares the SHA1 with the
// one the signed answer gave.
type BillReader struct {
	sc      *bufio.Scanner
	sha     hash.Hash
	want    []byte
	closers []func() error

	col     [nCols]int
	nFields int
	fields  []string
	// subject is the column of 商品名称, the buyer-facing description
	// WeChat writes as it was given, unescaped.
	subject int

	line    int
	rows    int
	sums    wechatSums
	seen    bill.Totals
	summary bool // the summary row was read
	stream  bill.Stream
}

// ParseBill reads the uncompressed bill from r; hashType and hashValue
// come from the signed tradebill answer. It reads the header at once.
// Every refusal wraps bill.ErrBadBill; a failing r is returned as is.
func ParseBill(r io.Reader, hashType, hashValue string) (*BillReader, error) {
	if hashType != "SHA1" {
		return nil, bill.Bad("hash_type %q, want SHA1", hashType)
	}
	want, err := hex.DecodeString(hashValue)
	if err != nil || len(want) != sha1.Size {
		return nil, bill.Bad("hash_value %q is not 40 hex digits", hashValue)
	}
	b := &BillReader{sha: sha1.New(), want: want}
	b.stream.Src = b.next
	b.sc = bufio.NewScanner(io.TeeReader(r, b.sha))
	b.sc.Buffer(make([]byte, 64<<10), maxBillLine)
	line, ok, err := b.scan()
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, bill.Bad("empty file, no header")
	}
	return b, b.readHeader(strings.TrimPrefix(line, "\uFEFF"))
}

// scan reads one line without its CRLF.
func (b *BillReader) scan() (string, bool, error) {
	if b.sc.Scan() {
		b.line++
		return b.sc.Text(), true, nil
	}
	switch err := b.sc.Err(); {
	case errors.Is(err, bufio.ErrTooLong):
		return "", false, bill.Bad("line %d is too long (over %d bytes)", b.line+1, maxBillLine)
	case err != nil:
		return "", false, err
	}
	return "", false, nil
}

func (b *BillReader) readHeader(line string) error {
	names := strings.Split(line, ",")
	at, err := bill.ColumnIndex(names, wechatBillColumns, "bill")
	if err != nil {
		return err
	}
	for i, n := range wechatUsed {
		b.col[i] = at[n]
	}
	b.nFields = len(names)
	b.fields = make([]string, 0, b.nFields)
	b.subject = at["商品名称"]
	return nil
}

// Totals implements bill.Reader.
func (b *BillReader) Totals() bill.Totals { return b.seen }

// Next implements bill.Reader.
func (b *BillReader) Next() (bill.Line, error) { return b.stream.Next() }

func (b *BillReader) next() (bill.Line, error) {
	for {
		line, ok, err := b.scan()
		switch {
		case err != nil:
			return bill.Line{}, err
		case !ok:
			return bill.Line{}, b.finish()
		case b.summary:
			if line != "" {
				return bill.Line{}, bill.Bad("line %d after the summary", b.line)
			}
		case line == "":
			return bill.Line{}, bill.Bad("line %d is blank", b.line)
		case strings.HasPrefix(line, "`"):
			return b.row(line)
		default:
			if err := b.readSummary(line); err != nil {
				return bill.Line{}, err
			}
		}
	}
}

// split cuts a backticked line into its values: each starts with "`", so
// values are separated by ",`" (a description holding ",`" gives more
// values than columns: see row).
func (b *BillReader) split(line string) []string {
	f := b.fields[:0]
	rest := line[1:]
	for {
		i := strings.Index(rest, ",`")
		if i < 0 {
			return append(f, rest)
		}
		f = append(f, rest[:i])
		rest = rest[i+2:]
	}
}

// rejoinSubject puts back together a 商品名称 that held ",`": the
// description is the client's (POST /pay/trades "subject"), and one such
// trade must not make the whole day's bill unreadable. Every column left
// of it and right of it is fixed, so the extra values are its own; its
// neighbour 商户数据包 (attach) is the only other free text, which
// tollgate never sets and reconciliation reads neither.
func (b *BillReader) rejoinSubject(f []string, extra int) []string {
	end := b.subject + 1 + extra
	joined := strings.Join(f[b.subject:end], ",`")
	return append(append(f[:b.subject:b.subject], joined), f[end:]...)
}

// row normalizes one detail row.
func (b *BillReader) row(line string) (bill.Line, error) {
	f := b.split(line)
	b.fields = f
	if extra := len(f) - b.nFields; extra > 0 {
		l, err := b.fieldsRow(b.rejoinSubject(f, extra))
		if err != nil {
			err = bill.Bad("line %d has %d fields, the header %d, and is no row whose 商品名称 holds \",`\" either: %v", b.line, len(f), b.nFields, err)
		}
		return l, err
	}
	return b.fieldsRow(f)
}

// fieldsRow normalizes one detail row cut into its values.
func (b *BillReader) fieldsRow(f []string) (bill.Line, error) {
	if len(f) != b.nFields {
		return bill.Line{}, bill.Bad("line %d has %d fields, the header %d", b.line, len(f), b.nFields)
	}
	get := func(c int) string { return f[b.col[c]] }
	var amounts wechatSums
	for i, c := range []int{colSettled, colRefunded, colVoucherRefunded, colFee, colOrdered, colApplied} {
		var err error
		decimals := 2
		if c == colFee {
			decimals = 5
		}
		if amounts[i], err = bill.ParseDecimal(get(c), decimals); err != nil {
			return bill.Line{}, bill.Bad("line %d %s: %v", b.line, wechatUsed[c], err)
		}
	}
	l := bill.Line{OrderNo: get(colOrderNo), TradeNo: get(colTradeNo)}
	switch st := get(colTradeState); st {
	case "SUCCESS", "REVOKED":
		l.Kind, l.State, l.AmountFen = bill.Payment, st, amounts[4]
	case "REFUND":
		l.Kind, l.State, l.RefundNo, l.AmountFen = bill.Refund, get(colRefundState), get(colRefundNo), amounts[5]
		if !isStateWord(l.State) {
			return l, bill.Bad("line %d: refund with 退款状态 %q", b.line, l.State)
		}
		if l.RefundNo == "" || l.RefundNo == "0" {
			return l, bill.Bad("line %d: refund without 商户退款单号", b.line)
		}
	default:
		return l, bill.Bad("line %d: unknown 交易状态 %q", b.line, st)
	}
	if l.OrderNo == "" || l.TradeNo == "" {
		return l, bill.Bad("line %d: no 微信订单号 or 商户订单号", b.line)
	}
	if l.AmountFen <= 0 && l.State != "REVOKED" {
		return l, bill.Bad("line %d: %s amount (订单金额 %s, 申请退款金额 %s) is not positive", b.line, l.Kind, get(colOrdered), get(colApplied))
	}
	var err error
	if l.Time, err = time.ParseInLocation("2006-01-02 15:04:05", get(colTime), chinaTZ); err != nil {
		return l, bill.Bad("line %d 交易时间: %v", b.line, err)
	}
	for i := range amounts {
		b.sums[i] += amounts[i]
	}
	b.rows++
	b.seen.Add(l)
	return l, nil
}

// isStateWord accepts WeChat's state words (SUCCESS, PROCESSING, CLOSED,
// ABNORMAL, and older ones such as REFUNDCLOSE): reconciliation decides
// what each means, and confirms it by a signed query.
func isStateWord(s string) bool {
	for i := 0; i < len(s); i++ {
		if (s[i] < 'A' || s[i] > 'Z') && s[i] != '_' {
			return false
		}
	}
	return s != ""
}

// readSummary reads the summary header (already in line) and its row.
func (b *BillReader) readSummary(line string) error {
	if line != strings.Join(wechatSummaryColumns, ",") {
		return bill.Bad("line %d is neither a backticked row nor the summary header: %.60q", b.line, line)
	}
	row, ok, err := b.scan()
	if err != nil {
		return err
	}
	if !ok || !strings.HasPrefix(row, "`") {
		return bill.Bad("the summary header is not followed by its row")
	}
	f := b.split(row)
	if len(f) != len(wechatSummaryColumns) {
		return bill.Bad("the summary row has %d fields, want %d", len(f), len(wechatSummaryColumns))
	}
	rows, err := strconv.Atoi(f[0])
	if err != nil {
		return bill.Bad("summary 总交易单数 %q", f[0])
	}
	var got wechatSums
	for i := range got {
		decimals := 2
		if i == 3 {
			decimals = 5
		}
		if got[i], err = bill.ParseDecimal(f[i+1], decimals); err != nil {
			return bill.Bad("summary %s: %v", wechatSummaryColumns[i+1], err)
		}
	}
	if rows != b.rows {
		return bill.Bad("the summary's 总交易单数 %d disagrees with the %d rows", rows, b.rows)
	}
	for i := range got {
		if got[i] != b.sums[i] {
			return bill.Bad("the summary's %s %s disagrees with the rows' %s", wechatSummaryColumns[i+1], f[i+1], formatUnits(b.sums[i], i == 3))
		}
	}
	b.summary = true
	return nil
}

// formatUnits writes fen as yuan, or fee units (1e-5 yuan) with five
// decimals, for messages.
func formatUnits(v int64, fee bool) string {
	scale, digits := int64(100), 2
	if fee {
		scale, digits = 100000, 5
	}
	sign := ""
	if v < 0 {
		sign, v = "-", -v
	}
	return fmt.Sprintf("%s%d.%0*d", sign, v/scale, digits, v%scale)
}

// finish runs at the end of the file: a summary was read and the bytes are
// the ones the signed answer hashed.
func (b *BillReader) finish() error {
	if !b.summary {
		return bill.Bad("the file ends before its summary")
	}
	if got := b.sha.Sum(nil); !bytes.Equal(got, b.want) {
		return bill.Bad("the file's SHA1 is %x, the signed answer said %x", got, b.want)
	}
	return io.EOF
}

// Close implements bill.Reader.
func (b *BillReader) Close() error {
	var errs []error
	for _, c := range b.closers {
		errs = append(errs, c())
	}
	return errors.Join(errs...)
}

var chinaTZ = time.FixedZone("CST", 8*3600)

var _ bill.Reader = (*BillReader)(nil)
