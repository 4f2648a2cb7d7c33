package refresh

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/redisclient"
	"github.com/tollgate/tollgate/internal/revocation"
)

// keyPrefix starts every key tollgate's sessions use.
const keyPrefix = "tollgate:"

// revokeMargin keeps a revoked session listed a little past the expiry of
// its last access token, for clock skew between instances.
const revokeMargin = 5 * time.Second

// sessionStore is the Redis side of the session lifecycle of one realm.
type sessionStore struct {
	rdb        redis.UniversalClient
	realm      string
	refreshTTL time.Duration
	sessionMax time.Duration
	grace      time.Duration
	accessTTL  time.Duration
	// maxSessions bounds the sessions of one user (max_sessions).
	maxSessions int
	now         func() time.Time
	metrics     *refreshMetrics
	// durability, when it asks for replicas, makes every write wait until
	// that many replicas have it, so a failover cannot lose a session that
	// was answered.
	durability redisclient.Durability
}

// rotation is what the rotate script decided.
type rotation struct {
	outcome string // rotated, replayed, reuse, unknown
	gen     int64
	ttl     time.Duration
	end     time.Time // session_max: no token of the session outlives it
}

// userTag escapes the characters that would break the hash tag ({ and }),
// and % so the escaping is reversible and two users never share keys.
func userTag(user string) string { return userTagEscaper.Replace(user) }

var userTagEscaper = strings.NewReplacer("%", "%25", "{", "%7B", "}", "%7D")

// userKeys starts the keys of one user of a realm: tollgate:{u:<user>} in
// the default realm (""), the layout of every release before realms, and
// tollgate:<realm tag>:{u:<user>} in any other. The hash tag stays the
// user's, so one user's keys of a realm share a Cluster slot.
func userKeys(realm, user string) string {
	if realm == "" {
		return keyPrefix + "{u:" + userTag(user) + "}"
	}
	return keyPrefix + revocation.RealmTag(realm) + ":{u:" + userTag(user) + "}"
}

// sessionKey is the hash of one session: <userKeys>:s:<sid>.
func sessionKey(realm, user, sid string) string { return userKeys(realm, user) + ":s:" + sid }

// indexKey is the sorted set of a user's sessions: <userKeys>:sessions.
func indexKey(realm, user string) string { return userKeys(realm, user) + ":sessions" }

// legacyKey is where the seed's TokenService kept a refresh token:
// prefix + lowercase hex MD5 of the token text.
func legacyKey(prefix, token string) string {
	sum := md5.Sum([]byte(token))
	return prefix + hex.EncodeToString(sum[:])
}

func (s *sessionStore) sessionKey(user, sid string) string { return sessionKey(s.realm, user, sid) }

func (s *sessionStore) indexKey(user string) string { return indexKey(s.realm, user) }

// create starts a new session for user. When the user already has
// maxSessions sessions, the script names the least recently used ones
// instead; they are ended as a logout ends a session — revoked here first
// (those whose access tokens may still be accepted), then deleted by the
// second run of the script, which creates the new session in the same
// step. So a create is one script, or at the limit two scripts, a read
// and a revocation.
func (s *sessionStore) create(ctx context.Context, user, sid string) (rotation, error) {
	res, err := s.runCreate(ctx, user, sid, nil)
	if err != nil {
		return rotation{}, err
	}
	if res[0] == "full" {
		ending := make([]string, 0, len(res)-1)
		for _, v := range res[1:] {
			if e, ok := v.(string); ok {
				ending = append(ending, e)
			}
		}
		live, err := s.tokensMayBeAccepted(ctx, user, ending)
		if err != nil {
			return rotation{}, err
		}
		if err := s.revoke(ctx, live...); err != nil {
			return rotation{}, err
		}
		if res, err = s.runCreate(ctx, user, sid, ending); err != nil {
			return rotation{}, err
		}
	}
	if res[0] == "exists" {
		return rotation{}, errors.New("creating session: session id collision")
	}
	if len(res) != 5 {
		return rotation{}, fmt.Errorf("creating session: unexpected script reply %v", res)
	}
	ended, _ := res[4].(int64)
	s.metrics.sessionsEnded("max_sessions", int(ended))
	return parseRotation(res[:4])
}

// tokensMayBeAccepted keeps the sessions whose last access token a
// verifier may still accept, judged on Redis's clock: one was issued at
// the last rotation ("rot"), or up to reuse_grace later for a replayed
// token, and is accepted access_ttl long plus the largest leeway. The
// others (a session idle for hours) need no revocation entry: ending them
// costs no entry in every authjwt's revoked set. A session already gone
// has nothing left to revoke either.
func (s *sessionStore) tokensMayBeAccepted(ctx context.Context, user string, sids []string) ([]string, error) {
	rots := make([]*redis.SliceCmd, len(sids))
	var clock *redis.TimeCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		clock = p.Time(ctx)
		for i, sid := range sids {
			rots[i] = p.HMGet(ctx, s.sessionKey(user, sid), "rot")
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the sessions to end: %w", err)
	}
	accepted := s.grace + s.accessTTL + revocation.MaxLeeway + revokeMargin
	var live []string
	for i, sid := range sids {
		if rot := rots[i].Val(); rot[0] != nil && unixMilli(rot[0]).Add(accepted).After(clock.Val()) {
			live = append(live, sid)
		}
	}
	return live, nil
}

