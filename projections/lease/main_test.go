package lease_test

import (
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/keyledger/keyledger/internal/redistest"
)

func TestMain(m *testing.M) { redistest.Main(m, "lease tests") }

// newClient returns a client on the test Redis and a fresh key prefix ending in ':',
// both cleaned up when the test ends.
func newClient(t testing.TB, hooks ...redis.Hook) (*redis.Client, string) {
	t.Helper()
	c, prefix := redistest.Client(t, hooks...)
	return c, prefix + ":"
}
