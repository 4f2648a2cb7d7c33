package payproxy

import "github.com/redis/go-redis/v9"

// Every state change is one of these scripts, so that a notification, the
// poller and an API call racing each other change a record once and enqueue
// one event. The KEYS of each script share one Cluster slot: the order's
// keys are hash-tagged {o:<order_no>}, the webhook queue's {wh}, and the due
// set is a key of its own. Crossing slots (order → queue) is done by separate
// commands, made safe by the outbox (see webhook.go).

// emitLua is the one way a script writes an event: into the order's outbox,
// once per event id, in the same step as the change it reports. It numbers
// the event with the order's next seq (a counter in the order's record):
// the body arrives with "seq":-1, which becomes "seq":<n>. It returns the
// body written.
const emitLua = `
local function emit(trade, outbox, id, body)
  local n = redis.call('HINCRBY', trade, 'seq', 1)
  local i, j = string.find(body, '"seq":-1', 1, true)
  if i then body = string.sub(body, 1, i - 1) .. '"seq":' .. n .. string.sub(body, j + 1) end
  redis.call('HSETNX', outbox, id, body)
  return body
end
`

// retireLua archives the order's current trade into the :trades hash (JSON,
// as it is) and returns its trade number and state.
const retireLua = `
local function retireCurrent(trade, trades)
  local f = redis.call('HMGET', trade, 'trade_no', 'state', 'channel', 'amount_fen', 'subject',
    'created_at', 'expires_at', 'refunded_fen', 'provider_trade_id', 'paid_at', 'closed_at')
  if not f[1] then return nil, nil end
  redis.call('HSET', trades, f[1], cjson.encode({trade_no = f[1], state = f[2] or 'UNKNOWN', channel = f[3] or '',
    amount_fen = tonumber(f[4]) or 0, subject = f[5] or '', created_at = tonumber(f[6]) or 0,
    expires_at = tonumber(f[7]) or 0, refunded_fen = tonumber(f[8]) or 0, provider_trade_id = f[9] or '',
    paid_at = tonumber(f[10]), closed_at = tonumber(f[11])}))
  return f[1], f[2]
end
`

// markerLua reads and writes an archived order's :archived marker, a JSON
// array (compact: one per archived order, kept a retention):
// [state, trade_no, channel, amount_fen, refunded_fen, paid_at, seq,
// others, refunds] — the order's trade at archival; others: its retired
// trades, trade_no → [channel, amount_fen, state, paid_at,
// refunded_fen, duplicate (0/1)]; refunds: refund_no → [trade_no,
// amount_fen, state]. Enough to restore the order's records
// (restoreMarker) when a payment or refund after the archival is news;
// restoreMarker appends to out the trade numbers, "", then the refund
// numbers it restored (their indexes, on other slots, are the caller's).
//
// Its first seven elements followed by last_change_ms (0: paid_at) —
// eight elements, so that the string stays in the allocator's 80-byte
// class — are a settled order's whole record inside its retention when
// the order has nothing but its trade (no retired trade, no refund: most
// orders): a "live" marker, without expiry, ~136 bytes of Redis where the
// compacted hash costs ~248 (issue 17); the previous release's readers,
// which take an eighth element that is no table as "no retired trade",
// read it alike. tradeStore.load reads it as the order's trade; a script
// that changes such an order first gives it its records back
// (expandLive, at the order's last change, so that its retention does
// not start over unless the script changes something).
const markerLua = `
local function readMarker(key)
  local raw = redis.call('GET', key)
  if not raw then return nil end
  local a = cjson.decode(raw)
  local m = {state = a[1], trade_no = a[2], channel = a[3], amount_fen = a[4], refunded_fen = a[5],
    paid_at = a[6], seq = a[7], others = type(a[8]) == 'table' and a[8] or {},
    refunds = type(a[9]) == 'table' and a[9] or {}, live = #a == 8}
  if m.live then
    -- last 0: the trade's paid_at (the usual case, 13 bytes fewer)
    m.last = tonumber(a[8]) or 0
    if m.last == 0 then m.last = tonumber(m.paid_at) or 0 end
  end
  return m
end
-- px: the marker's life (ms) after an archival; 0: a live marker (no
-- expiry, whatever an earlier marker of the order had); nil: keep it.
local function writeMarker(key, m, px)
  local others, refunds = m.others, m.refunds
  if next(others) == nil then others = 0 end
  if next(refunds) == nil then refunds = 0 end
  local a = {m.state, m.trade_no, m.channel or '', tonumber(m.amount_fen) or 0,
    tonumber(m.refunded_fen) or 0, tonumber(m.paid_at) or 0, tonumber(m.seq) or 0, others, refunds}
  if m.live then
    local last = tonumber(m.last) or 0
    if last == tonumber(m.paid_at) then last = 0 end
    a[8], a[9] = last, nil
  end
  local raw = cjson.encode(a)
  if px == 0 then redis.call('SET', key, raw)
  elseif px then redis.call('SET', key, raw, 'PX', px)
  else redis.call('SET', key, raw, 'KEEPTTL') end
end
local function restoreMarker(trade, trades, refunds, m, order, now, out)
  redis.call('HSET', trade, 'order_no', order, 'trade_no', m.trade_no, 'channel', m.channel,
    'amount_fen', m.amount_fen, 'state', m.state, 'refunded_fen', m.refunded_fen,
    'seq', m.seq, 'touched_at', now, 'provider_trade_id', '')
  if tonumber(m.paid_at) and tonumber(m.paid_at) > 0 then redis.call('HSET', trade, 'paid_at', m.paid_at) end
  table.insert(out, m.trade_no)
  for no, o in pairs(m.others) do
    table.insert(out, no)
    local a = {trade_no = no, channel = o[1], amount_fen = o[2], state = o[3], refunded_fen = o[5],
      subject = '', created_at = 0, expires_at = 0, provider_trade_id = '', duplicate = o[6] == 1, touched_at = tonumber(now)}
    if tonumber(o[4]) and tonumber(o[4]) > 0 then a.paid_at = o[4] end
    redis.call('HSET', trades, no, cjson.encode(a))
  end
  table.insert(out, '')
  for no, r in pairs(m.refunds) do
    table.insert(out, no)
    redis.call('HSET', refunds, no, cjson.encode({refund_no = no, trade_no = r[1], amount_fen = r[2], state = r[3],
      reason = 'restored from the archival', created_at = tonumber(now)}))
  end
end
-- expandLive gives an order kept as a live marker its trade record back
-- (nothing else: a live marker has no retired trade and no refund), with
-- its last change as touched_at, and removes the marker. It returns the
-- marker it expanded, or nil.
local function expandLive(trade, archived, order)
  if redis.call('EXISTS', trade) == 1 then return nil end
  local m = readMarker(archived)
  if not m or not m.live then return nil end
  restoreMarker(trade, nil, nil, m, order, m.last, {})
  redis.call('DEL', archived)
  return m
end
`

