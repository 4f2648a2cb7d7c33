package payproxy

import "github.com/redis/go-redis/v9"

// Every state change is one of these scripts, so that a notification, the
// poller and an API call racing each other change a record once and enqueue
// one event. The KEYS of each script share one Cluster slot: the order's
// keys are hash-tagged {o:<order_no>}, the webhook queue's {wh}, and the due
// set is a key of its own. Crossing slots (order → queue) is done by separate
// commands, made safe by the outbox (see webhook.go).

// allocScript starts a new trade for the order, state UNKNOWN, unless the
// record changed since the caller read it (ARGV[8] is the trade_no it saw,
// "" for none).
//
// KEYS: trade. ARGV: order_no, trade_no, channel, amount_fen, subject,
// created_ms, expires_ms, expected_trade_no.
var allocScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], 'trade_no') or ''
if cur ~= ARGV[8] then return 0 end
local refunded = redis.call('HGET', KEYS[1], 'refunded_fen')
if refunded and tonumber(refunded) ~= 0 then return 0 end
redis.call('HSET', KEYS[1], 'order_no', ARGV[1], 'trade_no', ARGV[2], 'channel', ARGV[3],
  'amount_fen', ARGV[4], 'subject', ARGV[5], 'state', 'UNKNOWN', 'qr_code', '',
  'created_at', ARGV[6], 'expires_at', ARGV[7], 'refunded_fen', '0', 'provider_trade_id', '')
return 1
`)

// issuedScript records the QR code the provider returned for trade_no.
//
// KEYS: trade. ARGV: trade_no, qr_code.
var issuedScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'trade_no') ~= ARGV[1] then return 'stale' end
local st = redis.call('HGET', KEYS[1], 'state')
if st == 'UNKNOWN' then
  redis.call('HSET', KEYS[1], 'state', 'PAYING', 'qr_code', ARGV[2])
  return 'PAYING'
end
if st == 'PAYING' then redis.call('HSET', KEYS[1], 'qr_code', ARGV[2]) end
return st
`)

// transitionScript moves trade_no to PAID or CLOSED once. PAID is accepted
// from any other state (money taken is a fact, even after we closed the
// trade); CLOSED only from PAYING or UNKNOWN. On a change the event is put
// into the order's outbox in the same step.
//
// KEYS: trade, outbox. ARGV: trade_no, to_state, now_ms, event_id,
// event_json, provider_trade_id.
var transitionScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'trade_no') ~= ARGV[1] then return 'stale' end
local st = redis.call('HGET', KEYS[1], 'state')
if st == ARGV[2] then return 'same' end
if ARGV[2] == 'CLOSED' and st ~= 'PAYING' and st ~= 'UNKNOWN' then return 'refused' end
redis.call('HSET', KEYS[1], 'state', ARGV[2])
if ARGV[2] == 'PAID' then
  redis.call('HSET', KEYS[1], 'paid_at', ARGV[3])
  if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'provider_trade_id', ARGV[6]) end
else
  redis.call('HSET', KEYS[1], 'closed_at', ARGV[3])
end
redis.call('HSETNX', KEYS[2], ARGV[4], ARGV[5])
return 'changed'
`)

// refundReserveScript reserves a refund's amount against the paid amount
// before the provider is called, so concurrent refunds can never add up to
// more than was paid. refund_no is the idempotency key.
//
// KEYS: trade, refunds. ARGV: refund_no, amount_fen, reason, now_ms.
// Returns {status, refund_json}.
var refundReserveScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return {'not_found', ''} end
local prev = redis.call('HGET', KEYS[2], ARGV[1])
if prev then
  local r = cjson.decode(prev)
  if tostring(r.amount_fen) ~= ARGV[2] then return {'mismatch', prev} end
  return {'replay', prev}
end
if redis.call('HGET', KEYS[1], 'state') ~= 'PAID' then return {'not_paid', ''} end
local paid = tonumber(redis.call('HGET', KEYS[1], 'amount_fen'))
local refunded = tonumber(redis.call('HGET', KEYS[1], 'refunded_fen') or '0')
if refunded + tonumber(ARGV[2]) > paid then return {'exceeds', ''} end
redis.call('HINCRBY', KEYS[1], 'refunded_fen', ARGV[2])
local rec = cjson.encode({refund_no = ARGV[1], amount_fen = tonumber(ARGV[2]), state = 'PROCESSING',
  reason = ARGV[3], created_at = tonumber(ARGV[4])})
redis.call('HSET', KEYS[2], ARGV[1], rec)
return {'created', rec}
`)

