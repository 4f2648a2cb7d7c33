package payproxy

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/testredis"
)

// TestAllocationNeverReplacesATradePaidSinceItWasRead: decide reads the
// order's trade CLOSED; before its allocation the trade is paid after all
// (a notification on another instance). The allocation, which compares
// the trade number it read, must also see the state: it refuses, and the
// paid trade stays the order's.
func TestAllocationNeverReplacesATradePaidSinceItWasRead(t *testing.T) {
	srv := testredis.Start(t)
	s := &tradeStore{rdb: srv.Client()}
	ctx := context.Background()
	now := time.Now()
	old := &tradeRecord{OrderNo: "RACE_ALLOC_1", TradeNo: "TGOLD", Channel: "wechat", AmountFen: 100, Subject: "s",
		State: StateUnknown, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if ok, err := s.allocate(ctx, old, "", now); err != nil || !ok {
		t.Fatalf("first allocation: %v %v", ok, err)
	}
	if _, _, err := s.markClosed(ctx, old, now); err != nil {
		t.Fatal(err)
	}
	read, err := s.load(ctx, "RACE_ALLOC_1")
	if err != nil || read.State != StateClosed {
		t.Fatalf("read %+v %v", read, err)
	}
	// Paid after all, between the read and the allocation.
	if err := s.rdb.HSet(ctx, tradeKey("RACE_ALLOC_1"), "state", StatePaid).Err(); err != nil {
		t.Fatal(err)
	}
	next := &tradeRecord{OrderNo: "RACE_ALLOC_1", TradeNo: "TGNEW", Channel: "wechat", AmountFen: 120, Subject: "s",
		State: StateUnknown, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	ok, err := s.allocate(ctx, next, read.TradeNo, now)
	if err != nil {
		t.Fatal(err)
	}
	cur, err := s.load(ctx, "RACE_ALLOC_1")
	if ok || errors.Is(err, errNoRecord) || cur.TradeNo != "TGOLD" || cur.State != StatePaid {
		t.Fatalf("allocation over a paid trade: ok=%v, the order's trade is %+v", ok, cur)
	}
}
