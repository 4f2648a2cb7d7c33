package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// ReportTTL is how long a report is kept.
const ReportTTL = 90 * 24 * time.Hour

// OpenWindow is how long the open differences of a run count in the
// tollgate_payproxy_reconcile_differences gauge: a difference found again
// by each daily re-check of its date stays open; once its date leaves the
// re-check window (or it was found by a run on demand) it stops counting
// two days after the last run that found it. The report keeps it 90 days.
const OpenWindow = 48 * time.Hour

// ErrNoReport means no report is stored for that channel and date.
var ErrNoReport = errors.New("no reconciliation report for that channel and date")

// saveScript stores a report and, for a completed comparison, the counts
// of its open differences by kind under its date, pruning the counts of
// runs older than the reports' horizon. A run that compared nothing (error
// or pending) never replaces a completed one: it is kept beside it as the
// date's last attempt, and the completed run's counts stay as they are (a
// bill that could not be had closes nothing). A completed run replaces
// the report and clears the last attempt.
//
// The stored report is known completed by the start of its JSON, which
// encoding/json writes in the order of Report's fields: channel, date,
// state.
//
// KEYS: report, open, attempt. ARGV: report_json, ttl_s, date,
// counts_json ("" for none), oldest_ms, attempt_json.
var saveScript = redis.NewScript(`
if ARGV[4] == '' then
  local old = redis.call('GET', KEYS[1])
  if old and string.find(old, '^{"channel":"[^"]*","date":"[^"]*","state":"done"') then
    redis.call('SET', KEYS[3], ARGV[6], 'EX', ARGV[2])
    return 2
  end
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('DEL', KEYS[3])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  local ok, v = pcall(cjson.decode, all[i + 1])
  if not ok or type(v) ~= 'table' or (tonumber(v.at) or 0) < tonumber(ARGV[5]) then
    redis.call('HDEL', KEYS[2], all[i])
  end
end
return 1
`)

// openCounts is one date's entry of the open hash.
type openCounts struct {
	At    int64          `json:"at"`
	Kinds map[string]int `json:"kinds"`
}

// save stores rep; counts is nil unless the comparison completed.
func save(ctx context.Context, rdb redis.UniversalClient, rep *Report, counts map[string]int, now time.Time) error {
	body, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	open := ""
	if counts != nil {
		b, _ := json.Marshal(openCounts{At: now.UnixMilli(), Kinds: counts})
		open = string(b)
	}
	attempt, _ := json.Marshal(Attempt{State: rep.State, Error: rep.Error, At: now.UTC()})
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err = saveScript.Run(ctx, rdb, []string{reportKey(rep.Channel, rep.Date), openKey(rep.Channel), attemptKey(rep.Channel, rep.Date)},
		body, int64(ReportTTL.Seconds()), rep.Date, open, now.Add(-ReportTTL).UnixMilli(), attempt).Err()
	if err != nil {
		return fmt.Errorf("storing the report: %w", err)
	}
	return nil
}

// Load returns the stored report of channel and date, or ErrNoReport.
// A completed report comes with the date's last attempt, if a later run
// could not compare.
func Load(ctx context.Context, rdb redis.UniversalClient, channel, date string) (*Report, error) {
	// One slot: MGET works on a Cluster too.
	vals, err := rdb.MGet(ctx, reportKey(channel, date), attemptKey(channel, date)).Result()
	if err != nil {
		return nil, fmt.Errorf("loading the report: %w", err)
	}
	raw, ok := vals[0].(string)
	if !ok {
		return nil, ErrNoReport
	}
	rep := &Report{}
	if err := json.Unmarshal([]byte(raw), rep); err != nil {
		return nil, fmt.Errorf("decoding the report: %w", err)
	}
	if raw, ok := vals[1].(string); ok && rep.State == StateDone {
		rep.LastAttempt = &Attempt{}
		if err := json.Unmarshal([]byte(raw), rep.LastAttempt); err != nil {
			return nil, fmt.Errorf("decoding the last attempt: %w", err)
		}
	}
	return rep, nil
}

// OpenDifferences sums, by kind, the open differences of the channel's
// runs within OpenWindow of now (see OpenWindow).
func OpenDifferences(ctx context.Context, rdb redis.UniversalClient, channel string, now time.Time) (map[string]int, error) {
	all, err := rdb.HGetAll(ctx, openKey(channel)).Result()
	if err != nil {
		return nil, err
	}
	out := make(map[string]int, len(Kinds))
	for _, k := range Kinds {
		out[k] = 0
	}
	since := now.Add(-OpenWindow).UnixMilli()
	for _, raw := range all {
		var c openCounts
		if json.Unmarshal([]byte(raw), &c) != nil || c.At < since {
			continue
		}
		for k, n := range c.Kinds {
			if _, known := out[k]; known {
				out[k] += n
			}
		}
	}
	return out, nil
}
