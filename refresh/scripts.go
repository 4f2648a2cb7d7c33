package refresh

import "github.com/redis/go-redis/v9"

// Every change to a session is one Lua script, so that two tollgate
// instances racing on the same refresh token see one consistent order of
// events (the seed's "EXISTS, then DEL" let both rotate). The scripts read
// the clock with Redis's TIME, so every instance judges the grace window and
// session_max by the same clock. All keys of a script carry the user's hash
// tag and live on one Cluster slot.
//
// A session hash holds:
//
//	gen   the current generation (1 at login, +1 per rotation)
//	rot   unix ms of the last rotation (or of the login)
//	auth  unix ms of the login
//	end   unix ms when session_max ends the session, whatever happens
//
// The per-user index is a sorted set of sids scored by the unix ms at which
// their hash expires, so logout_all finds every live session.

// luaPrelude is shared by the scripts: the Redis clock and index upkeep.
const luaPrelude = `
local function nowms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- index records sid until its hash expires, forgets sessions already gone,
-- and keeps the index itself no longer than its last session.
local function index(key, sid, expires, now)
  redis.call('ZADD', key, expires, sid)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if last[2] then redis.call('PEXPIREAT', key, math.floor(tonumber(last[2]))) end
end
local function forget(skey, ikey, sid)
  redis.call('DEL', skey)
  redis.call('ZREM', ikey, sid)
end
`

// createScript starts a session at generation 1.
// KEYS: session, index. ARGV: sid, refresh_ttl ms, session_max ms.
// Returns {"created", gen, ttl ms, end ms} or {"exists"} on a sid collision.
var createScript = redis.NewScript(luaPrelude + `
local now = nowms()
if redis.call('EXISTS', KEYS[1]) == 1 then return {'exists'} end
local max = tonumber(ARGV[3])
local ttl = math.min(tonumber(ARGV[2]), max)
redis.call('HSET', KEYS[1], 'gen', 1, 'rot', now, 'auth', now, 'end', now + max)
redis.call('PEXPIRE', KEYS[1], ttl)
index(KEYS[2], ARGV[1], now + ttl, now)
return {'created', 1, ttl, now + max}
`)

// rotateScript is one refresh. KEYS: session, index. ARGV: the token's gen,
// sid, refresh_ttl ms, reuse_grace ms. Returns one of
//
//	{"unknown"}                  no such session (expired, logged out, revoked)
//	{"rotated", gen, ttl, end}   the token was current: gen is the new generation
//	{"replayed", gen, ttl, end}  one behind, inside the grace window of the
//	                             rotation that superseded it: answer for gen
//	{"reuse", gen}               anything else: the session is now revoked
//
// end is the unix ms of session_max: no token may outlive it.
//
// A token ahead of the stored generation is authentic (it is signed) and can
// only mean Redis lost a write (failover, AOF fsync window): it rotates
// rather than logging the user out because Redis blinked.
var rotateScript = redis.NewScript(luaPrelude + `
local now = nowms()
local h = redis.call('HMGET', KEYS[1], 'gen', 'rot', 'end')
if not h[1] then return {'unknown'} end
local cur, rot, stop = tonumber(h[1]), tonumber(h[2]), tonumber(h[3])
local gen = tonumber(ARGV[1])
local left = stop - now
if left <= 0 then
  forget(KEYS[1], KEYS[2], ARGV[2])
  return {'unknown'}
end
if gen >= cur then
  cur = gen + 1
  local ttl = math.min(tonumber(ARGV[3]), left)
  redis.call('HSET', KEYS[1], 'gen', cur, 'rot', now)
  redis.call('PEXPIRE', KEYS[1], ttl)
  index(KEYS[2], ARGV[2], now + ttl, now)
  return {'rotated', cur, ttl, stop}
end
if gen == cur - 1 and now - rot < tonumber(ARGV[4]) then
  return {'replayed', cur, redis.call('PTTL', KEYS[1]), stop}
end
forget(KEYS[1], KEYS[2], ARGV[2])
return {'reuse', cur}
`)

// endScript ends one session (logout, reuse, admin revoke).
// KEYS: session, index. ARGV: sid. Returns 1 if it existed.
var endScript = redis.NewScript(luaPrelude + `
local existed = redis.call('EXISTS', KEYS[1])
forget(KEYS[1], KEYS[2], ARGV[1])
return existed
`)

// endAllScript ends every session of one user. KEYS: index. ARGV: the
// prefix of that user's session keys (same hash tag as the index, so the
// keys it builds are on the index's slot). Returns the sids it found.
var endAllScript = redis.NewScript(`
local sids = redis.call('ZRANGE', KEYS[1], 0, -1)
for _, sid in ipairs(sids) do redis.call('DEL', ARGV[1] .. sid) end
redis.call('DEL', KEYS[1])
return sids
`)

// legacyTakeScript accepts a seed-era refresh token once: it deletes the
// key only if it holds exactly this token. KEYS: legacy key. ARGV: token.
// Returns 1 when this caller took it.
var legacyTakeScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
`)
