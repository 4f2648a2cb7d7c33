package reconcile

import (
	"context"
	"fmt"
	"hash/crc32"
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
//	tollgate:pay:{rc:<channel>}:day:<yyyy-mm-dd>:<bucket> zset per-day index (UTC day), in 8 192 buckets: "p<trade_no>" / "r<refund_no>" → ms
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
//
// A day is split into indexBuckets small zsets by a hash of the member:
// an entry of a zset Redis keeps as a listpack (at most
// zset-max-listpack-entries, 128 by default) costs ~43 bytes, one of a
// big zset (a skiplist) ~122 — and every paid order has one for as long
// as it is in Redis (issue 17). 8 192 buckets keep a day's buckets small
// up to about a million entries per channel and UTC day; past that a
// bucket becomes a skiplist, as the whole day was. The previous release's
// unbucketed day key is still read and cleaned until it expires.
const keyPrefix = "tollgate:pay:"

// indexBuckets is how many zsets a channel's day is split into.
const indexBuckets = 8192

func slot(channel string) string { return keyPrefix + "{rc:" + channel + "}" }

// DayKey is the prefix of the per-day index of channel for the UTC day of
// t (and the previous release's unbucketed index of that day).
func DayKey(channel string, t time.Time) string {
	return slot(channel) + ":day:" + t.UTC().Format(time.DateOnly)
}

// IndexKey is the bucket of the per-day index that holds member (as
// member spells a Ref) for the UTC day of t.
func IndexKey(channel string, t time.Time, member string) string {
	return bucketKey(DayKey(channel, t), crc32.ChecksumIEEE([]byte(member))%indexBuckets)
}

func bucketKey(day string, b uint32) string { return fmt.Sprintf("%s:%04x", day, b) }

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
	m := member(r)
	key := IndexKey(channel, t, m)
	pipe.ZAdd(ctx, key, redis.Z{Score: float64(t.UnixMilli()), Member: m})
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
	for _, at := range []time.Time{t, t.Add(indexLag)} {
		if at != t && DayKey(channel, at) == DayKey(channel, t) {
			break
		}
		pipe.ZRem(ctx, IndexKey(channel, at, member), member)
		pipe.ZRem(ctx, DayKey(channel, at), member) // the previous release's
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
// time: a day's buckets bucketsPerRead at a time (one pipelined round
// trip, each bucket a small key), then the previous release's unbucketed
// day key by ZSCAN (never one long command on a big key). An entry may
// come twice; the caller dedupes.
func scanIndex(ctx context.Context, rdb redis.UniversalClient, channel string, start, end time.Time, fn func([]indexEntry) error) error {
	from, to := start.UnixMilli(), end.UnixMilli()
	for _, day := range dayKeys(channel, start, end) {
		for b := uint32(0); b < indexBuckets; b += bucketsPerRead {
			batch, err := readBuckets(ctx, rdb, day, b, from, to)
			if err != nil {
				return err
			}
			if err := fn(batch); err != nil {
				return err
			}
		}
		if err := scanUnbucketed(ctx, rdb, day, from, to, fn); err != nil {
			return err
		}
	}
	return nil
}

// bucketsPerRead is how many buckets of a day one round trip reads.
const bucketsPerRead = 64

// readBuckets reads the entries of [from, to) (ms) in the day's buckets
// first, first+1, …
func readBuckets(ctx context.Context, rdb redis.UniversalClient, day string, first uint32, from, to int64) ([]indexEntry, error) {
	span := &redis.ZRangeBy{Min: strconv.FormatInt(from, 10), Max: "(" + strconv.FormatInt(to, 10)}
	cmds := make([]*redis.ZSliceCmd, 0, bucketsPerRead)
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for b := first; b < first+bucketsPerRead && b < indexBuckets; b++ {
			cmds = append(cmds, p.ZRangeByScoreWithScores(ctx, bucketKey(day, b), span))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the day's index: %w", err)
	}
	var batch []indexEntry
	for _, c := range cmds {
		for _, z := range c.Val() {
			if m, ok := z.Member.(string); ok {
				batch = append(batch, indexEntry{m, int64(z.Score)})
			}
		}
	}
	return batch, nil
}

// scanUnbucketed reads the previous release's index of the day (gone 91
// days after the upgrade), batchSize entries at a time.
func scanUnbucketed(ctx context.Context, rdb redis.UniversalClient, day string, from, to int64, fn func([]indexEntry) error) error {
	var cursor uint64
	for {
		kv, next, err := rdb.ZScan(ctx, day, cursor, "", batchSize).Result()
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
			return nil
		}
	}
}