// runCreate runs createScript once; ending are sessions of the user whose
// revocation is written, to be deleted.
func (s *sessionStore) runCreate(ctx context.Context, user, sid string, ending []string) ([]any, error) {
	keys, args := s.withSessions([]string{s.sessionKey(user, sid), s.indexKey(user)},
		[]any{sid, s.refreshTTL.Milliseconds(), s.sessionMax.Milliseconds(), s.maxSessions}, user, ending)
	res, err := s.run(ctx, createScript, keys, args...).Slice()
	if err != nil {
		return nil, fmt.Errorf("creating session: %w", err)
	}
	if len(res) == 0 {
		return nil, errors.New("creating session: empty script reply")
	}
	return res, nil
}

// rotate runs one refresh of the session sid at generation gen.
func (s *sessionStore) rotate(ctx context.Context, user, sid string, gen int64) (rotation, error) {
	res, err := s.run(ctx, rotateScript, []string{s.sessionKey(user, sid), s.indexKey(user)},
		gen, sid, s.refreshTTL.Milliseconds(), s.grace.Milliseconds()).Slice()
	if err != nil {
		return rotation{}, fmt.Errorf("rotating session: %w", err)
	}
	return parseRotation(res)
}

// run executes a writing script; with durability it waits for the
// replicas (redisclient.Durability.Run) and fails when too few confirm: the
// client then retries, and the retry finds the write (a replayed refresh
// within reuse_grace).
func (s *sessionStore) run(ctx context.Context, script *redis.Script, keys []string, args ...any) *redis.Cmd {
	return s.durability.Run(ctx, s.rdb, script, keys, args...)
}

// parseRotation reads a script reply {outcome, [gen, [ttl ms, end ms]]}.
func parseRotation(res []any) (rotation, error) {
	var r rotation
	var ok bool
	if len(res) > 0 {
		r.outcome, ok = res[0].(string)
	}
	if !ok {
		return rotation{}, fmt.Errorf("unexpected script reply %v", res)
	}
	if len(res) > 1 {
		if r.gen, ok = res[1].(int64); !ok {
			return rotation{}, fmt.Errorf("unexpected script reply gen %v", res[1])
		}
	}
	if len(res) > 2 {
		ms, ok := res[2].(int64)
		if !ok {
			return rotation{}, fmt.Errorf("unexpected script reply ttl %v", res[2])
		}
		r.ttl = time.Duration(ms) * time.Millisecond
	}
	if len(res) > 3 {
		ms, ok := res[3].(int64)
		if !ok {
			return rotation{}, fmt.Errorf("unexpected script reply end %v", res[3])
		}
		r.end = time.UnixMilli(ms)
	}
	return r, nil
}

// Ending sessions always writes the revocation first and deletes second:
// the revoked set is on another slot, so the two cannot be one script, and
// in this order a failure of either leaves a session that a retry ends
// again (a 503 means "nothing lost, retry"), never a deleted session whose
// access tokens still work.

// end ends one session and makes its access tokens fail everywhere.
func (s *sessionStore) end(ctx context.Context, user, sid string) error {
	if err := s.revoke(ctx, sid); err != nil {
		return err
	}
	if err := s.run(ctx, endScript, []string{s.sessionKey(user, sid), s.indexKey(user)}, sid).Err(); err != nil {
		return fmt.Errorf("ending session: %w", err)
	}
	return nil
}

// logout ends the session of a refresh token of generation gen, reporting
// "ended", "reuse" (the token was superseded: the session is ended anyway)
// or "unknown".
func (s *sessionStore) logout(ctx context.Context, user, sid string, gen int64) (string, error) {
	if err := s.revoke(ctx, sid); err != nil {
		return "", err
	}
	verdict, err := s.run(ctx, logoutScript, []string{s.sessionKey(user, sid), s.indexKey(user)},
		gen, sid, s.grace.Milliseconds()).Text()
	if err != nil {
		return "", fmt.Errorf("ending session: %w", err)
	}
	return verdict, nil
}

// check reports whether refresh would accept a refresh token of generation
// gen: "ok", "unknown", or "reuse" (the session is then marked dead and
// must be ended with end).
func (s *sessionStore) check(ctx context.Context, user, sid string, gen int64) (string, error) {
	verdict, err := s.run(ctx, checkScript, []string{s.sessionKey(user, sid), s.indexKey(user)},
		gen, sid, s.grace.Milliseconds()).Text()
	if err != nil {
		return "", fmt.Errorf("checking session: %w", err)
	}
	return verdict, nil
}

