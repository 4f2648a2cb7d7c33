package reconcile

import (
	"fmt"
	"time"
)

// When bills exist. Alipay: "当日数据一般于次日 9 点前生成，特殊情况可能延迟";
// WeChat: "每日10点后生成昨日交易账单" (older table: 8 点), both Beijing
// time. Both answer a day without trades exactly like a bill not
// generated yet (Alipay isp.bill_not_exist, WeChat NO_STATEMENT_EXIST), so
// a "no bill" is taken for "not ready" until the end of the day after the
// bill's day, and for "no trade that day" (an empty bill) after that.

// RetryInterval is how long after a "not ready" (or a failed fetch, or
// failed signed queries) a run is tried again, within the same day.
const RetryInterval = 20 * time.Minute

// Day parses a bill date (yyyy-MM-dd) and bounds it [start, end) in loc.
func Day(date string, loc *time.Location) (start, end time.Time, err error) {
	start, err = time.ParseInLocation(time.DateOnly, date, loc)
	if err != nil || start.Format(time.DateOnly) != date {
		return time.Time{}, time.Time{}, fmt.Errorf("date %q is not yyyy-MM-dd", date)
	}
	return start, start.AddDate(0, 0, 1), nil
}

// NoBillIsEmpty reports whether, at now, a "no bill" answer for the day
// starting at start means the provider had no trade that day.
func NoBillIsEmpty(start, now time.Time) bool { return !now.Before(start.AddDate(0, 0, 2)) }

// DueDates are the bill dates the daily run of the day of now reconciles:
// the last days completed days, the most recent first.
func DueDates(now time.Time, days int) []string {
	out := make([]string, 0, days)
	for i := 1; i <= days; i++ {
		out = append(out, now.AddDate(0, 0, -i).Format(time.DateOnly))
	}
	return out
}

// ParseAt reads a time of day, HH:MM.
func ParseAt(s string) (hour, minute int, err error) {
	t, err := time.Parse("15:04", s)
	if err != nil || t.Format("15:04") != s {
		return 0, 0, fmt.Errorf("at %q: want HH:MM, 00:00 to 23:59", s)
	}
	return t.Hour(), t.Minute(), nil
}

// RunTime is when the daily run of the day of now (in its location) is due.
func RunTime(now time.Time, hour, minute int) time.Time {
	y, m, d := now.Date()
	return time.Date(y, m, d, hour, minute, 0, 0, now.Location())
}

// NextRetry is when a run that must be retried is tried again: after
// RetryInterval, if that is still the day of now; otherwise the next daily
// run takes the date up again (while it is within its days).
func NextRetry(now time.Time) (time.Time, bool) {
	next := now.Add(RetryInterval)
	y, m, d := now.Date()
	return next, next.Before(time.Date(y, m, d+1, 0, 0, 0, 0, now.Location()))
}