// allocScript starts a new trade for the order, state UNKNOWN, unless the
// record changed since the caller read it (ARGV[8] is the trade_no it saw,
// "" for none). The trade it replaces must be CLOSED, a close the provider
// confirmed: never one that is PAID or may still be paid. The replaced
// trade is kept in the order's :trades hash, so that a payment it still
// receives is recorded.
//
// An order archived paid (its :archived marker, retention.go) is refused
// with 2: it must not be charged again. One archived closed gets the new
// trade, whose events number on from the archived ones' seq.
//
// KEYS: trade, trades, archived. ARGV: order_no, trade_no, channel,
// amount_fen, subject, created_ms, expires_ms, expected_trade_no.
var allocScript = redis.NewScript(retireLua + markerLua + `
if ARGV[8] ~= '' then expandLive(KEYS[1], KEYS[3], ARGV[1]) end
local cur = redis.call('HGET', KEYS[1], 'trade_no') or ''
if cur ~= ARGV[8] then return 0 end
local seq = nil
if cur == '' then
  local m = readMarker(KEYS[3])
  if m then
    if m.state == 'PAID' then return 2 end
    seq = m.seq
  end
end
if cur ~= '' then
  local st = redis.call('HGET', KEYS[1], 'state')
  local refunded = tonumber(redis.call('HGET', KEYS[1], 'refunded_fen') or '0') or 0
  if st ~= 'CLOSED' or refunded ~= 0 then return 0 end
  retireCurrent(KEYS[1], KEYS[2])
end
redis.call('HSET', KEYS[1], 'order_no', ARGV[1], 'trade_no', ARGV[2], 'channel', ARGV[3],
  'amount_fen', ARGV[4], 'subject', ARGV[5], 'state', 'UNKNOWN', 'qr_code', '',
  'created_at', ARGV[6], 'expires_at', ARGV[7], 'refunded_fen', '0', 'provider_trade_id', '')
redis.call('HDEL', KEYS[1], 'paid_at', 'closed_at', 'qr_issued_at', 'qr_renewing_at', 'closing_at')
if seq then redis.call('HSET', KEYS[1], 'seq', seq) end
return 1
`)

