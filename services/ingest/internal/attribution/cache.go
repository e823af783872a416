package attribution

import (
	"sync"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// cache is a bounded LRU map from USER_ACCOUNTS key to account id. An empty
// account is a remembered miss: users who never sent a group call (most
// anonymous traffic) would otherwise cost a KV round trip per event.
type cache struct {
	mu  sync.Mutex
	lru *simplelru.LRU[string, string]
}

// newCache returns a cache of size entries, at least one.
func newCache(size int) *cache {
	l, _ := simplelru.NewLRU[string, string](max(size, 1), nil) // errs only on a size < 1
	return &cache{lru: l}
}

func (c *cache) get(key string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Get(key)
}

// put stores key's account, evicting the least recently used entry when full.
func (c *cache) put(key, account string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lru.Add(key, account)
}

// update changes key's account only when key is cached: changes made by
// other replicas refresh what this one holds without filling the cache with
// users it never sees.
func (c *cache) update(key, account string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lru.Contains(key) {
		c.lru.Add(key, account)
	}
}
