package lease_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keyledger/keyledger/internal/redistest"
	"github.com/keyledger/keyledger/projections/lease"
)

const ttl = 300 * time.Millisecond

// wait is the bound on anything a test waits for; it is a failure bound, not an assertion
// on speed.
const wait = 10 * time.Second

func newLease(t *testing.T, c redis.UniversalClient, prefix, name, holder string, opts ...lease.Option) *lease.Lease {
	t.Helper()
	l, err := lease.New(c, name, holder, ttl, append([]lease.Option{lease.WithKeyPrefix(prefix)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestNewRejectsBadConfig(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	for name, f := range map[string]func() (*lease.Lease, error){
		"nil client":     func() (*lease.Lease, error) { return lease.New(nil, "n", "h", ttl) },
		"empty name":     func() (*lease.Lease, error) { return lease.New(c, "", "h", ttl) },
		"empty holder":   func() (*lease.Lease, error) { return lease.New(c, "n", "", ttl) },
		"tiny ttl":       func() (*lease.Lease, error) { return lease.New(c, "n", "h", time.Microsecond) },
		"renew >= ttl":   func() (*lease.Lease, error) { return lease.New(c, "n", "h", ttl, lease.WithRenewInterval(ttl)) },
		"zero retry":     func() (*lease.Lease, error) { return lease.New(c, "n", "h", ttl, lease.WithRetryInterval(0)) },
		"negative renew": func() (*lease.Lease, error) { return lease.New(c, "n", "h", ttl, lease.WithRenewInterval(-1)) },
	} {
		if _, err := f(); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
}

func TestAcquireRenewRelease(t *testing.T) {
	c, prefix := newClient(t)
	ctx := context.Background()
	a := newLease(t, c, prefix, "voucher", "a")
	b := newLease(t, c, prefix, "voucher", "b")

	ta, ok, err := a.Acquire(ctx)
	if err != nil || !ok {
		t.Fatalf("a.Acquire = %d, %v, %v; want a token", ta, ok, err)
	}
	if _, ok, err := b.Acquire(ctx); err != nil || ok {
		t.Fatalf("b.Acquire while a holds = %v, %v; want not ok, no error", ok, err)
	}
	if _, _, err := a.Acquire(ctx); err == nil {
		t.Fatal("a.Acquire while a holds: want an error")
	}
	if err := a.Renew(ctx); err != nil {
		t.Fatalf("a.Renew: %v", err)
	}
	if err := a.Release(ctx); err != nil {
		t.Fatalf("a.Release: %v", err)
	}
	if err := a.Renew(ctx); !errors.Is(err, lease.ErrLost) {
		t.Fatalf("a.Renew after Release = %v; want ErrLost", err)
	}
	tb, ok, err := b.Acquire(ctx)
	if err != nil || !ok {
		t.Fatalf("b.Acquire after a released = %d, %v, %v; want a token", tb, ok, err)
	}
	if tb <= ta {
		t.Fatalf("b's token %d is not above a's %d", tb, ta)
	}
	if got, held := b.Token(); !held || got != tb {
		t.Fatalf("b.Token() = %d, %v; want %d, true", got, held, tb)
	}
}

// A holder that stopped renewing (paused past its TTL) must find its lease gone, must not
// be able to extend or delete its successor's lease, and its token must be the lower one.
func TestStaleHolderCannotRenewOrRelease(t *testing.T) {
	c, prefix := newClient(t)
	ctx := context.Background()
	a := newLease(t, c, prefix, "voucher", "a")
	b := newLease(t, c, prefix, "voucher", "b")

	ta, ok, err := a.Acquire(ctx)
	if err != nil || !ok {
		t.Fatalf("a.Acquire = %v, %v", ok, err)
	}
	tb := acquireEventually(t, b) // a's lease expires: a does not renew
	if tb <= ta {
		t.Fatalf("b's token %d is not above a's %d", tb, ta)
	}
	if err := a.Renew(ctx); !errors.Is(err, lease.ErrLost) {
		t.Fatalf("stale a.Renew = %v; want ErrLost", err)
	}
	if err := a.Release(ctx); err != nil {
		t.Fatalf("stale a.Release: %v", err)
	}
	if err := b.Renew(ctx); err != nil {
		t.Fatalf("b.Renew after stale a's Release: %v (a deleted b's lease?)", err)
	}
}

func acquireEventually(t *testing.T, l *lease.Lease) uint64 {
	t.Helper()
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		tok, ok, err := l.Acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			return tok
		}
		time.Sleep(ttl / 10)
	}
	t.Fatalf("lease %s was not acquired within %v", l.Key(), wait)
	return 0
}

// Several holders contend for one lease; each runs its work a few times. At no moment do
// two works run, and the tokens, in the order the works ran, strictly increase.
func TestRunIsExclusive(t *testing.T) {
	c, prefix := newClient(t)
	const holders, rounds = 3, 4

	var (
		running, maxRunning atomic.Int32
		mu                  sync.Mutex
		tokens              []uint64
	)
	work := func(ctx context.Context, token uint64) error {
		n := running.Add(1)
		defer running.Add(-1)
		for {
			m := maxRunning.Load()
			if n <= m || maxRunning.CompareAndSwap(m, n) {
				break
			}
		}
		mu.Lock()
		tokens = append(tokens, token)
		mu.Unlock()
		// Hold the lease across at least one renewal, sometimes several.
		select {
		case <-time.After(ttl/2 + rand.N(ttl)):
		case <-ctx.Done():
			return fmt.Errorf("work with token %d cancelled: %w", token, context.Cause(ctx))
		}
		return nil
	}

	ctx, cancel := context.WithTimeout(context.Background(), 4*wait)
	defer cancel()
	errs := make(chan error, holders*rounds)
	var wg sync.WaitGroup
	for h := range holders {
		l := newLease(t, c, prefix, "voucher", fmt.Sprintf("holder-%d", h))
		wg.Go(func() {
			for range rounds {
				errs <- l.Run(ctx, work)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if m := maxRunning.Load(); m != 1 {
		t.Errorf("at most %d works ran at once; want exactly 1", m)
	}
	if len(tokens) != holders*rounds {
		t.Fatalf("%d works ran; want %d", len(tokens), holders*rounds)
	}
	for i := 1; i < len(tokens); i++ {
		if tokens[i] <= tokens[i-1] {
			t.Errorf("tokens in run order %v do not strictly increase", tokens)
			break
		}
	}
}

// crashHook makes a client fail every command once crashed is set: the process is gone as
// far as Redis can tell, so it neither renews nor releases.
type crashHook struct{ crashed *atomic.Bool }

var errCrashed = errors.New("process crashed")

func (h crashHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if h.crashed.Load() {
			return nil, errCrashed
		}
		return next(ctx, network, addr)
	}
}

func (h crashHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if h.crashed.Load() {
			cmd.SetErr(errCrashed)
			return errCrashed
		}
		return next(ctx, cmd)
	}
}

func (h crashHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if h.crashed.Load() {
			return errCrashed
		}
		return next(ctx, cmds)
	}
}

type started struct {
	token uint64
	ctx   context.Context
}

func startRun(l *lease.Lease, ctx context.Context) (<-chan started, <-chan error) {
	starts := make(chan started, 16)
	done := make(chan error, 1)
	go func() {
		done <- l.Run(ctx, func(ctx context.Context, token uint64) error {
			starts <- started{token, ctx}
			<-ctx.Done()
			return context.Cause(ctx)
		})
	}()
	return starts, done
}

func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(wait):
		t.Fatalf("%s did not happen within %v", what, wait)
		var zero T
		return zero
	}
}

// The leader crashes (stops talking to Redis without releasing); the stand-by takes over
// once the lease expires, with a greater token.
func TestRunHandsOverWhenLeaderCrashes(t *testing.T) {
	var crashed atomic.Bool
	ca, prefix := newClient(t, crashHook{&crashed})
	o := *redistest.Options(t)
	cb := redis.NewClient(&o)
	defer cb.Close()

	var releaseErrs atomic.Int32
	a := newLease(t, ca, prefix, "voucher", "a", lease.WithErrorHandler(func(err error) {
		if errors.Is(err, errCrashed) {
			releaseErrs.Add(1)
		}
	}))
	b := newLease(t, cb, prefix, "voucher", "b")

	actx, crash := context.WithCancel(context.Background())
	defer crash()
	aStarts, aDone := startRun(a, actx)
	sa := receive(t, aStarts, "a leading")

	bctx, stopB := context.WithCancel(context.Background())
	defer stopB()
	bStarts, bDone := startRun(b, bctx)

	crashed.Store(true)
	crash()
	if err := receive(t, aDone, "a's Run returning"); !errors.Is(err, context.Canceled) {
		t.Fatalf("a.Run = %v; want context.Canceled", err)
	}
	if releaseErrs.Load() == 0 {
		t.Fatal("a's Release reached Redis; the crash was not simulated")
	}
	sb := receive(t, bStarts, "b taking over")
	if sb.token <= sa.token {
		t.Fatalf("b's token %d is not above the crashed leader's %d", sb.token, sa.token)
	}
	if err := sb.ctx.Err(); err != nil {
		t.Fatalf("b's work context is done right after take-over: %v", context.Cause(sb.ctx))
	}
	stopB()
	if err := receive(t, bDone, "b's Run returning"); !errors.Is(err, context.Canceled) {
		t.Fatalf("b.Run = %v; want context.Canceled", err)
	}
	if n, err := cb.Exists(context.Background(), b.Key()).Result(); err != nil || n != 0 {
		t.Fatalf("lease key after b stopped: exists=%d, %v; want released", n, err)
	}
}

// The leader's lease is taken over behind its back (it was paused past its TTL): its next
// renewal fails with ErrLost, its work is cancelled with that cause, and it stands by and
// leads again, with a greater token, once the new holder lets go.
func TestRunCancelsWorkWhenLeaseIsLost(t *testing.T) {
	c, prefix := newClient(t)
	a := newLease(t, c, prefix, "voucher", "a")
	b := newLease(t, c, prefix, "voucher", "b")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	aStarts, aDone := startRun(a, ctx)
	s1 := receive(t, aStarts, "a leading")

	// Simulate a's lease lapsing during a pause, and b taking it.
	if err := c.Del(ctx, a.Key()).Err(); err != nil {
		t.Fatal(err)
	}
	tb, ok, err := b.Acquire(ctx)
	if err != nil || !ok {
		t.Fatalf("b.Acquire = %v, %v", ok, err)
	}
	if tb <= s1.token {
		t.Fatalf("b's token %d is not above a's %d", tb, s1.token)
	}

	receive(t, s1.ctx.Done(), "a's work being cancelled")
	if cause := context.Cause(s1.ctx); !errors.Is(cause, lease.ErrLost) {
		t.Fatalf("a's work was cancelled with %v; want ErrLost", cause)
	}
	if err := b.Renew(ctx); err != nil {
		t.Fatalf("b.Renew after a lost the lease: %v (a released b's lease?)", err)
	}
	select {
	case s := <-aStarts:
		t.Fatalf("a led again (token %d) while b holds the lease", s.token)
	case err := <-aDone:
		t.Fatalf("a.Run returned %v after losing the lease; want it to stand by", err)
	default:
	}

	if err := b.Release(ctx); err != nil {
		t.Fatal(err)
	}
	s2 := receive(t, aStarts, "a leading again")
	if s2.token <= tb {
		t.Fatalf("a's new token %d is not above b's %d", s2.token, tb)
	}
	cancel()
	if err := receive(t, aDone, "a's Run returning"); !errors.Is(err, context.Canceled) {
		t.Fatalf("a.Run = %v; want context.Canceled", err)
	}
}

func TestRunReturnsWorkResult(t *testing.T) {
	c, prefix := newClient(t)
	a := newLease(t, c, prefix, "voucher", "a")
	boom := errors.New("boom")
	if err := a.Run(context.Background(), func(context.Context, uint64) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("Run = %v; want the work's error", err)
	}
	if err := a.Run(context.Background(), func(context.Context, uint64) error { return nil }); err != nil {
		t.Fatalf("Run = %v; want nil", err)
	}
	if n, err := c.Exists(context.Background(), a.Key()).Result(); err != nil || n != 0 {
		t.Fatalf("lease key after Run returned: exists=%d, %v; want released", n, err)
	}
}

func TestCheckFence(t *testing.T) {
	c, prefix := newClient(t)
	ctx := context.Background()
	fence := prefix + "voucher:fence"

	for _, step := range []struct {
		token uint64
		stale bool
	}{
		{5, false}, {5, false}, {7, false}, {6, true}, {7, false}, {1, true}, {0, true}, {8, false},
	} {
		err := lease.CheckFence(ctx, c, fence, step.token)
		if step.stale != errors.Is(err, lease.ErrStaleToken) || (!step.stale && err != nil) {
			t.Errorf("CheckFence(%d) = %v; want stale=%v", step.token, err, step.stale)
		}
	}
}

// A writer fenced by its lease token is refused once its successor has written.
func TestCheckFenceRefusesStaleLeader(t *testing.T) {
	c, prefix := newClient(t)
	ctx := context.Background()
	fence := prefix + "voucher:fence"
	a := newLease(t, c, prefix, "voucher", "a")
	b := newLease(t, c, prefix, "voucher", "b")

	ta, _, err := a.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := lease.CheckFence(ctx, c, fence, ta); err != nil {
		t.Fatalf("leader a's write: %v", err)
	}
	tb := acquireEventually(t, b) // a paused past its TTL
	if err := lease.CheckFence(ctx, c, fence, tb); err != nil {
		t.Fatalf("new leader b's write: %v", err)
	}
	if err := lease.CheckFence(ctx, c, fence, ta); !errors.Is(err, lease.ErrStaleToken) {
		t.Fatalf("stale leader a's late write = %v; want ErrStaleToken", err)
	}
}
