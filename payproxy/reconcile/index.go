package reconcile

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Reconciliation's Redis keys, all under one Cluster hash tag per channel
// ({rc:<channel>}) so that the index, a run's temporary keys, the reports
// and the open counts of a channel can be used together in one command or
// script:
//
//	tollgate:pay:{rc:<channel>}:day:<yyyy-mm-dd>      zset  per-day index (UTC day): "p<trade_no>" / "r<refund_no>" → ms
//	tollgate:pay:{rc:<channel>}:seen:<date>:<token>   set   a run's payments and refunds met so far (1 h)
//	tollgate:pay:{rc:<channel>}:diffs:<date>:<token>  list  a run's differences, until the bill proved whole (1 h)
//	tollgate:pay:{rc:<channel>}:run:<date>            string the lease of the run of that date
//	tollgate:pay:{rc:<channel>}:report:<date>         string the report (JSON, 90 days)
//	tollgate:pay:{rc:<channel>}:open                  hash   date → open differences of its last run, by kind
//
// The per-day index: when a trade becomes PAID (also a duplicate payment)
// or a refund SUCCESS, payproxy adds the payment ("p" + trade number) or
// the refund ("r" + refund number) to the channel's zset of that UTC day,
// scored by the time in milliseconds. A bill day in any time zone is then
// a score range over at most two such keys, and each key expires 91 days
// after its day: the index never holds more than the report horizon.
// SCAN was the alternative: it would walk every key of every order ever
// paid (several per order, kept for good) to find one day's, where the
// index reads exactly the day's members.
const keyPrefix = "tollgate:pay:"

func slot(channel string) string { return keyPrefix + "{rc:" + channel + "}" }

// DayKey is the per-day index of channel for the UTC day of t.
func DayKey(channel string, t time.Time) string {
	return slot(channel) + ":day:" + t.UTC().Format(time.DateOnly)
}

func seenKey(channel, date, token string) string {
	return slot(channel) + ":seen:" + date + ":" + token
}
func diffsKey(channel, date, token string) string {
	return slot(channel) + ":diffs:" + date + ":" + token
}
func runKey(channel, date string) string     { return slot(channel) + ":run:" + date }
func reportKey(channel, date string) string  { return slot(channel) + ":report:" + date }
func openKey(channel string) string          { return slot(channel) + ":open" }
func attemptKey(channel, date string) string { return slot(channel) + ":attempt:" + date }

// indexHorizon is how long a day's index is kept after the day ends: the
// reports' 90 days and one more for a time zone ahead of UTC.
const indexHorizon = 91 * 24 * time.Hour

// member is a Ref as the index spells it.
func member(r Ref) string {
	if r.Refund {
		return "r" + r.RefundNo
	}
	return "p" + r.TradeNo
}

// refOf reads a member back.
func refOf(m string) (Ref, bool) {
	switch {
	case strings.HasPrefix(m, "p") && len(m) > 1:
		return Ref{TradeNo: m[1:]}, true
	case strings.HasPrefix(m, "r") && len(m) > 1:
		return Ref{Refund: true, RefundNo: m[1:]}, true
	}
	return Ref{}, false
}

// Index adds to pipe the index entry of a payment recorded PAID, or a
// refund recorded SUCCESS, at t.
func Index(ctx context.Context, pipe redis.Pipeliner, channel string, r Ref, t time.Time) {
	key := DayKey(channel, t)
	pipe.ZAdd(ctx, key, redis.Z{Score: float64(t.UnixMilli()), Member: member(r)})
	day := t.UTC().Truncate(24 * time.Hour)
	pipe.ExpireAt(ctx, key, day.Add(24*time.Hour+indexHorizon))
}

// indexLag bounds how long after its record an entry is indexed: the
// entry's time is taken after the script that recorded it.
const indexLag = time.Minute

// Unindex adds to pipe the removal of the entry member ("p<trade_no>" or
// "r<refund_no>", as member spells it) of a record made at t: from the
// day of t, and from the next day's key too when t is within indexLag of
// its end. payproxy calls it when it archives the order (retention): the
// index never outlives the records it points to.
func Unindex(ctx context.Context, pipe redis.Pipeliner, channel, member string, t time.Time) {
	first := DayKey(channel, t)
	pipe.ZRem(ctx, first, member)
	if next := DayKey(channel, t.Add(indexLag)); next != first {
		pipe.ZRem(ctx, next, member)
	}
}

// dayKeys are the index keys covering [start, end).
func dayKeys(channel string, start, end time.Time) []string {
	var keys []string
	for d := start.UTC().Truncate(24 * time.Hour); d.Before(end); d = d.Add(24 * time.Hour) {
		keys = append(keys, DayKey(channel, d))
	}
	return keys
}

// workTTL bounds a run's temporary keys if the run dies.
const workTTL = time.Hour

// indexEntry is one entry of the per-day index.
type indexEntry struct {
	member string
	at     int64 // ms
}

// scanIndex calls fn with the index entries of [start, end), a batch at a
// time (ZSCAN of each day key: never one long command on a big key). An
// entry may come twice; the caller dedupes.
func scanIndex(ctx context.Context, rdb redis.UniversalClient, channel string, start, end time.Time, fn func([]indexEntry) error) error {
	from, to := start.UnixMilli(), end.UnixMilli()
	for _, key := range dayKeys(channel, start, end) {
		var cursor uint64
		for {
			kv, next, err := rdb.ZScan(ctx, key, cursor, "", batchSize).Result()
			if err != nil {
				return fmt.Errorf("reading the day's index: %w", err)
			}
			batch := make([]indexEntry, 0, len(kv)/2)
			for i := 0; i+1 < len(kv); i += 2 {
				at, err := strconv.ParseFloat(kv[i+1], 64)
				if err == nil && int64(at) >= from && int64(at) < to {
					batch = append(batch, indexEntry{kv[i], int64(at)})
				}
			}
			if err := fn(batch); err != nil {
				return err
			}
			if cursor = next; cursor == 0 {
				break
			}
		}
	}
	return nil
}
