package voucher

import (
	"crypto"
	"fmt"

	"github.com/keyledger/keyledger/domain/keys"
	"github.com/keyledger/keyledger/internal/memo"
)

// DefaultKeyCacheSize is how many parsed client public keys a Verifier keeps when
// Config.KeyCacheSize is 0.
const DefaultKeyCacheSize = 100_000

// clientKey is a client's public key parsed from a voucher entry's PEM.
type clientKey struct {
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
	m         *memo.Cache[*clientKey]
	parseHook func() // tests count parses
}

func newKeyCache(size int) *keyCache {
	return &keyCache{m: memo.New[*clientKey](size)}
}

// get returns the parsed key of kid, whose PEM the read model holds as pem. A PEM that
// does not parse, or whose thumbprint is not kid, is a corrupt entry.
func (c *keyCache) get(kid, pem string) (*clientKey, error) {
	if k, ok := c.m.GetString(kid, pem); ok {
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
	k := &clientKey{key: parsed, pub: parsed.Public()}
	c.m.Put(kid, pem, k)
	return k, nil
}
