package refresh

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/revocation"
	"github.com/tollgate/tollgate/internal/testcaddy"
	"github.com/tollgate/tollgate/internal/testredis"
)

// One user logs in 10 000 times through two sites of one realm — on one
// the sessions last an hour, on the other they expire within a second —
// refreshing some sessions and logging out of others, four logins at a
// time. Every key jwt_refresh and the revocation write stays bounded all
// along: the user's index and session hashes never hold more than
// max_sessions sessions (plus one per concurrent login while logins race,
// none once a login runs alone) and every one of them expires; expired
// sessions leave the index at the next write; the revoked set keeps no
// entry past its time. Redis's memory for the user is logged before and
// after (go test -run TenThousand -v ./refresh).
func TestTenThousandLoginsOfOneUserKeepItsRedisFootprintBounded(t *testing.T) {
	const (
		user   = "ten-thousand"
		rounds = 20
		perRun = 500 // logins per round; 20 × 500 = 10 000
	)
	testKeys(t)
	rd := testredis.Start(t)
	backend := startBackend(t)
	long, short := testcaddy.FreePort(t), testcaddy.FreePort(t)
	testcaddy.Start(t, "", siteBlock(long, rd.URL(), backend.hostPort(), "refresh_ttl 1h\n\t\tsession_max 2h\n\t\taccess_ttl 10s")+
		siteBlock(short, rd.URL(), backend.hostPort(), "refresh_ttl 1s"))
	f := &footprint{t: t, rdb: rd.Client(), user: user, limit: defaultMaxSessions + workers - 1,
		sites: [2]string{fmt.Sprintf("http://127.0.0.1:%d", long), fmt.Sprintf("http://127.0.0.1:%d", short)}}
	f.seedStaleRevocations()
	before := f.usedMemory()

	for round := range rounds {
		f.loginRound(round*perRun, perRun)
		if round == rounds/2 {
			f.letShortSessionsExpire()
		}
		f.check(fmt.Sprintf("after %d logins", (round+1)*perRun))
	}
	// A login alone ends whatever surplus racing logins left.
	f.limit = defaultMaxSessions
	f.oneLogin(rounds * perRun)
	f.check("after one more login alone")
	after := f.usedMemory()
	f.report(before, after)
	if f.violation != "" {
		t.Fatal(f.violation)
	}
}

// workers is how many logins run at the same moment.
const workers = 4

// footprint drives the logins and inspects what they left in Redis.
type footprint struct {
	t         *testing.T
	rdb       *redis.Client
	user      string
	limit     int       // sessions allowed in the index and as hashes
	sites     [2]string // long-lived sessions, sessions expiring within a second
	mu        sync.Mutex
	shortSids []string // sessions of the last round on the short site
	counts    map[string]int
	violation string // the first bound broken
}

// seedStaleRevocations writes revocations that ran out an hour ago: the
// next revocation must trim them.
func (f *footprint) seedStaleRevocations() {
	old := float64(time.Now().Add(-time.Hour).Unix())
	for i := range 100 {
		f.rdb.ZAdd(f.t.Context(), revocation.Key, redis.Z{Score: old, Member: "stale-" + strconv.Itoa(i)})
	}
}

// loginRound logs the user in n times from four clients at once: every
// fourth login on the short site, every tenth session refreshed once,
// every twenty-fifth logged out.
func (f *footprint) loginRound(first, n int) {
	f.shortSids = nil
	var wg sync.WaitGroup
	next := make(chan int)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				f.oneLogin(i)
			}
		}()
	}
	for i := first; i < first+n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
}

