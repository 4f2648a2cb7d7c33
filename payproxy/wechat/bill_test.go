package wechat

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wechatpay-apiv3/wechatpay-go/core"
	"github.com/wechatpay-apiv3/wechatpay-go/core/option"
	"github.com/wechatpay-apiv3/wechatpay-go/services/payments/native"
	"github.com/wechatpay-apiv3/wechatpay-go/services/refunddomestic"
	"github.com/wechatpay-apiv3/wechatpay-go/utils"

	"github.com/tollgate/tollgate/internal/paysim"
	"github.com/tollgate/tollgate/internal/paysim/paysimtest"
	"github.com/tollgate/tollgate/payproxy/bill"
	"github.com/tollgate/tollgate/payproxy/bill/billtest"
)

var (
	today   = billtest.Today
	readAll = billtest.ReadAll
)

// billFixture is an adapter and a merchant SDK client on one paysim.
type billFixture struct {
	sim *paysim.Sim
	a   *Adapter
	sdk *core.Client
}

func newBillFixture(t testing.TB) *billFixture {
	t.Helper()
	sim, simURL := paysimtest.Start(t, paysim.Config{WechatRefundDelay: 20 * time.Millisecond})
	k := sim.Keys()
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	cfg := Config{MchID: k.WechatMchID, AppID: k.WechatAppID, SerialNo: k.WechatSerialNo,
		PrivateKeyPEM: read(k.WechatPrivateKeyFile), APIv3Key: k.WechatAPIv3Key,
		PlatformPublicKeyPEM: read(k.WechatPlatformPublicKeyFile), PlatformPublicKeyID: k.WechatPlatformPublicKeyID,
		BaseURL: simURL, NotifyURL: "http://127.0.0.1:1/notify"}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	priv, _ := utils.LoadPrivateKey(cfg.PrivateKeyPEM)
	pub, _ := utils.LoadPublicKey(cfg.PlatformPublicKeyPEM)
	hc, _ := rewritingClient(nil, simURL)
	c, err := core.NewClient(context.Background(), option.WithWechatPayPublicKeyAuthCipher(cfg.MchID, cfg.SerialNo, priv, cfg.PlatformPublicKeyID, pub), option.WithHTTPClient(hc))
	if err != nil {
		t.Fatal(err)
	}
	return &billFixture{sim: sim, a: a, sdk: c}
}

