package esdb

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	esdbc "github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/keyledger/keyledger/eventstore"
)

// conn is one generation of the EventStoreDB client.
//
// The v4 client closes itself for good when node discovery fails (for example while the
// node restarts) and then answers every call with ErrorCodeConnectionClosed, even after
// the node is back; the only cure is a new client. A dead client has a second defect:
// a call that was queued on its internal channel while the failing discovery ran is never
// answered. Every call therefore runs in its own goroutine (see Store.run) so that the
// caller can give up on it when its context ends, when the store closes, or when this
// generation is replaced.
type conn struct {
	client   *esdbc.Client
	gen      uint64
	replaced chan struct{} // closed when a newer generation takes over
	dead     atomic.Bool   // the client answered ErrorCodeConnectionClosed
}

// errReplaced marks a call abandoned because its client generation was replaced while
// the call was in flight; the client was dead, so the call cannot have been sent.
var errReplaced = errors.New("esdb client was replaced while the call was in flight")

// errClientPanic marks a panic raised inside the client library (it panics on some
// malformed server answers and when a dead client is closed under a blocked call).
var errClientPanic = errors.New("esdb client panicked")

// current returns the live client generation, or ErrClosed.
func (s *Store) current() (*conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, eventstore.ErrClosed
	}
	return s.conn, nil
}

// rebuild replaces old with a new client built from the same configuration, unless
// another caller already did. It never closes old: closing a dead client panics any
// goroutine still blocked inside it, and a dead client holds nothing Close would free.
func (s *Store) rebuild(old *conn) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return eventstore.ErrClosed
	}
	if s.conn != old {
		return nil
	}
	cfg := *s.cfg
	client, err := esdbc.NewClient(&cfg)
	if err != nil {
		return fmt.Errorf("rebuild esdb client: %w", err)
	}
	s.conn = &conn{client: client, gen: old.gen + 1, replaced: make(chan struct{})}
	close(old.replaced)
	s.log.Warn("eventstore/esdb: client closed for good; rebuilt it", "generation", s.conn.gen)
	return nil
}

// generation reports how many times the client was rebuilt.
func (s *Store) generation() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn.gen
}

// run calls fn in its own goroutine and waits for it, for ctx, for the store to close
// or for c to be replaced, whichever comes first. A panic inside the client library is
// turned into an error.
func (s *Store) run(ctx context.Context, c *conn, fn func() error) error {
	done := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- fmt.Errorf("%w: %v", errClientPanic, r)
			}
		}()
		done <- fn()
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-c.replaced:
		return errReplaced
	case <-s.closing:
		return eventstore.ErrClosed
	}
}

// do runs one store operation on the current client. When the client turns out to be
// closed for good it is rebuilt, and the operation is retried once on the new client if
// retrySafe says a second attempt cannot duplicate a write.
func (s *Store) do(ctx context.Context, retrySafe bool, fn func(c *esdbc.Client) error) error {
	for attempt := 0; ; attempt++ {
		c, err := s.current()
		if err != nil {
			return err
		}
		err = s.run(ctx, c, func() error { return fn(c.client) })
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || errors.Is(err, eventstore.ErrClosed) {
			return err
		}
		if !s.isDead(ctx, c, err) {
			return err
		}
		if rerr := s.rebuild(c); rerr != nil {
			return errors.Join(err, rerr)
		}
		if attempt > 0 || !retrySafe {
			return err
		}
		s.log.Info("eventstore/esdb: retrying the call on the rebuilt client", "cause", err)
	}
}

// isDead reports whether err shows that c is closed for good. A transport error alone
// does not say so: the client rediscovers the node on its next call, and only if that
// discovery fails does it close itself. So after a transport error c is probed (up to
// twice: the first probe may be the one that runs the failing discovery).
func (s *Store) isDead(ctx context.Context, c *conn, err error) bool {
	if c.dead.Load() || errors.Is(err, errReplaced) {
		return true
	}
	if code, ok := esdbCode(err); ok && code == esdbc.ErrorCodeConnectionClosed {
		c.dead.Store(true)
		return true
	}
	if !isTransport(err) {
		return false
	}
	for range 2 {
		perr := s.probe(ctx, c)
		if perr == nil {
			return false
		}
		if code, ok := esdbCode(perr); ok && code == esdbc.ErrorCodeConnectionClosed {
			c.dead.Store(true)
			return true
		}
		if errors.Is(perr, errReplaced) {
			return true
		}
		if !isTransport(perr) {
			return false
		}
	}
	return false
}

// probeLimit bounds a probe; a probe may have to wait for one full node discovery.
const probeLimit = 30 * time.Second

// probe asks c for a connection without sending anything to the node: it opens a read
// with an already cancelled context. It answers ErrorCodeConnectionClosed when c is dead,
// a discovery error when the node cannot be found, and nil otherwise.
func (s *Store) probe(ctx context.Context, c *conn) error {
	ctx, cancel := context.WithTimeout(ctx, probeLimit)
	defer cancel()
	return s.run(ctx, c, func() error {
		pctx, pcancel := context.WithCancel(context.Background())
		pcancel()
		rs, err := c.client.ReadStream(pctx, "$keyledger-probe", esdbc.ReadStreamOptions{From: esdbc.Start{}}, 1)
		if err == nil {
			rs.Close()
			return nil
		}
		if status.Code(err) == codes.Canceled {
			return nil
		}
		return err
	})
}

// esdbCode returns the client's error code if err carries an *esdbc.Error.
func esdbCode(err error) (esdbc.ErrorCode, bool) {
	var e *esdbc.Error
	if errors.As(err, &e) {
		return e.Code(), true
	}
	return 0, false
}

// isTransport reports whether err looks like a failure to reach the node (as opposed
// to an answer from it).
func isTransport(err error) bool {
	if code, ok := esdbCode(err); ok {
		switch code {
		case esdbc.ErrorUnavailable, esdbc.ErrorCodeDeadlineExceeded, esdbc.ErrorCodeUnknown,
			esdbc.ErrorAborted, esdbc.ErrorCodeConnectionClosed:
			return true
		}
		return false
	}
	st, ok := status.FromError(err)
	if !ok {
		return false
	}
	switch st.Code() {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Unknown, codes.Aborted, codes.Internal:
		return true
	}
	return false
}

// subRegistry tracks open subscriptions so that Store.Close can end them.
type subRegistry struct {
	mu   sync.Mutex
	subs map[*subscription]struct{}
}

func (r *subRegistry) add(s *subscription) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.subs == nil {
		r.subs = map[*subscription]struct{}{}
	}
	r.subs[s] = struct{}{}
}

func (r *subRegistry) remove(s *subscription) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.subs, s)
}

func (r *subRegistry) all() []*subscription {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*subscription, 0, len(r.subs))
	for s := range r.subs {
		out = append(out, s)
	}
	return out
}
