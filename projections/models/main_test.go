package models_test

import (
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/keyledger/keyledger/internal/redistest"
	"github.com/keyledger/keyledger/projections/readmodel"
)

func TestMain(m *testing.M) { redistest.Main(m, "models tests") }

// newRedisStore returns a store on the test Redis under a fresh key prefix, whose keys
// are removed when the test ends, and its client.
func newRedisStore(t testing.TB, opts ...readmodel.RedisOption) (*readmodel.Redis, *redis.Client, string) {
	t.Helper()
	client, prefix := redistest.Client(t)
	s, err := readmodel.NewRedis(client, append([]readmodel.RedisOption{readmodel.WithKeyPrefix(prefix)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return s, client, prefix
}