// live reports whether an access token's session is still in force: not
// revoked, still stored, not marked dead.
func (s *sessionStore) live(ctx context.Context, user, sid string) (bool, error) {
	revoked, err := revocation.IsRevoked(ctx, s.rdb, revocation.Member(s.realm, sid))
	if err != nil || revoked {
		return false, err
	}
	h, err := s.rdb.HMGet(ctx, s.sessionKey(user, sid), "gen", "dead").Result()
	if err != nil {
		return false, fmt.Errorf("reading session: %w", err)
	}
	return h[0] != nil && h[1] == nil, nil
}

// endAll ends every session of user and returns the ids of those that
// were still open. The sessions listed now are revoked, then deleted;
// one opened in between (a concurrent login) stays open.
func (s *sessionStore) endAll(ctx context.Context, user string) ([]string, error) {
	sids, err := s.sessionIDs(ctx, user)
	if err != nil || len(sids) == 0 {
		return nil, err
	}
	if err := s.revoke(ctx, sids...); err != nil {
		return nil, err
	}
	keys, args := s.withSessions([]string{s.indexKey(user)}, nil, user, sids)
	ended, err := s.run(ctx, endSessionsScript, keys, args...).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("ending all sessions: %w", err)
	}
	return ended, nil
}

// withSessions appends the session key of each of the user's sids to a
// script's keys and the sid to its arguments, in the same order.
func (s *sessionStore) withSessions(keys []string, args []any, user string, sids []string) ([]string, []any) {
	for _, sid := range sids {
		keys = append(keys, s.sessionKey(user, sid))
		args = append(args, sid)
	}
	return keys, args
}

// sessionIDs reads the user's index: the sids of the sessions that may
// still be open.
func (s *sessionStore) sessionIDs(ctx context.Context, user string) ([]string, error) {
	sids, err := s.rdb.ZRange(ctx, s.indexKey(user), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("listing sessions: %w", err)
	}
	return sids, nil
}

// sessionInfo is one open session as the admin API lists it.
type sessionInfo struct {
	Sid         string    `json:"sid"`
	Created     time.Time `json:"created"`      // the login
	LastRotated time.Time `json:"last_rotated"` // the last refresh (the login when none yet)
	Expires     time.Time `json:"expires"`      // when the refresh token runs out if not used
	Ends        time.Time `json:"ends"`         // session_max: the session's end, however active
	// ReuseDetected marks a session whose refresh token was reused: it is
	// being revoked, and every token of it is refused meanwhile.
	ReuseDetected bool `json:"reuse_detected,omitempty"`
}

// list reads the open sessions of user, oldest first: the index, then one
// pipeline (one slot: the user's hash tag) for every session's hash and
// TTL. It writes nothing, so reading a hash that expires in between only
// leaves that session out.
func (s *sessionStore) list(ctx context.Context, user string) ([]sessionInfo, error) {
	sids, err := s.sessionIDs(ctx, user)
	if err != nil || len(sids) == 0 {
		return nil, err
	}
	hashes := make([]*redis.SliceCmd, len(sids))
	ttls := make([]*redis.DurationCmd, len(sids))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, sid := range sids {
			hashes[i] = p.HMGet(ctx, s.sessionKey(user, sid), "auth", "rot", "end", "dead")
			ttls[i] = p.PTTL(ctx, s.sessionKey(user, sid))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading sessions: %w", err)
	}
	now := s.now()
	out := make([]sessionInfo, 0, len(sids))
	for i, sid := range sids {
		h, ttl := hashes[i].Val(), ttls[i].Val()
		if h[0] == nil || ttl <= 0 {
			continue // gone since the index was read
		}
		out = append(out, sessionInfo{Sid: sid, Created: unixMilli(h[0]), LastRotated: unixMilli(h[1]),
			Expires: now.Add(ttl).Truncate(time.Millisecond), Ends: unixMilli(h[2]), ReuseDetected: h[3] != nil})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}

// unixMilli reads a hash field holding unix milliseconds, as Lua wrote it
// (a number, which Redis may render in exponent form).
func unixMilli(v any) time.Time {
	s, _ := v.(string)
	ms, _ := strconv.ParseFloat(s, 64)
	return time.UnixMilli(int64(ms)).UTC()
}

// revoke publishes sids to every authjwt instance watching this Redis. It is
// a separate command, not part of a script: the revoked set is not on the
// user's slot. The entries outlive the last access token by the largest
// leeway a verifier may allow, so an expired token inside its leeway is
// still refused.
func (s *sessionStore) revoke(ctx context.Context, sids ...string) error {
	until := s.now().Add(s.accessTTL + revocation.MaxLeeway + revokeMargin)
	members := make([]string, len(sids))
	for i, sid := range sids {
		members[i] = revocation.Member(s.realm, sid)
	}
	return revocation.Revoke(ctx, s.rdb, until, members...)
}

// takeLegacy removes a seed-era token from Redis if it is still there,
// reporting whether this caller got it (only one concurrent caller can).
func (s *sessionStore) takeLegacy(ctx context.Context, prefix, token string) (bool, error) {
	n, err := legacyTakeScript.Run(ctx, s.rdb, []string{legacyKey(prefix, token)}, token).Int()
	if err != nil {
		return false, fmt.Errorf("taking legacy token: %w", err)
	}
	return n == 1, nil
}
