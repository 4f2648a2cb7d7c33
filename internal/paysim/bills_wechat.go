package paysim

import (
	"bufio"
	"compress/gzip"
	"crypto/sha1"
	"encoding/hex"
	"io"
	"net/http"
	"strconv"
	"time"
)

// WeChat Pay v3's trade bill: GET /v3/bill/tradebill (signed request,
// signed answer with the file's SHA1), then GET download_url (signed
// request, unsigned answer: "请求需签名但应答不签名", wechatpay-go FAQ.md).
// The file is UTF-8 with a BOM and CRLF line ends, a trailing CRLF too:
// those bytes, and no others, give the SHA1 a real tradebill answer paired
// with a real file (merchant 1601959334, 2021-01-28) — the original
// hidden behind a fixture that had been normalised to LF.

const wechatBillHeader = "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行," +
	"货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包," +
	"手续费,费率,订单金额,申请退款金额,费率备注"

const wechatBillSummaryHeader = "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"

// wechatFeeRate is the fee paysim charges: 0.60% (费率 "0.60%"), i.e. 6
// units of 0.00001 yuan (手续费 has five decimals) per fen.
const (
	wechatFeeRate        = "0.60%"
	wechatFeeUnitsPerFen = 6
)

// tradeBill is the first step's answer.
type tradeBill struct {
	HashType    string `json:"hash_type"`
	HashValue   string `json:"hash_value"`
	DownloadURL string `json:"download_url"`
}

// serveWechatTradeBill answers GET /v3/bill/tradebill?bill_date=&bill_type=ALL[&tar_type=GZIP].
func (s *Sim) serveWechatTradeBill(w http.ResponseWriter, r *http.Request) {
	answered, corrupt := s.takeBillFault(w, r, opWechatBill,
		func() { s.wechatReply(w, http.StatusInternalServerError, wechatError{"SYSTEM_ERROR", "系统错误"}) },
		func() {
			s.wechatReply(w, http.StatusBadRequest, wechatError{"STATEMENT_CREATING", "请求的账单正在生成中"})
		})
	if answered {
		return
	}
	if msg := s.wechatAuth(r, nil); msg != "" {
		s.wechatReply(w, http.StatusUnauthorized, wechatError{"SIGN_ERROR", msg})
		return
	}
	q := r.URL.Query()
	date, billType, tar := q.Get("bill_date"), q.Get("bill_type"), q.Get("tar_type")
	day, ok := parseBillDate(date)
	switch {
	case !ok:
		s.wechatReply(w, http.StatusBadRequest, paramError("bill_date 须为 yyyy-MM-DD 格式的日期"))
		return
	case billType != "" && billType != "ALL":
		// SUCCESS (20 columns) and REFUND (29) bills exist; paysim makes ALL only.
		s.wechatReply(w, http.StatusBadRequest, paramError("paysim 仅提供 bill_type=ALL 的账单"))
		return
	case tar != "" && tar != "GZIP":
		s.wechatReply(w, http.StatusBadRequest, paramError("tar_type 无法映射到合法的压缩类型枚举"))
		return
	}
	now := s.now()
	// Undocumented answers for a future date and for one older than the
	// three months the doc allows ("仅支持三个月内的账单下载申请"): the
	// generic INVALID_REQUEST with the texts other bills use [?].
	if day.After(now) {
		s.wechatReply(w, http.StatusBadRequest, wechatError{"INVALID_REQUEST", "请检查bill_date"})
		return
	}
	if y, m, d := now.In(chinaTZ).AddDate(0, -3, 0).Date(); day.Before(time.Date(y, m, d, 0, 0, 0, 0, chinaTZ)) {
		s.wechatReply(w, http.StatusBadRequest, wechatError{"INVALID_REQUEST", "请求的账单日期已过期"})
		return
	}
	f, token, err := s.issueBillLink(ProviderWechat, date, corrupt, tar == "GZIP")
	if err != nil {
		// A day without trades answers NO_STATEMENT_EXIST, not an empty file.
		s.wechatReply(w, http.StatusBadRequest, wechatError{"NO_STATEMENT_EXIST", "请求的账单文件不存在"})
		return
	}
	h := sha1.New()
	if err := s.writeWechatCSV(h, f, false); err != nil {
		s.wechatReply(w, http.StatusInternalServerError, wechatError{"SYSTEM_ERROR", "系统错误"})
		return
	}
	s.wechatReply(w, http.StatusOK, tradeBill{HashType: "SHA1", HashValue: hex.EncodeToString(h.Sum(nil)),
		DownloadURL: "https://api.mch.weixin.qq.com/v3/billdownload/file?token=" + token})
}

