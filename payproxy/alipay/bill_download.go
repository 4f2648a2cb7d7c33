package alipay

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"time"

	sdk "github.com/smartwalle/alipay/v3"

	"github.com/tollgate/tollgate/payproxy/bill"
)

// billNotExist is the sub_code of Alipay's "no bill" answer, for a day
// without trades and for a bill not generated yet alike (live reports; the
// OpenAPI spec's BILL_NOT_EXIST never appears).
const billNotExist = "isp.bill_not_exist"

// maxBillZip bounds a downloaded bill: about eight million lines.
const maxBillZip = 2 << 30

// BillDownloadURL is the first step: alipay.data.dataservice.bill.downloadurl.query
// for the trade bill of date (yyyy-MM-dd, Beijing time). The link it
// returns dies 30 seconds later. "No bill" comes back as bill.ErrNotReady,
// signed or not: the SDK hands an unsigned answer back as *sdk.Error, and
// one live report saw this one unsigned; believing an unsigned "not ready"
// costs only a later retry.
func (a *Adapter) BillDownloadURL(ctx context.Context, date string) (string, error) {
	if _, err := time.ParseInLocation("2006-01-02", date, chinaTZ); err != nil {
		return "", fmt.Errorf("alipay bill date %q: want yyyy-MM-dd", date)
	}
	rsp, err := a.client.BillDownloadURLQuery(ctx, sdk.BillDownloadURLQuery{BillType: "trade", BillDate: date})
	var unsigned *sdk.Error
	switch {
	case errors.As(err, &unsigned) && unsigned.SubCode == billNotExist:
		return "", bill.ErrNotReady
	case err != nil:
		return "", fmt.Errorf("alipay bill url: %w", err)
	case rsp.SubCode == billNotExist:
		return "", bill.ErrNotReady
	case !rsp.IsSuccess():
		return "", fmt.Errorf("alipay bill url: %s %s: %s", rsp.Code, rsp.SubCode, rsp.SubMsg)
	}
	u, err := url.Parse(rsp.BillDownloadURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", errors.New("alipay bill url: the answer's bill_download_url is not an http(s) URL")
	}
	return rsp.BillDownloadURL, nil
}

// FetchBill fetches the trade bill of date and opens it: the first step,
// then the zip into a temporary file (a zip is read from its end; the
// file is removed on Close, or at once on an error). ctx bounds the whole
// download: the adapter's HTTP client keeps its transport but not its
// per-request timeout, meant for API calls, not for a file of a million
// lines. The bill must be of the day asked for.
func (a *Adapter) FetchBill(ctx context.Context, date string) (bill.Reader, error) {
	link, err := a.BillDownloadURL(ctx, date)
	if err != nil {
		return nil, err
	}
	tmp, err := downloadToTemp(ctx, a.cfg.HTTPClient, link)
	if err != nil {
		return nil, err
	}
	st, err := tmp.Stat()
	var r *BillReader
	if err == nil {
		r, err = OpenBill(tmp, st.Size())
	}
	if err == nil && r.Day().Format("2006-01-02") != date {
		r.Close()
		err = bill.Bad("asked for the bill of %s, got the bill of %s", date, r.Day().Format("2006-01-02"))
	}
	if err != nil {
		bill.Discard(tmp)
		return nil, err
	}
	r.closers = append(r.closers, func() error { return bill.Discard(tmp) })
	return r, nil
}

// downloadToTemp GETs link (no authentication: the token in the link is
// the credential) into a new temporary file.
func downloadToTemp(ctx context.Context, base *http.Client, link string) (*os.File, error) {
	hc := &http.Client{}
	if base != nil {
		*hc = *base
		hc.Timeout = 0
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, link, nil)
	if err != nil {
		return nil, fmt.Errorf("alipay bill download: %w", err)
	}
	// A CDN may refuse Go's default User-Agent (one integration's note).
	req.Header.Set("User-Agent", "tollgate")
	resp, err := hc.Do(req)
	if err != nil {
		// The URL carries the download token: keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("alipay bill download: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("alipay bill download: HTTP %d", resp.StatusCode)
	}
	return bill.Spool(resp.Body, "tollgate-alipay-bill-*.zip", maxBillZip)
}
