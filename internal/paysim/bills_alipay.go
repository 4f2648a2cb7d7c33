package paysim

import (
	"archive/zip"
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/simplifiedchinese"
	"golang.org/x/text/transform"
)

// Alipay's trade bill: alipay.data.dataservice.bill.downloadurl.query
// (signed, like every gateway answer) hands out bill_download_url; a plain
// GET of it returns a zip of two GBK CSV files. Layout from a complete real
// bill kept as a test fixture (account 20880211096256330156, 2019-09-16)
// and a 2017 excerpt, confirmed by many independent parsers.

const alipayBillMethod = "alipay.data.dataservice.bill.downloadurl.query"

// alipayAccount is the bill's 20-digit account: the seller's 16-digit PID
// and "0156", as in every real bill name and #账号 line.
const alipayAccount = simSellerID + "0156"

// alipayBuyer is 对方账户, masked as real bills show it ("*津水(602***@qq.com)").
const alipayBuyer = "*测试(" + simBuyerLogonID + ")"

const alipayDetailHeader = "支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户," +
	"订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,券名称," +
	"商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注"

// The summary file is reconstructed from parsers only (no complete real
// one was found) [?].
const alipaySummaryHeader = "门店编号,门店名称,交易订单总笔数,退款订单总笔数,订单金额（元）,商家实收（元）,支付宝优惠（元）," +
	"商家优惠（元）,卡消费金额（元）,服务费（元）,分润（元）,实收净额（元）"

// corruptBillKey carries a corrupt_bill fault from the bill operation's
// fault check to the answer that hands out the link.
type corruptBillKey struct{}

// serveAlipayBillURL is the bill method of /gateway.do: the fault first,
// then the gateway's checks and answer like every other method.
func (s *Sim) serveAlipayBillURL(w http.ResponseWriter, r *http.Request) {
	answered, corrupt := s.takeBillFault(w, r, opAlipayBill,
		func() {
			// The documented 异常示例 of this API.
			s.alipaySigned(w, alipayBillMethod, alipayError{Code: "20000", Msg: "Service Currently Unavailable", SubCode: "isp.unknow-error", SubMsg: "系统繁忙"})
		},
		func() {
			// One integration built on this SDK saw "no bill" arrive unsigned
			// (*alipay.Error, rsp nil) [?]; a day without trades answers it
			// signed (alipayBillURL), so clients meet both shapes.
			s.alipayUnsigned(w, alipayBillMethod, bizFail("isp.bill_not_exist", "账单不存在"))
		})
	if answered {
		return
	}
	s.alipayHandle(w, r.WithContext(context.WithValue(r.Context(), corruptBillKey{}, corrupt)), alipayBillMethod, Fault{})
}

type alipayBillURLRsp struct {
	Code            string `json:"code"`
	Msg             string `json:"msg"`
	BillDownloadURL string `json:"bill_download_url"`
}

