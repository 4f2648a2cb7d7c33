package paysim

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/smartwalle/alipay/v3"
	"github.com/wechatpay-apiv3/wechatpay-go/core"
	"github.com/wechatpay-apiv3/wechatpay-go/core/auth/validators"
	"github.com/wechatpay-apiv3/wechatpay-go/services/payments/native"
	"github.com/wechatpay-apiv3/wechatpay-go/services/refunddomestic"
	"golang.org/x/text/encoding/simplifiedchinese"
)

// mixedDay makes, through the official SDKs, a day of each provider's
// traffic: a plain payment, a payment partly refunded, a payment refunded
// in full (in two refunds), a trade closed unpaid and one left unpaid. It
// waits until WeChat's refunds settled.
func mixedDay(t *testing.T, sim *Sim, ali *alipay.Client, wx *core.Client) {
	t.Helper()
	ctx := context.Background()
	for _, c := range []struct{ no, amount string }{{"BILL-A-PAY", "10.00"}, {"BILL-A-PART", "20.50"}, {"BILL-A-FULL", "3.01"}, {"BILL-A-CLOSED", "1.00"}, {"BILL-A-OPEN", "2.00"}} {
		precreateAlipay(t, ali, c.no, c.amount, "")
	}
	for _, no := range []string{"BILL-A-PAY", "BILL-A-PART", "BILL-A-FULL"} {
		if err := sim.Pay(no); err != nil {
			t.Fatal(err)
		}
	}
	if err := sim.Scan("BILL-A-CLOSED"); err != nil {
		t.Fatal(err)
	}
	if r, err := ali.TradeClose(ctx, alipay.TradeClose{OutTradeNo: "BILL-A-CLOSED"}); err != nil || !r.IsSuccess() {
		t.Fatalf("close %+v %v", r, err)
	}
	for _, rf := range []struct{ no, amount, req string }{{"BILL-A-PART", "5.25", "RA-1"}, {"BILL-A-FULL", "1.00", "RA-2"}, {"BILL-A-FULL", "2.01", "RA-3"}} {
		p := alipay.TradeRefund{OutTradeNo: rf.no, RefundAmount: rf.amount, OutRequestNo: rf.req}
		if r, err := ali.TradeRefund(ctx, p); err != nil || !r.IsSuccess() {
			t.Fatalf("refund %+v %v", r, err)
		}
	}

	k := sim.Keys()
	pay := native.NativeApiService{Client: wx}
	for _, c := range []struct {
		no    string
		total int64
	}{{"BILL-W-PAY", 1000}, {"BILL-W-PART", 2050}, {"BILL-W-FULL", 301}, {"BILL-W-CLOSED", 100}, {"BILL-W-OPEN", 200}} {
		if _, _, err := pay.Prepay(ctx, native.PrepayRequest{Appid: core.String(k.WechatAppID), Mchid: core.String(k.WechatMchID),
			Description: core.String("parcel, 2 kg"), OutTradeNo: core.String(c.no), NotifyUrl: core.String("http://127.0.0.1:1/n"),
			Amount: &native.Amount{Total: core.Int64(c.total)}, Attach: core.String("a")}); err != nil {
			t.Fatal(err)
		}
	}
	for _, no := range []string{"BILL-W-PAY", "BILL-W-PART", "BILL-W-FULL"} {
		if err := sim.Pay(no); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pay.CloseOrder(ctx, native.CloseOrderRequest{OutTradeNo: core.String("BILL-W-CLOSED"), Mchid: core.String(k.WechatMchID)}); err != nil {
		t.Fatal(err)
	}
	refunds := refunddomestic.RefundsApiService{Client: wx}
	for _, rf := range []struct {
		no, req       string
		amount, total int64
	}{{"BILL-W-PART", "RW-1", 525, 2050}, {"BILL-W-FULL", "RW-2", 100, 301}, {"BILL-W-FULL", "RW-3", 201, 301}} {
		if _, _, err := refunds.Create(ctx, refunddomestic.CreateRequest{OutTradeNo: core.String(rf.no), OutRefundNo: core.String(rf.req),
			Amount: &refunddomestic.AmountReq{Refund: core.Int64(rf.amount), Total: core.Int64(rf.total), Currency: core.String("CNY")}}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "wechat refunds to settle", func() bool {
		for _, r := range sim.Refunds() {
			if r.Provider == ProviderWechat && r.Status != "SUCCESS" {
				return false
			}
		}
		return true
	})
}

func today() string { return time.Now().In(chinaTZ).Format("2006-01-02") }

func decodeGBK(t *testing.T, b []byte) string {
	t.Helper()
	out, err := simplifiedchinese.GBK.NewDecoder().Bytes(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func httpGet(t *testing.T, url string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// alipayBillURL runs the first step through the SDK and expects success.
func alipayBillURL(t *testing.T, ali *alipay.Client, date string) string {
	t.Helper()
	rsp, err := ali.BillDownloadURLQuery(context.Background(), alipay.BillDownloadURLQuery{BillType: "trade", BillDate: date})
	if err != nil {
		t.Fatalf("bill download url query: %v", err)
	}
	if !rsp.IsSuccess() || rsp.BillDownloadURL == "" {
		t.Fatalf("bill download url query: %+v", rsp)
	}
	return rsp.BillDownloadURL
}

// unzipBill opens the zip and returns its two files, GBK-decoded, by
// decoded name.
func unzipBill(t *testing.T, b []byte) map[string]string {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatalf("the bill is not a zip: %v", err)
	}
	out := map[string]string{}
	for _, f := range zr.File {
		if f.Flags&0x800 != 0 || utf8.ValidString(f.Name) {
			t.Errorf("entry %q: names are GBK bytes without the UTF-8 flag", f.Name)
		}
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		out[decodeGBK(t, []byte(f.Name))] = decodeGBK(t, body)
	}
	return out
}

func TestAlipayBillIsTheRealZipOfTheDayThroughTheSDK(t *testing.T) {
	sim, srv := startSim(t, testConfig)
	ali := alipayFor(t, sim, srv)
	mixedDay(t, sim, ali, newWechatClient(t, srv, wechatCredsFor(t, sim), nil))
	date := today()
	ymd := strings.ReplaceAll(date, "-", "")

	url := alipayBillURL(t, ali, date)
	if !strings.HasPrefix(url, srv.URL+"/downloadBillFile.resource?bizType=trade&userId="+alipayAccount+"&fileType=csv.zip&bizDates="+ymd+
		"&downloadFileName="+alipayAccount+"_"+ymd+".csv.zip&fileId=") || !strings.Contains(url, "&token=") {
		t.Fatalf("bill_download_url %s", url)
	}
	resp, body := httpGet(t, url)
	if resp.StatusCode != 200 {
		t.Fatalf("download: %d %s", resp.StatusCode, body)
	}
	files := unzipBill(t, body)
	details, ok := files[alipayAccount+"_"+ymd+"_业务明细.csv"]
	summary, ok2 := files[alipayAccount+"_"+ymd+"_业务明细(汇总).csv"]
	if len(files) != 2 || !ok || !ok2 {
		t.Fatalf("zip entries %v", keys(files))
	}
	if !strings.HasSuffix(details, "\r\n") || strings.Contains(strings.ReplaceAll(details, "\r\n", ""), "\n") {
		t.Fatal("details lines must end in CRLF")
	}
	lines := strings.Split(strings.TrimSuffix(details, "\r\n"), "\r\n")
	day, _ := time.ParseInLocation("2006-01-02", date, chinaTZ)
	next := day.AddDate(0, 0, 1)
	head := []string{
		"#支付宝业务明细查询",
		"#账号：[" + alipayAccount + "]",
		"#起始日期：[" + day.Format("2006年01月02日") + " 00:00:00]   终止日期：[" + next.Format("2006年01月02日") + " 00:00:00]",
		"#" + strings.Repeat("-", 41) + "业务明细列表" + strings.Repeat("-", 40),
		"支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,券名称,商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注",
	}
	for i, want := range head {
		if lines[i] != want {
			t.Fatalf("line %d:\n got %q\nwant %q", i, lines[i], want)
		}
	}
	// 3 payments and 3 refunds, in time order; closed and unpaid trades are absent.
	rows := lines[len(head) : len(lines)-4]
	want := map[string]string{ // order no + type -> 订单金额 and 退款批次号
		"BILL-A-PAY 交易": "10.00 ", "BILL-A-PART 交易": "20.50 ", "BILL-A-FULL 交易": "3.01 ",
		"BILL-A-PART 退款": "-5.25 RA-1", "BILL-A-FULL 退款": "-1.00 RA-2|-2.01 RA-3",
	}
	got := map[string]string{}
	trades := map[string]Trade{}
	for _, tr := range sim.Trades() {
		trades[tr.OutTradeNo] = tr
	}
	for _, row := range rows {
		f := strings.Split(row, ",")
		if len(f) != 25 {
			t.Fatalf("row has %d fields: %q", len(f), row)
		}
		for _, i := range []int{0, 1, 2, 6, 7, 8, 9, 10, 19, 21} {
			if !strings.HasSuffix(f[i], "\t") {
				t.Errorf("field %d of %q must end in a tab", i, row)
			}
		}
		tr := trades[strings.TrimSpace(f[1])]
		if strings.TrimSpace(f[0]) != tr.TradeNo || f[3] != "parcel" || f[4] != tr.CreatedAt.In(chinaTZ).Format(alipayTimeFormat) {
			t.Errorf("row %q does not show trade %+v", row, tr)
		}
		if f[11] != f[12] {
			t.Errorf("订单金额 %s and 商家实收 %s differ", f[11], f[12])
		}
		k := strings.TrimSpace(f[1]) + " " + strings.TrimSpace(f[2])
		v := f[11] + " " + strings.TrimSpace(f[21])
		if got[k] != "" {
			v = got[k] + "|" + v
		}
		got[k] = v
	}
	if len(got) != len(want) {
		t.Fatalf("rows %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %q, want %q", k, got[k], v)
		}
	}
	tail := lines[len(lines)-4:]
	if tail[0] != "#"+strings.Repeat("-", 41)+"业务明细列表结束"+strings.Repeat("-", 36) ||
		tail[1] != "#交易合计：3笔，商家实收共33.51元，商家优惠共0.00元" ||
		tail[2] != "#退款合计：3笔，商家实收退款共-8.26元，商家优惠退款共0.00元" ||
		!strings.HasPrefix(tail[3], "#导出时间：["+time.Now().In(chinaTZ).Format("2006年01月02日")) {
		t.Errorf("footer:\n%s", strings.Join(tail, "\n"))
	}

	slines := strings.Split(strings.TrimSuffix(summary, "\r\n"), "\r\n")
	wantSummary := []string{
		"#支付宝业务汇总查询", head[1], head[2],
		"#" + strings.Repeat("-", 41) + "业务汇总列表" + strings.Repeat("-", 40),
		"门店编号,门店名称,交易订单总笔数,退款订单总笔数,订单金额（元）,商家实收（元）,支付宝优惠（元）,商家优惠（元）,卡消费金额（元）,服务费（元）,分润（元）,实收净额（元）",
		",,3,3,25.25,25.25,0.00,0.00,0.00,0.00,0.00,25.25",
		"合计,,3,3,25.25,25.25,0.00,0.00,0.00,0.00,0.00,25.25",
		"#" + strings.Repeat("-", 40) + "业务汇总列表结束" + strings.Repeat("-", 37),
	}
	for i, w := range wantSummary {
		if i >= len(slines) || slines[i] != w {
			t.Fatalf("summary line %d:\n got %q\nwant %q", i, slines[i], w)
		}
	}
	if len(slines) != len(wantSummary)+1 || !strings.HasPrefix(slines[len(slines)-1], "#导出时间：[") {
		t.Errorf("summary tail %q", slines[len(wantSummary):])
	}
	if n := sim.Calls()["alipay.bill"]; n != 1 {
		t.Errorf("alipay.bill counted %d times, want 1", n)
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestAlipayBillLineHasTheSampleBillsShape writes the entry of a line of a
// real bill (notes §1.3) and compares it with that line byte for byte,
// apart from the store, operator and buyer, which paysim does not keep.
func TestAlipayBillLineHasTheSampleBillsShape(t *testing.T) {
	real := "2019091622001458860515315453\t,service_1568601259302\t,交易\t,下单测试,2019-09-16 10:55:16,2019-09-16 10:55:23,alipay_store\t,alipay_store\t,alipay\t,\t,*津水(602***@qq.com)\t,0.01,0.01,0.00,0.00,0.00,0.00,0.00,,0.00\t,0.00,\t,0.00,0.00,下单测试"
	refund := "2019091622001458860515315453\t,service_1568601259302\t,退款\t,下单测试,2019-09-16 10:55:16,2019-09-16 10:56:48,alipay_store\t,alipay_store\t,alipay\t,\t,*津水(602***@qq.com)\t,-0.01,-0.01,0.00,0.00,0.00,0.00,0.00,,0.00\t,0.00,re_test_1568602607356\t,0.00,0.00,下单测试"
	at := func(s string) time.Time { v, _ := time.ParseInLocation(alipayTimeFormat, s, chinaTZ); return v }
	e := BillEntry{TradeNo: "2019091622001458860515315453", OutTradeNo: "service_1568601259302", Subject: "下单测试",
		TradeCreatedAt: at("2019-09-16 10:55:16"), Time: at("2019-09-16 10:55:23"), AmountFen: 1}
	ours := strings.NewReplacer("alipay_store\t,alipay_store\t,alipay\t", "\t,\t,\t", "*津水(602***@qq.com)", alipayBuyer)
	if got := string(appendAlipayLine(nil, &e)); got != ours.Replace(real) {
		t.Errorf("payment line\n got %q\nwant %q", got, ours.Replace(real))
	}
	e.Refund, e.OutRefundNo, e.Time = true, "re_test_1568602607356", at("2019-09-16 10:56:48")
	if got := string(appendAlipayLine(nil, &e)); got != ours.Replace(refund) {
		t.Errorf("refund line\n got %q\nwant %q", got, ours.Replace(refund))
	}
	// A subject with a comma or a quote is quoted, so the columns stay put.
	e.Subject = `box, "large"`
	if got := string(appendAlipayLine(nil, &e)); !strings.Contains(got, `,"box, ""large""",`) {
		t.Errorf("quoted subject: %q", got)
	}
}

// TestWechatBillRowHasTheSampleBillsShape does the same for a row of a real
// WeChat bill (notes §2.3), apart from the fee, which paysim charges at
// 0.60%, and the payer.
func TestWechatBillRowHasTheSampleBillsShape(t *testing.T) {
	real := "`2021-01-28 17:07:11,`wx81be3101902f7cb2,`1601959334,`0,`,`4200000925202101284997714292,`S20210128170702357723,`ofyak5qR_1wYsC99CsWA6R9MJazA,`NATIVE,`SUCCESS,`OTHERS,`CNY,`0.01,`0.00,`0,`0,`0.00,`0.00,`,`,`for testing,`cipher code,`0.00000,`1.00%,`0.01,`0.00,`"
	at, _ := time.ParseInLocation(alipayTimeFormat, "2021-01-28 17:07:11", chinaTZ)
	e := BillEntry{Time: at, TradeNo: "4200000925202101284997714292", OutTradeNo: "S20210128170702357723", AmountFen: 1,
		Subject: "for testing", Attach: "cipher code"}
	want := strings.NewReplacer("ofyak5qR_1wYsC99CsWA6R9MJazA", simOpenID, "`0.00000,`1.00%", "`0.00006,`0.60%").Replace(real)
	if got := string(appendWechatRow(nil, &e, "wx81be3101902f7cb2", "1601959334")); got != want {
		t.Errorf("row\n got %q\nwant %q", got, want)
	}
	e.Refund, e.RefundID, e.OutRefundNo, e.RefundStatus, e.AmountFen = true, "50300000000000000000000000001", "R-1", "PROCESSING", 990
	got := string(appendWechatRow(nil, &e, "wx81be3101902f7cb2", "1601959334"))
	if !strings.Contains(got, "`REFUND,`OTHERS,`CNY,`0.00,`0.00,`50300000000000000000000000001,`R-1,`9.90,`0.00,`ORIGINAL,`PROCESSING,") ||
		!strings.HasSuffix(got, ",`-0.05940,`0.60%,`0.00,`9.90,`") {
		t.Errorf("refund row %q", got)
	}
}

func TestAlipayBillOfADayWithoutTradesIsTheSignedBillNotExist(t *testing.T) {
	sim, srv := startSim(t, testConfig)
	ali := alipayFor(t, sim, srv)
	rsp, err := ali.BillDownloadURLQuery(context.Background(), alipay.BillDownloadURLQuery{BillType: "trade", BillDate: today()})
	if err != nil {
		t.Fatalf("a signed business failure is not a Go error: %v", err)
	}
	if rsp.IsSuccess() || rsp.Code != "40004" || rsp.SubCode != "isp.bill_not_exist" || rsp.BillDownloadURL != "" {
		t.Fatalf("%+v", rsp)
	}
	for _, c := range []struct{ typ, date string }{
		{"trade", time.Now().In(chinaTZ).AddDate(0, 0, 1).Format("2006-01-02")}, // tomorrow
		{"trade", "2026-13-01"}, {"trade", "20261130"}, {"trade", ""}, {"signcustomer", today()},
	} {
		rsp, err := ali.BillDownloadURLQuery(context.Background(), alipay.BillDownloadURLQuery{BillType: c.typ, BillDate: c.date})
		if err != nil || rsp.Code != "40004" || rsp.SubCode != "invalid_arguments" {
			t.Errorf("%s %q: %+v %v", c.typ, c.date, rsp, err)
		}
	}
}

func TestAlipayBillNotReadyFaultAnswersTheUnsignedBillNotExistOnce(t *testing.T) {
	sim, srv := startSim(t, testConfig)
	ali := alipayFor(t, sim, srv)
	mixedDay(t, sim, ali, newWechatClient(t, srv, wechatCredsFor(t, sim), nil))
	code, body := do(t, "POST", srv.URL+"/_sim/faults", `{"operation":"alipay.bill","mode":"bill_not_ready"}`)
	if code != 200 {
		t.Fatalf("fault: %d %s", code, body)
	}
	rsp, err := ali.BillDownloadURLQuery(context.Background(), alipay.BillDownloadURLQuery{BillType: "trade", BillDate: today()})
	var ae *alipay.Error
	if rsp != nil || !errors.As(err, &ae) || ae.Code != "40004" || ae.SubCode != "isp.bill_not_exist" {
		t.Fatalf("want the unsigned isp.bill_not_exist as *alipay.Error, got %+v %v", rsp, err)
	}
	alipayBillURL(t, ali, today()) // ready on the next call
}

func TestAlipayCorruptBillFaultServesAZipThatCannotBeOpened(t *testing.T) {
	sim, srv := startSim(t, testConfig)
	ali := alipayFor(t, sim, srv)
	mixedDay(t, sim, ali, newWechatClient(t, srv, wechatCredsFor(t, sim), nil))
	sim.SetFault(Fault{Operation: "alipay.bill", Mode: FaultCorruptBill})
	resp, body := httpGet(t, alipayBillURL(t, ali, today()))
	if resp.StatusCode != 200 || len(body) == 0 {
		t.Fatalf("download: %d", resp.StatusCode)
	}
	if _, err := zip.NewReader(bytes.NewReader(body), int64(len(body))); err == nil {
		t.Fatal("the corrupted bill opened as a zip")
	}
	_, good := httpGet(t, alipayBillURL(t, ali, today()))
	unzipBill(t, good)
}

func TestAlipayBillLinkServesOnlyATokenItHandedOut(t *testing.T) {
	sim, srv := startSim(t, testConfig)
	ali := alipayFor(t, sim, srv)
	mixedDay(t, sim, ali, newWechatClient(t, srv, wechatCredsFor(t, sim), nil))
	url := alipayBillURL(t, ali, today())
	forged := url[:strings.LastIndex(url, "token=")] + "token=" + strings.Repeat("0", 32)
	if resp, _ := httpGet(t, forged); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown token: %d", resp.StatusCode)
	}
	if resp, _ := httpGet(t, url); resp.StatusCode != 200 {
		t.Errorf("good token: %d", resp.StatusCode)
	}
}

// wechatTradeBill runs the first step through the SDK: signed request,
// signed answer, validated by the SDK.
func wechatTradeBill(t *testing.T, wx *core.Client, query string) (tradeBill, error) {
	t.Helper()
	var tb tradeBill
	res, err := wx.Get(context.Background(), "https://api.mch.weixin.qq.com/v3/bill/tradebill?"+query)
	if err != nil {
		return tb, err
	}
	return tb, core.UnMarshalResponse(res.Response, &tb)
}

func wechatDownload(t *testing.T, wx *core.Client, url string) []byte {
	t.Helper()
	res, err := core.NewClientWithValidator(wx, &validators.NullValidator{}).Get(context.Background(), url)
	if err != nil {
		t.Fatalf("download: %v", err)
	}
	defer res.Response.Body.Close()
	if res.Response.Header.Get("Wechatpay-Signature") != "" {
		t.Error("the bill file answer is not signed")
	}
	b, err := io.ReadAll(res.Response.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not gzip: %v", err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sha1Hex(b []byte) string { h := sha1.Sum(b); return hex.EncodeToString(h[:]) }

func TestWechatBillIsTheRealFileOfTheDayThroughTheSDK(t *testing.T) {
	sim, srv := startSim(t, testConfig)
	wx := newWechatClient(t, srv, wechatCredsFor(t, sim), nil)
	mixedDay(t, sim, alipayFor(t, sim, srv), wx)
	k := sim.Keys()

	tb, err := wechatTradeBill(t, wx, "bill_date="+today()+"&bill_type=ALL")
	if err != nil {
		t.Fatal(err)
	}
	if tb.HashType != "SHA1" || len(tb.HashValue) != 40 || !strings.HasPrefix(tb.DownloadURL, "https://api.mch.weixin.qq.com/v3/billdownload/file?token=") {
		t.Fatalf("%+v", tb)
	}
	file := wechatDownload(t, wx, tb.DownloadURL)
	if sha1Hex(file) != tb.HashValue {
		t.Fatalf("SHA1 %s, answer said %s", sha1Hex(file), tb.HashValue)
	}
	if !bytes.HasPrefix(file, []byte("\xEF\xBB\xBF")) || !bytes.HasSuffix(file, []byte("\r\n")) || bytes.Contains(bytes.ReplaceAll(file, []byte("\r\n"), nil), []byte("\n")) {
		t.Fatal("the file is UTF-8 with a BOM and CRLF line ends")
	}
	lines := strings.Split(strings.TrimSuffix(string(file[3:]), "\r\n"), "\r\n")
	if lines[0] != "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注" {
		t.Fatalf("header %q", lines[0])
	}
	rows := lines[1 : len(lines)-2]
	if len(rows) != 6 {
		t.Fatalf("%d rows, want 3 payments and 3 refunds:\n%s", len(rows), strings.Join(rows, "\n"))
	}
	trades := map[string]Trade{}
	for _, tr := range sim.Trades() {
		trades[tr.OutTradeNo] = tr
	}
	got := map[string]string{}
	for _, row := range rows {
		f := strings.Split(row, ",`")
		if len(f) != 27 || !strings.HasPrefix(f[0], "`") {
			t.Fatalf("row %q", row)
		}
		tr := trades[f[6]]
		if f[1] != k.WechatAppID || f[2] != k.WechatMchID || f[5] != tr.TradeNo || f[8] != "NATIVE" || f[20] != "parcel, 2 kg" || f[21] != "a" {
			t.Errorf("row %q does not show trade %+v", row, tr)
		}
		got[f[6]+" "+f[9]] += "|" + f[12] + " " + f[15] + " " + f[16] + " " + f[19] + " " + f[24] + " " + f[25]
	}
	want := map[string]string{
		"BILL-W-PAY SUCCESS":  "|10.00 0 0.00  10.00 0.00",
		"BILL-W-PART SUCCESS": "|20.50 0 0.00  20.50 0.00",
		"BILL-W-FULL SUCCESS": "|3.01 0 0.00  3.01 0.00",
		"BILL-W-PART REFUND":  "|0.00 RW-1 5.25 SUCCESS 0.00 5.25",
		"BILL-W-FULL REFUND":  "|0.00 RW-2 1.00 SUCCESS 0.00 1.00|0.00 RW-3 2.01 SUCCESS 0.00 2.01",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("rows %v", got)
	}
	// 手续费 at 0.60%: 6 units of 0.00001 yuan per fen, (3351 - 826) × 6 = 15150.
	if lines[len(lines)-2] != "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额" ||
		lines[len(lines)-1] != "`6,`33.51,`8.26,`0.00,`0.15150,`33.51,`8.26" {
		t.Errorf("summary %q", lines[len(lines)-2:])
	}
	if n := sim.Calls()["wechat.bill"]; n != 1 {
		t.Errorf("wechat.bill counted %d times, want 1", n)
	}

	// The same bill gzipped: the hash is of the uncompressed file.
	tb, err = wechatTradeBill(t, wx, "bill_date="+today()+"&bill_type=ALL&tar_type=GZIP")
	if err != nil {
		t.Fatal(err)
	}
	gz := wechatDownload(t, wx, tb.DownloadURL)
	plain := gunzip(t, gz)
	if sha1Hex(plain) != tb.HashValue || !bytes.Equal(plain, file) {
		t.Fatal("the gzipped bill differs or its hash is not the uncompressed file's")
	}

	// A validating client refuses the unsigned download, as the SDK's FAQ says.
	if _, err := wx.Get(context.Background(), tb.DownloadURL); err == nil {
		t.Error("a validating client accepted the unsigned bill answer")
	}
}

func TestWechatBillRequestsAreRefusedAsWechatDoes(t *testing.T) {
	sim, srv := startSim(t, testConfig)
	wx := newWechatClient(t, srv, wechatCredsFor(t, sim), nil)
	tomorrow := time.Now().In(chinaTZ).AddDate(0, 0, 1).Format("2006-01-02")
	old := time.Now().In(chinaTZ).AddDate(0, -4, 0).Format("2006-01-02")
	for _, c := range []struct {
		query  string
		status int
		code   string
	}{
		{"bill_date=" + today() + "&bill_type=ALL", 400, "NO_STATEMENT_EXIST"}, // no trade today
		{"bill_date=" + tomorrow + "&bill_type=ALL", 400, "INVALID_REQUEST"},
		{"bill_date=" + old + "&bill_type=ALL", 400, "INVALID_REQUEST"},
		{"bill_date=2026-02-30&bill_type=ALL", 400, "PARAM_ERROR"},
		{"bill_type=ALL", 400, "PARAM_ERROR"},
		{"bill_date=" + today() + "&bill_type=ALL&tar_type=None", 400, "PARAM_ERROR"},
		{"bill_date=" + today() + "&bill_type=SUCCESS", 400, "PARAM_ERROR"},
	} {
		_, err := wechatTradeBill(t, wx, c.query)
		var ae *core.APIError
		if !errors.As(err, &ae) || ae.StatusCode != c.status || ae.Code != c.code {
			t.Errorf("%s: %v", c.query, err)
		}
	}
	// Unsigned requests are refused on both steps.
	for _, path := range []string{"/v3/bill/tradebill?bill_date=" + today() + "&bill_type=ALL", "/v3/billdownload/file?token=x"} {
		code, body := do(t, "GET", srv.URL+path, "")
		if code != 401 || !strings.Contains(string(body), "SIGN_ERROR") {
			t.Errorf("%s unsigned: %d %s", path, code, body)
		}
	}
	sim2, srv2 := startSim(t, testConfig)
	mixedDay(t, sim2, alipayFor(t, sim2, srv2), newWechatClient(t, srv2, wechatCredsFor(t, sim2), nil))
	wx2 := newWechatClient(t, srv2, wechatCredsFor(t, sim2), nil)
	res, err := core.NewClientWithValidator(wx2, &validators.NullValidator{}).Get(context.Background(), "https://api.mch.weixin.qq.com/v3/billdownload/file?token=forged")
	var ae *core.APIError
	if !errors.As(err, &ae) || ae.StatusCode != 400 || ae.Code != "INVALID_REQUEST" {
		t.Errorf("forged token: %v %v", res, err)
	}
}

func TestWechatBillFaultsMakeTheBillLateOrCorrupt(t *testing.T) {
	sim, srv := startSim(t, testConfig)
	wx := newWechatClient(t, srv, wechatCredsFor(t, sim), nil)
	mixedDay(t, sim, alipayFor(t, sim, srv), wx)
	q := "bill_date=" + today() + "&bill_type=ALL"

	sim.SetFault(Fault{Operation: "wechat.bill", Mode: FaultBillNotReady})
	_, err := wechatTradeBill(t, wx, q)
	var ae *core.APIError
	if !errors.As(err, &ae) || ae.StatusCode != 400 || ae.Code != "STATEMENT_CREATING" {
		t.Fatalf("bill_not_ready: %v", err)
	}

	sim.SetFault(Fault{Operation: "wechat.bill", Mode: FaultCorruptBill})
	tb, err := wechatTradeBill(t, wx, q)
	if err != nil {
		t.Fatal(err)
	}
	bad := wechatDownload(t, wx, tb.DownloadURL)
	if sha1Hex(bad) == tb.HashValue {
		t.Fatal("the corrupted bill matches its hash")
	}
	tb, err = wechatTradeBill(t, wx, q)
	if err != nil {
		t.Fatal(err)
	}
	good := wechatDownload(t, wx, tb.DownloadURL)
	if sha1Hex(good) != tb.HashValue || len(good) != len(bad) {
		t.Fatalf("after the fault: hash ok %v, %d bytes vs %d corrupted", sha1Hex(good) == tb.HashValue, len(good), len(bad))
	}

	// Bill faults belong to the bill operations only.
	for _, body := range []string{`{"operation":"wechat.query","mode":"corrupt_bill"}`, `{"operation":"*","mode":"bill_not_ready"}`} {
		if code, b := do(t, "POST", srv.URL+"/_sim/faults", body); code != 400 || !strings.Contains(string(b), `"error": "invalid_request"`) || !strings.Contains(string(b), "applies to alipay.bill, wechat.bill, not to") {
			t.Errorf("%s: %d %s", body, code, b)
		}
	}
}

func TestControlAPIServesTheBillFileAsTheProviderWould(t *testing.T) {
	sim, srv := startSim(t, testConfig)
	ali := alipayFor(t, sim, srv)
	wx := newWechatClient(t, srv, wechatCredsFor(t, sim), nil)
	mixedDay(t, sim, ali, wx)

	resp, zipped := httpGet(t, srv.URL+"/_sim/bills/alipay/"+today())
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/zip" {
		t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	_, viaAPI := httpGet(t, alipayBillURL(t, ali, today()))
	a, b := unzipBill(t, zipped), unzipBill(t, viaAPI)
	for name, body := range a {
		if dropExportTime(body) != dropExportTime(b[name]) {
			t.Errorf("%s differs from the provider's download", name)
		}
	}
	tb, err := wechatTradeBill(t, wx, "bill_date="+today()+"&bill_type=ALL")
	if err != nil {
		t.Fatal(err)
	}
	resp, csv := httpGet(t, srv.URL+"/_sim/bills/wechat/"+today())
	if resp.StatusCode != 200 || sha1Hex(csv) != tb.HashValue {
		t.Fatalf("%d, hash match %v", resp.StatusCode, sha1Hex(csv) == tb.HashValue)
	}
	for _, c := range []struct {
		path, code, desc string
		status           int
	}{
		{"/_sim/bills/unionpay/" + today(), "not_found", "alipay|wechat", 404},
		{"/_sim/bills/wechat/2026-1-1", "invalid_request", "yyyy-MM-dd", 400},
		{"/_sim/bills/wechat/" + time.Now().In(chinaTZ).AddDate(0, 0, 2).Format("2006-01-02"), "invalid_request", "not after today", 400},
		{"/_sim/bills/alipay/" + time.Now().In(chinaTZ).AddDate(0, 0, -1).Format("2006-01-02"), "no_bill", "no payment or refund", 404},
	} {
		code, body := do(t, "GET", srv.URL+c.path, "")
		var e map[string]string
		if err := json.Unmarshal(body, &e); err != nil || code != c.status || e["error"] != c.code || !strings.Contains(e["error_description"], c.desc) {
			t.Errorf("%s: %d %s", c.path, code, body)
		}
	}
	if calls := sim.Calls(); calls["alipay.bill"] != 1 || calls["wechat.bill"] != 1 {
		t.Errorf("the control API is not a provider call: %v", calls)
	}
}

func dropExportTime(s string) string { return s[:strings.LastIndex(s, "#导出时间")] }

func TestSyntheticDayIsServedWithoutOneTrade(t *testing.T) {
	sim, srv := startSim(t, testConfig)
	date := time.Now().In(chinaTZ).AddDate(0, 0, -1).Format("2006-01-02")
	if err := sim.AddSyntheticDay(SyntheticDay{Channel: ProviderAlipay, Date: date, Lines: 1000}); err != nil {
		t.Fatal(err)
	}
	if err := sim.AddSyntheticDay(SyntheticDay{Channel: ProviderWechat, Date: "2999-01-01", Lines: 1}); err == nil {
		t.Error("a synthetic day in the future was accepted")
	}
	d := SyntheticDay{Channel: ProviderWechat, Date: date, Lines: 1000}
	var payFen, refundFen int64
	refunded := map[string]int64{}
	paid := map[string]int64{}
	var last time.Time
	for i := 0; i < d.Lines; i++ {
		e := d.Entry(i)
		if e.Time.Before(last) || e.Time.In(chinaTZ).Format("2006-01-02") != date {
			t.Fatalf("line %d at %v", i, e.Time)
		}
		last = e.Time
		if e.Refund {
			refundFen += e.AmountFen
			refunded[e.OutTradeNo] += e.AmountFen
			if paid[e.OutTradeNo] == 0 || refunded[e.OutTradeNo] > paid[e.OutTradeNo] {
				t.Fatalf("line %d refunds %s beyond what was paid", i, e.OutTradeNo)
			}
		} else {
			payFen += e.AmountFen
			paid[e.OutTradeNo] = e.AmountFen
		}
	}
	if len(paid) != 800 || len(refunded) != 200 {
		t.Errorf("%d payments and %d refunded trades", len(paid), len(refunded))
	}
	code, body := do(t, "POST", srv.URL+"/_sim/bills/wechat/"+date+"/synthetic", `{"lines": 1000}`)
	if code != 200 || !strings.Contains(string(body), `"lines": 1000`) {
		t.Fatalf("synthetic day through the control API: %d %s", code, body)
	}
	for _, c := range []struct{ path, body, desc string }{
		{"/_sim/bills/wechat/" + date + "/synthetic", `{"lines": 0}`, "at least one line"},
		{"/_sim/bills/wechat/" + date + "/synthetic", `{"rows": 5}`, "unknown field"},
		{"/_sim/bills/unionpay/" + date + "/synthetic", `{"lines": 5}`, "alipay or wechat"},
		{"/_sim/bills/wechat/2999-01-01/synthetic", `{"lines": 5}`, "not after today"},
	} {
		code, body := do(t, "POST", srv.URL+c.path, c.body)
		var e map[string]string
		if err := json.Unmarshal(body, &e); err != nil || code != 400 || e["error"] != "invalid_request" || !strings.Contains(e["error_description"], c.desc) {
			t.Errorf("%s %s: %d %s", c.path, c.body, code, body)
		}
	}
	resp, csv := httpGet(t, srv.URL+"/_sim/bills/wechat/"+date)
	lines := strings.Split(strings.TrimSuffix(string(csv), "\r\n"), "\r\n")
	if resp.StatusCode != 200 || len(lines) != 1003 {
		t.Fatalf("%d, %d lines", resp.StatusCode, len(lines))
	}
	if want := "`1000,`" + formatYuan(payFen) + ",`" + formatYuan(refundFen) + ",`"; !strings.HasPrefix(lines[1002], want) {
		t.Errorf("summary %q, want prefix %q", lines[1002], want)
	}
	resp, zipped := httpGet(t, srv.URL+"/_sim/bills/alipay/"+date)
	if resp.StatusCode != 200 || len(unzipBill(t, zipped)) != 2 {
		t.Fatalf("%d", resp.StatusCode)
	}
}
