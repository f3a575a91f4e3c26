package voucher

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// ReplayCache remembers the jti of every accepted client assertion until the assertion
// expires, so that a captured assertion cannot be used twice. jti values are scoped per
// client (RFC 7519 §4.1.7: unique per issuer, and the issuer is the client).
type ReplayCache interface {
	// Use records (clientID, jti) until the instant until and reports whether it was
	// fresh: false means it was already recorded and has not expired — refuse. It is
	// atomic: of concurrent calls with the same pair at most one gets true. An error
	// means the answer is unknown; the caller must refuse (fail closed).
	Use(ctx context.Context, clientID, jti string, until time.Time) (fresh bool, err error)
}

// ReplayPeeker is optionally implemented by a ReplayCache: Used reports whether
// (clientID, jti) is recorded, without recording it. The assertion-check report uses it
// so that checking an assertion does not burn its jti.
type ReplayPeeker interface {
	Used(ctx context.Context, clientID, jti string) (bool, error)
}

// ErrReplayCacheFull is returned by MemoryReplayCache.Use when it holds its maximum of
// unexpired entries. Dropping one would let its assertion be replayed, so the cache
// refuses instead; the Verifier reports it as ErrUnavailable (503).
var ErrReplayCacheFull = errors.New("voucher: replay cache full")

// DefaultReplayCacheSize is MemoryReplayCache's capacity when none is given (2^20
// pairs, about 200 MB when full): 1,000 assertions a second living 15 minutes each.
// Assertions living the whole maximum hour at that rate would fill it: raise it, or use
// Redis.
const DefaultReplayCacheSize = 1 << 20

// MemoryReplayCache is a ReplayCache for one process: a bounded set of (client, jti)
// pairs, each forgotten at its expiry. Replicas behind a load balancer do not share it:
// use RedisReplayCache there, or an assertion can be replayed once against each
// replica. Safe for concurrent use.
type MemoryReplayCache struct {
	now      func() time.Time
	seed     maphash.Seed
	perShard int
	shards   [32]replayShard
}

type replayShard struct {
	mu     sync.Mutex
	until  map[string]time.Time
	expiry expiryHeap
}

// NewMemoryReplayCache returns an empty cache holding at most size unexpired pairs
// (DefaultReplayCacheSize when size <= 0). now is its clock (time.Now when nil); it
// must be the clock the Verifier uses.
func NewMemoryReplayCache(size int, now func() time.Time) *MemoryReplayCache {
	if size <= 0 {
		size = DefaultReplayCacheSize
	}
	if now == nil {
		now = time.Now
	}
	c := &MemoryReplayCache{now: now, seed: maphash.MakeSeed()}
	c.perShard = max(1, size/len(c.shards))
	for i := range c.shards {
		c.shards[i].until = map[string]time.Time{}
	}
	return c
}

var (
	_ ReplayCache  = (*MemoryReplayCache)(nil)
	_ ReplayPeeker = (*MemoryReplayCache)(nil)
)

// memoryKey joins client and jti unambiguously: neither may hold a control character.
func memoryKey(clientID, jti string) string { return clientID + "\x00" + jti }

func (c *MemoryReplayCache) shard(key string) *replayShard {
	return &c.shards[maphash.String(c.seed, key)%uint64(len(c.shards))]
}

// Use implements ReplayCache. It fails with ErrReplayCacheFull when the shard the pair
// falls in holds its share of the capacity in unexpired pairs.
func (c *MemoryReplayCache) Use(_ context.Context, clientID, jti string, until time.Time) (bool, error) {
	key := memoryKey(clientID, jti)
	now := c.now()
	sh := c.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.sweep(now)
	if u, ok := sh.until[key]; ok && u.After(now) {
		return false, nil
	}
	if !until.After(now) {
		return true, nil // expires at once: nothing to remember
	}
	if len(sh.until) >= c.perShard {
		return false, ErrReplayCacheFull
	}
	sh.until[key] = until
	heap.Push(&sh.expiry, expiring{key: key, until: until})
	return true, nil
}

// Used implements ReplayPeeker.
func (c *MemoryReplayCache) Used(_ context.Context, clientID, jti string) (bool, error) {
	key := memoryKey(clientID, jti)
	sh := c.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	u, ok := sh.until[key]
	return ok && u.After(c.now()), nil
}

// Len is the number of pairs held, expired ones not yet swept included.
func (c *MemoryReplayCache) Len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		n += len(sh.until)
		sh.mu.Unlock()
	}
	return n
}

// sweep forgets the pairs that expired at or before now.
func (sh *replayShard) sweep(now time.Time) {
	for len(sh.expiry) > 0 && !sh.expiry[0].until.After(now) {
		e := heap.Pop(&sh.expiry).(expiring)
		if u, ok := sh.until[e.key]; ok && u.Equal(e.until) {
			delete(sh.until, e.key)
		}
	}
}

type expiring struct {
	key   string
	until time.Time
}

// expiryHeap is a min-heap of expiries (container/heap).
type expiryHeap []expiring

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].until.Before(h[j].until) }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiring)) }
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// DefaultReplayKeyPrefix is RedisReplayCache's key prefix when none is given.
const DefaultReplayKeyPrefix = "keyledger:jti:"

// RedisReplayCache is a ReplayCache shared by every process using the same Redis: one
// key per (client, jti), set with SET NX PXAT (atomic, expiring with the assertion). Its
// keys are "<prefix><len(clientID)>:<clientID>:<jti>" — the length makes the split
// unambiguous whatever the ids hold. Redis expires them on its own clock: keep the
// clocks of Redis and the replicas in step (NTP), as for everything time-bound.
type RedisReplayCache struct {
	client redis.UniversalClient
	prefix string
}

var (
	_ ReplayCache  = (*RedisReplayCache)(nil)
	_ ReplayPeeker = (*RedisReplayCache)(nil)
)

// NewRedisReplayCache returns a cache on client whose keys start with prefix
// (DefaultReplayKeyPrefix when ""). Give each deployment sharing a Redis its own
// prefix; never share one with data that could collide with it.
func NewRedisReplayCache(client redis.UniversalClient, prefix string) *RedisReplayCache {
	if prefix == "" {
		prefix = DefaultReplayKeyPrefix
	}
	return &RedisReplayCache{client: client, prefix: prefix}
}

func (c *RedisReplayCache) key(clientID, jti string) string {
	return c.prefix + strconv.Itoa(len(clientID)) + ":" + clientID + ":" + jti
}

// Use implements ReplayCache with SET key 1 NX PXAT until. An until in the past (which
// the Verifier never passes) records nothing and reports fresh.
func (c *RedisReplayCache) Use(ctx context.Context, clientID, jti string, until time.Time) (bool, error) {
	err := c.client.Do(ctx, "SET", c.key(clientID, jti), "1", "NX", "PXAT", until.UnixMilli()).Err()
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, redis.Nil):
		return false, nil
	}
	return false, fmt.Errorf("replay cache: set jti: %w", err)
}

// Used implements ReplayPeeker with EXISTS.
func (c *RedisReplayCache) Used(ctx context.Context, clientID, jti string) (bool, error) {
	n, err := c.client.Exists(ctx, c.key(clientID, jti)).Result()
	if err != nil {
		return false, fmt.Errorf("replay cache: exists jti: %w", err)
	}
	return n > 0, nil
}
