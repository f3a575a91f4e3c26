package voucher_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keyledger/keyledger/internal/redistest"
	"github.com/keyledger/keyledger/voucher"
)

func TestMain(m *testing.M) { redistest.Main(m, "voucher replay-cache tests") }

// replayContract is what every ReplayCache must do. advance moves the cache's clock.
func replayContract(t *testing.T, c voucher.ReplayCache, advance func(time.Duration), now func() time.Time) {
	ctx := context.Background()
	until := now().Add(time.Minute)
	use := func(client, jti string) bool {
		t.Helper()
		fresh, err := c.Use(ctx, client, jti, until)
		if err != nil {
			t.Fatal(err)
		}
		return fresh
	}
	if !use("c1", "j1") {
		t.Fatal("first use not fresh")
	}
	if use("c1", "j1") {
		t.Fatal("second use fresh")
	}
	if !use("c2", "j1") {
		t.Fatal("same jti, other client: not fresh")
	}
	// The key format cannot be confused: ("c1:x", "y") is not ("c1", "x:y").
	if !use("c1:x", "y") || !use("c1", "x:y") {
		t.Fatal("ambiguous keys")
	}
	if p, ok := c.(voucher.ReplayPeeker); ok {
		if used, err := p.Used(ctx, "c1", "j1"); err != nil || !used {
			t.Fatalf("Used(c1, j1) = %v, %v", used, err)
		}
		if used, err := p.Used(ctx, "c1", "j2"); err != nil || used {
			t.Fatalf("Used(c1, j2) = %v, %v", used, err)
		}
	}
	// Concurrent uses of one pair: exactly one is fresh.
	var fresh atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := c.Use(ctx, "c3", "race", until)
			if err != nil {
				errs <- err
				return
			}
			if ok {
				fresh.Add(1)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if fresh.Load() != 1 {
		t.Fatalf("%d concurrent uses fresh, want 1", fresh.Load())
	}
	if advance != nil {
		advance(61 * time.Second)
		if !use("c1", "j1") {
			t.Fatal("not fresh after expiry")
		}
	}
}

func TestMemoryReplayCache(t *testing.T) {
	var mu sync.Mutex
	now := t0
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	replayContract(t, voucher.NewMemoryReplayCache(1000, clock), advance, clock)
}

// TestMemoryReplayCacheBounded: a full cache refuses rather than forget a live jti,
// and makes room as jti values expire.
func TestMemoryReplayCacheBounded(t *testing.T) {
	now := t0
	clock := func() time.Time { return now }
	c := voucher.NewMemoryReplayCache(32*4, clock) // 4 per shard
	ctx := context.Background()
	var full error
	n := 0
	for ; n < 1000; n++ {
		if _, err := c.Use(ctx, "c", fmt.Sprint(n), now.Add(time.Minute)); err != nil {
			full = err
			break
		}
	}
	if !errors.Is(full, voucher.ErrReplayCacheFull) || n > 32*4 {
		t.Fatalf("after %d uses: %v", n, full)
	}
	for i := range n {
		if fresh, err := c.Use(ctx, "c", fmt.Sprint(i), now.Add(time.Minute)); err != nil || fresh {
			t.Fatalf("jti %d: fresh %v, %v; a full cache must still refuse replays", i, fresh, err)
		}
	}
	now = now.Add(time.Minute)
	if fresh, err := c.Use(ctx, "c", fmt.Sprint(n), now.Add(time.Minute)); err != nil || !fresh {
		t.Fatalf("after expiry: %v, %v", fresh, err)
	}
	if l := c.Len(); l > 32*4 {
		t.Fatalf("holds %d", l)
	}
	// An until already past is fresh and not stored.
	if fresh, err := c.Use(ctx, "c", "past", now.Add(-time.Second)); err != nil || !fresh {
		t.Fatalf("past until: %v, %v", fresh, err)
	}
}

func TestRedisReplayCache(t *testing.T) {
	client, prefix := redistest.Client(t)
	c := voucher.NewRedisReplayCache(client, prefix)
	replayContract(t, c, nil, time.Now)

	// Keys carry the prefix and expire exactly at until (PXAT).
	ctx := context.Background()
	until := time.Now().Add(90 * time.Second).Truncate(time.Millisecond).Add(123 * time.Millisecond)
	if fresh, err := c.Use(ctx, "client-9", "jti-9", until); err != nil || !fresh {
		t.Fatal(fresh, err)
	}
	key := prefix + "8:client-9:jti-9"
	at, err := client.Do(ctx, "PEXPIRETIME", key).Int64()
	if err != nil {
		t.Fatal(err)
	}
	if at != until.UnixMilli() {
		t.Fatalf("%s expires at %d, want %d", key, at, until.UnixMilli())
	}
	// An expired key is fresh again (shown with an until already past: Redis drops it).
	if fresh, err := c.Use(ctx, "client-9", "jti-past", time.Now().Add(-time.Second)); err != nil || !fresh {
		t.Fatal(fresh, err)
	}
	if fresh, err := c.Use(ctx, "client-9", "jti-past", time.Now().Add(time.Minute)); err != nil || !fresh {
		t.Fatalf("after expiry: %v, %v", fresh, err)
	}
}

// TestRedisReplayCacheDown: a Redis that does not answer is an error (the Verifier
// answers 503), never "fresh".
func TestRedisReplayCacheDown(t *testing.T) {
	opts := redistest.Options(t)
	client := redis.NewClient(opts)
	_ = client.Close()
	c := voucher.NewRedisReplayCache(client, "")
	if fresh, err := c.Use(context.Background(), "c", "j", time.Now().Add(time.Minute)); err == nil || fresh {
		t.Fatalf("closed client: fresh %v, %v", fresh, err)
	}
	k := fixtures(t)
	v := newVerifier(t, world(t), func(cfg *voucher.Config) { cfg.Replay = c; cfg.Now = time.Now })
	now := time.Now().Unix()
	_, err := v.Verify(context.Background(), request(mint(t, k.ed, goodClaims().with("iat", now, "exp", now+60), nil)))
	if !errors.Is(err, voucher.ErrUnavailable) {
		t.Fatalf("Verify: %v", err)
	}
}

// TestVerifyReplayRedis: two Verifiers (two replicas) sharing a Redis refuse the
// replay of an assertion either of them accepted.
func TestVerifyReplayRedis(t *testing.T) {
	client, prefix := redistest.Client(t)
	k := fixtures(t)
	mk := func() *voucher.Verifier {
		return newVerifier(t, world(t), func(c *voucher.Config) {
			c.Replay, c.Now = voucher.NewRedisReplayCache(client, prefix), time.Now
		})
	}
	a, b := mk(), mk()
	now := time.Now().Unix()
	assertion := mint(t, k.rsa, goodClaims().with("iat", now, "exp", now+60), nil)
	if _, err := a.Verify(context.Background(), request(assertion)); err != nil {
		t.Fatal(err)
	}
	_, err := b.Verify(context.Background(), request(assertion))
	if oe := oauthError(t, err); oe.Check != voucher.CheckJTIUnused {
		t.Fatalf("replay on the other replica: %+v", oe)
	}
	r, err := b.Report(context.Background(), esClient, assertion)
	if err != nil {
		t.Fatal(err)
	}
	if r.Valid {
		t.Fatal("report of a used jti is valid")
	}
}
