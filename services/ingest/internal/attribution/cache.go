package attribution

import (
	"container/list"
	"sync"
)

// cache is a bounded LRU map from USER_ACCOUNTS key to account id. An empty
// account is a remembered miss: users who never sent a group call (most
// anonymous traffic) would otherwise cost a KV round trip per event.
type cache struct {
	mu    sync.Mutex
	max   int
	order *list.List // of *entry, most recently used first
	items map[string]*list.Element
}

type entry struct {
	key, account string
}

func newCache(max int) *cache {
	return &cache{max: max, order: list.New(), items: make(map[string]*list.Element, max)}
}

func (c *cache) get(key string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		return "", false
	}
	c.order.MoveToFront(el)
	return el.Value.(*entry).account, true
}

// put stores key's account, evicting the least recently used entry when full.
func (c *cache) put(key, account string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		el.Value.(*entry).account = account
		c.order.MoveToFront(el)
		return
	}
	if c.order.Len() >= c.max {
		oldest := c.order.Back()
		c.order.Remove(oldest)
		delete(c.items, oldest.Value.(*entry).key)
	}
	c.items[key] = c.order.PushFront(&entry{key: key, account: account})
}

// update changes key's account only when key is cached: changes made by
// other replicas refresh what this one holds without filling the cache with
// users it never sees.
func (c *cache) update(key, account string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		el.Value.(*entry).account = account
	}
}
