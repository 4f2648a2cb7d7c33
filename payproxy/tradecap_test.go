package payproxy_test

import (
	"context"
	"testing"
)

// TestOneClientCannotGrowAnOrdersRecordWithoutBound: the public route
// serves create, and create takes the channel from the client. Each switch
// of channel retires the order's open trade (close and query at the
// provider, then a new trade there) and keeps it in the order's :trades
// hash for good, which every poll of the order reads whole (HGETALL). A
// client switching channels on its own order must not grow that record,
// nor the provider calls, without bound: after 100 switches, 100 more add
// nothing.
func TestOneClientCannotGrowAnOrdersRecordWithoutBound(t *testing.T) {
	e := newEnv(t)
	e.options["poll_interval"] = "1h"
	e.start()
	c, ctx := e.redis.Client(), context.Background()
	key := "tollgate:pay:{o:GROW_SWITCH_1}:trades"
	switches := func(n int) {
		for i := 0; i < n; i++ {
			ch := []string{"alipay", "wechat"}[i%2]
			if r := e.create("GROW_SWITCH_1", ch, 100); r.Status != 200 {
				// Refused: bounded, with its own code and nothing changed.
				wantStatus(t, r, 409, "too_many_trades")
				return
			}
		}
	}
	switches(100)
	after100 := c.HLen(ctx, key).Val()
	calls := e.sim.Calls()
	switches(100)
	after200 := c.HLen(ctx, key).Val()
	more := 0
	for op, n := range e.sim.Calls() {
		more += n - calls[op]
	}
	if after100 >= 20 {
		t.Errorf("retired trades of one order: %d, want fewer than 20", after100)
	}
	if after200 > after100 || more > 0 {
		t.Errorf("retired trades of one order: %d after 100 switches, %d after 200 (%d provider calls for the last 100 requests)",
			after100, after200, more)
	}
}
