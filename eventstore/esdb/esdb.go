// Package esdb is the EventStoreDB adapter of Keyledger's event-store port, on
// EventStore-Client-Go v4 (which speaks the v1 gRPC Streams protocol that KurrentDB still
// serves).
//
// What the adapter adds to the client:
//
//   - every append carries an explicit expected revision, and wrong-expected-version
//     becomes *eventstore.ConcurrencyError;
//   - a read error that is not end-of-stream is a failure (wrapping
//     eventstore.ErrUnavailable), never a short read;
//   - ReadAll and subscriptions hide system events ('$' streams and types);
//   - subscriptions resubscribe from the last delivered event when the node drops them;
//   - a client that closed itself for good (it does so when node discovery fails, for
//     example during a node restart) is replaced by a new one, and calls that are safe to
//     repeat are retried once on it.
//
// Positions are EventStoreDB's (commit, prepare) byte offsets: ordered, not dense. Events
// read with ReadStream carry eventstore.Start as their position, because EventStoreDB
// does not report global positions on stream reads.
//
// The adapter is tested against an in-process fake of the Streams API
// (eventstore/esdb/esdbtest) and, when KEYLEDGER_ESDB_URL is set, against a real node.
package esdb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	esdbc "github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/keyledger/keyledger/eventstore"
)

var _ eventstore.Store = (*Store)(nil)

// Store is an eventstore.Store on one EventStoreDB node or cluster. It is safe for
// concurrent use. Build it with Open; the zero value is not usable.
type Store struct {
	cfg  *esdbc.Configuration // template for every client generation; never mutated
	log  *slog.Logger
	opts options

	mu      sync.Mutex
	conn    *conn
	closed  bool
	closing chan struct{} // closed by Close

	subs subRegistry
}

// Option configures Open.
type Option func(*options)

type options struct {
	logger      *slog.Logger
	pingTimeout time.Duration
	retries     int
	minBackoff  time.Duration
	maxBackoff  time.Duration
}

// WithLogger routes the client library's log lines (and the adapter's own reconnect
// messages) to l. Default: slog.Default(). The client logs every failed call at error
// level, so expect noise while a node is down.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.logger = l
		}
	}
}

// WithPingTimeout bounds the reachability check that Open performs. Default: 10s. Too
// short a value fails Open on a node that is merely slow to answer its first call
// (node discovery alone takes about a second when the node refuses connections).
func WithPingTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.pingTimeout = d
		}
	}
}

// WithResubscribe sets how a subscription recovers from a dropped connection: up to
// attempts consecutive failed resubscriptions, waiting from minBackoff doubling up to
// maxBackoff between them, before Next reports eventstore.ErrUnavailable. Default: 20
// attempts, 100ms to 5s (about a minute of outage). A large value hides a dead node from
// the projections that depend on it for longer.
func WithResubscribe(attempts int, minBackoff, maxBackoff time.Duration) Option {
	return func(o *options) {
		if attempts > 0 {
			o.retries = attempts
		}
		if minBackoff > 0 {
			o.minBackoff = minBackoff
		}
		if maxBackoff >= o.minBackoff {
			o.maxBackoff = maxBackoff
		}
	}
}

// Open connects to the node named by url (an EventStoreDB connection string such as
// "esdb://localhost:2113?tls=false") and checks that it answers. It fails with an error
// wrapping eventstore.ErrUnavailable when the node cannot be reached within the ping
// timeout; ctx bounds Open as a whole. The caller must Close the store.
func Open(ctx context.Context, url string, opts ...Option) (*Store, error) {
	o := options{
		logger:      slog.Default(),
		pingTimeout: 10 * time.Second,
		retries:     20,
		minBackoff:  100 * time.Millisecond,
		maxBackoff:  5 * time.Second,
	}
	for _, opt := range opts {
		opt(&o)
	}
	cfg, err := esdbc.ParseConnectionString(url)
	if err != nil {
		// The parser's message may quote the URL, credentials included.
		return nil, fmt.Errorf("eventstore/esdb: open: invalid connection string: %s", redact(err.Error(), url))
	}
	cfg.Logger = clientLogger(o.logger)
	client, err := esdbc.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("eventstore/esdb: open %s: %w", target(cfg), err)
	}
	s := &Store{
		cfg:     cfg,
		log:     o.logger,
		opts:    o,
		conn:    &conn{client: client, replaced: make(chan struct{})},
		closing: make(chan struct{}),
	}
	pctx, cancel := context.WithTimeout(ctx, o.pingTimeout)
	defer cancel()
	if err := s.ping(pctx); err != nil {
		_ = s.Close()
		cause := err
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			cause = fmt.Errorf("no answer within %s: %w", o.pingTimeout, err)
		}
		return nil, fmt.Errorf("eventstore/esdb: open %s: node unreachable: %w: %w", target(cfg), eventstore.ErrUnavailable, cause)
	}
	return s, nil
}