// closingScript marks the order's current trade as being closed (when the
// close started, ms), if it is still trade_no: a create reading the record
// without the lock must not hand out a code that the close under way will
// kill.
//
// KEYS: trade. ARGV: trade_no, now_ms.
var closingScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'trade_no') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'closing_at', ARGV[2])
return 1
`)

// issuedScript records the QR code the provider returned for trade_no
// and when it was issued at the earliest: the first code makes the trade
// PAYING; a different code for a PAYING trade is a renewed one (qr.go).
//
// KEYS: trade. ARGV: trade_no, qr_code, issued_ms.
var issuedScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'trade_no') ~= ARGV[1] then return 'stale' end
local st = redis.call('HGET', KEYS[1], 'state')
if st == 'UNKNOWN' then
  st = 'PAYING'
  redis.call('HSET', KEYS[1], 'state', st)
elseif st ~= 'PAYING' then
  return st
end
if redis.call('HGET', KEYS[1], 'qr_code') ~= ARGV[2] then
  redis.call('HSET', KEYS[1], 'qr_code', ARGV[2], 'qr_issued_at', ARGV[3])
  redis.call('HDEL', KEYS[1], 'qr_renewing_at')
end
return st
`)

// closeScript records the order's current trade CLOSED (from PAYING or
// UNKNOWN: a close the provider confirmed) and emits trade.closed once.
//
// KEYS: trade, outbox. ARGV: trade_no, now_ms, event_id, event_json.
// Returns {changed|same|stale|refused, event_json}.
var closeScript = redis.NewScript(emitLua + `
if redis.call('HGET', KEYS[1], 'trade_no') ~= ARGV[1] then return {'stale', ''} end
local st = redis.call('HGET', KEYS[1], 'state')
if st == 'CLOSED' then return {'same', ''} end
if st ~= 'PAYING' and st ~= 'UNKNOWN' then return {'refused', ''} end
redis.call('HSET', KEYS[1], 'state', 'CLOSED', 'closed_at', ARGV[2])
return {'changed', emit(KEYS[1], KEYS[2], ARGV[3], ARGV[4])}
`)

// closeRetiredScript records a retired trade CLOSED once its close is
// confirmed, and emits trade.closed once.
//
// KEYS: trades, trade, outbox. ARGV: trade_no, now_ms, event_id,
// event_json. Returns {changed|same|unknown, event_json}.
var closeRetiredScript = redis.NewScript(emitLua + `
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return {'unknown', ''} end
local a = cjson.decode(raw)
if a.state ~= 'PAYING' and a.state ~= 'UNKNOWN' then return {'same', ''} end
a.state = 'CLOSED'
a.closed_at = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(a))
return {'changed', emit(KEYS[2], KEYS[3], ARGV[3], ARGV[4])}
`)

// recordPaymentScript records a verified payment of any trade payproxy
// created for the order. The current trade, or a retired one while the
// order has no paid trade, makes the order PAID (trade.paid): a retired
// one becomes the order's trade and the current one is retired (still
// open, it is reported as displaced and closed by the poller). Once the
// order is paid, another trade's payment is a duplicate
// (trade.duplicate_paid) and, when ARGV[8] names a refund number, its full
// refund is reserved in the same step. Money taken is a fact: PAID is
// accepted from any state.
//
// KEYS: trade, trades, outbox, refunds, archived. ARGV: trade_no, now_ms,
// provider_trade_id, paid_event_id, paid_event_json, dup_event_id,
// dup_event_json, dup_refund_no, order_no.
// Returns {paid|duplicate|same|unknown, displaced_trade_no, event_json}.
var recordPaymentScript = redis.NewScript(emitLua + retireLua + markerLua + `
local live = redis.call('EXISTS', KEYS[1]) == 0 and readMarker(KEYS[5])
if live and live.live and live.trade_no == ARGV[1] and live.state == 'PAID' then return {'same', '', ''} end
expandLive(KEYS[1], KEYS[5], ARGV[9])
local cur = redis.call('HGET', KEYS[1], 'trade_no')
local curState = redis.call('HGET', KEYS[1], 'state')
if cur == ARGV[1] then
  if curState == 'PAID' then return {'same', '', ''} end
  redis.call('HSET', KEYS[1], 'state', 'PAID', 'paid_at', ARGV[2])
  if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'provider_trade_id', ARGV[3]) end
  return {'paid', '', emit(KEYS[1], KEYS[3], ARGV[4], ARGV[5])}
end
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if not raw then return {'unknown', '', ''} end
local a = cjson.decode(raw)
if a.state == 'PAID' then return {'same', '', ''} end
a.state = 'PAID'
a.paid_at = tonumber(ARGV[2])
if ARGV[3] ~= '' then a.provider_trade_id = ARGV[3] end
if curState == 'PAID' then
  a.duplicate = true
  if ARGV[8] ~= '' and redis.call('HEXISTS', KEYS[4], ARGV[8]) == 0 then
    a.refunded_fen = a.amount_fen
    redis.call('HSET', KEYS[4], ARGV[8], cjson.encode({refund_no = ARGV[8], amount_fen = a.amount_fen,
      state = 'PROCESSING', reason = 'duplicate payment', created_at = tonumber(ARGV[2]), trade_no = ARGV[1]}))
  end
  redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(a))
  return {'duplicate', '', emit(KEYS[1], KEYS[3], ARGV[6], ARGV[7])}
end
local displaced = ''
local old, oldState = retireCurrent(KEYS[1], KEYS[2])
if old and (oldState == 'PAYING' or oldState == 'UNKNOWN') then displaced = old end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[1], 'order_no', ARGV[9], 'trade_no', a.trade_no, 'channel', a.channel,
  'amount_fen', a.amount_fen, 'subject', a.subject or '', 'state', 'PAID', 'qr_code', '',
  'created_at', a.created_at or 0, 'expires_at', a.expires_at or 0, 'refunded_fen', '0',
  'provider_trade_id', a.provider_trade_id or '', 'paid_at', ARGV[2])
redis.call('HDEL', KEYS[1], 'closed_at')
return {'paid', displaced, emit(KEYS[1], KEYS[3], ARGV[4], ARGV[5])}
`)