// refundSettleScript ends a PROCESSING refund once: SUCCESS keeps the
// reservation, FAILED releases it. A FAILED refund the provider later
// reports (signed) as SUCCESS becomes SUCCESS and is reserved again: the
// money moved. SUCCESS is final. The event goes to the outbox.
//
// KEYS: trade, refunds, outbox. ARGV: refund_no, to_state, now_ms,
// event_id, event_json.
var refundSettleScript = redis.NewScript(`
local prev = redis.call('HGET', KEYS[2], ARGV[1])
if not prev then return 'unknown' end
local r = cjson.decode(prev)
if r.state == ARGV[2] or r.state == 'SUCCESS' then return 'same' end
if r.state == 'FAILED' and ARGV[2] ~= 'SUCCESS' then return 'same' end
if r.state == 'FAILED' then redis.call('HINCRBY', KEYS[1], 'refunded_fen', r.amount_fen) end
r.state = ARGV[2]
r.settled_at = tonumber(ARGV[3])
if ARGV[2] == 'FAILED' then redis.call('HINCRBY', KEYS[1], 'refunded_fen', -r.amount_fen) end
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(r))
redis.call('HSETNX', KEYS[3], ARGV[4], ARGV[5])
return 'changed'
`)

// claimScript leases up to ARGV[2] members of a due set whose time has
// come, by pushing them ARGV[3] ms into the future: another instance will
// not see them until the lease ends, and a crashed instance's work comes
// back by itself.
//
// KEYS: zset. ARGV: now_ms, limit, lease_ms.
var claimScript = redis.NewScript(`
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
local lease = tonumber(ARGV[1]) + tonumber(ARGV[3])
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], lease, id) end
return ids
`)

// releaseScript removes a member of a due set only if its score is still
// the lease the caller holds: if someone rescheduled it meanwhile (a new
// refund), it stays.
//
// KEYS: zset. ARGV: member, lease_score.
var releaseScript = redis.NewScript(`
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if s and tonumber(s) == tonumber(ARGV[2]) then redis.call('ZREM', KEYS[1], ARGV[1]) return 1 end
return 0
`)

// enqueueScript puts an event into the webhook queue once, whatever the
// number of times the outbox is flushed: an event already delivered (or
// dead-lettered) has a tombstone and is not queued again.
//
// KEYS: events, queue, tombstone. ARGV: id, json, now_ms.
var enqueueScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
  return 1
end
return 0
`)

// claimEventsScript leases due events and returns {id, json, ...}.
//
// KEYS: queue, events. ARGV: now_ms, limit, lease_ms.
var claimEventsScript = redis.NewScript(`
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
local lease = tonumber(ARGV[1]) + tonumber(ARGV[3])
local out = {}
for _, id in ipairs(ids) do
  local body = redis.call('HGET', KEYS[2], id)
  if body then
    redis.call('ZADD', KEYS[1], lease, id)
    table.insert(out, id)
    table.insert(out, body)
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
`)

// returnLeasesScript makes leased events due again at ARGV[2] (a sender
// shutting down hands back what it did not send), only those still under
// the lease ARGV[1] their sender took.
//
// KEYS: queue. ARGV: lease_score, now_ms, id...
var returnLeasesScript = redis.NewScript(`
local n = 0
for i = 3, #ARGV do
  local s = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if s and tonumber(s) == tonumber(ARGV[1]) then
    redis.call('ZADD', KEYS[1], ARGV[2], ARGV[i])
    n = n + 1
  end
end
return n
`)

// ackEventScript forgets a delivered event, leaving a tombstone for
// ARGV[2] seconds so that a late outbox flush cannot queue it again.
//
// KEYS: queue, events, attempts, tombstone. ARGV: id, tombstone_ttl_s.
var ackEventScript = redis.NewScript(`
redis.call('SET', KEYS[4], '1', 'EX', ARGV[2])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
`)

// failEventScript counts a failed attempt and either schedules the next
// one or moves the event to the dead-letter list.
//
// KEYS: queue, events, attempts, dead, tombstone. ARGV: id, max_attempts,
// next_ms, now_ms, last_error, tombstone_ttl_s.
var failEventScript = redis.NewScript(`
local body = redis.call('HGET', KEYS[2], ARGV[1])
if not body then return 'gone' end
local n = redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
if n >= tonumber(ARGV[2]) then
  redis.call('RPUSH', KEYS[4], cjson.encode({id = ARGV[1], event = body, attempts = n,
    last_error = ARGV[5], failed_at = tonumber(ARGV[4])}))
  redis.call('SET', KEYS[5], '1', 'EX', ARGV[6])
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('HDEL', KEYS[3], ARGV[1])
  return 'dead'
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 'retry'
`)

// replayDeadScript moves dead letters (all, or the one with id ARGV[1])
// back into the queue with a fresh attempt count. Returns how many.
//
// KEYS: dead, events, queue, attempts. ARGV: id ("" = all), now_ms.
var replayDeadScript = redis.NewScript(`
local items = redis.call('LRANGE', KEYS[1], 0, -1)
local n = 0
for _, raw in ipairs(items) do
  local d = cjson.decode(raw)
  if ARGV[1] == '' or d.id == ARGV[1] then
    redis.call('LREM', KEYS[1], 1, raw)
    redis.call('HSET', KEYS[2], d.id, d.event)
    redis.call('HDEL', KEYS[4], d.id)
    redis.call('ZADD', KEYS[3], ARGV[2], d.id)
    n = n + 1
  end
end
return n
`)