// target names the node(s) of cfg for error messages, without credentials.
func target(cfg *esdbc.Configuration) string {
	if len(cfg.GossipSeeds) > 0 {
		seeds := make([]string, len(cfg.GossipSeeds))
		for i, s := range cfg.GossipSeeds {
			seeds[i] = s.String()
		}
		return strings.Join(seeds, ",")
	}
	return cfg.Address
}

// redact removes the userinfo part of url from msg.
func redact(msg, url string) string {
	if at := strings.LastIndex(url, "@"); at >= 0 {
		if scheme := strings.Index(url, "://"); scheme >= 0 && scheme+3 < at {
			msg = strings.ReplaceAll(msg, url[scheme+3:at], "***")
		}
	}
	return msg
}

// Ping checks that the node answers a read of the global log. The connection's user
// needs read access to $all, as ReadAll and Subscribe do.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.ping(ctx); err != nil {
		return fmt.Errorf("eventstore/esdb: ping: %w", s.failure(ctx, err))
	}
	return nil
}

func (s *Store) ping(ctx context.Context) error {
	return s.do(ctx, true, func(c *esdbc.Client) error {
		rs, err := c.ReadAll(ctx, esdbc.ReadAllOptions{Direction: esdbc.Backwards, From: esdbc.End{}}, 1)
		if err != nil {
			return err
		}
		defer rs.Close()
		if _, err := rs.Recv(); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		return nil
	})
}

// Close ends every open subscription and releases the client. Calls still in flight
// return eventstore.ErrClosed; an append among them may or may not have been written
// (EventStoreDB writes an append atomically either way).
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.closing)
	c := s.conn
	s.mu.Unlock()
	for _, sub := range s.subs.all() {
		_ = sub.Close()
	}
	if !c.dead.Load() {
		// A dead client is left alone: closing it would panic calls blocked inside it.
		_ = c.client.Close()
	}
	return nil
}

// failure turns an error from the client into the port's error: the context's own
// error when ctx ended, ErrClosed when the store was closed, and ErrUnavailable for
// everything else (transport failures, refused credentials, server errors).
func (s *Store) failure(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, eventstore.ErrClosed):
		return err
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, eventstore.ErrUnavailable), errors.Is(err, eventstore.ErrCorrupt):
		return err
	}
	return fmt.Errorf("%w: %w", eventstore.ErrUnavailable, err)
}

// Append writes events to stream if it is at the expected version. The events' ids are
// sent as given (ValidateAppend fills in missing ones), so a repeated append of the same
// events at the same expected version is recognised by EventStoreDB as a duplicate. An
// append that is cut off by a dead connection is retried once on a new client when
// expected is NoStream or Exact: EventStoreDB then answers a repeat of an append it already
// wrote with success instead of writing it again. With Any or StreamExists its duplicate
// detection is only best effort, so those appends are not retried.
//
// An error wrapping eventstore.ErrUnavailable or a context error does not prove that
// nothing was written: the node may have committed the append before the answer was
// lost. Repeat the same events (same ids) with the same expectation to find out.
func (s *Store) Append(ctx context.Context, stream string, expected eventstore.ExpectedVersion, events ...eventstore.EventData) (eventstore.AppendResult, error) {
	events, err := eventstore.ValidateAppend(stream, expected, events)
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	proposed := make([]esdbc.EventData, len(events))
	for i, e := range events {
		id, err := uuid.Parse(e.ID)
		if err != nil {
			return eventstore.AppendResult{}, fmt.Errorf("%w: stream %q event %d: id %q: %v", eventstore.ErrInvalidAppend, stream, i, e.ID, err)
		}
		meta, err := json.Marshal(e.Meta)
		if err != nil {
			return eventstore.AppendResult{}, fmt.Errorf("%w: stream %q event %d: metadata: %v", eventstore.ErrInvalidAppend, stream, i, err)
		}
		proposed[i] = esdbc.EventData{
			EventID:     id,
			EventType:   e.Type,
			ContentType: esdbc.ContentTypeJson,
			Data:        []byte(e.Data),
			Metadata:    meta,
		}
	}
	opts := esdbc.AppendToStreamOptions{ExpectedRevision: expectedRevision(expected)}
	var res *esdbc.WriteResult
	_, exact := expected.Version()
	err = s.do(ctx, exact || expected.IsNoStream(), func(c *esdbc.Client) error {
		r, err := c.AppendToStream(ctx, stream, opts, proposed...)
		if err != nil {
			return err
		}
		res = r
		return nil
	})
	if err != nil {
		if code, ok := esdbCode(err); ok {
			switch code {
			case esdbc.ErrorCodeWrongExpectedVersion:
				return eventstore.AppendResult{}, concurrencyError(stream, expected, err)
			case esdbc.ErrorCodeStreamDeleted:
				return eventstore.AppendResult{}, fmt.Errorf("%w: stream %q is deleted in EventStoreDB: %v", eventstore.ErrInvalidAppend, stream, err)
			}
		}
		return eventstore.AppendResult{}, fmt.Errorf("eventstore/esdb: append %d events to %s: %w", len(events), stream, s.failure(ctx, err))
	}
	return eventstore.AppendResult{
		Version:  res.NextExpectedVersion,
		Position: eventstore.Position{Commit: res.CommitPosition, Prepare: res.PreparePosition},
	}, nil
}

