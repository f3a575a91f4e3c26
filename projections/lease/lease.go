// Package lease elects one Keyledger process to project a read model when several share
// one Redis: the elected holder owns a lease key with a time-to-live that it keeps
// renewing, and every acquisition draws a new, strictly greater fencing token.
//
// A lease is only a hint that nobody else is working: a holder that pauses (GC, a stalled
// host, a slow network) past the TTL can still be writing after another process took over.
// Writers that must not be overtaken therefore carry the fencing token and let Redis refuse
// a token lower than one it has already seen — see CheckFence. The check must run in the
// same atomic operation as the write it guards (one Lua script or MULTI/EXEC on keys in the
// same hash slot), for example:
//
//	local fence = tonumber(redis.call('GET', KEYS[1]) or '0')
//	if tonumber(ARGV[1]) < fence then return redis.error_reply('STALE fencing token') end
//	redis.call('SET', KEYS[1], ARGV[1])
//	-- ... the guarded write ...
//
// CheckFence alone, followed by a separate write, narrows the window but does not close it.
package lease

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrLost reports that this holder no longer holds the lease: it expired, was taken over,
// released, or was never acquired. Run cancels the work's context with a cause that
// matches ErrLost (errors.Is(context.Cause(ctx), ErrLost)).
var ErrLost = errors.New("lease lost")

// ErrStaleToken reports that CheckFence saw a fencing token lower than one already
// recorded: the writer is a stale holder and must not apply its write.
var ErrStaleToken = errors.New("stale fencing token")

// DefaultKeyPrefix prefixes lease keys unless WithKeyPrefix says otherwise.
const DefaultKeyPrefix = "keyledger:lease:"

// Lease is one process's handle on a named lease. It is safe for concurrent use, but a
// Lease runs at most one Run at a time; two processes (or two Runs) contending for the same
// name must use different holder ids.
type Lease struct {
	client     redis.UniversalClient
	prefix     string
	key        string // holds "<token>:<holder>" while held, with a TTL
	tokenKey   string // the fencing-token counter; never expires
	holder     string
	ttl        time.Duration
	renewEvery time.Duration
	retryEvery time.Duration
	onError    func(error)

	mu         sync.Mutex
	token      uint64 // 0 while not held
	value      string // the lease key's value while held
	validUntil time.Time
}

// Option configures a Lease.
type Option func(*Lease)

// WithKeyPrefix sets the prefix of the lease's keys (default DefaultKeyPrefix). All
// processes contending for a lease must use the same prefix, or they will not see each
// other and will all lead.
func WithKeyPrefix(prefix string) Option { return func(l *Lease) { l.prefix = prefix } }

// WithRenewInterval sets how often Run renews a held lease (default ttl/3). It must be
// well below the TTL: an interval near the TTL lets the lease lapse between renewals.
func WithRenewInterval(d time.Duration) Option { return func(l *Lease) { l.renewEvery = d } }

// WithRetryInterval sets how often Run tries to acquire a lease another holder has
// (default ttl/3). A long interval delays take-over after a crash by up to that much.
func WithRetryInterval(d time.Duration) Option { return func(l *Lease) { l.retryEvery = d } }

// WithErrorHandler receives the Redis errors Run absorbs (failed acquisitions it retries,
// failed renewals that cost it the lease, failed releases that leave the lease to expire).
// Default: they are dropped. The handler must not block: Run calls it inline.
func WithErrorHandler(f func(error)) Option { return func(l *Lease) { l.onError = f } }

// New returns a handle on the lease name for the holder holderID. holderID must be unique
// per process incarnation (say host, pid and a random suffix): a restarted process that
// reuses its id still waits for its previous incarnation's lease to expire, but two live
// processes sharing an id cannot tell their leases apart. ttl bounds how long a crashed
// holder blocks the others; it must be at least a millisecond.
func New(client redis.UniversalClient, name, holderID string, ttl time.Duration, opts ...Option) (*Lease, error) {
	switch {
	case client == nil:
		return nil, errors.New("lease: nil Redis client")
	case name == "":
		return nil, errors.New("lease: empty name")
	case holderID == "":
		return nil, errors.New("lease: empty holder id")
	case ttl < time.Millisecond:
		return nil, fmt.Errorf("lease %s: ttl %v is below a millisecond", name, ttl)
	}
	l := &Lease{
		client:     client,
		prefix:     DefaultKeyPrefix,
		holder:     holderID,
		ttl:        ttl,
		renewEvery: ttl / 3,
		retryEvery: ttl / 3,
	}
	for _, o := range opts {
		o(l)
	}
	// The hash tag keeps both keys in one Cluster slot, so one script may touch both.
	l.key = l.prefix + "{" + name + "}"
	l.tokenKey = l.key + ":token"
	if l.renewEvery <= 0 || l.renewEvery >= ttl {
		return nil, fmt.Errorf("lease %s: renew interval %v must be positive and below the ttl %v", name, l.renewEvery, ttl)
	}
	if l.retryEvery <= 0 {
		return nil, fmt.Errorf("lease %s: retry interval %v must be positive", name, l.retryEvery)
	}
	return l, nil
}