// alipayBillURL answers the first step. isp.bill_not_exist covers both "no
// trades that day" and "not generated yet" (Alipay does not tell them
// apart). A date after today, a malformed one, a monthly bill or a
// bill_type other than trade answer invalid_arguments, the sub_code seen
// live for "参数不合法" (a live report; the spec says INVAILID_ARGUMENTS) [?].
func (s *Sim) alipayBillURL(r *http.Request, biz bizParams) any {
	invalid := bizFail("invalid_arguments", "参数不合法")
	if biz.get("bill_type") != "trade" {
		return invalid
	}
	corrupt, _ := r.Context().Value(corruptBillKey{}).(bool)
	f, token, err := s.issueBillLink(ProviderAlipay, biz.get("bill_date"), corrupt, false)
	switch {
	case errors.Is(err, ErrNoBill):
		return bizFail("isp.bill_not_exist", "账单不存在")
	case err != nil:
		return invalid
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	// The real link's shape (a logged live URL): dwbillcenter.alipay.com/
	// downloadBillFile.resource?bizType=trade&userId=…&fileType=csv.zip&
	// bizDates=20171213&downloadFileName=…_20171213.csv.zip&fileId=…&
	// timestamp=…&token=…; here on the simulator's own host.
	ymd := f.day.Format("20060102")
	return alipayBillURLRsp{Code: "10000", Msg: "Success", BillDownloadURL: scheme + "://" + r.Host +
		"/downloadBillFile.resource?bizType=trade&userId=" + alipayAccount + "&fileType=csv.zip&bizDates=" + ymd +
		"&downloadFileName=" + alipayAccount + "_" + ymd + ".csv.zip&fileId=" + url.QueryEscape("/trade/"+alipayAccount+"/"+ymd+".csv.zip") +
		"&timestamp=" + strconv.FormatInt(f.made.Unix(), 10) + "&token=" + token}
}

// serveAlipayBillDownload serves the zip of a link handed out in the last
// 30 seconds. What Alipay's file server answers for a dead link is not
// documented: 404 with a short text here [?].
func (s *Sim) serveAlipayBillDownload(w http.ResponseWriter, r *http.Request) {
	f := s.billByToken(ProviderAlipay, r.URL.Query().Get("token"))
	if f == nil {
		http.Error(w, "file not found or link expired", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="`+alipayAccount+"_"+f.day.Format("20060102")+`.csv.zip"`)
	_ = writeAlipayZip(w, f) // a write error is the client gone
}

// alipaySums are the details file's own totals.
type alipaySums struct {
	trades, refunds     int
	tradeFen, refundFen int64 // refundFen positive
}

// writeAlipayZip writes <account>_<yyyyMMdd>_业务明细.csv and
// …_业务明细(汇总).csv, deflated, names in GBK bytes without the UTF-8 flag
// (Go's zip writer leaves the flag clear for names that are not UTF-8).
// A corrupt bill loses its last bytes (the zip's directory): a download
// cut short.
func writeAlipayZip(w io.Writer, f *billFile) error {
	if f.corrupt {
		w = &tailCutter{w: w, keep: 64}
	}
	zw := zip.NewWriter(w)
	base := alipayAccount + "_" + f.day.Format("20060102")
	var sums alipaySums
	err := writeGBKEntry(zw, base+"_业务明细.csv", f.made, func(w *bufio.Writer) { sums = writeAlipayDetails(w, f) })
	if err == nil {
		err = writeGBKEntry(zw, base+"_业务明细(汇总).csv", f.made, func(w *bufio.Writer) { writeAlipaySummary(w, f, sums) })
	}
	if err != nil {
		return err
	}
	return zw.Close()
}

func writeGBKEntry(zw *zip.Writer, name string, made time.Time, body func(*bufio.Writer)) error {
	gbName, err := simplifiedchinese.GBK.NewEncoder().String(name)
	if err != nil {
		return err
	}
	ew, err := zw.CreateHeader(&zip.FileHeader{Name: gbName, NonUTF8: true, Method: zip.Deflate, Modified: made.In(chinaTZ)})
	if err != nil {
		return err
	}
	// A character GBK lacks (an emoji in a subject) becomes a substitute
	// instead of failing the whole bill. Encoders keep state: one per file.
	tw := transform.NewWriter(ew, encoding.ReplaceUnsupported(simplifiedchinese.GBK.NewEncoder()))
	bw := bufio.NewWriterSize(tw, 64<<10)
	body(bw)
	if err := bw.Flush(); err != nil {
		return err
	}
	return tw.Close()
}

// alipayPreamble writes the four # lines before a file's header. The
// colons and the commas of # lines are full-width, the brackets ASCII,
// three spaces before 终止日期, the end the next day at 00:00:00.
func alipayPreamble(w *bufio.Writer, title, list string, day time.Time) {
	w.WriteString("#" + title + "\r\n#账号：[" + alipayAccount + "]\r\n")
	w.WriteString("#起始日期：[" + day.Format("2006年01月02日") + " 00:00:00]   终止日期：[" + day.AddDate(0, 0, 1).Format("2006年01月02日") + " 00:00:00]\r\n")
	w.WriteString("#" + strings.Repeat("-", 41) + list + strings.Repeat("-", 40) + "\r\n")
}

func alipayExportTime(w *bufio.Writer, made time.Time) {
	w.WriteString("#导出时间：[" + made.In(chinaTZ).Format("2006年01月02日 15:04:05") + "]\r\n")
}

// writeAlipayDetails writes the details file. Line ends are CRLF: not
// visible in the stored samples, but Java parsers strip \r [?].
func writeAlipayDetails(w *bufio.Writer, f *billFile) alipaySums {
	alipayPreamble(w, "支付宝业务明细查询", "业务明细列表", f.day)
	w.WriteString(alipayDetailHeader + "\r\n")
	var sums alipaySums
	var b []byte
	for i, n := 0, f.lines.count(); i < n; i++ {
		e := f.lines.entry(i)
		b = append(appendAlipayLine(b[:0], &e), '\r', '\n')
		w.Write(b)
		if e.Refund {
			sums.refunds++
			sums.refundFen += e.AmountFen
		} else {
			sums.trades++
			sums.tradeFen += e.AmountFen
		}
	}
	w.WriteString("#" + strings.Repeat("-", 41) + "业务明细列表结束" + strings.Repeat("-", 36) + "\r\n")
	w.WriteString("#交易合计：" + strconv.Itoa(sums.trades) + "笔，商家实收共" + signedYuan(sums.tradeFen) + "元，商家优惠共0.00元\r\n")
	w.WriteString("#退款合计：" + strconv.Itoa(sums.refunds) + "笔，商家实收退款共" + signedYuan(-sums.refundFen) + "元，商家优惠退款共0.00元\r\n")
	alipayExportTime(w, f.made)
	return sums
}

// writeAlipaySummary writes the summary file: one line for the one
// (unnamed) store face-to-face trades have here, then 合计. 订单金额 and
// 商家实收 are the day's net (refund lines count negative, as in the
// details file); there is no refund-amount column [?].
func writeAlipaySummary(w *bufio.Writer, f *billFile, sums alipaySums) {
	alipayPreamble(w, "支付宝业务汇总查询", "业务汇总列表", f.day)
	w.WriteString(alipaySummaryHeader + "\r\n")
	net := signedYuan(sums.tradeFen - sums.refundFen)
	rest := strconv.Itoa(sums.trades) + "," + strconv.Itoa(sums.refunds) + "," + net + "," + net + ",0.00,0.00,0.00,0.00,0.00," + net + "\r\n"
	w.WriteString(",," + rest)
	w.WriteString("合计,," + rest)
	w.WriteString("#" + strings.Repeat("-", 40) + "业务汇总列表结束" + strings.Repeat("-", 37) + "\r\n")
	alipayExportTime(w, f.made)
}

// appendAlipayLine formats one detail line. Real bills end these fields
// with a TAB, even when empty: 支付宝交易号, 商户订单号, 业务类型, the four
// store/operator/terminal fields, 对方账户, 商家红包消费金额, 退款批次号/请求号.
// A refund line carries the trade's numbers and creation time, its own
// completion time, negative amounts and the refund's out_request_no.
func appendAlipayLine(b []byte, e *BillEntry) []byte {
	kind, amount := "交易", e.AmountFen
	if e.Refund {
		kind, amount = "退款", -e.AmountFen
	}
	b = append(b, e.TradeNo...)
	b = append(b, "\t,"...)
	b = append(b, e.OutTradeNo...)
	b = append(b, "\t,"...)
	b = append(b, kind...)
	b = append(b, "\t,"...)
	b = appendCSVField(b, e.Subject)
	b = append(b, ',')
	b = e.TradeCreatedAt.In(chinaTZ).AppendFormat(b, alipayTimeFormat)
	b = append(b, ',')
	b = e.Time.In(chinaTZ).AppendFormat(b, alipayTimeFormat)
	b = append(b, ",\t,\t,\t,\t,"+alipayBuyer+"\t,"...)
	b = appendSignedYuan(b, amount)
	b = append(b, ',')
	b = appendSignedYuan(b, amount)
	b = append(b, ",0.00,0.00,0.00,0.00,0.00,,0.00\t,0.00,"...)
	if e.Refund {
		b = append(b, e.OutRefundNo...)
	}
	b = append(b, "\t,0.00,0.00,"...)
	return appendCSVField(b, e.Subject)
}

// appendCSVField quotes a free-text field that holds a comma, a quote or a
// line break. No real bill shows one quoted; quoting keeps the columns in
// place for any CSV reader [?].
func appendCSVField(b []byte, s string) []byte {
	if !strings.ContainsAny(s, ",\"\r\n") {
		return append(b, s...)
	}
	b = append(b, '"')
	b = append(b, strings.ReplaceAll(s, `"`, `""`)...)
	return append(b, '"')
}

func appendSignedYuan(b []byte, fen int64) []byte {
	if fen < 0 {
		b = append(b, '-')
		fen = -fen
	}
	b = strconv.AppendInt(b, fen/100, 10)
	b = append(b, '.', byte('0'+fen%100/10), byte('0'+fen%10))
	return b
}

// signedYuan is "-8.26" for -826 fen; zero is "0.00" [?].
func signedYuan(fen int64) string { return string(appendSignedYuan(nil, fen)) }

// tailCutter passes everything on but the last keep bytes.
type tailCutter struct {
	w    io.Writer
	keep int
	buf  []byte
}

func (t *tailCutter) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if n := len(t.buf) - t.keep; n > 0 {
		if _, err := t.w.Write(t.buf[:n]); err != nil {
			return 0, err
		}
		t.buf = append(t.buf[:0], t.buf[n:]...)
	}
	return len(p), nil
}