func (f *footprint) oneLogin(i int) {
	site := f.sites[0]
	if i%4 == 0 {
		site = f.sites[1]
	}
	r := post(f.t, site+"/login", "application/json", fmt.Sprintf(`{"user":%q}`, f.user))
	if r.status != http.StatusOK {
		f.t.Errorf("login %d: %d %s", i, r.status, r.raw)
		return
	}
	rt := r.pair.RefreshToken
	f.count("login")
	if i%10 == 1 {
		if rr := refreshWith(f.t, site, rt); rr.status == http.StatusOK {
			rt = rr.pair.RefreshToken
			f.count("refresh")
		} else {
			f.t.Errorf("refresh after login %d: %d %s", i, rr.status, rr.raw)
		}
	}
	if i%25 == 2 {
		if lr := post(f.t, site+"/logout", "", "", "Refresh-Token", rt); lr.status != http.StatusOK {
			f.t.Errorf("logout after login %d: %d %s", i, lr.status, lr.raw)
		}
		f.count("logout")
		return
	}
	if site == f.sites[1] {
		f.mu.Lock()
		f.shortSids = append(f.shortSids, sidOf(f.t, rt))
		f.mu.Unlock()
	}
}

func (f *footprint) count(what string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.counts == nil {
		f.counts = map[string]int{}
	}
	f.counts[what]++
}