// mixedDay: paid, partly refunded, fully refunded (twice), closed and
// unpaid trades, through the SDK and the buyer's side of paysim; it waits
// until the refunds settled.
func (f *billFixture) mixedDay(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	pay := native.NativeApiService{Client: f.sdk}
	k := f.sim.Keys()
	for _, c := range []struct {
		no    string
		total int64
	}{{"BILLW-PAY", 1000}, {"BILLW-PART", 2050}, {"BILLW-FULL", 301}, {"BILLW-CLOSED", 100}, {"BILLW-OPEN", 200}} {
		if _, _, err := pay.Prepay(ctx, native.PrepayRequest{Appid: core.String(k.WechatAppID), Mchid: core.String(k.WechatMchID),
			Description: core.String("parcel, 2 kg"), OutTradeNo: core.String(c.no), NotifyUrl: core.String("http://127.0.0.1:1/n"),
			Amount: &native.Amount{Total: core.Int64(c.total)}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, no := range []string{"BILLW-PAY", "BILLW-PART", "BILLW-FULL"} {
		if err := f.sim.Pay(no); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pay.CloseOrder(ctx, native.CloseOrderRequest{OutTradeNo: core.String("BILLW-CLOSED"), Mchid: core.String(k.WechatMchID)}); err != nil {
		t.Fatal(err)
	}
	refunds := refunddomestic.RefundsApiService{Client: f.sdk}
	for _, rf := range []struct {
		no, req       string
		amount, total int64
	}{{"BILLW-PART", "RW-1", 525, 2050}, {"BILLW-FULL", "RW-2", 100, 301}, {"BILLW-FULL", "RW-3", 201, 301}} {
		if _, _, err := refunds.Create(ctx, refunddomestic.CreateRequest{OutTradeNo: core.String(rf.no), OutRefundNo: core.String(rf.req),
			Amount: &refunddomestic.AmountReq{Refund: core.Int64(rf.amount), Total: core.Int64(rf.total), Currency: core.String("CNY")}}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for settled := false; !settled; {
		settled = true
		for _, r := range f.sim.Refunds() {
			settled = settled && r.Status == "SUCCESS"
		}
		if time.Now().After(deadline) {
			t.Fatal("refunds did not settle")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func sha1Hex(b []byte) string { h := sha1.Sum(b); return hex.EncodeToString(h[:]) }

func TestWechatBillOfAMixedDayIsReadLineByLineAndEqualsPaysim(t *testing.T) {
	f := newBillFixture(t)
	billtest.FetchMatchesPaysim(t, f.sim, paysim.ProviderWechat, f.a.FetchBill, f.mixedDay)

	// The control API's file is the same bill.
	var buf bytes.Buffer
	if err := f.sim.WriteBill(&buf, paysim.ProviderWechat, today()); err != nil {
		t.Fatal(err)
	}
	r, err := ParseBill(bytes.NewReader(buf.Bytes()), "SHA1", sha1Hex(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	billtest.MatchesPaysim(t, f.sim, paysim.ProviderWechat, r)
}

// TestWechatBillNotThereIsNotReadyAndACorruptOneIsBad: a day without trades
// (NO_STATEMENT_EXIST) and bill_not_ready (STATEMENT_CREATING) are not
// ready; a file whose SHA1 is not the signed answer's is a bad bill; a
// system error is neither.
func TestWechatBillNotThereIsNotReadyAndACorruptOneIsBad(t *testing.T) {
	f := newBillFixture(t)
	billtest.FetchRefusals(t, f.sim, "wechat.bill", f.a.FetchBill, f.mixedDay, "SHA1")
	f.sim.SetFault(paysim.Fault{Operation: "wechat.bill", Mode: paysim.FaultError})
	var ae *core.APIError
	if _, err := f.a.FetchBill(context.Background(), today()); errors.Is(err, bill.ErrNotReady) || !errors.As(err, &ae) || ae.StatusCode != 500 {
		t.Fatalf("a system error: %v", err)
	}
}

func parseBytes(b []byte, hashType, hash string) ([]bill.Line, error) {
	r, err := ParseBill(bytes.NewReader(b), hashType, hash)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return readAll(r)
}

func TestWechatBadBillsAreRefusedNeverReadAsComplete(t *testing.T) {
	f := newBillFixture(t)
	f.mixedDay(t)
	var buf bytes.Buffer
	if err := f.sim.WriteBill(&buf, paysim.ProviderWechat, today()); err != nil {
		t.Fatal(err)
	}
	good := buf.String()
	lines := strings.Split(good, "\r\n")
	header, firstRow := lines[0], lines[1]
	refundRow := lines[len(lines)-4]
	edit := func(old, new string) string {
		if !strings.Contains(good, old) {
			t.Fatalf("%q not in the bill", old)
		}
		return strings.Replace(good, old, new, 1)
	}
	dropLastColumn := strings.NewReplacer(",费率备注\r\n", "\r\n", ",`\r\n", "\r\n").Replace(good)

	cases := []struct {
		name, file, want string
		hashType, hash   string // "" = the file's own SHA1
	}{
		{"content changed under the signed hash", edit(firstRow, strings.Replace(firstRow, "`BILLW-", "`BILLX-", 1)), "SHA1", "SHA1", sha1Hex([]byte(good))},
		{"a hash type other than SHA1", good, "hash_type", "MD5", sha1Hex([]byte(good))},
		{"a hash value that is not 40 hex digits", good, "hash_value", "SHA1", "abc"},
		{"an empty file", "", "header", "", ""},
		{"unknown column", edit(",费率备注", ",备注"), "unknown column", "", ""},
		{"missing column", dropLastColumn, "missing column", "", ""},
		{"the pre-2019 header", edit(header, strings.Replace(header, "订单金额,申请退款金额,费率备注", "总金额,企业红包金额,费率备注", 1)), "unknown column", "", ""},
		{"a row with a field too many", edit(firstRow, firstRow+",`x"), "28 fields", "", ""},
		{"a row without its backticks", edit(firstRow, strings.ReplaceAll(firstRow, "`", "")), "summary header", "", ""},
		{"unknown 交易状态", edit(",`SUCCESS,`OTHERS", ",`CLOSED,`OTHERS"), "交易状态", "", ""},
		{"a refund without 退款状态", edit(refundRow, strings.Replace(refundRow, ",`SUCCESS,", ",`,", 1)), "退款状态", "", ""},
		{"an amount that is not yuan", edit(firstRow, strings.Replace(firstRow, ",`10.00,", ",`10.001,", 1)), "invalid amount", "", ""},
		{"a payment of nothing", edit(firstRow, strings.Replace(firstRow, ",`0.60%,`10.00,", ",`0.60%,`0.00,", 1)), "amount", "", ""},
		{"summary count disagrees", edit("\r\n`6,`", "\r\n`7,`"), "summary", "", ""},
		{"summary amount disagrees", edit(",`33.51,`8.26\r\n", ",`33.52,`8.26\r\n"), "summary", "", ""},
		{"summary fee disagrees", edit(",`0.15150,", ",`0.15151,"), "summary", "", ""},
		{"a row less", edit(firstRow+"\r\n", ""), "summary", "", ""},
		{"no summary", good[:strings.Index(good, "总交易单数")], "summary", "", ""},
		{"a summary header without its row", strings.TrimSuffix(good, lines[len(lines)-2]+"\r\n"), "summary", "", ""},
		{"text after the summary", good + firstRow + "\r\n", "after", "", ""},
		{"a blank line among the rows", edit(firstRow+"\r\n", firstRow+"\r\n\r\n"), "blank", "", ""},
		{"a line of two megabytes", edit(firstRow, firstRow+strings.Repeat("x", 2<<20)), "too long", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			typ, hash := c.hashType, c.hash
			if typ == "" {
				typ, hash = "SHA1", sha1Hex([]byte(c.file))
			}
			lines, err := parseBytes([]byte(c.file), typ, hash)
			if err == nil {
				t.Fatalf("accepted as complete with %d lines", len(lines))
			}
			if !errors.Is(err, bill.ErrBadBill) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q, want ErrBadBill mentioning %q", err, c.want)
			}
			t.Log(err)
		})
	}
	// Accepted: the hash in upper case, and a file without the BOM.
	if _, err := parseBytes([]byte(good), "SHA1", strings.ToUpper(sha1Hex([]byte(good)))); err != nil {
		t.Errorf("upper-case hash: %v", err)
	}
	noBOM := strings.TrimPrefix(good, "\xEF\xBB\xBF")
	if _, err := parseBytes([]byte(noBOM), "SHA1", sha1Hex([]byte(noBOM))); err != nil {
		t.Errorf("no BOM: %v", err)
	}
}

// FuzzWechatBill: whatever the bytes, no panic; what is accepted as
// complete is consistent with itself.
func FuzzWechatBill(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "bills", "*.csv"))
	for _, p := range seeds {
		b, _ := os.ReadFile(p)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		billtest.CheckFuzzed(t, func() (bill.Reader, error) {
			r, err := ParseBill(bytes.NewReader(data), "SHA1", sha1Hex(data))
			if err != nil {
				return nil, err
			}
			return r, nil
		}, func(l bill.Line) bool { return l.State != "" && (l.Kind == bill.Refund) == (l.RefundNo != "") })
	})
}
