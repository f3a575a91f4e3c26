package embedded

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"strings"
	"sync"

	"github.com/keyledger/keyledger/eventstore"
)

// Subscribe delivers every event after the given position that passes the filter, in
// global order: first those already stored, read in pages from the read pool, then new
// ones as they are committed. A subscription that has caught up waits for the writer's
// commit signal and runs no query until then.
//
// The subscription also ends when ctx ends (Next then returns ctx's error), as a
// subscription to EventStoreDB does; pass a context that lives as long as the
// subscription should.
func (s *Store) Subscribe(ctx context.Context, after eventstore.Position, filter eventstore.Filter) (eventstore.Subscription, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("subscribe: %w", eventstore.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	where, args := filterSQL(filter)
	q := "SELECT " + columns + " FROM events WHERE seq > ? AND seq <= ?" + where + " ORDER BY seq LIMIT ?"
	stmt, err := s.rdb.PrepareContext(ctx, q)
	if err != nil {
		return nil, s.readErr(ctx, "subscribe", err)
	}
	sub := &subscription{
		s:      s,
		ctx:    ctx,
		filter: filter,
		stmt:   stmt,
		args:   args,
		cursor: min(after.Commit, math.MaxInt64),
		wake:   make(chan struct{}, 1),
		closed: make(chan struct{}),
	}
	s.register(sub)
	return sub, nil
}

// filterSQL turns stream prefixes into range conditions on the stream column:
// "stream starts with p" is "p <= stream < p'", where p' is p with its last byte below
// 0xff incremented and what follows dropped. Ranges need no escaping (unlike LIKE or
// GLOB) and compare bytes, as strings.HasPrefix does. The unary + keeps SQLite from
// choosing the (stream, version) index, so pages are read in sequence order and each
// row is examined once per subscription.
func filterSQL(f eventstore.Filter) (string, []any) {
	if len(f.StreamPrefixes) == 0 {
		return "", nil
	}
	var conds []string
	var args []any
	for _, p := range f.StreamPrefixes {
		if p == "" {
			return "", nil // matches every stream
		}
		if hi, ok := prefixUpperBound(p); ok {
			conds = append(conds, "(+stream >= ? AND +stream < ?)")
			args = append(args, p, hi)
		} else {
			conds = append(conds, "+stream >= ?")
			args = append(args, p)
		}
	}
	return " AND (" + strings.Join(conds, " OR ") + ")", args
}

// prefixUpperBound returns the smallest string greater than every string with prefix p,
// or false when there is none (p is all 0xff bytes).
func prefixUpperBound(p string) (string, bool) {
	b := []byte(p)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1]), true
		}
	}
	return "", false
}

type subscription struct {
	s      *Store
	ctx    context.Context
	filter eventstore.Filter
	stmt   *sql.Stmt
	args   []any

	// cursor is the sequence number up to which the log has been examined: every
	// matching event at or below it has been delivered or is in buf.
	cursor uint64
	buf    []eventstore.RecordedEvent
	next   int

	// wake receives a token when a commit holds events of the subscription's streams
	// (Store.publish).
	wake chan struct{}

	closed    chan struct{}
	closeOnce sync.Once
}

// Next blocks until the next event. It returns ctx.Err() when ctx ends, the Subscribe
// context's error when that one ends, and ErrClosed after Close of the subscription or
// of the store.
func (sub *subscription) Next(ctx context.Context) (eventstore.RecordedEvent, error) {
	for {
		if err := sub.stopped(ctx); err != nil {
			return eventstore.RecordedEvent{}, err
		}
		if sub.next < len(sub.buf) {
			e := sub.buf[sub.next]
			sub.buf[sub.next] = eventstore.RecordedEvent{}
			sub.next++
			return e, nil
		}
		high := sub.s.watermark()
		if sub.cursor < high && sub.s.unmatchedSince(sub.filter, sub.cursor, high) {
			sub.cursor = high // nothing of its streams was appended since
			continue
		}
		if sub.cursor < high {
			if err := sub.fetch(ctx, high); err != nil {
				return eventstore.RecordedEvent{}, err
			}
			continue
		}
		select {
		case <-sub.wake:
		case <-ctx.Done():
			return eventstore.RecordedEvent{}, ctx.Err()
		case <-sub.ctx.Done():
			return eventstore.RecordedEvent{}, sub.ctx.Err()
		case <-sub.closed:
			return eventstore.RecordedEvent{}, eventstore.ErrClosed
		case <-sub.s.done:
			return eventstore.RecordedEvent{}, eventstore.ErrClosed
		}
	}
}

func (sub *subscription) stopped(ctx context.Context) error {
	select {
	case <-sub.closed:
		return eventstore.ErrClosed
	case <-sub.s.closing:
		return eventstore.ErrClosed
	default:
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return sub.ctx.Err()
}

// fetch reads the next page of matching events in (cursor, high]. Bounding the page by
// high, the committed mark read before the query, lets an incomplete page advance the
// cursor to high: everything up to it has been examined, even where nothing matched.
func (sub *subscription) fetch(ctx context.Context, high uint64) error {
	page := sub.s.cfg.subPage
	args := make([]any, 0, len(sub.args)+3)
	args = append(args, int64(sub.cursor), int64(high))
	args = append(args, sub.args...)
	args = append(args, page)
	sub.s.readQueries.Add(1)
	rows, err := sub.stmt.QueryContext(ctx, args...)
	if err != nil {
		return sub.fetchErr(ctx, err)
	}
	buf, err := scanEvents(rows, sub.buf[:0], "")
	if err != nil {
		return sub.fetchErr(ctx, err)
	}
	sub.next = 0
	sub.buf = buf[:0]
	for _, e := range buf {
		if sub.filter.Match(e.Stream) { // the SQL already filtered; this is the definition
			sub.buf = append(sub.buf, e)
		}
	}
	if len(buf) < page {
		sub.cursor = high
	} else {
		sub.cursor = buf[len(buf)-1].Position.Commit
	}
	return nil
}

func (sub *subscription) fetchErr(ctx context.Context, err error) error {
	select {
	case <-sub.closed:
		return eventstore.ErrClosed
	default:
	}
	if sub.ctx.Err() != nil && ctx.Err() == nil {
		return sub.ctx.Err()
	}
	return sub.s.readErr(ctx, "subscription", err)
}

// Close ends the subscription; a Next blocked in another goroutine returns ErrClosed.
// It is idempotent.
func (sub *subscription) Close() error {
	var err error
	sub.closeOnce.Do(func() {
		sub.s.unregister(sub)
		close(sub.closed)
		err = sub.stmt.Close()
	})
	if err != nil && !isDBClosed(err) {
		return fmt.Errorf("close subscription: %w", err)
	}
	return nil
}
