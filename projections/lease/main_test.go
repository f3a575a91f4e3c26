package lease_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// testRedis is the Redis the package's tests use: a throwaway redis-server started by
// TestMain, or the one named by KEYLEDGER_TEST_REDIS_URL. When neither is available,
// opts is nil and why says why.
var testRedis struct {
	opts *redis.Options
	why  error
}

func TestMain(m *testing.M) {
	stop, err := startRedisServer()
	switch {
	case err == nil:
	case os.Getenv("KEYLEDGER_TEST_REDIS_URL") != "":
		opts, perr := redis.ParseURL(os.Getenv("KEYLEDGER_TEST_REDIS_URL"))
		if perr != nil {
			testRedis.why = fmt.Errorf("KEYLEDGER_TEST_REDIS_URL: %w", perr)
		} else {
			testRedis.opts = opts
		}
	default:
		testRedis.why = fmt.Errorf("%w, and KEYLEDGER_TEST_REDIS_URL is not set", err)
	}
	code := m.Run()
	if stop != nil {
		stop()
	}
	os.Exit(code)
}

// startRedisServer starts redis-server from PATH on a free loopback port, without
// persistence, in a temporary directory.
func startRedisServer() (stop func(), err error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, errors.New("redis-server is not on PATH")
	}
	dir, err := os.MkdirTemp("", "keyledger-lease-redis-")
	if err != nil {
		return nil, err
	}
	var lastErr error
	for range 3 { // the free port may be taken between probing and listening
		port, err := freePort()
		if err != nil {
			lastErr = err
			continue
		}
		cmd := exec.Command(bin,
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no",
			"--dir", dir, "--logfile", filepath.Join(dir, "redis.log"))
		if err := cmd.Start(); err != nil {
			lastErr = err
			continue
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		opts := &redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(port), PoolSize: 64}
		if err := waitForRedis(opts, exited); err != nil {
			_ = cmd.Process.Kill()
			<-exited
			lastErr = err
			continue
		}
		testRedis.opts = opts
		return func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(5 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
			}
			_ = os.RemoveAll(dir)
		}, nil
	}
	_ = os.RemoveAll(dir)
	return nil, fmt.Errorf("starting redis-server: %w", lastErr)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func waitForRedis(opts *redis.Options, exited <-chan struct{}) error {
	c := redis.NewClient(opts)
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("redis-server exited: %w", err)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server did not answer: %w", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// needRedis returns the test Redis's options, or fails (CI=true) or skips the test.
func needRedis(t testing.TB) *redis.Options {
	t.Helper()
	if testRedis.opts != nil {
		return testRedis.opts
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("no Redis for the lease tests (CI=true, so this fails rather than skips): %v; install redis-server or set KEYLEDGER_TEST_REDIS_URL", testRedis.why)
	}
	t.Skipf("skipping Redis tests: %v; install redis-server or set KEYLEDGER_TEST_REDIS_URL", testRedis.why)
	return nil
}

// newClient returns a client on the test Redis, closed when the test ends, and a fresh
// key prefix whose keys are removed when the test ends.
func newClient(t testing.TB, hooks ...redis.Hook) (*redis.Client, string) {
	t.Helper()
	o := *needRedis(t)
	client := redis.NewClient(&o)
	for _, h := range hooks {
		client.AddHook(h)
	}
	prefix := fmt.Sprintf("kltest-%08x:", rand.Uint32())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c := redis.NewClient(&o) // client may be broken on purpose by a hook
		defer c.Close()
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if len(keys) > 0 {
			c.Unlink(ctx, keys...)
		}
		_ = client.Close()
	})
	return client, prefix
}