// letShortSessionsExpire waits until the short site's sessions of the
// last round have expired, then logs in once more: that write must take
// every expired session out of the index.
func (f *footprint) letShortSessionsExpire() {
	ctx := f.t.Context()
	deadline := time.Now().Add(15 * time.Second)
	for _, sid := range f.shortSids {
		for f.rdb.Exists(ctx, sessionKey(testRealm, f.user, sid)).Val() == 1 {
			if time.Now().After(deadline) {
				f.t.Fatalf("session %s of the short site has not expired", sid)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	f.oneLogin(1) // on the long site, refreshed once
	now := f.redisNow()
	stale := f.rdb.ZCount(ctx, indexKey(testRealm, f.user), "-inf", strconv.FormatInt(now.UnixMilli(), 10)).Val()
	if stale > 0 {
		f.fail("after sessions expired and one more login the index still lists %d expired sessions", stale)
	}
}

// check asserts the bounds on every key in Redis.
func (f *footprint) check(when string) {
	ctx := f.t.Context()
	prefix := userKeys(testRealm, f.user)
	var hashes int
	for _, key := range f.allKeys() {
		if key == revocation.Key {
			continue
		}
		if !strings.HasPrefix(key, prefix) {
			f.fail("%s: key %s is not the user's", when, key)
			continue
		}
		// -1: no expiry (-2: expired since the scan).
		if ttl := f.rdb.PTTL(ctx, key).Val(); ttl == -1 {
			f.fail("%s: key %s does not expire", when, key)
		}
		if strings.Contains(key, ":s:") {
			hashes++
		}
	}
	if n := int(f.rdb.ZCard(ctx, indexKey(testRealm, f.user)).Val()); n > f.limit {
		f.fail("%s: the user's index lists %d sessions, more than %d", when, n, f.limit)
	}
	if hashes > f.limit {
		f.fail("%s: the user has %d session hashes, more than %d", when, hashes, f.limit)
	}
	now := f.redisNow().Unix()
	if n := f.rdb.ZCount(ctx, revocation.Key, "-inf", "("+strconv.FormatInt(now, 10)).Val(); n > 0 {
		f.fail("%s: the revoked set keeps %d entries past their time", when, n)
	}
	// No entry is kept longer than the longest access token (10s) plus
	// the largest leeway and the margin.
	latest := now + int64((10*time.Second+revocation.MaxLeeway+revokeMargin)/time.Second) + 1
	if n := f.rdb.ZCount(ctx, revocation.Key, "("+strconv.FormatInt(latest, 10), "+inf").Val(); n > 0 {
		f.fail("%s: %d revoked entries are kept past %d", when, n, latest)
	}
}

func (f *footprint) fail(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	f.t.Log(msg)
	if f.violation == "" {
		f.violation = msg
	}
}

func (f *footprint) allKeys() []string {
	var keys []string
	iter := f.rdb.Scan(f.t.Context(), 0, "*", 1000).Iterator()
	for iter.Next(f.t.Context()) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		f.t.Fatal(err)
	}
	return keys
}

func (f *footprint) redisNow() time.Time {
	now, err := f.rdb.Time(f.t.Context()).Result()
	if err != nil {
		f.t.Fatal(err)
	}
	return now
}

func (f *footprint) usedMemory() int64 {
	info := f.rdb.InfoMap(f.t.Context(), "memory").Val()
	n, _ := strconv.ParseInt(info["Memory"]["used_memory"], 10, 64)
	return n
}

// report logs what the user's sessions and the revoked set cost.
func (f *footprint) report(before, after int64) {
	ctx := f.t.Context()
	var hashes, hashBytes int64
	prefix := userKeys(testRealm, f.user)
	for _, key := range f.allKeys() {
		if strings.HasPrefix(key, prefix+":s:") {
			hashes++
			hashBytes += f.rdb.MemoryUsage(ctx, key).Val()
		}
	}
	index := f.rdb.MemoryUsage(ctx, indexKey(testRealm, f.user), 0).Val()
	revoked := f.rdb.MemoryUsage(ctx, revocation.Key, 0).Val()
	f.t.Logf("%v; used_memory %d → %d bytes (%+d); index: %d sessions, %d bytes; %d session hashes, %d bytes; "+
		"revoked set: %d entries, %d bytes", f.counts, before, after, after-before,
		f.rdb.ZCard(ctx, indexKey(testRealm, f.user)).Val(), index, hashes, hashBytes,
		f.rdb.ZCard(ctx, revocation.Key).Val(), revoked)
}

// A login beyond max_sessions ends the user's least recently used
// sessions as a logout would: their refresh tokens are refused, and the
// access tokens of one used a moment ago are revoked; one idle for an hour
// (its access tokens long expired) is deleted without a revocation entry,
// which every authjwt would otherwise mirror for nothing. The user's other
// sessions keep working, and another user's are untouched.
func TestALoginBeyondMaxSessionsEndsTheLeastRecentlyUsedSessions(t *testing.T) {
	e := startEnv(t, "max_sessions 3")
	ctx := t.Context()
	rdb := e.rd.Client()
	before := metricValue(metricsText(t, e.caddy.AdminURL()), `tollgate_refresh_sessions_ended_total{cause="max_sessions"}`)
	other := login(t, e.base, "neighbour").pair.RefreshToken
	idle := login(t, e.base, "busy").pair.RefreshToken
	recent := login(t, e.base, "busy").pair.RefreshToken
	kept := login(t, e.base, "busy").pair.RefreshToken
	// idle was last used an hour ago; kept is refreshed, so recent is now
	// the least recently used after idle.
	rdb.HSet(ctx, sessionKey(testRealm, "busy", sidOf(t, idle)), "rot", time.Now().Add(-time.Hour).UnixMilli())
	r := refreshWith(t, e.base, kept)
	expectStatus(t, r, http.StatusOK, "")
	kept = r.pair.RefreshToken

	newest := login(t, e.base, "busy").pair.RefreshToken // ends idle
	last := login(t, e.base, "busy").pair.RefreshToken   // ends recent

	for name, rt := range map[string]string{"idle": idle, "recent": recent} {
		expectStatus(t, refreshWith(t, e.base, rt), http.StatusBadRequest, "invalid_grant")
		if n := rdb.Exists(ctx, sessionKey(testRealm, "busy", sidOf(t, rt))).Val(); n != 0 {
			t.Errorf("the %s session's hash is still in Redis", name)
		}
	}
	revoked := func(rt string) bool {
		ok, err := revocation.IsRevoked(ctx, rdb, revocation.Member(testRealm, sidOf(t, rt)))
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !revoked(recent) {
		t.Error("the session used a moment ago was ended without revoking its access tokens")
	}
	if revoked(idle) {
		t.Error("the session idle for an hour got a revocation entry it does not need")
	}
	for _, rt := range []string{kept, newest, last, other} {
		expectStatus(t, refreshWith(t, e.base, rt), http.StatusOK, "")
	}
	if n := rdb.ZCard(ctx, indexKey(testRealm, "busy")).Val(); n != 3 {
		t.Errorf("the index lists %d sessions, want max_sessions 3", n)
	}
	after := metricValue(metricsText(t, e.caddy.AdminURL()), `tollgate_refresh_sessions_ended_total{cause="max_sessions"}`)
	if after-before != 2 {
		t.Errorf(`tollgate_refresh_sessions_ended_total{cause="max_sessions"} grew by %v, want 2`, after-before)
	}
}
