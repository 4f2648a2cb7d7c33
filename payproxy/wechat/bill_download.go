package wechat

import (
	"compress/gzip"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/wechatpay-apiv3/wechatpay-go/core"
	"github.com/wechatpay-apiv3/wechatpay-go/core/consts"
	"github.com/wechatpay-apiv3/wechatpay-go/core/option"
	"github.com/wechatpay-apiv3/wechatpay-go/utils"

	"github.com/tollgate/tollgate/payproxy/bill"
)

// maxBillFile bounds a bill, uncompressed: about eight million rows.
const maxBillFile = 2 << 30

// TradeBill is the signed answer of GET /v3/bill/tradebill.
type TradeBill struct {
	HashType    string `json:"hash_type"`
	HashValue   string `json:"hash_value"` // of the uncompressed file
	DownloadURL string `json:"download_url"`
}

// TradeBill is the first step: the ALL trade bill of date (yyyy-MM-dd,
// Beijing time), gzipped. wechatpay-go v0.2.20 has no bill service, so this
// is the SDK's plain signed Get, its answer validated as any other. WeChat
// answers a day without trades and a bill not generated yet alike
// (NO_STATEMENT_EXIST, STATEMENT_CREATING): bill.ErrNotReady. Believing an
// unverified "not ready" (the SDK checks no error answer's signature)
// costs only a later retry.
func (a *Adapter) TradeBill(ctx context.Context, date string) (TradeBill, error) {
	var tb TradeBill
	if _, err := time.ParseInLocation("2006-01-02", date, chinaTZ); err != nil {
		return tb, fmt.Errorf("wechat bill date %q: want yyyy-MM-dd", date)
	}
	q := url.Values{"bill_date": {date}, "bill_type": {"ALL"}, "tar_type": {"GZIP"}}
	res, err := a.native.Client.Get(ctx, consts.WechatPayAPIServer+"/v3/bill/tradebill?"+q.Encode())
	var ae *core.APIError
	switch {
	case errors.As(err, &ae) && (ae.Code == "NO_STATEMENT_EXIST" || ae.Code == "STATEMENT_CREATING"):
		return tb, bill.ErrNotReady
	case err != nil:
		return tb, fmt.Errorf("wechat tradebill: %w", err)
	}
	if err := core.UnMarshalResponse(res.Response, &tb); err != nil {
		return tb, fmt.Errorf("wechat tradebill: %w", err)
	}
	return tb, nil
}

// FetchBill fetches the trade bill of date and opens it: the first step;
// the download (signed request, unsigned answer, so a client without
// response validation) gunzipped into a temporary file while its SHA1 is
// checked against the signed answer's, so no line is handed out of a file
// that fails it; then the parser, which hashes again as it reads. The file
// is removed on Close, or at once on an error. ctx bounds the whole
// download: the adapter's per-request timeout is meant for API calls.
func (a *Adapter) FetchBill(ctx context.Context, date string) (bill.Reader, error) {
	tb, err := a.TradeBill(ctx, date)
	if err != nil {
		return nil, err
	}
	// The download request carries our signature: only to WeChat's hosts
	// (the transport then sends them wherever base_url says).
	if !strings.HasPrefix(tb.DownloadURL, consts.WechatPayAPIServer+"/") && !strings.HasPrefix(tb.DownloadURL, consts.WechatPayAPIServerBackup+"/") {
		return nil, errors.New("wechat tradebill: download_url is not on api.mch.weixin.qq.com")
	}
	if tb.HashType != "SHA1" {
		return nil, bill.Bad("hash_type %q, want SHA1", tb.HashType)
	}
	c, err := a.downloadClient(ctx)
	if err != nil {
		return nil, err
	}
	res, err := c.Get(ctx, tb.DownloadURL)
	if err != nil {
		// The URL holds the download token: keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("wechat bill download: %w", err)
	}
	defer res.Response.Body.Close()
	zr, err := gzip.NewReader(res.Response.Body)
	if err != nil {
		return nil, bill.Bad("the download is not gzip: %v", err)
	}
	h := sha1.New()
	tmp, err := bill.Spool(io.TeeReader(zr, h), "tollgate-wechat-bill-*.csv", maxBillFile)
	if err != nil {
		return nil, err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != strings.ToLower(tb.HashValue) {
		bill.Discard(tmp)
		return nil, bill.Bad("the file's SHA1 is %s, the signed answer said %s", got, tb.HashValue)
	}
	r, err := ParseBill(tmp, tb.HashType, tb.HashValue)
	if err != nil {
		bill.Discard(tmp)
		return nil, err
	}
	r.closers = append(r.closers, func() error { return bill.Discard(tmp) })
	return r, nil
}

// downloadClient signs like the adapter's client but validates no answer
// ("请求需签名但应答不签名"; WithoutValidator must come after the auth
// option, which sets a validator) and has no per-request timeout.
func (a *Adapter) downloadClient(ctx context.Context) (*core.Client, error) {
	priv, err := utils.LoadPrivateKey(a.cfg.PrivateKeyPEM)
	if err != nil {
		return nil, fmt.Errorf("wechat private_key: %w", err)
	}
	pub, err := utils.LoadPublicKey(a.cfg.PlatformPublicKeyPEM)
	if err != nil {
		return nil, fmt.Errorf("wechat platform_public_key: %w", err)
	}
	hc, err := rewritingClient(a.cfg.HTTPClient, a.cfg.BaseURL)
	if err != nil {
		return nil, err
	}
	hc.Timeout = 0
	return core.NewClient(ctx,
		option.WithWechatPayPublicKeyAuthCipher(a.cfg.MchID, a.cfg.SerialNo, priv, a.cfg.PlatformPublicKeyID, pub),
		option.WithHTTPClient(hc), option.WithoutValidator())
}
