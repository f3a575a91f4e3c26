package esdb

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	esdbc "github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/keyledger/keyledger/eventstore"
)

// Subscribe starts a catch-up subscription to $all after the given position. The
// filter's stream prefixes are applied by the node; without prefixes the node is asked to
// leave out system events. The subscription lives until ctx ends (Next then returns
// ctx's error, as the embedded store's does), it is closed, the store is closed, or it
// gives up after the resubscription attempts set with WithResubscribe.
func (s *Store) Subscribe(ctx context.Context, after eventstore.Position, filter eventstore.Filter) (eventstore.Subscription, error) {
	if _, err := s.current(); err != nil {
		return nil, fmt.Errorf("eventstore/esdb: subscribe: %w", err)
	}
	life, cancel := context.WithCancel(ctx)
	sub := &subscription{
		store:  s,
		parent: ctx,
		filter: eventstore.Filter{StreamPrefixes: append([]string(nil), filter.StreamPrefixes...)},
		life:   life,
		cancel: cancel,
		out:    make(chan eventstore.RecordedEvent),
		done:   make(chan struct{}),
	}
	es, err := sub.open(ctx, after)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("eventstore/esdb: subscribe after %s: %w", after, s.failure(ctx, err))
	}
	s.subs.add(sub)
	go sub.pump(es, after)
	if _, err := s.current(); err != nil { // Close raced with Subscribe
		_ = sub.Close()
	}
	return sub, nil
}

// subscription is a catch-up subscription. A pump goroutine owns the client's
// subscription and hands events to Next one at a time over an unbuffered channel, so
// "delivered" means "returned by Next" and a resubscription resumes exactly after the
// last event Next returned.
type subscription struct {
	store  *Store
	parent context.Context // Subscribe's ctx
	filter eventstore.Filter
	life   context.Context // ends with parent or Close
	cancel context.CancelFunc

	out  chan eventstore.RecordedEvent
	done chan struct{} // closed when the pump has exited; err is set before
	err  error

	closed    atomic.Bool
	closeOnce sync.Once
}

// Next returns the next event after the last one it returned. It returns ctx.Err()
// when ctx ends (the subscription stays usable), Subscribe's ctx error once that one
// ended, eventstore.ErrClosed after Close, and an error wrapping eventstore.ErrUnavailable
// once the subscription has given up reconnecting.
func (sub *subscription) Next(ctx context.Context) (eventstore.RecordedEvent, error) {
	if sub.closed.Load() {
		return eventstore.RecordedEvent{}, eventstore.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return eventstore.RecordedEvent{}, err
	}
	select {
	case e := <-sub.out:
		return e, nil
	case <-sub.done:
		switch {
		case sub.closed.Load():
			return eventstore.RecordedEvent{}, eventstore.ErrClosed
		case sub.err != nil:
			return eventstore.RecordedEvent{}, sub.err
		case sub.parent.Err() != nil:
			return eventstore.RecordedEvent{}, sub.parent.Err()
		}
		return eventstore.RecordedEvent{}, eventstore.ErrClosed
	case <-ctx.Done():
		return eventstore.RecordedEvent{}, ctx.Err()
	}
}

// Close ends the subscription. It is safe to call from any goroutine, more than once,
// while Next is blocked.
func (sub *subscription) Close() error {
	sub.closeOnce.Do(func() {
		sub.closed.Store(true)
		sub.cancel()
		<-sub.done
		sub.store.subs.remove(sub)
	})
	return nil
}

// open subscribes to $all after pos; ctx bounds the call, sub.life the subscription.
func (sub *subscription) open(ctx context.Context, pos eventstore.Position) (*esdbc.Subscription, error) {
	opts := esdbc.SubscribeToAllOptions{From: esdbc.Start{}}
	if !pos.IsZero() {
		opts.From = esdbc.Position{Commit: pos.Commit, Prepare: pos.Prepare}
	}
	if len(sub.filter.StreamPrefixes) > 0 {
		opts.Filter = &esdbc.SubscriptionFilter{Type: esdbc.StreamFilterType, Prefixes: sub.filter.StreamPrefixes}
	} else {
		opts.Filter = esdbc.ExcludeSystemEventsFilter()
	}
	var es *esdbc.Subscription
	err := sub.store.do(ctx, true, func(c *esdbc.Client) error {
		s, err := c.SubscribeToAll(sub.life, opts)
		if err != nil {
			return err
		}
		es = s
		return nil
	})
	if err != nil {
		return nil, err
	}
	return es, nil
}

// pump delivers events until the subscription is closed or gives up. pos is the
// position of the last delivered event (or where the subscription started).
func (sub *subscription) pump(es *esdbc.Subscription, pos eventstore.Position) {
	defer sub.store.subs.remove(sub)
	defer close(sub.done)
	o := sub.store.opts
	failures := 0
	var lastErr error
	for {
		if es == nil {
			if failures >= o.retries {
				sub.err = fmt.Errorf("eventstore/esdb: subscription after %s: gave up after %d attempts to resubscribe: %w: %w", pos, failures, eventstore.ErrUnavailable, lastErr)
				sub.store.log.Error("eventstore/esdb: subscription gave up", "position", pos.String(), "error", lastErr)
				return
			}
			if failures > 0 && !sub.sleep(backoff(o.minBackoff, o.maxBackoff, failures)) {
				return
			}
			var err error
			es, err = sub.open(sub.life, pos)
			if err != nil {
				if sub.life.Err() != nil || errors.Is(err, eventstore.ErrClosed) {
					return
				}
				failures++
				lastErr = err
				sub.store.log.Warn("eventstore/esdb: resubscribe failed", "position", pos.String(), "attempt", failures, "error", err)
				continue
			}
		}
		ev := es.Recv()
		switch {
		case ev.EventAppeared != nil:
			failures = 0
			rec, err := convertAll(ev.EventAppeared)
			if err != nil {
				_ = es.Close()
				sub.err = fmt.Errorf("eventstore/esdb: subscription after %s: %w", pos, err)
				return
			}
			if !pos.IsZero() && !pos.Less(rec.Position) {
				continue // already delivered before a resubscription
			}
			if isSystem(rec) || !sub.filter.Match(rec.Stream) {
				pos = rec.Position
				continue
			}
			select {
			case sub.out <- rec:
				pos = rec.Position
			case <-sub.life.Done():
				_ = es.Close()
				return
			}
		case ev.SubscriptionDropped != nil:
			_ = es.Close()
			es = nil
			if sub.life.Err() != nil {
				return
			}
			failures++
			lastErr = ev.SubscriptionDropped.Error
			sub.store.log.Warn("eventstore/esdb: subscription dropped; resubscribing", "position", pos.String(), "error", lastErr)
		default:
			// Checkpoints, caught-up and fell-behind notices carry nothing to deliver.
		}
	}
}

// sleep waits d or until the subscription ends; it reports whether to go on.
func (sub *subscription) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-sub.life.Done():
		return false
	}
}

// backoff is min doubled per earlier failure, capped at max.
func backoff(minD, maxD time.Duration, failures int) time.Duration {
	d := minD
	for i := 1; i < failures && d < maxD; i++ {
		d *= 2
	}
	return min(d, maxD)
}