// expectedRevision translates the port's expectation; it is never left to the client's
// default (Any).
func expectedRevision(e eventstore.ExpectedVersion) esdbc.ExpectedRevision {
	if v, ok := e.Version(); ok {
		return esdbc.Revision(v)
	}
	switch {
	case e.IsNoStream():
		return esdbc.NoStream{}
	case e.IsStreamExists():
		return esdbc.StreamExists{}
	default:
		return esdbc.Any{}
	}
}

// wrongVersion matches the client's wrong-expected-version message, the only place it
// reports the stream's current revision.
var wrongVersion = regexp.MustCompile(`expecting '[^']*' but got '([^']*)'`)

func concurrencyError(stream string, expected eventstore.ExpectedVersion, err error) *eventstore.ConcurrencyError {
	ce := &eventstore.ConcurrencyError{Stream: stream, Expected: expected}
	if m := wrongVersion.FindStringSubmatch(err.Error()); m != nil {
		if m[1] == "no_stream" {
			ce.NoStream = true
		} else if v, perr := strconv.ParseUint(m[1], 10, 64); perr == nil {
			ce.Actual, ce.ActualKnown = v, true
		}
	}
	return ce
}

// ReadStream reads up to limit events of stream from version from (inclusive). A
// stream with no events gives eventstore.ErrStreamNotFound; any failure before the end of
// the requested range is an error, never a short result. The events' Position is
// eventstore.Start unless the node reports a real one.
func (s *Store) ReadStream(ctx context.Context, stream string, dir eventstore.Direction, from uint64, limit int) ([]eventstore.RecordedEvent, error) {
	limit = eventstore.ReadLimit(limit)
	opts := esdbc.ReadStreamOptions{Direction: esdbc.Forwards, From: esdbc.Revision(from)}
	if dir == eventstore.Backwards {
		opts.Direction = esdbc.Backwards
		if from == eventstore.End {
			opts.From = esdbc.End{}
		}
	}
	var out []eventstore.RecordedEvent
	err := s.do(ctx, true, func(c *esdbc.Client) error {
		out = out[:0]
		rs, err := c.ReadStream(ctx, stream, opts, uint64(limit))
		if err != nil {
			return err
		}
		out, err = drain(rs, out, func(ev *esdbc.ResolvedEvent) (eventstore.RecordedEvent, error) {
			rec, err := convert(ev)
			if rec.Position.Commit == math.MaxUint64 || rec.Position.Prepare == math.MaxUint64 {
				rec.Position = eventstore.Start
			}
			return rec, err
		})
		return err
	})
	if err != nil {
		if code, ok := esdbCode(err); ok && (code == esdbc.ErrorCodeResourceNotFound || code == esdbc.ErrorCodeStreamDeleted) {
			return nil, fmt.Errorf("eventstore/esdb: read %s: %w", stream, eventstore.ErrStreamNotFound)
		}
		return nil, fmt.Errorf("eventstore/esdb: read %s: %w", stream, s.failure(ctx, err))
	}
	return out, nil
}

