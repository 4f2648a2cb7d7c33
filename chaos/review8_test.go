//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/paysim"
	"github.com/tollgate/tollgate/internal/testredis"
)

// TestTheVerdictCountsAPaymentKeptAsALiveMarkerAsRecorded (review 8,
// finding "the chaos verdict does not read live markers", Medium): since
// the live marker (issue 17), a settled order with nothing but its trade
// is kept as the string {o:<order>}:archived (README's array + last
// change, 1) and its :trade hash is deleted at the poller's first visit
// with nothing left to do — whatever retention, so during any chaos run.
// world.read reads only :trade/:trades/:refunds, so recorded() finds no
// trade and checkPaymentsRecorded (and unsettled) report every such paid
// order "not recorded by tollgate": `make chaos` fails on correct runs,
// or waits for a settlement that never comes. Fix: chaos/invariants_test.go
// world.read also GETs the marker and, when live (eight elements),
// reads it as the order's trade (trade_no, state), as store.go liveRecord.
// Run: go test -tags chaos -count=1 -run TestTheVerdictCountsAPaymentKeptAsALiveMarkerAsRecorded ./chaos/
func TestTheVerdictCountsAPaymentKeptAsALiveMarkerAsRecorded(t *testing.T) {
	rdb := testredis.Start(t).Client()
	ctx := context.Background()
	order, tn := "R8CHAOS", "TG20261202000000R8CHAOSLIVE1"
	paid := time.Now().Add(-time.Minute)
	// What retainScript leaves of a paid order inside its retention.
	marker := fmt.Sprintf(`["PAID",%q,"alipay",900,0,%d,1,0]`, tn, paid.UnixMilli())
	if err := rdb.Set(ctx, "tollgate:pay:{o:"+order+"}:archived", marker, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.HSet(ctx, tradeBucketKey(tn), tn, order).Err(); err != nil {
		t.Fatal(err)
	}
	tr := paysim.Trade{Provider: "alipay", OutTradeNo: tn, Subject: subjectPrefix + order, TotalFen: 900, PaidAt: paid}
	ev := hookEvent{ID: "evt_" + tn + "_trade.paid", Type: "trade.paid"}
	ev.Data.OrderNo, ev.Data.TradeNo, ev.Data.AmountFen, ev.Data.State, ev.Data.Seq = order, tn, 900, "PAID", 1
	st := &state{trades: []paysim.Trade{tr}, byOrder: map[string][]paysim.Trade{order: {tr}},
		events: map[string]hookEvent{ev.ID: ev}}
	recs, err := (&world{t: t}).read(ctx, rdb, st)
	if err != nil {
		t.Fatal(err)
	}
	v := &verdict{ok: true}
	checkPaymentsRecorded(st, recs, nil, v)
	if !v.ok {
		t.Fatalf("a paid order kept as its live marker fails the verdict: %v", v.details)
	}
}
