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
//	dead  set when reuse was detected: the session only waits for its
//	      revocation to be written before it is deleted, and every token
//	      of it is reuse meanwhile
//
// The per-user index is a sorted set of sids scored by the unix ms at which
// their hash expires, so logout_all finds every live session. Every script
// that adds to it first drops the entries whose time has passed
// (ZREMRANGEBYSCORE up to now) and sets its expiry to its last entry's, and
// a login that would take it past max_sessions ends the least recently
// used sessions first (createScript): the index and the session hashes of
// a user stay within max_sessions, and every one of them expires.

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
-- judge says what a refresh token of generation gen may do with the session
-- h = HMGET(gen, rot, end, dead): 'current' (at or ahead of the stored
-- generation: ahead means Redis lost a write, and the token is authentic),
-- 'grace' (one behind, within reuse_grace of the rotation that superseded
-- it), 'ended' (past session_max) or 'reuse'.
local function judge(h, gen, grace, now)
  local cur, rot, stop = tonumber(h[1]), tonumber(h[2]), tonumber(h[3])
  if stop - now <= 0 then return 'ended' end
  if h[4] then return 'reuse' end
  if gen >= cur then return 'current' end
  if gen == cur - 1 and now - rot < grace then return 'grace' end
  return 'reuse'
end
`

// createScript starts a session at generation 1, within max_sessions.
// KEYS: session, index, then the session of each sid to end. ARGV: sid,
// refresh_ttl ms, session_max ms, max_sessions, then the sids to end:
// sessions whose revocation the caller has written because a first run
// answered "full". Returns
//
//	{"exists"}                          a sid collision
//	{"full", sid...}                    (first run only) the user has
//	                                    max_sessions sessions: these, the
//	                                    least recently used, must end first
//	{"created", gen, ttl, end, ended}   ended: how many of the sids to end
//	                                    still existed and were deleted
//
// A run with sids to end creates the session even if a concurrent login
// has taken the room meanwhile (it did end its share): the surplus is at
// most one session per concurrent login, and the next login ends it.
var createScript = redis.NewScript(luaPrelude + `
local now = nowms()
if redis.call('EXISTS', KEYS[1]) == 1 then return {'exists'} end
local ended = 0
for i = 5, #ARGV do
  if redis.call('DEL', KEYS[i - 2]) == 1 then ended = ended + 1 end
  redis.call('ZREM', KEYS[2], ARGV[i])
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4]) + 1
if #ARGV == 4 and over > 0 then
  local oldest = redis.call('ZRANGE', KEYS[2], 0, over - 1)
  table.insert(oldest, 1, 'full')
  return oldest
end
local max = tonumber(ARGV[3])
local ttl = math.min(tonumber(ARGV[2]), max)
redis.call('HSET', KEYS[1], 'gen', 1, 'rot', now, 'auth', now, 'end', now + max)
redis.call('PEXPIRE', KEYS[1], ttl)
index(KEYS[2], ARGV[1], now + ttl, now)
return {'created', 1, ttl, now + max, ended}
`)

// rotateScript is one refresh. KEYS: session, index. ARGV: the token's gen,
// sid, refresh_ttl ms, reuse_grace ms. Returns one of
//
//	{"unknown"}                  no such session (expired, logged out, revoked)
//	{"rotated", gen, ttl, end}   the token was current: gen is the new generation
//	{"replayed", gen, ttl, end}  one behind, inside the grace window of the
//	                             rotation that superseded it: answer for gen
//	{"reuse", gen}               anything else: the session is marked dead;
//	                             the caller revokes it, then deletes it
//
// end is the unix ms of session_max: no token may outlive it. The session
// is not deleted on reuse: its revocation must be written first (another
// slot), and a dead session keeps answering reuse until then, so a failed
// revocation is retried by the next attempt with any of its tokens.
var rotateScript = redis.NewScript(luaPrelude + `
local now = nowms()
local h = redis.call('HMGET', KEYS[1], 'gen', 'rot', 'end', 'dead')
if not h[1] then return {'unknown'} end
local cur, stop = tonumber(h[1]), tonumber(h[3])
local gen = tonumber(ARGV[1])
local verdict = judge(h, gen, tonumber(ARGV[4]), now)
if verdict == 'ended' then
  forget(KEYS[1], KEYS[2], ARGV[2])
  return {'unknown'}
end
if verdict == 'current' then
  cur = gen + 1
  local ttl = math.min(tonumber(ARGV[3]), stop - now)
  redis.call('HSET', KEYS[1], 'gen', cur, 'rot', now)
  redis.call('PEXPIRE', KEYS[1], ttl)
  index(KEYS[2], ARGV[2], now + ttl, now)
  return {'rotated', cur, ttl, stop}
end
if verdict == 'grace' then
  return {'replayed', cur, redis.call('PTTL', KEYS[1]), stop}
end
redis.call('HSET', KEYS[1], 'dead', 1)
return {'reuse', cur}
`)

// checkScript tells whether refresh would accept a refresh token, without
// rotating: logout_all takes only such tokens. KEYS: session, index. ARGV:
// the token's gen, sid, reuse_grace ms. Returns "ok", "unknown" or "reuse"
// (the session is then marked dead, as by rotateScript).
var checkScript = redis.NewScript(luaPrelude + `
local now = nowms()
local h = redis.call('HMGET', KEYS[1], 'gen', 'rot', 'end', 'dead')
if not h[1] then return 'unknown' end
local verdict = judge(h, tonumber(ARGV[1]), tonumber(ARGV[3]), now)
if verdict == 'ended' then
  forget(KEYS[1], KEYS[2], ARGV[2])
  return 'unknown'
end
if verdict == 'reuse' then
  redis.call('HSET', KEYS[1], 'dead', 1)
  return 'reuse'
end
return 'ok'
`)

// logoutScript ends the session of a refresh token whose revocation the
// caller has already written. KEYS: session, index. ARGV: the token's gen,
// sid, reuse_grace ms. Returns "ended" (a token refresh would accept),
// "reuse" (a superseded one: the session is ended all the same) or
// "unknown".
var logoutScript = redis.NewScript(luaPrelude + `
local now = nowms()
local h = redis.call('HMGET', KEYS[1], 'gen', 'rot', 'end', 'dead')
if not h[1] then return 'unknown' end
local verdict = judge(h, tonumber(ARGV[1]), tonumber(ARGV[3]), now)
forget(KEYS[1], KEYS[2], ARGV[2])
if verdict == 'ended' then return 'unknown' end
if verdict == 'reuse' then return 'reuse' end
return 'ended'
`)

// endScript ends one session whose revocation is written (admin revoke,
// reuse). KEYS: session, index. ARGV: sid. Returns 1 if it existed.
var endScript = redis.NewScript(luaPrelude + `
local existed = redis.call('EXISTS', KEYS[1])
forget(KEYS[1], KEYS[2], ARGV[1])
return existed
`)

// endSessionsScript ends the listed sessions of one user, whose revocation
// is written: exactly these, so a session opened since they were listed
// (a login racing logout_all) is not ended unrevoked. KEYS: index, then
// one session key per sid. ARGV: the sids. Returns the sids whose session
// still existed.
var endSessionsScript = redis.NewScript(`
local ended = {}
for i, sid in ipairs(ARGV) do
  if redis.call('DEL', KEYS[i + 1]) == 1 then table.insert(ended, sid) end
  redis.call('ZREM', KEYS[1], sid)
end
if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('DEL', KEYS[1]) end
return ended
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
