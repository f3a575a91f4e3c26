package voucher

import (
	"crypto"
	"fmt"
	"hash/maphash"
	"sync"

	"github.com/keyledger/keyledger/domain/keys"
)

// DefaultKeyCacheSize is how many parsed client public keys a Verifier keeps when
// Config.KeyCacheSize is 0.
const DefaultKeyCacheSize = 100_000

// clientKey is a client's public key parsed from a voucher entry's PEM.
type clientKey struct {
	pem string // the entry's PEM it was parsed from
	key keys.Key
	pub crypto.PublicKey // *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
}

// keyCache keeps parsed client keys by kid: parsing PEM and computing a thumbprint on
// every request would cost about as much as verifying the signature. A kid is the
// thumbprint of its key, so one kid always names the same key; the entry's PEM is still
// compared on every hit (a cheap string comparison), so a cache can never verify with
// anything but the key the read model holds now. When a shard is full an arbitrary entry
// is dropped: the cost of a miss is one parse.
type keyCache struct {
	seed      maphash.Seed
	perShard  int
	shards    [64]keyShard
	parseHook func() // tests count parses
}

type keyShard struct {
	mu sync.RWMutex
	m  map[string]*clientKey
}

func newKeyCache(size int) *keyCache {
	c := &keyCache{seed: maphash.MakeSeed(), perShard: max(1, size/64)}
	for i := range c.shards {
		c.shards[i].m = map[string]*clientKey{}
	}
	return c
}

// get returns the parsed key of kid, whose PEM the read model holds as pem. A PEM that
// does not parse, or whose thumbprint is not kid, is a corrupt entry.
func (c *keyCache) get(kid, pem string) (*clientKey, error) {
	sh := &c.shards[maphash.String(c.seed, kid)%uint64(len(c.shards))]
	sh.mu.RLock()
	k := sh.m[kid]
	sh.mu.RUnlock()
	if k != nil && k.pem == pem {
		return k, nil
	}
	if c.parseHook != nil {
		c.parseHook()
	}
	parsed, err := keys.Parse([]byte(pem))
	if err != nil {
		return nil, fmt.Errorf("%w: the key of kid %s does not parse: %w", ErrCorruptEntry, kid, err)
	}
	if parsed.KID() != kid {
		return nil, fmt.Errorf("%w: the key stored under kid %s has thumbprint %s", ErrCorruptEntry, kid, parsed.KID())
	}
	k = &clientKey{pem: pem, key: parsed, pub: parsed.Public()}
	sh.mu.Lock()
	if _, ok := sh.m[kid]; !ok && len(sh.m) >= c.perShard {
		for victim := range sh.m { // map order is unspecified: close enough to random
			delete(sh.m, victim)
			break
		}
	}
	sh.m[kid] = k
	sh.mu.Unlock()
	return k, nil
}