// Key returns the Redis key that holds the lease, for diagnostics.
func (l *Lease) Key() string { return l.key }

// Token returns the fencing token of the lease this handle believes it holds, and whether
// it holds one. The belief may be stale: only Renew confirms it.
func (l *Lease) Token() (uint64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.token, l.token != 0
}

// acquireScript takes the lease if nobody holds it and draws the next fencing token in the
// same atomic step, so a token is never drawn without the lease nor the lease taken without
// a new token. It returns {token, value}, or 0 when the lease is held.
var acquireScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local token = redis.call('INCR', KEYS[2])
local value = tostring(token) .. ':' .. ARGV[1]
redis.call('SET', KEYS[1], value, 'NX', 'PX', ARGV[2])
return {token, value}
`)

// renewScript extends the lease only while it still holds this holder's value (and so its
// token).
var renewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
	return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`)

// releaseScript deletes the lease only while it still holds this holder's value.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
	return redis.call('DEL', KEYS[1])
end
return 0
`)

// Acquire takes the lease if nobody holds it. ok is false, with a nil error, while another
// holder (or an earlier incarnation of this one) has it. The token is greater than every
// token drawn before for this lease. Acquire on a handle that already holds the lease is an
// error; a caller that acquires directly must renew more often than the TTL, and Release.
func (l *Lease) Acquire(ctx context.Context) (token uint64, ok bool, err error) {
	l.mu.Lock()
	held := l.token != 0
	l.mu.Unlock()
	if held {
		return 0, false, fmt.Errorf("acquire lease %s: already held by this handle", l.key)
	}
	start := time.Now()
	reply, err := acquireScript.Run(ctx, l.client, []string{l.key, l.tokenKey}, l.holder, l.ttl.Milliseconds()).Result()
	if err != nil {
		return 0, false, fmt.Errorf("acquire lease %s: %w", l.key, err)
	}
	if n, isInt := reply.(int64); isInt && n == 0 {
		return 0, false, nil
	}
	res, isSlice := reply.([]any)
	if !isSlice || len(res) != 2 {
		return 0, false, fmt.Errorf("acquire lease %s: unexpected reply %v", l.key, reply)
	}
	n, isInt := res[0].(int64)
	value, isStr := res[1].(string)
	if !isInt || !isStr || n <= 0 {
		return 0, false, fmt.Errorf("acquire lease %s: unexpected reply %v", l.key, res)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.token, l.value, l.validUntil = uint64(n), value, start.Add(l.ttl)
	return l.token, true, nil
}

// Renew extends the lease by the TTL if this handle still holds it with the same token,
// and returns an error matching ErrLost otherwise (after which the handle no longer holds
// it). Any other error leaves the question open: the lease may still be held, but until a
// renewal succeeds the holder must behave as if it were not once its TTL has run out.
func (l *Lease) Renew(ctx context.Context) error {
	l.mu.Lock()
	value := l.value
	l.mu.Unlock()
	if value == "" {
		return fmt.Errorf("renew lease %s: %w", l.key, ErrLost)
	}
	start := time.Now()
	n, err := renewScript.Run(ctx, l.client, []string{l.key}, value, l.ttl.Milliseconds()).Int()
	if err != nil {
		return fmt.Errorf("renew lease %s: %w", l.key, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.value != value { // released or re-acquired meanwhile
		return fmt.Errorf("renew lease %s: %w", l.key, ErrLost)
	}
	if n != 1 {
		l.token, l.value = 0, ""
		return fmt.Errorf("renew lease %s: %w", l.key, ErrLost)
	}
	l.validUntil = start.Add(l.ttl)
	return nil
}

// Release gives the lease up if this handle still holds it, so another holder can take
// over without waiting for the TTL. It never deletes another holder's lease. The handle
// stops holding the lease even when Redis cannot be reached; the lease then expires.
func (l *Lease) Release(ctx context.Context) error {
	l.mu.Lock()
	value := l.value
	l.token, l.value = 0, ""
	l.mu.Unlock()
	if value == "" {
		return nil
	}
	if err := releaseScript.Run(ctx, l.client, []string{l.key}, value).Err(); err != nil {
		return fmt.Errorf("release lease %s: %w", l.key, err)
	}
	return nil
}

// Run keeps trying to acquire the lease (every retry interval while another holder has
// it) and, while it holds it, runs work with the fencing token, renewing every renew
// interval. work's context is cancelled as soon as a renewal fails or the lease is lost,
// with a cause matching ErrLost; work must then stop writing promptly and return, and Run
// goes back to standing by. Redis errors while standing by are retried.
//
// Run returns when ctx is done (with ctx's error), or when work returns while the lease is
// still held (with work's error, possibly nil); it releases the lease before returning.
// work's own error is dropped when the lease was lost, since it is then expected to be a
// consequence of the cancellation.
func (l *Lease) Run(ctx context.Context, work func(ctx context.Context, token uint64) error) error {
	for {
		token, ok, err := l.Acquire(ctx)
		if err != nil && ctx.Err() == nil {
			l.report(err)
		}
		if ok {
			lost, err := l.lead(ctx, token, work)
			if !lost {
				return err
			}
			if ctx.Err() == nil {
				continue // someone else may hold it now; try once at once, then at intervals
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		t := time.NewTimer(l.retryEvery)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// lead runs work while the lease is held. lost reports that the lease was (or may have
// been) lost and Run should stand by again; otherwise err is what Run returns.
func (l *Lease) lead(ctx context.Context, token uint64, work func(context.Context, uint64) error) (lost bool, err error) {
	workCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	done := make(chan error, 1)
	go func() { done <- work(workCtx, token) }()

	ticker := time.NewTicker(l.renewEvery)
	defer ticker.Stop()
	for {
		select {
		case err := <-done:
			l.releaseDetached(ctx)
			if ctx.Err() != nil {
				return false, ctx.Err()
			}
			return false, err
		case <-ticker.C:
			rerr := l.renewWithinTTL(ctx)
			if rerr == nil {
				continue
			}
			if ctx.Err() != nil {
				cancel(ctx.Err())
				<-done
				l.releaseDetached(ctx)
				return false, ctx.Err()
			}
			l.report(rerr)
			if !errors.Is(rerr, ErrLost) {
				rerr = fmt.Errorf("%w: %w", ErrLost, rerr)
			}
			cancel(rerr)
			<-done
			// The renewal may have failed for a transient reason while the lease is
			// still ours; give it up so another holder need not wait for the TTL.
			l.releaseDetached(ctx)
			return true, nil
		}
	}
}

// renewWithinTTL renews, but gives up when the lease would have expired by this handle's
// own clock: past that point another holder may already have it.
func (l *Lease) renewWithinTTL(ctx context.Context) error {
	l.mu.Lock()
	until := l.validUntil
	l.mu.Unlock()
	rctx, cancel := context.WithDeadline(ctx, until)
	defer cancel()
	return l.Renew(rctx)
}

// releaseDetached releases even when ctx is done, bounded by the TTL (after which the
// lease expires by itself).
func (l *Lease) releaseDetached(ctx context.Context) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.ttl)
	defer cancel()
	if err := l.Release(rctx); err != nil {
		l.report(err)
	}
}

func (l *Lease) report(err error) {
	if l.onError != nil {
		l.onError(err)
	}
}

// fenceScript records token as the highest seen under KEYS[1], refusing (0) a lower one.
// Tokens compare as Lua numbers, exact up to 2^53 — far beyond any INCR count a lease
// reaches.
var fenceScript = redis.NewScript(`
local seen = redis.call('GET', KEYS[1])
if seen and tonumber(ARGV[1]) < tonumber(seen) then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
return 1
`)

// CheckFence records token as seen under fenceKey and returns an error matching
// ErrStaleToken if a higher token was seen there before (an equal one passes: the same
// holder writes many times). fenceKey belongs to the guarded data, not to the lease: use
// one per read model (its key prefix), in the same Cluster hash slot as the data when the
// check is folded into the write's script. A separate CheckFence call before a write does
// not make the pair atomic; see the package documentation.
func CheckFence(ctx context.Context, c redis.Scripter, fenceKey string, token uint64) error {
	if token == 0 {
		return fmt.Errorf("check fence %s: zero token: %w", fenceKey, ErrStaleToken)
	}
	n, err := fenceScript.Run(ctx, c, []string{fenceKey}, token).Int()
	if err != nil {
		return fmt.Errorf("check fence %s: %w", fenceKey, err)
	}
	if n != 1 {
		return fmt.Errorf("check fence %s: token %d: %w", fenceKey, token, ErrStaleToken)
	}
	return nil
}