// ReadAll reads up to limit user events strictly after the position after, in global
// order. System events ('$' streams and types) are skipped without counting towards
// limit, so one call may read more than limit events from the node. after must be
// Start or the position of an event (as returned by Append, ReadAll or a subscription).
func (s *Store) ReadAll(ctx context.Context, after eventstore.Position, limit int) ([]eventstore.RecordedEvent, error) {
	limit = eventstore.ReadLimit(limit)
	var out []eventstore.RecordedEvent
	cursor := after
	for len(out) < limit {
		// One more than needed: the event at the cursor itself comes back first.
		page := min(max(limit-len(out)+1, 32), 4096)
		var from esdbc.AllPosition = esdbc.Start{}
		if !cursor.IsZero() {
			from = esdbc.Position{Commit: cursor.Commit, Prepare: cursor.Prepare}
		}
		var batch []eventstore.RecordedEvent
		err := s.do(ctx, true, func(c *esdbc.Client) error {
			batch = batch[:0]
			rs, err := c.ReadAll(ctx, esdbc.ReadAllOptions{Direction: esdbc.Forwards, From: from}, uint64(page))
			if err != nil {
				return err
			}
			batch, err = drain(rs, batch, convertAll)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("eventstore/esdb: read all after %s: %w", cursor, s.failure(ctx, err))
		}
		progressed := false
		for _, rec := range batch {
			if !cursor.IsZero() && !cursor.Less(rec.Position) {
				continue // the event at the cursor, or a node that ignored the start
			}
			cursor, progressed = rec.Position, true
			if isSystem(rec) {
				continue
			}
			out = append(out, rec)
			if len(out) == limit {
				break
			}
		}
		if len(batch) < page || !progressed {
			break // end of the log
		}
	}
	return out, nil
}

// isSystem reports whether rec is one of EventStoreDB's own events.
func isSystem(rec eventstore.RecordedEvent) bool {
	return strings.HasPrefix(rec.Stream, "$") || strings.HasPrefix(rec.Type, "$")
}

// convertAll converts an event read from $all, whose metadata may not be Keyledger's
// (system events); those are returned without metadata and skipped by the caller.
// drain reads rs to its end, appending converted events to out, and always closes it.
// Only io.EOF ends the data; every other Recv error is returned as a failure.
func drain(rs *esdbc.ReadStream, out []eventstore.RecordedEvent, conv func(*esdbc.ResolvedEvent) (eventstore.RecordedEvent, error)) ([]eventstore.RecordedEvent, error) {
	defer rs.Close()
	for {
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		rec, err := conv(ev)
		if err != nil {
			return out, err
		}
		out = append(out, rec)
	}
}

func convertAll(ev *esdbc.ResolvedEvent) (eventstore.RecordedEvent, error) {
	if e := ev.Event; e != nil && (strings.HasPrefix(e.StreamID, "$") || strings.HasPrefix(e.EventType, "$")) {
		return eventstore.RecordedEvent{
			Stream:   e.StreamID,
			Type:     e.EventType,
			Position: eventstore.Position{Commit: e.Position.Commit, Prepare: e.Position.Prepare},
		}, nil
	}
	return convert(ev)
}

// convert maps a client event to the port's. Metadata that is present but not
// Keyledger's JSON is reported as eventstore.ErrCorrupt rather than dropped: it carries
// the tamper-evidence hash.
func convert(ev *esdbc.ResolvedEvent) (eventstore.RecordedEvent, error) {
	e := ev.Event
	if e == nil {
		return eventstore.RecordedEvent{}, fmt.Errorf("%w: node sent a read result without an event", eventstore.ErrCorrupt)
	}
	rec := eventstore.RecordedEvent{
		ID:         e.EventID.String(),
		Type:       e.EventType,
		Stream:     e.StreamID,
		Version:    e.EventNumber,
		Position:   eventstore.Position{Commit: e.Position.Commit, Prepare: e.Position.Prepare},
		RecordedAt: e.CreatedDate,
		Data:       json.RawMessage(e.Data),
	}
	if len(e.UserMetadata) > 0 {
		if err := json.Unmarshal(e.UserMetadata, &rec.Meta); err != nil {
			return eventstore.RecordedEvent{}, fmt.Errorf("%w: event %s (%s@%d): metadata is not Keyledger metadata: %v", eventstore.ErrCorrupt, rec.ID, rec.Stream, rec.Version, err)
		}
	}
	return rec, nil
}
