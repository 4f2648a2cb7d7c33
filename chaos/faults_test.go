//go:build chaos

package chaos

import (
	"os"
	"strings"
	"time"

	"github.com/tollgate/tollgate/internal/paysim"
)

// timing scales the run: CI=true is the shortened run (< 5 minutes on two
// cores), otherwise the full one (10–20 minutes).
type timing struct {
	phase      time.Duration // load per phase (longer if the fault needs it)
	lead       time.Duration // load before the fault is injected
	tail       time.Duration // load after the fault ends
	window     time.Duration // how long a paysim fault stays armed
	redisDown  time.Duration
	hooksDown  time.Duration
	settle     time.Duration // bound of the wait for the system to settle
	orderers   int
	refreshers int
}

func timings() timing {
	if os.Getenv("CI") == "true" {
		return timing{phase: 12 * time.Second, lead: 3 * time.Second, tail: 3 * time.Second, window: 6 * time.Second,
			redisDown: 3 * time.Second, hooksDown: 15 * time.Second, settle: 60 * time.Second, orderers: 4, refreshers: 4}
	}
	return timing{phase: 75 * time.Second, lead: 15 * time.Second, tail: 15 * time.Second, window: 40 * time.Second,
		redisDown: 10 * time.Second, hooksDown: 60 * time.Second, settle: 120 * time.Second, orderers: 6, refreshers: 6}
}

// fault is one injected failure; inject runs on the test goroutine (it may
// start processes) and returns when the fault is over.
type fault struct {
	name   string
	inject func(w *world, tm timing)
}

func faults() []fault {
	return []fault{
		{"none (baseline)", func(*world, timing) {}},
		{"kill -9 tollgate mid-payments", killInstance},
		{"redis stop + restart", restartRedis},
		{"paysim delay (1.5s/3s)", simFault(paysim.FaultDelay)},
		{"paysim 5xx (error)", simFault(paysim.FaultError)},
		{"paysim reset", simFault(paysim.FaultReset)},
		{"paysim drop_response", simFault(paysim.FaultDropResponse)},
		{"paysim ignore on close", ignoreClose},
		{"paysim unsigned_error on every operation", unsignedErrors},
		{"paysim duplicate notifications", notifyFault(paysim.FaultDuplicate, 0)},
		{"paysim delay on notifications (2s/5s)", notifyFault(paysim.FaultDelay, 2000)},
		{"paysim rate_limited on every operation", everyOpFault(paysim.FaultRateLimited)},
		{"paysim bad_signature on every operation", everyOpFault(paysim.FaultBadSignature)},
		{"webhook receiver down", hooksDown},
		{"config reload under traffic", reload},
	}
}

// killInstance kills one process with SIGKILL while payments run; the load
// balancer notices a moment later; a replacement joins after two seconds.
func killInstance(w *world, _ timing) {
	victim := w.live()[0]
	victim.proc.Kill()
	time.Sleep(500 * time.Millisecond)
	w.removeInstance(victim)
	time.Sleep(2 * time.Second)
	w.addInstance()
}

// restartRedis kills redis-server (no final save: only the AOF with
// appendfsync always keeps the data) and starts it again on its port.
func restartRedis(w *world, tm timing) {
	w.redis.Stop()
	time.Sleep(tm.redisDown)
	w.redis.Restart()
}

// simOps are the create, query and refund operations of both providers.
var simOps = []string{
	"alipay.trade.precreate", "wechat.native.prepay",
	"alipay.trade.query", "wechat.query",
	"alipay.trade.refund", "wechat.refund",
}

// simFault keeps a few uses of mode armed on every create/query/refund
// operation for the window, so that some calls fail and others pass.
func simFault(mode string) func(*world, timing) {
	return func(w *world, tm timing) {
		armFor(w, tm, simOps, func(op string, i int) paysim.Fault {
			f := paysim.Fault{Operation: op, Mode: mode, Count: 2}
			if mode == paysim.FaultDelay {
				f.DelayMS = 1500
				if i%2 == 1 {
					f.DelayMS = 3000 // beyond provider_timeout (2s)
				}
			}
			return f
		})
	}
}

