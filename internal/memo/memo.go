// Package memo keeps values derived from bytes that are read again and again — a parsed
// public key from its PEM, a decoded read-model record from its JSON — so that the hot
// path pays for a comparison instead of a parse. A value is returned only while its
// source is unchanged: every lookup passes the source as read now, and a cached value
// derived from other bytes is a miss. So a cache can make a reader faster, never
// staler.
package memo

import (
	"hash/maphash"
	"sync"
)

// shards spreads the keys over independent locks.
const shards = 64

// Cache maps string keys to values derived from a source, holding about size of them.
// When a shard is full, storing a new key drops an arbitrary one: a miss costs one
// derivation. It is safe for concurrent use; values are shared between callers and must
// not be modified.
type Cache[V any] struct {
	seed     maphash.Seed
	perShard int
	shards   [shards]shard[V]
}

type shard[V any] struct {
	mu sync.RWMutex
	m  map[string]*item[V]
}

type item[V any] struct {
	src string
	v   V
}

// New returns a cache of about size values (at least one per shard).
func New[V any](size int) *Cache[V] {
	c := &Cache[V]{seed: maphash.MakeSeed(), perShard: max(1, size/shards)}
	for i := range c.shards {
		c.shards[i].m = map[string]*item[V]{}
	}
	return c
}

func (c *Cache[V]) shard(key string) *shard[V] {
	return &c.shards[maphash.String(c.seed, key)%shards]
}

// Get returns the value stored under key if it was derived from src.
func (c *Cache[V]) Get(key string, src []byte) (V, bool) {
	sh := c.shard(key)
	sh.mu.RLock()
	it := sh.m[key]
	sh.mu.RUnlock()
	if it != nil && it.src == string(src) { // no copy: the compiler compares in place
		return it.v, true
	}
	var zero V
	return zero, false
}

// GetString is Get with a string source.
func (c *Cache[V]) GetString(key, src string) (V, bool) {
	sh := c.shard(key)
	sh.mu.RLock()
	it := sh.m[key]
	sh.mu.RUnlock()
	if it != nil && it.src == src {
		return it.v, true
	}
	var zero V
	return zero, false
}

// Put stores v, derived from src, under key, replacing what key held.
func (c *Cache[V]) Put(key, src string, v V) {
	sh := c.shard(key)
	sh.mu.Lock()
	if _, ok := sh.m[key]; !ok && len(sh.m) >= c.perShard {
		for victim := range sh.m { // map order is unspecified: close enough to random
			delete(sh.m, victim)
			break
		}
	}
	sh.m[key] = &item[V]{src: src, v: v}
	sh.mu.Unlock()
}

// Len is how many values the cache holds.
func (c *Cache[V]) Len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}
