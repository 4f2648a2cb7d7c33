package payproxy_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/paysim"
)

// Review (hostile): a close (POST /trades/{order}/close) holds the order's
// lock while the provider closes the trade, and the comments promise that
// "a concurrent create must not hand out a QR code being closed". The
// create's fast path reads the record without the lock: while the close is
// at the provider, the trade is still PAYING in Redis, live, fresh, and a
// create for the same order, channel and amount is answered 200 with that
// trade's QR code — which the close then kills. The buyer is shown a code
// that cannot be paid.
func TestACreateDuringTheOrdersCloseNeverHandsOutTheQRCodeBeingClosed(t *testing.T) {
	e := newEnv(t)
	e.start()
	for _, ch := range []string{"wechat", "alipay"} {
		t.Run(ch, func(t *testing.T) {
			order := "REV_CLOSE_RACE_" + ch
			first := e.create(order, ch, 500)
			wantStatus(t, first, http.StatusOK, "")
			tradeNo := first.str("trade_no")

			before := e.sim.Calls()[closeOp[ch]]
			e.sim.SetFault(paysim.Fault{Operation: closeOp[ch], Mode: paysim.FaultDelay, DelayMS: 1500})
			defer e.sim.SetFault(paysim.Fault{Operation: closeOp[ch], Mode: "none"})
			closed := make(chan response, 1)
			go func() { closed <- do(t, "POST", e.base+"/pay/trades/"+order+"/close", nil) }()
			eventually(t, 5*time.Second, "the close at the provider under the order's lock", func() bool {
				n, _ := e.redis.Client().Exists(context.Background(), "tollgate:pay:{o:"+order+"}:lock").Result()
				return n == 1 && e.sim.Calls()[closeOp[ch]] > before
			})

			during := e.create(order, ch, 500)
			cl := <-closed
			wantStatus(t, cl, http.StatusOK, "")
			if during.Status == http.StatusOK && during.str("trade_no") == tradeNo {
				t.Fatalf("a create during the close was answered with the trade being closed (%s, now %s at the provider): %s",
					tradeNo, e.simTrade(t, tradeNo).State, during.Raw)
			}
		})
	}
}
