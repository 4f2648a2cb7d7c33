package reconcile

import (
	"reflect"
	"testing"
	"time"
)

var shanghai = time.FixedZone("CST", 8*3600)

func TestTheDailyRunTakesTheLastCompletedDaysNewestFirst(t *testing.T) {
	now := time.Date(2026, 3, 1, 10, 30, 0, 0, shanghai)
	if got := DueDates(now, 3); !reflect.DeepEqual(got, []string{"2026-02-28", "2026-02-27", "2026-02-26"}) {
		t.Fatalf("due dates %v", got)
	}
}

func TestNoBillMeansNoTradesOnlyFromTheEndOfTheNextDay(t *testing.T) {
	start, end, err := Day("2026-11-30", shanghai)
	if err != nil || !end.Equal(start.AddDate(0, 0, 1)) {
		t.Fatal(start, end, err)
	}
	for at, want := range map[string]bool{
		"2026-12-01T10:30:00+08:00": false, // the next morning: not generated yet
		"2026-12-01T23:59:59+08:00": false,
		"2026-12-02T00:00:00+08:00": true,
		"2026-12-03T10:30:00+08:00": true,
	} {
		now, _ := time.Parse(time.RFC3339, at)
		if got := NoBillIsEmpty(start, now); got != want {
			t.Errorf("at %s: %v, want %v", at, got, want)
		}
	}
}

func TestARetryStaysWithinTheDay(t *testing.T) {
	if next, ok := NextRetry(time.Date(2026, 12, 1, 10, 30, 0, 0, shanghai)); !ok || next.Sub(time.Date(2026, 12, 1, 10, 30, 0, 0, shanghai)) != RetryInterval {
		t.Errorf("10:30: %v %v", next, ok)
	}
	if _, ok := NextRetry(time.Date(2026, 12, 1, 23, 45, 0, 0, shanghai)); ok {
		t.Error("23:45: a retry after midnight")
	}
}

func TestDatesAndTimesOfDayAreStrict(t *testing.T) {
	for _, bad := range []string{"2026-02-30", "2026-2-3", "20261130", "", "2026-11-30T00:00:00Z"} {
		if _, _, err := Day(bad, shanghai); err == nil {
			t.Errorf("date %q accepted", bad)
		}
	}
	for at, ok := range map[string]bool{"00:00": true, "23:59": true, "10:30": true, "24:00": false, "3:30": false, "10:60": false, "10:30:00": false} {
		if _, _, err := ParseAt(at); (err == nil) != ok {
			t.Errorf("at %q: %v", at, err)
		}
	}
}

// A Beijing day spans two UTC days: its index is read from both keys.
func TestABeijingDayIsReadFromTwoUTCDayKeys(t *testing.T) {
	start, end, _ := Day("2026-11-30", shanghai)
	got := dayKeys("alipay", start, end)
	want := []string{"tollgate:pay:{rc:alipay}:day:2026-11-29", "tollgate:pay:{rc:alipay}:day:2026-11-30"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("keys %v, want %v", got, want)
	}
	late := time.Date(2026, 11, 30, 23, 59, 0, 0, shanghai) // 15:59 UTC
	if k := DayKey("alipay", late); k != want[1] {
		t.Fatalf("entry of 23:59 Beijing goes to %s", k)
	}
}

func TestIndexMembersReadBack(t *testing.T) {
	for _, r := range []Ref{{TradeNo: "TG2026"}, {Refund: true, RefundNo: "RF_1"}} {
		if back, ok := refOf(member(r)); !ok || back != r {
			t.Errorf("%+v read back as %+v", r, back)
		}
	}
	for _, bad := range []string{"", "p", "r", "x1"} {
		if _, ok := refOf(bad); ok {
			t.Errorf("%q read as a ref", bad)
		}
	}
}
