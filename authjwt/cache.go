package authjwt

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// identity is what a verified token gives the request. It is computed once
// per token and cached, so a repeated token costs a hash and a map lookup.
type identity struct {
	userID       string
	placeholders []placeholder // full names, http.auth.user.*
	headers      []headerValue // canonical header names for the upstream
	sid          string        // session id
	revocation   string        // its entry in the revoked set (realm-qualified)
	exp          time.Time
	roleOK       bool
	keyGen       uint64 // JWK Set generation it was verified against

}

// placeholder values are boxed once, so answering them allocates nothing.
type placeholder struct {
	key   string
	value any
}

// placeholder answers the replacer for the http.auth.user.* names (a
// caddy.ReplacerFunc). A token has a handful of claims: a scan is cheaper
// than a map.
func (id *identity) placeholder(key string) (any, bool) {
	if !strings.HasPrefix(key, "http.auth.user.") {
		return nil, false
	}
	for i := range id.placeholders {
		if id.placeholders[i].key == key {
			return id.placeholders[i].value, true
		}
	}
	return nil, false
}

// headerValue is one identity header. Only the string is shared between
// requests: each request gets its own slice (applyIdentity), because a
// later handler (request_header, a rewrite) may edit it in place.
type headerValue struct {
	key   string
	value string
}

// tokenKey is the SHA-256 of a raw token: the cache never holds tokens.
type tokenKey [32]byte

const cacheShards = 16

// tokenCache is a bounded map of verified tokens, sharded to keep lock
// contention low. Entries are never served at or after the token's exp.
// Eviction is CLOCK (second chance): a hit marks its slot, the hand skips
// marked slots once, so tokens in use survive a flood of one-time tokens,
// and a put costs O(1) amortised — never a scan of the shard.
type tokenCache struct {
	perShard int
	shards   [cacheShards]cacheShard
}

type cacheShard struct {
	mu    sync.RWMutex
	index map[tokenKey]int // slot of each key
	slots []cacheSlot      // grows to perShard, then reused in place
	hand  int              // next slot the CLOCK looks at
}

type cacheSlot struct {
	key  tokenKey
	id   *identity
	used atomic.Bool // set by get under the read lock, cleared by the hand
}

func newTokenCache(size int) *tokenCache {
	c := &tokenCache{perShard: max(1, size/cacheShards)}
	for i := range c.shards {
		c.shards[i].index = make(map[tokenKey]int)
	}
	return c
}

func (c *tokenCache) shard(k tokenKey) *cacheShard { return &c.shards[k[0]%cacheShards] }

// get returns the cached identity if it is still before its exp.
func (c *tokenCache) get(k tokenKey, now time.Time) *identity {
	s := c.shard(k)
	s.mu.RLock()
	var id *identity
	if i, ok := s.index[k]; ok {
		slot := &s.slots[i]
		id = slot.id
		if !slot.used.Load() { // a store only when it changes: no shared-line churn
			slot.used.Store(true)
		}
	}
	s.mu.RUnlock()
	if id == nil || !now.Before(id.exp) {
		return nil
	}
	return id
}

// put stores a verified identity, evicting when the shard is full.
func (c *tokenCache) put(k tokenKey, id *identity, now time.Time) {
	s := c.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if i, ok := s.index[k]; ok {
		s.slots[i].id = id
		return
	}
	if len(s.slots) < c.perShard {
		s.slots = append(s.slots, cacheSlot{key: k, id: id})
		s.index[k] = len(s.slots) - 1
		return
	}
	i := s.victim(now)
	delete(s.index, s.slots[i].key)
	s.slots[i].key, s.slots[i].id = k, id
	s.slots[i].used.Store(false)
	s.index[k] = i
}

// victim advances the hand to the first slot that is expired or was not
// used since the hand last passed it. After one full turn every mark is
// cleared, so it stops within len(slots)+1 steps.
func (s *cacheShard) victim(now time.Time) int {
	for {
		i := s.hand
		s.hand = (s.hand + 1) % len(s.slots)
		slot := &s.slots[i]
		if !now.Before(slot.id.exp) || !slot.used.Load() {
			return i
		}
		slot.used.Store(false)
	}
}

// len counts entries, for tests.
func (c *tokenCache) len() int {
	n := 0
	for i := range c.shards {
		c.shards[i].mu.RLock()
		n += len(c.shards[i].index)
		c.shards[i].mu.RUnlock()
	}
	return n
}