// adoptScript keeps a trade payproxy created (its index names the order)
// but holds no record of (a record lost in a failover, or replaced before
// retired trades were kept): a verified payment for it is then recorded
// like any other. It changes nothing for a trade already known.
//
// An archived order (no record, its :archived marker) first gets back
// its records as the marker holds them (its trade, retired trades and
// refunds, seq): a payment of another of its trades is then recorded as
// it would have been before the archival — a duplicate of an order
// archived paid (refunded), the order's payment of one archived closed —
// numbered after its events; a refund retried with its number is the
// refund it was.
//
// KEYS: trade, trades, archived, refunds. ARGV: trade_no, channel,
// amount_fen, now_ms, order_no. Returns what restoreMarker restored
// (empty if nothing).
var adoptScript = redis.NewScript(markerLua + `
local out = {}
if redis.call('EXISTS', KEYS[1]) == 0 then
  local m = readMarker(KEYS[3])
  if m then restoreMarker(KEYS[1], KEYS[2], KEYS[4], m, ARGV[5], ARGV[4], out) end
  if m and m.live then redis.call('DEL', KEYS[3]) end
end
if redis.call('HGET', KEYS[1], 'trade_no') == ARGV[1] then return out end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return out end
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode({trade_no = ARGV[1], channel = ARGV[2],
  amount_fen = tonumber(ARGV[3]), state = 'UNKNOWN', subject = '', created_at = tonumber(ARGV[4]),
  expires_at = tonumber(ARGV[4]), refunded_fen = 0, provider_trade_id = ''}))
return out
`)

// refundReserveScript reserves a refund's amount against the paid amount
// before the provider is called, so concurrent refunds can never add up to
// more than was paid. refund_no is the idempotency key.
//
// KEYS: trade, refunds, archived. ARGV: refund_no, amount_fen, reason,
// now_ms, order_no. Returns {status, refund_json}.
var refundReserveScript = redis.NewScript(markerLua + `
expandLive(KEYS[1], KEYS[3], ARGV[5])
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
  reason = ARGV[3], created_at = tonumber(ARGV[4]), trade_no = redis.call('HGET', KEYS[1], 'trade_no')})
redis.call('HSET', KEYS[2], ARGV[1], rec)
return {'created', rec}
`)

