package authjwt

import (
	"sync"
	"time"
)

// identity is what a verified token gives the request. It is computed once
// per token and cached, so a repeated token costs a hash and a map lookup.
type identity struct {
	userID       string
	placeholders []placeholder // full names, http.auth.user.*
	headers      []headerValue // canonical header names for the upstream
	sid          string        // session id, for revocation
	exp          time.Time
	roleOK       bool
	keyGen       uint64 // JWK Set generation it was verified against

}

// placeholder values are boxed once, so setting them allocates nothing.
type placeholder struct {
	key   string
	value any
}

// headerValue slices are built once and shared; net/http copies on append.
type headerValue struct {
	key    string
	values []string
}

// tokenKey is the SHA-256 of a raw token: the cache never holds tokens.
type tokenKey [32]byte

const cacheShards = 16

// tokenCache is a bounded map of verified tokens, sharded to keep lock
// contention low. Entries are never served at or after the token's exp.
type tokenCache struct {
	perShard int
	shards   [cacheShards]cacheShard
}

type cacheShard struct {
	mu sync.RWMutex
	m  map[tokenKey]*identity
}

func newTokenCache(size int) *tokenCache {
	c := &tokenCache{perShard: max(1, size/cacheShards)}
	for i := range c.shards {
		c.shards[i].m = make(map[tokenKey]*identity)
	}
	return c
}

func (c *tokenCache) shard(k tokenKey) *cacheShard { return &c.shards[k[0]%cacheShards] }

// get returns the cached identity if it is still before its exp.
func (c *tokenCache) get(k tokenKey, now time.Time) *identity {
	s := c.shard(k)
	s.mu.RLock()
	id := s.m[k]
	s.mu.RUnlock()
	if id == nil || !now.Before(id.exp) {
		return nil
	}
	return id
}

// put stores a verified identity. When the shard is full it first drops
// expired entries, then an arbitrary one (Go's map order is random).
func (c *tokenCache) put(k tokenKey, id *identity, now time.Time) {
	s := c.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= c.perShard {
		var victim *tokenKey
		for key, v := range s.m {
			if !now.Before(v.exp) {
				delete(s.m, key)
			} else if victim == nil {
				victim = &key
			}
		}
		if len(s.m) >= c.perShard && victim != nil {
			delete(s.m, *victim)
		}
	}
	s.m[k] = id
}

// len counts entries, for tests.
func (c *tokenCache) len() int {
	n := 0
	for i := range c.shards {
		c.shards[i].mu.RLock()
		n += len(c.shards[i].m)
		c.shards[i].mu.RUnlock()
	}
	return n
}
