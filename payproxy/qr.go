package payproxy

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// QR codes die before their trades. Alipay: "预下单请求生成的二维码有效时间
// 为2小时"; WeChat Native: "code_url有效期为2小时，过期后扫码不能再发起支付"
// — whatever the trade's own timeout, a scan after two hours fails while
// the trade is still open. payproxy hands a code out for qr_lifetime after
// the provider issued it (its issue time is bounded from below: the
// trade's creation for the first code, the first attempt to renew for a
// renewed one, so payproxy never thinks a code younger than it is). Past
// it, a create asks the provider for the trade's code again: a different
// code is a fresh one, recorded and handed out on the same trade; the same
// code means the provider will not renew it (its window is not over there
// yet, or it never renews), and the trade is replaced by a new one after
// its close is confirmed, as any trade is. The status endpoint shows no
// code past qr_lifetime.

// qrScanWindow is how long both providers let a QR code be scanned.
const qrScanWindow = 2 * time.Hour

// defaultQRLifetime leaves a buyer handed the last code ten minutes to
// scan it.
const defaultQRLifetime = qrScanWindow - 10*time.Minute

// qrIssuedAt is the earliest the provider can have issued the trade's
// current code.
func (t *tradeRecord) qrIssuedAt() time.Time {
	if t.QRIssuedAt.IsZero() {
		return t.CreatedAt
	}
	return t.QRIssuedAt
}

// qrFresh reports whether the trade's code may still be handed out.
func (p *PayProxy) qrFresh(t *tradeRecord, now time.Time) bool {
	return now.Sub(t.qrIssuedAt()) < time.Duration(p.QRLifetime)
}

// shownTrade is the trade as the status endpoint shows it: without its
// code once the code is past qr_lifetime (a create hands out a fresh one).
func (p *PayProxy) shownTrade(t *tradeRecord, now time.Time) *tradeRecord {
	if t.State != StatePaying || p.qrFresh(t, now) {
		return t
	}
	shown := *t
	shown.QRCode = ""
	return &shown
}

// renew asks the provider again for the code of a PAYING trade whose code
// is past qr_lifetime. A fresh code is recorded and the trade answered
// (done); the same code is not done: the caller replaces the trade.
func (p *PayProxy) renew(ctx context.Context, t *tradeRecord) (*tradeRecord, bool, error) {
	since, err := p.store.renewing(ctx, t.OrderNo, t.TradeNo, time.Now())
	if err != nil {
		return nil, true, err
	}
	qr, err := p.askQR(ctx, t)
	if err != nil {
		return nil, true, p.providerFailure(ctx, t, err)
	}
	if qr == t.QRCode {
		p.logger.Info("the provider did not renew a QR code past qr_lifetime; the trade is replaced",
			zap.String("order_no", t.OrderNo), zap.String("trade_no", t.TradeNo))
		return nil, false, nil
	}
	nt, err := p.recordQR(ctx, t, qr, since)
	return nt, true, err
}

// qrRenewingScript records when the first attempt to renew the current
// code of trade_no began (kept until a code is recorded) and returns it;
// 0 if the order's trade is another one now.
//
// KEYS: trade. ARGV: trade_no, now_ms.
var qrRenewingScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'trade_no') ~= ARGV[1] then return 0 end
redis.call('HSETNX', KEYS[1], 'qr_renewing_at', ARGV[2])
return tonumber(redis.call('HGET', KEYS[1], 'qr_renewing_at'))
`)

// renewing returns when the first attempt to renew the trade's code
// began: a code the provider renewed during an attempt whose answer was
// lost is as old as that attempt.
func (s *tradeStore) renewing(ctx context.Context, order, tradeNo string, now time.Time) (time.Time, error) {
	ms, err := qrRenewingScript.Run(ctx, s.rdb, []string{tradeKey(order)}, tradeNo, now.UnixMilli()).Int64()
	if err != nil {
		return time.Time{}, fmt.Errorf("recording the renewal of trade %s's QR code: %w", tradeNo, err)
	}
	if ms == 0 {
		return time.Time{}, errChanged
	}
	return time.UnixMilli(ms), nil
}