// refundSettleScript ends a PROCESSING refund once: SUCCESS keeps the
// reservation, FAILED releases it; ABNORMAL (waiting for a person) keeps
// it and may still end either way. A FAILED refund the provider later
// reports (signed) as SUCCESS becomes SUCCESS and is reserved again: the
// money moved. SUCCESS is final. The reservation is on the refund's trade:
// the order's current one, or a retired one (a duplicate payment's refund).
// The event goes to the outbox.
//
// KEYS: trade, refunds, outbox, trades. ARGV: refund_no, to_state, now_ms,
// event_id, event_json. Returns {changed|same|unknown, event_json}.
var refundSettleScript = redis.NewScript(emitLua + `
local prev = redis.call('HGET', KEYS[2], ARGV[1])
if not prev then return {'unknown', ''} end
local r = cjson.decode(prev)
if r.state == ARGV[2] or r.state == 'SUCCESS' then return {'same', ''} end
if r.state == 'FAILED' and ARGV[2] ~= 'SUCCESS' then return {'same', ''} end
local function reserve(delta)
  local cur = redis.call('HGET', KEYS[1], 'trade_no')
  if r.trade_no and r.trade_no ~= '' and r.trade_no ~= cur then
    local raw = redis.call('HGET', KEYS[4], r.trade_no)
    if raw then
      local a = cjson.decode(raw)
      a.refunded_fen = (tonumber(a.refunded_fen) or 0) + delta
      redis.call('HSET', KEYS[4], r.trade_no, cjson.encode(a))
    end
  else
    redis.call('HINCRBY', KEYS[1], 'refunded_fen', delta)
  end
end
if r.state == 'FAILED' then reserve(r.amount_fen) end
r.state = ARGV[2]
r.settled_at = tonumber(ARGV[3])
if ARGV[2] == 'FAILED' then reserve(-r.amount_fen) end
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(r))
return {'changed', emit(KEYS[1], KEYS[3], ARGV[4], ARGV[5])}
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

// rescheduleScript sets when the poller visits an order next, after a
// round that leased it: to ARGV[3] if the score is still the lease
// ARGV[2] the caller took, else (someone scheduled the order meanwhile,
// e.g. for a new refund) to the earlier of the two.
//
// KEYS: zset. ARGV: member, lease_score, next_ms.
var rescheduleScript = redis.NewScript(`
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if s and tonumber(s) == tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
else
  redis.call('ZADD', KEYS[1], 'LT', ARGV[3], ARGV[1])
end
return 1
`)

// checkScript moves one entry of an order's :checks hash (JSON, see
// checkState) and returns when it is due again (ms). Modes: sent (a
// refund sent: due after the step of its checks so far), checked (one
// check more, due after the next step), failed (a trade's check failed
// once more: due after the step of its failures), wait (due at now +
// floor), soon (due within the first step: never later than now + the
// first step, never earlier than it was). A step is ARGV[4+i] (the delays,
// 1-based), the last one repeating; the delay is never below floor (a
// Retry-After).
//
// KEYS: checks. ARGV: field, mode, now_ms, floor_ms, delay_ms...
var checkScript = redis.NewScript(`
local raw = redis.call('HGET', KEYS[1], ARGV[1])
local c = {sends = 0, checks = 0, fails = 0}
if raw then c = cjson.decode(raw) end
c.sends, c.checks, c.fails = tonumber(c.sends) or 0, tonumber(c.checks) or 0, tonumber(c.fails) or 0
local now, floor, n = tonumber(ARGV[3]), tonumber(ARGV[4]), #ARGV - 4
local function step(i)
  if n == 0 then return 0 end
  if i > n then i = n end
  return tonumber(ARGV[4 + i])
end
local delay = 0
if ARGV[2] == 'sent' then
  c.sends = c.sends + 1
  delay = step(c.checks + 1)
elseif ARGV[2] == 'checked' then
  c.checks = c.checks + 1
  delay = step(c.checks + 1)
elseif ARGV[2] == 'failed' then
  c.fails = c.fails + 1
  delay = step(c.fails)
elseif ARGV[2] == 'soon' then
  delay = step(1)
  if raw and tonumber(c.next) and tonumber(c.next) <= now + delay then return tonumber(c.next) end
end
if delay < floor then delay = floor end
c.at, c.next = now, now + delay
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(c))
return c.next
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

// parkScript parks a settled order waiting for its archival (see
// park.go): it leaves the due zset for the list of the bucket ending at
// ARGV[3], registered in the parked zset (member and score: the bucket's
// end), if its score is still the lease ARGV[2] the caller holds, or
// ARGV[2] is "" (no lease: the footprint benchmark). An order scheduled
// anew meanwhile (a refund) keeps its zset entry and is not parked; one
// with no zset entry at all is parked (as rescheduleScript would add it
// back: an order with records is never left unscheduled; a second entry
// collapses when unparked).
//
// KEYS: due, parked, parked list. ARGV: member, lease_score or "", bucket_end_ms.
var parkScript = redis.NewScript(`
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if s and ARGV[2] ~= '' and tonumber(s) ~= tonumber(ARGV[2]) then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('RPUSH', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[3])
return 1
`)

// unparkScript moves up to ARGV[2] parked orders whose bucket has ended
// (by ARGV[1]) back into the due zset, due now, NX: an order scheduled
// meanwhile keeps its earlier entry, and the entries of an order parked
// twice collapse. A bucket whose list is empty is unregistered. Popping
// and adding in one script: an instance that dies after it loses nothing.
// A bucket's list is KEYS[2]:<bucket_end_ms> (the {due} slot).
//
// KEYS: due, parked. ARGV: now_ms, limit. Returns how many were moved.
var unparkScript = redis.NewScript(`
local now, left, moved = tonumber(ARGV[1]), tonumber(ARGV[2]), 0
while left > 0 do
  local b = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 1)
  if #b == 0 then break end
  local list = KEYS[2] .. ':' .. b[1]
  local orders = redis.call('LPOP', list, left)
  if orders then
    for _, o in ipairs(orders) do redis.call('ZADD', KEYS[1], 'NX', now, o) end
    left, moved = left - #orders, moved + #orders
  end
  if redis.call('EXISTS', list) == 0 then redis.call('ZREM', KEYS[2], b[1]) end
end
return moved
`)