// closeOps are the operations that stop a trade at each provider.
var closeOps = []string{"wechat.close", "alipay.trade.close", "alipay.trade.cancel"}

// ignoreClose keeps closes answering success without taking effect for
// the window: QR codes the load moves away from stay payable, and some
// buyers pay them.
func ignoreClose(w *world, tm timing) {
	armFor(w, tm, closeOps, func(op string, _ int) paysim.Fault {
		return paysim.Fault{Operation: op, Mode: paysim.FaultIgnore, Count: 2}
	})
}

// unsignedErrors keeps a few unsigned error answers armed on every
// operation of both providers for the window, with statuses a hop in front
// of a provider sends and the code that would do most harm if believed:
// "already paid".
func unsignedErrors(w *world, tm timing) {
	statuses := []int{400, 408, 403}
	armFor(w, tm, paysim.Operations, func(op string, i int) paysim.Fault {
		code := "ORDERPAID"
		if strings.HasPrefix(op, "alipay.") {
			code = "ACQ.TRADE_HAS_SUCCESS"
		}
		return paysim.Fault{Operation: op, Mode: paysim.FaultUnsignedError, Count: 2, Status: statuses[i%len(statuses)], Code: code}
	})
}

// notifyFault keeps a few uses of mode armed on both providers'
// notifications for the window: duplicate sends acknowledged ones again
// (same notify_id / event id); delay holds some back (delayMS, or 2.5
// times that every other second), so later ones overtake them — a
// payment's after its refund's, one refund's after another's.
func notifyFault(mode string, delayMS int) func(*world, timing) {
	return func(w *world, tm timing) {
		armFor(w, tm, paysim.NotifyOperations, func(op string, i int) paysim.Fault {
			f := paysim.Fault{Operation: op, Mode: mode, Count: 5, DelayMS: delayMS}
			if i%2 == 1 {
				f.DelayMS = delayMS * 5 / 2
			}
			return f
		})
	}
}

// tradeOps are every trade operation of both providers (not the bills).
func tradeOps() []string {
	var out []string
	for _, op := range paysim.Operations {
		if !strings.HasSuffix(op, ".bill") {
			out = append(out, op)
		}
	}
	return out
}

// everyOpFault keeps a few uses of mode armed on every trade operation of
// both providers for the window: rate_limited (WeChat's signed 429;
// Alipay's 40005, unsigned or, every other second, signed), or
// bad_signature (the work done, the answer's signature broken).
func everyOpFault(mode string) func(*world, timing) {
	return func(w *world, tm timing) {
		armFor(w, tm, tradeOps(), func(op string, i int) paysim.Fault {
			f := paysim.Fault{Operation: op, Mode: mode, Count: 2}
			if mode == paysim.FaultRateLimited && i%2 == 1 && strings.HasPrefix(op, "alipay.") {
				f.Shape = paysim.ShapeSigned
			}
			return f
		})
	}
}

// armFor re-arms a fault on each of ops every second for the window, then
// clears them.
func armFor(w *world, tm timing, ops []string, fault func(op string, round int) paysim.Fault) {
	end := time.Now().Add(tm.window)
	for i := 0; time.Now().Before(end); i++ {
		for _, op := range ops {
			w.sim.SetFault(fault(op, i))
		}
		time.Sleep(time.Second)
	}
	for _, op := range ops {
		w.sim.SetFault(paysim.Fault{Operation: op, Mode: "none"})
	}
}

// hooksDown refuses the webhook's connections for a while.
func hooksDown(w *world, tm timing) {
	w.hooks.down()
	time.Sleep(tm.hooksDown)
	w.hooks.up()
}

// reload changes poll_interval on every instance with `tollgate reload`,
// twice, while the load runs.
func reload(w *world, tm timing) {
	for i := range 2 {
		w.pollIvl = []string{"300ms", "200ms"}[i]
		for _, in := range w.live() {
			in.proc.Reload(w.site(in.port))
		}
		time.Sleep(tm.window / 4)
	}
}
