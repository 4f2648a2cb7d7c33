package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	qrcode "github.com/skip2/go-qrcode"
)

// paymentSteps walks payproxy on the courier site: one trade per order,
// paid at the simulator, confirmed by notification, forwarded by webhook,
// refunded within the paid amount.
func (d *demo) paymentSteps() {
	fmt.Println("\n── Payment at the edge (payproxy, paysim) ──")
	orderNo := fmt.Sprintf("SL%d", time.Now().UnixMilli())
	var courier, tradeNo string
	auth := func() map[string]string { return map[string]string{"Authorization": "Bearer " + courier} }

	d.step("A courier logs in", func() error {
		e := d.do("POST", d.courier+"/courier/login", nil, map[string]string{"phone": "13900139000"})
		courier = str(e.json(), "access_token")
		return want(e.status == 200 && courier != "", "want 200 with an access token, got %d", e.status)
	})
	d.step("The courier creates an Alipay QR payment for order "+orderNo+" (the amount comes from the order service)", func() error {
		e := d.do("POST", d.courier+"/pay/trades", auth(), map[string]any{"order_no": orderNo, "channel": "alipay"})
		m := e.json()
		tradeNo = str(m, "trade_no")
		if e.status != 200 || tradeNo == "" || str(m, "qr_code") == "" {
			return fmt.Errorf("want 200 with trade_no and qr_code, got %d", e.status)
		}
		if amt, _ := m["amount_fen"].(float64); amt != 2350 {
			return fmt.Errorf("want amount_fen 2350 from the order service, got %v", m["amount_fen"])
		}
		printQR(str(m, "qr_code"))
		return nil
	})
	d.step("A second identical request returns the same trade (no second trade at the provider)", func() error {
		e := d.do("POST", d.courier+"/pay/trades", auth(), map[string]any{"order_no": orderNo, "channel": "alipay"})
		return want(e.status == 200 && str(e.json(), "trade_no") == tradeNo,
			"want the same trade_no %s, got %d %s", tradeNo, e.status, str(e.json(), "trade_no"))
	})
	d.step("The QR code as a PNG file", func() error {
		h := auth()
		h["Accept"] = "image/png"
		e := d.do("POST", d.courier+"/pay/trades", h, map[string]any{"order_no": orderNo, "channel": "alipay"})
		if e.status != 200 || !strings.HasPrefix(e.header.Get("Content-Type"), "image/png") {
			return fmt.Errorf("want 200 image/png, got %d %s", e.status, e.header.Get("Content-Type"))
		}
		path := filepath.Join(d.outDir, orderNo+".png")
		if err := os.WriteFile(path, e.body, 0o644); err != nil {
			return err
		}
		fmt.Println("    QR code written to", path)
		return nil
	})
	d.step("The buyer scans and pays at the simulated Alipay", func() error {
		e := d.do("POST", d.paysim+"/_sim/trades/"+tradeNo+"/pay", nil, nil)
		return want(e.status == 200, "want 200, got %d", e.status)
	})
	d.step("Alipay's signed notification arrives: the trade is PAID", func() error {
		return d.poll(func() (bool, string) {
			e := d.quiet("GET", d.courier+"/pay/trades/"+orderNo, auth())
			return str(e.json(), "state") == "PAID", string(e.body)
		})
	})
	d.step("The backend's webhook receiver got a verified trade.paid event", func() error {
		return d.poll(func() (bool, string) {
			e := d.quiet("GET", d.backend+"/webhooks/received", nil)
			s := string(e.body)
			return strings.Contains(s, `"trade.paid"`) && strings.Contains(s, orderNo), s
		})
	})
	refundNo := "RF" + orderNo
	d.step("A courier cannot refund: the public route does not serve refunds", func() error {
		e := d.do("POST", d.courier+"/pay/refunds", auth(), map[string]any{
			"order_no": orderNo, "refund_no": refundNo, "amount_fen": 1000, "reason": "damaged parcel"})
		return want(e.status == 404 && str(e.json(), "error") == "not_found", "want 404 not_found, got %d %s", e.status, e.body)
	})
	service, err := d.serviceToken()
	if err != nil {
		d.step("The payments backend's service token", func() error { return err })
		return
	}
	backend := func() map[string]string { return map[string]string{"Authorization": "Bearer " + service} }
	d.step("The backend refunds 10.00 yuan on the internal payments site", func() error {
		e := d.do("POST", d.internal+"/pay/refunds", backend(), map[string]any{
			"order_no": orderNo, "refund_no": refundNo, "amount_fen": 1000, "reason": "damaged parcel"})
		if e.status != 200 {
			return fmt.Errorf("want 200, got %d", e.status)
		}
		return d.poll(func() (bool, string) {
			e := d.quiet("GET", d.internal+"/pay/refunds/"+refundNo, backend())
			return str(e.json(), "state") == "SUCCESS", string(e.body)
		})
	})
	d.step("An over-refund (20.00 more of 23.50 paid) is refused", func() error {
		e := d.do("POST", d.internal+"/pay/refunds", backend(), map[string]any{
			"order_no": orderNo, "refund_no": refundNo + "-2", "amount_fen": 2000, "reason": "too much"})
		return want(e.status == 409 && str(e.json(), "error") == "refund_exceeds_paid",
			"want 409 refund_exceeds_paid, got %d %s", e.status, e.body)
	})
}

// serviceToken mints the payments backend's access token (role
// payments), as the platform's auth service would, with the demo's key.
func (d *demo) serviceToken() (string, error) {
	pemBytes, err := os.ReadFile(d.serviceKey)
	if err != nil {
		return "", fmt.Errorf("reading the signing key: %w", err)
	}
	key, err := jwt.ParseECPrivateKeyFromPEM(pemBytes)
	if err != nil {
		return "", fmt.Errorf("the signing key: %w", err)
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
		"userId": "payments-backend", "roles": []string{"payments"}, "exp": time.Now().Add(5 * time.Minute).Unix(),
		"iss": "https://auth.internal", "aud": "payments-internal",
	})
	tok.Header["kid"] = "key-1"
	return tok.SignedString(key)
}

// quiet is do without printing: for polling loops.
func (d *demo) quiet(method, url string, headers map[string]string) exchange {
	saved := os.Stdout
	os.Stdout, _ = os.Open(os.DevNull)
	defer func() { os.Stdout = saved }()
	return d.do(method, url, headers, nil)
}

// poll retries check for up to ten seconds.
func (d *demo) poll(check func() (bool, string)) error {
	var last string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		ok, seen := check()
		if ok {
			fmt.Printf("    ← %s\n", compact("application/json", []byte(seen)))
			return nil
		}
		last = seen
	}
	return fmt.Errorf("not reached after 10s; last answer: %s", short(last, 200))
}

// printQR draws the code with half blocks, two modules per character row,
// so a phone can scan it from the terminal.
func printQR(content string) {
	q, err := qrcode.New(content, qrcode.Medium)
	if err != nil {
		fmt.Println("    (QR code could not be drawn:", err, ")")
		return
	}
	bits := q.Bitmap()
	for y := 0; y < len(bits); y += 2 {
		var b strings.Builder
		b.WriteString("    ")
		for x := range bits[y] {
			top := bits[y][x]
			bottom := y+1 < len(bits) && bits[y+1][x]
			switch {
			case top && bottom:
				b.WriteString(" ")
			case top:
				b.WriteString("▄")
			case bottom:
				b.WriteString("▀")
			default:
				b.WriteString("█")
			}
		}
		fmt.Println(b.String())
	}
	fmt.Println("    " + content)
}