// ordersInRedisScript counts the orders with records: the due zset's
// size plus the length of every registered parked list (at most
// retention/bucket width + a few, see parkWidth).
//
// KEYS: due, parked.
var ordersInRedisScript = redis.NewScript(`
local n = redis.call('ZCARD', KEYS[1])
for _, b in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  n = n + redis.call('LLEN', KEYS[2] .. ':' .. b)
end
return n
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
// ARGV[2] seconds so that a late outbox flush cannot queue it again. The
// tombstone is "1" for a delivered event (a dead letter's says "dead";
// "1" is Redis's shared integer, no allocation per tombstone): archival
// deletes an order's records once its trade.archived was delivered.
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
// one or moves the event to the dead-letter list. The list is bounded: a
// new dead letter drops, from its oldest end, those older than ARGV[7] ms
// (at most 100 per call) and those beyond ARGV[8] entries.
//
// KEYS: queue, events, attempts, dead, tombstone. ARGV: id, max_attempts,
// next_ms, now_ms, last_error, tombstone_ttl_s, max_age_ms, cap.
// Returns retry, gone or dead:<dropped for age>:<dropped for the cap>.
var failEventScript = redis.NewScript(`
local body = redis.call('HGET', KEYS[2], ARGV[1])
if not body then return 'gone' end
local n = redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
if n >= tonumber(ARGV[2]) then
  redis.call('RPUSH', KEYS[4], cjson.encode({id = ARGV[1], event = body, attempts = n,
    last_error = ARGV[5], failed_at = tonumber(ARGV[4])}))
  redis.call('SET', KEYS[5], 'dead', 'EX', ARGV[6])
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('HDEL', KEYS[3], ARGV[1])
  local aged, oldest = 0, tonumber(ARGV[4]) - tonumber(ARGV[7])
  while aged < 100 do
    local head = redis.call('LINDEX', KEYS[4], 0)
    if not head then break end
    local ok, d = pcall(cjson.decode, head)
    if ok and (tonumber(d.failed_at) or 0) >= oldest then break end
    redis.call('LPOP', KEYS[4])
    aged = aged + 1
  end
  local over = redis.call('LLEN', KEYS[4]) - tonumber(ARGV[8])
  if over < 0 then over = 0 end
  if over > 0 then redis.call('LTRIM', KEYS[4], over, -1) end
  return 'dead:' .. aged .. ':' .. over
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

// retainScript keeps a settled order's Redis footprint bounded (see
// retention.go). An order whose state is final — its trade PAID or
// CLOSED, every retired trade PAID or CLOSED, no refund PROCESSING or
// ABNORMAL, its outbox empty — is compacted: its trade keeps only what
// refunds, notifications and reconciliation read (the QR code, subject
// and creation-time fields go; touched_at keeps its last change) — or,
// with nothing but its trade, becomes its live marker (markerLua), which
// this script expands back into its records once its retention has
// passed. Its
// work is bounded by the order's own records: at most maxTrades trades
// and its refunds.
//
// Once the order is untouched for ARGV[2] ms, archival takes two steps,
// so that its records are never deleted before the backend holds their
// summary: (1) trade.archived (built here from the records, so it says
// what they held at this very step) is written into the outbox and the
// trade is marked archiving (the event id, and the last change it
// summed up); (2) when ARGV[4] says that event was delivered, the
// order's records are deleted. A change in between makes the event
// stale: archival starts over, a retention after the change, with a new
// event (its id carries its seq). ARGV[4] "lost:<id>" (the event neither
// queued nor delivered: dead-lettered and forgotten, or never queued)
// starts it over at once.
//
// Archival leaves the :archived marker (markerLua: the order's trade, its
// retired trades and its refunds, in brief) for another retention: a
// create of the order then answers order_paid (or, archived closed,
// numbers its events on), a refund order_archived, a late notification
// of a trade it held paid is acknowledged, and a payment of another of
// its trades restores the order's records from it (adoptScript), as does
// the late success of a refund it held FAILED (restoreScript).
//
// KEYS: trade, trades, refunds, checks, outbox, archived. ARGV: now_ms,
// retention_ms, created_at (RFC 3339), delivery ("delivered:<id>",
// "lost:<id>" or ""), order_no. Returns {gone}, {open}, {wait, due_ms},
// {archiving} (the event is on its way), {emitted, event_id, event_json}
// or {archived, trade_no..., "", refund_no..., "", indexed...}: indexed
// names the order's entries in reconciliation's per-day index,
// "<channel> <ms> <member>", each a payment PAID at ms or a refund
// SUCCESS at ms.
var retainScript = redis.NewScript(emitLua + markerLua + `
if redis.call('EXISTS', KEYS[1]) == 0 then
  local m = readMarker(KEYS[6])
  if not m or not m.live then return {'gone'} end
  if tonumber(ARGV[1]) < m.last + tonumber(ARGV[2]) then return {'wait', tostring(m.last + tonumber(ARGV[2]))} end
  expandLive(KEYS[1], KEYS[6], ARGV[5]) -- its retention has passed: archived from its records
end
local flat = redis.call('HGETALL', KEYS[1])
if #flat == 0 then return {'gone'} end
local t = {}
for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end
if not t.trade_no or (t.state ~= 'PAID' and t.state ~= 'CLOSED') then return {'open'} end
if redis.call('EXISTS', KEYS[5]) == 1 then return {'open'} end
local last = 0
local function seen(v) v = tonumber(v) if v and v > last then last = v end end
for _, f in ipairs({'touched_at', 'created_at', 'paid_at', 'closed_at', 'qr_issued_at'}) do seen(t[f]) end
local paid, paidNos, indexed, chan = 0, {}, {}, {[t.trade_no] = t.channel}
local function index(channel, at, member)
  if at then table.insert(indexed, (channel or '') .. ' ' .. at .. ' ' .. member) end
end
if t.state == 'PAID' then
  paid = tonumber(t.amount_fen) or 0
  table.insert(paidNos, t.trade_no)
  index(t.channel, t.paid_at, 'p' .. t.trade_no)
end
local trades, retired = {t.trade_no}, {}
for i, raw in ipairs(redis.call('HGETALL', KEYS[2])) do
  if i % 2 == 0 then
    local a = cjson.decode(raw)
    if a.state ~= 'PAID' and a.state ~= 'CLOSED' then return {'open'} end
    seen(a.created_at) seen(a.paid_at) seen(a.closed_at) seen(a.touched_at)
    if a.state == 'PAID' then
      paid = paid + (tonumber(a.amount_fen) or 0)
      table.insert(paidNos, a.trade_no)
      index(a.channel, a.paid_at, 'p' .. a.trade_no)
    end
    chan[a.trade_no] = a.channel
    table.insert(trades, a.trade_no)
    table.insert(retired, a)
  end
end
local refunds, refundNos, refunded = {}, {}, 0
for i, raw in ipairs(redis.call('HVALS', KEYS[3])) do
  local r = cjson.decode(raw)
  if r.state == 'PROCESSING' or r.state == 'ABNORMAL' then return {'open'} end
  seen(r.created_at) seen(r.settled_at)
  local tn = r.trade_no
  if not tn or tn == '' then tn = t.trade_no end
  if r.state == 'SUCCESS' then
    refunded = refunded + (tonumber(r.amount_fen) or 0)
    index(chan[tn], r.settled_at, 'r' .. r.refund_no)
  end
  table.insert(refunds, cjson.encode({refund_no = r.refund_no, trade_no = tn, amount_fen = r.amount_fen, state = r.state}))
  table.insert(refundNos, r.refund_no)
end
local current = t.archiving and tonumber(t.archiving_last) == last
if tonumber(ARGV[1]) < last + tonumber(ARGV[2]) then
  if #retired == 0 and #refunds == 0 and not t.archiving then
    writeMarker(KEYS[6], {state = t.state, trade_no = t.trade_no, channel = t.channel, amount_fen = t.amount_fen,
      refunded_fen = t.refunded_fen, paid_at = t.paid_at, seq = t.seq, others = {}, refunds = {},
      last = last, live = true}, 0)
    redis.call('DEL', KEYS[1], KEYS[4])
    return {'wait', tostring(last + tonumber(ARGV[2]))}
  end
  -- Every byte of a compacted trade is kept for a retention by every
  -- settled order (issue 17): what can be derived goes too —
  -- refunded_fen 0 (read as 0 when absent), and touched_at when its
  -- trade's paid_at or closed_at says the same (the next visit finds the
  -- same last change). order_no stays: the previous release reads the
  -- order from it, and its instances run beside this one's during a
  -- rolling upgrade.
  if last == tonumber(t.paid_at) or last == tonumber(t.closed_at) then
    redis.call('HDEL', KEYS[1], 'touched_at')
  else
    redis.call('HSET', KEYS[1], 'touched_at', last)
  end
  if tonumber(t.refunded_fen) == 0 then redis.call('HDEL', KEYS[1], 'refunded_fen') end
  redis.call('HDEL', KEYS[1], 'qr_code', 'qr_issued_at', 'qr_renewing_at', 'subject', 'created_at', 'expires_at',
    'provider_trade_id', 'confirmed_at', 'closing_at')
  if t.archiving and not current then redis.call('HDEL', KEYS[1], 'archiving', 'archiving_last') end
  for _, a in ipairs(retired) do
    if a.subject or a.created_at or a.expires_at or a.provider_trade_id then
      a.touched_at = math.max(tonumber(a.paid_at) or 0, tonumber(a.closed_at) or 0, tonumber(a.created_at) or 0)
      a.subject, a.created_at, a.expires_at, a.provider_trade_id = nil, nil, nil, nil
      redis.call('HSET', KEYS[2], a.trade_no, cjson.encode(a))
    end
  end
  return {'wait', tostring(last + tonumber(ARGV[2]))}
end
if current and ARGV[4] ~= 'delivered:' .. t.archiving and ARGV[4] ~= 'lost:' .. t.archiving then
  return {'archiving'}
end
if not current or ARGV[4] ~= 'delivered:' .. t.archiving then
  local seq = (tonumber(t.seq) or 0) + 1
  local id = 'evt_' .. t.trade_no .. '_' .. seq .. '_trade.archived'
  local body = cjson.encode({id = id, type = 'trade.archived', created_at = ARGV[3], data = {
    order_no = ARGV[5], trade_no = t.trade_no, channel = t.channel, amount_fen = tonumber(t.amount_fen),
    state = t.state, paid_fen = paid, refunded_fen = refunded, refunds = '@refunds@', seq = -1}})
  body = string.gsub(body, '"@refunds@"', function() return '[' .. table.concat(refunds, ',') .. ']' end)
  body = emit(KEYS[1], KEYS[5], id, body)
  redis.call('HSET', KEYS[1], 'archiving', id, 'archiving_last', last)
  return {'emitted', id, body}
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
local others, kept = {}, {}
for _, a in ipairs(retired) do
  others[a.trade_no] = {a.channel or '', tonumber(a.amount_fen) or 0, a.state, tonumber(a.paid_at) or 0,
    tonumber(a.refunded_fen) or 0, a.duplicate and 1 or 0}
end
for _, raw in ipairs(refunds) do
  local r = cjson.decode(raw)
  kept[r.refund_no] = {r.trade_no, tonumber(r.amount_fen) or 0, r.state}
end
writeMarker(KEYS[6], {state = t.state, trade_no = t.trade_no, channel = t.channel, amount_fen = t.amount_fen,
  refunded_fen = t.refunded_fen, paid_at = t.paid_at, seq = t.seq, others = others, refunds = kept}, ARGV[2])
local out = {'archived'}
for _, no in ipairs(trades) do table.insert(out, no) end
table.insert(out, '')
for _, no in ipairs(refundNos) do table.insert(out, no) end
table.insert(out, '')
for _, e in ipairs(indexed) do table.insert(out, e) end
return out
`)

// restoreScript gives an archived order its records back from its
// marker (markerLua), unless it has some: a notification that is news
// for it (the late success of a refund it held FAILED) is then handled
// as before the archival. The order is archived again later.
//
// KEYS: trade, trades, archived, refunds. ARGV: order_no, now_ms.
// Returns what restoreMarker restored (empty if nothing).
var restoreScript = redis.NewScript(markerLua + `
local out = {}
if redis.call('EXISTS', KEYS[1]) == 1 then return out end
local m = readMarker(KEYS[3])
if m then restoreMarker(KEYS[1], KEYS[2], KEYS[4], m, ARGV[1], ARGV[2], out) end
if m and m.live then redis.call('DEL', KEYS[3]) end
return out
`)

// reindexScript binds an index (trade or refund number → order) to the
// order without expiry, unless it names another order.
//
// KEYS: index. ARGV: order_no. Returns 1, or 0 (another order's).
var reindexScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v and v ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
return 1
`)

// reindexTradeScript binds a trade's index, the field trade_no of its
// bucket, to the order, unless it names another order.
//
// KEYS: bucket. ARGV: order_no, trade_no. Returns 1, or 0 (another
// order's).
var reindexTradeScript = redis.NewScript(`
local v = redis.call('HGET', KEYS[1], ARGV[2])
if v and v ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[1])
return 1
`)

// archiveTradeIndexScript writes an archived order's trade index as a
// key of its own that expires with the order's marker, unless the key
// names another order.
//
// KEYS: trade index. ARGV: order_no, ttl_ms. Returns 1, or 0 (another
// order's).
var archiveTradeIndexScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v and v ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`)

// tradeOrLiveScript reads an order's current trade for reconciliation:
// its trade_no, state, amount_fen and channel, and its live marker
// (markerLua), in one step: a script expanding the marker cannot come in
// between.
//
// KEYS: trade, archived. Returns {trade_no, state, amount_fen, channel,
// marker} ("" for what is missing).
var tradeOrLiveScript = redis.NewScript(`
local v = redis.call('HMGET', KEYS[1], 'trade_no', 'state', 'amount_fen', 'channel')
return {v[1] or '', v[2] or '', v[3] or '', v[4] or '', redis.call('GET', KEYS[2]) or ''}
`)

// unbucketTradeScript removes a trade's field from its bucket if it
// names the order.
//
// KEYS: bucket. ARGV: order_no, trade_no. Returns 1 if removed.
var unbucketTradeScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], ARGV[2]) ~= ARGV[1] then return 0 end
return redis.call('HDEL', KEYS[1], ARGV[2])
`)

// confirmScript writes the field confirm WAITs on, only into a record
// that exists (an order archived meanwhile must not get a stray record).
//
// KEYS: trade. ARGV: now_ms.
var confirmScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'confirmed_at', ARGV[1])
return 1
`)
