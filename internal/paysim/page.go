package paysim

import (
	"encoding/base64"
	"html/template"
	"net/http"
	"net/url"

	qrcode "github.com/skip2/go-qrcode"
)

// The page at /_sim/ lets a person trying the demo "scan" a trade's QR code
// and pay it with one click.

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>paysim</title>
<meta http-equiv="refresh" content="5">
<style>
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.4em .6em;vertical-align:middle}
.alipay{color:#1677ff}.wechat{color:#07c160}form{display:inline}
</style></head><body>
<h1>paysim — simulated Alipay and WeChat Pay</h1>
<p>Each trade's QR code is what the buyer would scan. "Pay" scans and pays; the provider's notification then goes to the trade's notify_url.</p>
{{if not .Trades}}<p><em>No trades yet.</em></p>{{else}}
<table><tr><th>provider</th><th>out_trade_no</th><th>subject</th><th>amount (yuan)</th><th>state</th><th>QR code</th><th></th></tr>
{{range .Trades}}<tr>
<td class="{{.Provider}}">{{.Provider}}</td><td>{{.OutTradeNo}}</td><td>{{.Subject}}</td><td>{{.Total}}</td><td>{{.State}}</td>
<td>{{if .QRImage}}<img alt="{{.QRCode}}" title="{{.QRCode}}" width="128" height="128" src="{{.QRImage}}">{{end}}</td>
<td>{{if .Payable}}<form method="post" action="{{.PayURL}}"><input type="hidden" name="redirect" value="1"><button>pay</button></form>{{else if .QRExpired}}QR code expired{{end}}</td>
</tr>{{end}}</table>{{end}}
<h2>Calls</h2><ul>{{range .Calls}}<li>{{.Op}}: {{.N}}</li>{{end}}</ul>
<p>JSON: <a href="/_sim/trades">trades</a> · <a href="/_sim/refunds">refunds</a> · <a href="/_sim/notifications">notifications</a> · <a href="/_sim/calls">calls</a></p>
</body></html>`))

type pageTrade struct {
	Trade
	QRImage   template.URL
	Payable   bool
	QRExpired bool // open, not scanned, past its scan window
	PayURL    string
}

func (s *Sim) servePage(w http.ResponseWriter, r *http.Request) {
	trades, now := s.Trades(), s.Now()
	rows := make([]pageTrade, 0, len(trades))
	for i := len(trades) - 1; i >= 0; i-- { // newest first
		t := trades[i]
		row := pageTrade{Trade: t, PayURL: "/_sim/trades/" + url.PathEscape(t.OutTradeNo) + "/pay?provider=" + t.Provider}
		open := t.State == StateQRIssued || t.State == AlipayWaitBuyerPay || t.State == WechatNotPay
		row.QRExpired = open && !t.Scanned && !now.Before(t.QRExpiresAt)
		row.Payable = open && !row.QRExpired
		if png, err := qrcode.Encode(t.QRCode, qrcode.Medium, 256); err == nil {
			// A data: URI built here from PNG bytes is safe to mark as a URL.
			row.QRImage = template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(png))
		}
		rows = append(rows, row)
	}
	calls := s.Calls()
	type opCount struct {
		Op string
		N  int
	}
	var cs []opCount
	for _, op := range sortedOps(calls) {
		cs = append(cs, opCount{op, calls[op]})
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = pageTmpl.Execute(w, map[string]any{"Trades": rows, "Calls": cs})
}
