// Package redistest gives a package's tests a real Redis: a throwaway redis-server on a
// free loopback port started by the package's TestMain, or the server named by
// KEYLEDGER_TEST_REDIS_URL. When neither is available a test fails under CI=true and
// skips otherwise. Use it only from _test.go files.
package redistest

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

var state struct {
	opts *redis.Options
	own  bool
	why  error
	what string
}

// Main is the package's TestMain: it starts a throwaway redis-server (or falls back to
// KEYLEDGER_TEST_REDIS_URL), runs the tests, stops the server and exits. what names the
// tests in failure messages ("lease tests").
func Main(m *testing.M, what string) {
	state.what = what
	stop, err := start()
	switch {
	case err == nil:
	case os.Getenv("KEYLEDGER_TEST_REDIS_URL") != "":
		opts, perr := redis.ParseURL(os.Getenv("KEYLEDGER_TEST_REDIS_URL"))
		if perr != nil {
			state.why = fmt.Errorf("KEYLEDGER_TEST_REDIS_URL: %w", perr)
		} else {
			state.opts = opts
		}
	default:
		state.why = fmt.Errorf("%w, and KEYLEDGER_TEST_REDIS_URL is not set", err)
	}
	code := m.Run()
	if stop != nil {
		stop()
	}
	os.Exit(code)
}

// Options returns the test Redis's options (a copy), or fails (CI=true) or skips.
func Options(t testing.TB) *redis.Options {
	t.Helper()
	if state.opts != nil {
		o := *state.opts
		return &o
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("no Redis for the %s (CI=true, so this fails rather than skips): %v; install redis-server or set KEYLEDGER_TEST_REDIS_URL", state.what, state.why)
	}
	t.Skipf("skipping Redis tests: %v; install redis-server or set KEYLEDGER_TEST_REDIS_URL", state.why)
	return nil
}

// Own reports whether the test Redis is the throwaway server (tests may then flush it and
// its script cache).
func Own() bool { return state.own }

// Client returns a client on the test Redis, closed when the test ends, with hooks added,
// and a fresh key prefix ("kltest-<8 hex>") whose keys are removed when the test ends (by
// a separate client, since a hook may break this one on purpose).
func Client(t testing.TB, hooks ...redis.Hook) (*redis.Client, string) {
	t.Helper()
	opts := Options(t)
	client := redis.NewClient(opts)
	for _, h := range hooks {
		client.AddHook(h)
	}
	prefix := fmt.Sprintf("kltest-%08x", rand.Uint32())
	t.Cleanup(func() {
		_ = client.Close()
		c := redis.NewClient(opts)
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
			if len(keys) == 1000 {
				c.Unlink(ctx, keys...)
				keys = keys[:0]
			}
		}
		if len(keys) > 0 {
			c.Unlink(ctx, keys...)
		}
	})
	return client, prefix
}

// FreePort returns a loopback port nothing listens on (at the time of the call).
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// start runs redis-server from PATH on a free loopback port, without persistence, in a
// temporary directory.
func start() (stop func(), err error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, errors.New("redis-server is not on PATH")
	}
	dir, err := os.MkdirTemp("", "keyledger-redistest-")
	if err != nil {
		return nil, err
	}
	var lastErr error
	for range 3 { // the free port may be taken between probing and listening
		port, err := FreePort()
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
		if err := wait(opts, exited); err != nil {
			_ = cmd.Process.Kill()
			<-exited
			lastErr = err
			continue
		}
		state.opts, state.own = opts, true
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

func wait(opts *redis.Options, exited <-chan struct{}) error {
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