// serveWechatBillDownload answers GET /v3/billdownload/file?token=: the
// request must be signed, the file is not (no Wechatpay-* headers). The
// answer to a dead token is not documented [?].
func (s *Sim) serveWechatBillDownload(w http.ResponseWriter, r *http.Request) {
	if msg := s.wechatAuth(r, nil); msg != "" {
		s.wechatReply(w, http.StatusUnauthorized, wechatError{"SIGN_ERROR", msg})
		return
	}
	f := s.billByToken(ProviderWechat, r.URL.Query().Get("token"))
	if f == nil {
		s.wechatReply(w, http.StatusBadRequest, wechatError{"INVALID_REQUEST", "下载地址无效或已过期"})
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Request-ID", newUUID())
	if !f.gzip {
		_ = s.writeWechatCSV(w, f, f.corrupt) // a write error is the client gone
		return
	}
	zw := gzip.NewWriter(w)
	if s.writeWechatCSV(zw, f, f.corrupt) == nil {
		_ = zw.Close()
	}
}

// writeWechatCSV writes the file: header, one row per entry, the summary
// header and its row. A corrupt file changes one digit of the first row's
// 微信订单号: well formed, totals intact, only the hash tells.
func (s *Sim) writeWechatCSV(w io.Writer, f *billFile, corrupt bool) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	bw.WriteString("\xEF\xBB\xBF" + wechatBillHeader + "\r\n")
	var rows int
	var settled, refunded, ordered, applied, fee int64
	var b []byte
	for i, n := 0, f.lines.count(); i < n; i++ {
		e := f.lines.entry(i)
		if corrupt && i == 0 {
			e.TradeNo = bumpLastDigit(e.TradeNo)
		}
		b = append(appendWechatRow(b[:0], &e, s.km.ids.WechatAppID, s.km.ids.WechatMchID), '\r', '\n')
		bw.Write(b)
		rows++
		if e.Refund {
			refunded += e.AmountFen
			applied += e.AmountFen
			fee -= e.AmountFen * wechatFeeUnitsPerFen
		} else {
			settled += e.AmountFen
			ordered += e.AmountFen
			fee += e.AmountFen * wechatFeeUnitsPerFen
		}
	}
	bw.WriteString(wechatBillSummaryHeader + "\r\n")
	b = append(b[:0], '`')
	b = strconv.AppendInt(b, int64(rows), 10)
	for _, v := range []int64{settled, refunded, 0} {
		b = appendSignedYuan(append(b, ",`"...), v)
	}
	b = appendFee(append(b, ",`"...), fee)
	for _, v := range []int64{ordered, applied} {
		b = appendSignedYuan(append(b, ",`"...), v)
	}
	bw.Write(append(b, '\r', '\n'))
	return bw.Flush()
}

// appendWechatRow formats one row: every value starts with a backtick
// (empty ones too). A payment row has 微信/商户退款单号 "0", no refund
// amounts and 申请退款金额 0.00; a refund row (交易状态 REFUND) has the
// payment's numbers, 应结订单金额 and 订单金额 0.00, 退款金额 and
// 申请退款金额 positive, 退款类型 ORIGINAL and its 退款状态, and a negative
// fee. 特约商户号 is 0 for a direct merchant.
func appendWechatRow(b []byte, e *BillEntry, appID, mchID string) []byte {
	b = append(b, '`')
	b = e.Time.In(chinaTZ).AppendFormat(b, alipayTimeFormat)
	b = append(b, ",`"...)
	b = append(b, appID...)
	b = append(b, ",`"...)
	b = append(b, mchID...)
	b = append(b, ",`0,`,`"...)
	b = append(b, e.TradeNo...)
	b = append(b, ",`"...)
	b = append(b, e.OutTradeNo...)
	b = append(b, ",`"+simOpenID+",`NATIVE,`"...)
	fee := e.AmountFen * wechatFeeUnitsPerFen
	if e.Refund {
		b = append(b, "REFUND,`OTHERS,`CNY,`0.00,`0.00,`"...)
		b = append(b, e.RefundID...)
		b = append(b, ",`"...)
		b = append(b, e.OutRefundNo...)
		b = appendSignedYuan(append(b, ",`"...), e.AmountFen)
		b = append(b, ",`0.00,`ORIGINAL,`"...)
		b = append(b, e.RefundStatus...)
		fee = -fee
	} else {
		b = append(b, "SUCCESS,`OTHERS,`CNY,`"...)
		b = appendSignedYuan(b, e.AmountFen)
		b = append(b, ",`0.00,`0,`0,`0.00,`0.00,`,`"...)
	}
	b = append(b, ",`"...)
	b = append(b, e.Subject...)
	b = append(b, ",`"...)
	b = append(b, e.Attach...)
	b = appendFee(append(b, ",`"...), fee)
	b = append(b, ",`"+wechatFeeRate+",`"...)
	if e.Refund {
		b = append(b, "0.00"...)
		b = appendSignedYuan(append(b, ",`"...), e.AmountFen)
	} else {
		b = appendSignedYuan(b, e.AmountFen)
		b = append(b, ",`0.00"...)
	}
	return append(b, ",`"...)
}

// appendFee writes units of 0.00001 yuan with five decimals ("-0.05940").
func appendFee(b []byte, units int64) []byte {
	if units < 0 {
		b = append(b, '-')
		units = -units
	}
	b = strconv.AppendInt(b, units/100000, 10)
	frac := strconv.AppendInt(nil, 100000+units%100000, 10)
	return append(append(b, '.'), frac[1:]...)
}

// bumpLastDigit changes the last digit of a number string.
func bumpLastDigit(s string) string {
	if s == "" {
		return "0"
	}
	c := s[len(s)-1]
	if c >= '0' && c <= '9' {
		c = '0' + (c-'0'+1)%10
	} else {
		c = '0'
	}
	return s[:len(s)-1] + string(c)
}
