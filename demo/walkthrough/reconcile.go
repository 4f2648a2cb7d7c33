package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// reconcileSteps ends the walk with the day's reconciliation: Alipay's
// bill of today (paysim serves today's, where Alipay waits for the next
// morning) compared with tollgate's records, through the admin API, as
// `tollgate payproxy reconcile --channel alipay --date <today>` does.
func (d *demo) reconcileSteps() {
	fmt.Println("\n── Reconciliation with the provider's daily bill ──")
	today := time.Now().In(time.FixedZone("CST", 8*3600)).Format(time.DateOnly)
	d.step("The day's Alipay bill agrees with tollgate line by line (payment and refund), totals equal", func() error {
		e := d.do("POST", d.admin+"/tollgate/payproxy/reconcile", map[string]string{"Origin": d.admin},
			map[string]string{"channel": "alipay", "date": today})
		var rep struct {
			State       string            `json:"state"`
			Lines       int               `json:"lines"`
			Matched     int               `json:"matched"`
			Differences []json.RawMessage `json:"differences"`
			Totals      map[string]int64  `json:"totals"`
		}
		if e.status != 200 || json.Unmarshal(e.body, &rep) != nil {
			return fmt.Errorf("want 200 with the report, got %d", e.status)
		}
		var out bytes.Buffer
		_ = json.Indent(&out, e.body, "    ", "  ")
		fmt.Println("    report:", out.String())
		t := rep.Totals
		return want(rep.State == "done" && rep.Lines == 2 && rep.Matched == 2 && len(rep.Differences) == 0 &&
			t["provider_paid_fen"] == t["local_paid_fen"] && t["provider_refunded_fen"] == t["local_refunded_fen"],
			"want done, 2 lines matched, no difference, equal totals")
	})
}
