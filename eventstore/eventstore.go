// Package eventstore is Keyledger's port to its event log: the one durable write of every
// command goes through Store.Append, and everything downstream (projections, history,
// audit) reads the log back through Store.
//
// The port is deliberately narrow. Adapters live in sub-packages (embedded, esdb) and must
// all pass the shared conformance suite in eventstore/storetest; behaviour that is not in
// that suite is not part of the contract.
package eventstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Errors returned by every adapter. Adapters wrap them with context, so callers must test
// with errors.Is, never with ==.
var (
	// ErrConcurrency means the stream was not at the expected version: someone else
	// appended first. Reload and decide again.
	ErrConcurrency = errors.New("eventstore: wrong expected version")
	// ErrStreamNotFound means the stream has no events.
	ErrStreamNotFound = errors.New("eventstore: stream not found")
	// ErrInvalidAppend means the append itself was malformed (no events, bad JSON, an
	// unset expected version, a reserved stream name, …). Nothing was written.
	ErrInvalidAppend = errors.New("eventstore: invalid append")
	// ErrUnavailable wraps transport and storage failures (connection refused, dropped
	// stream, I/O error). A read that fails with it has NOT reached the end of the data.
	ErrUnavailable = errors.New("eventstore: store unavailable")
	// ErrCorrupt means the storage holds data the adapter cannot read back; the store
	// refuses to serve rather than serve a truncated log.
	ErrCorrupt = errors.New("eventstore: storage corrupt")
	// ErrStorageFull means the storage has no room left; the append was not written.
	ErrStorageFull = errors.New("eventstore: storage full")
	// ErrClosed means the store or subscription was closed by its owner.
	ErrClosed = errors.New("eventstore: closed")
)

// ConcurrencyError is the detailed form of ErrConcurrency. Actual is the stream's current
// version when the adapter knows it (ActualKnown).
type ConcurrencyError struct {
	Stream      string
	Expected    ExpectedVersion
	Actual      uint64
	ActualKnown bool
	NoStream    bool // the stream did not exist
}

func (e *ConcurrencyError) Error() string {
	switch {
	case e.NoStream:
		return fmt.Sprintf("append to %s: expected %s, stream does not exist: %v", e.Stream, e.Expected, ErrConcurrency)
	case e.ActualKnown:
		return fmt.Sprintf("append to %s: expected %s, stream is at version %d: %v", e.Stream, e.Expected, e.Actual, ErrConcurrency)
	default:
		return fmt.Sprintf("append to %s: expected %s: %v", e.Stream, e.Expected, ErrConcurrency)
	}
}

// Is makes errors.Is(err, ErrConcurrency) true.
func (e *ConcurrencyError) Is(target error) bool { return target == ErrConcurrency }

type expectedKind uint8

const (
	expectUnset expectedKind = iota
	expectAny
	expectNoStream
	expectExact
	expectExists
)

// ExpectedVersion states what the caller believes the stream's current version is. The
// zero value is invalid on purpose: every append must say what it expects.
type ExpectedVersion struct {
	kind    expectedKind
	version uint64
}

var (
	// Any skips the concurrency check. Use it only for streams that have a single writer
	// by construction (an audit log written by one goroutine), never for aggregates.
	Any = ExpectedVersion{kind: expectAny}
	// NoStream requires that the stream has no events yet (creation, reservations).
	NoStream = ExpectedVersion{kind: expectNoStream}
	// StreamExists requires that the stream has at least one event.
	StreamExists = ExpectedVersion{kind: expectExists}
)

// Exact requires that the stream's last event has version v (versions start at 0).
func Exact(v uint64) ExpectedVersion { return ExpectedVersion{kind: expectExact, version: v} }

// IsSet reports whether the expected version was built with Any, NoStream, StreamExists or
// Exact.
func (e ExpectedVersion) IsSet() bool { return e.kind != expectUnset }

// Check reports whether a stream whose state is (exists, current) satisfies e.
// Adapters that enforce the rule themselves use it so the rule has one definition.
func (e ExpectedVersion) Check(exists bool, current uint64) bool {
	switch e.kind {
	case expectAny:
		return true
	case expectNoStream:
		return !exists
	case expectExists:
		return exists
	case expectExact:
		return exists && current == e.version
	default:
		return false
	}
}

// Version returns the exact version and true for an Exact expectation.
func (e ExpectedVersion) Version() (uint64, bool) { return e.version, e.kind == expectExact }

// IsAny, IsNoStream and IsStreamExists let adapters translate the expectation to their
// backend's own form.
func (e ExpectedVersion) IsAny() bool          { return e.kind == expectAny }
func (e ExpectedVersion) IsNoStream() bool     { return e.kind == expectNoStream }
func (e ExpectedVersion) IsStreamExists() bool { return e.kind == expectExists }

func (e ExpectedVersion) String() string {
	switch e.kind {
	case expectAny:
		return "any"
	case expectNoStream:
		return "no-stream"
	case expectExists:
		return "stream-exists"
	case expectExact:
		return "version " + strconv.FormatUint(e.version, 10)
	default:
		return "unset"
	}
}

// Position is an event's place in the global log. Positions are totally ordered; they are
// not necessarily dense (EventStoreDB positions are byte offsets). The embedded store uses
// Commit == Prepare == a gap-free sequence number starting at 1. The zero Position is the
// start of the log, before the first event.
type Position struct {
	Commit  uint64
	Prepare uint64
}

// Start is the position before the first event.
var Start = Position{}

// Compare returns -1, 0 or +1 as p is before, equal to or after q.
func (p Position) Compare(q Position) int {
	switch {
	case p.Commit < q.Commit:
		return -1
	case p.Commit > q.Commit:
		return 1
	case p.Prepare < q.Prepare:
		return -1
	case p.Prepare > q.Prepare:
		return 1
	}
	return 0
}

// Less reports whether p is before q.
func (p Position) Less(q Position) bool { return p.Compare(q) < 0 }

// IsZero reports whether p is Start.
func (p Position) IsZero() bool { return p == Start }

// String renders the position as "C" when commit and prepare agree, else "C/P". It is the
// form used in APIs (a command's answer, a query's minimum position) and in checkpoints.
func (p Position) String() string {
	if p.Commit == p.Prepare {
		return strconv.FormatUint(p.Commit, 10)
	}
	return strconv.FormatUint(p.Commit, 10) + "/" + strconv.FormatUint(p.Prepare, 10)
}

// ParsePosition parses the String form.
func ParsePosition(s string) (Position, error) {
	c, pr, two := strings.Cut(s, "/")
	commit, err := strconv.ParseUint(c, 10, 64)
	if err != nil {
		return Position{}, fmt.Errorf("position %q: commit part is not an unsigned integer", s)
	}
	if !two {
		return Position{Commit: commit, Prepare: commit}, nil
	}
	prepare, err := strconv.ParseUint(pr, 10, 64)
	if err != nil {
		return Position{}, fmt.Errorf("position %q: prepare part is not an unsigned integer", s)
	}
	return Position{Commit: commit, Prepare: prepare}, nil
}

// Actor kinds carried in Metadata.ActorKind.
const (
	ActorUser        = "user"
	ActorServiceUser = "service_user"
	ActorClient      = "client"
	ActorOperator    = "operator"
	ActorSystem      = "system"
)

// Metadata travels with every event. The store keeps it verbatim; it never interprets it.
type Metadata struct {
	Tenant        string `json:"tenant,omitempty"`
	ActorID       string `json:"actorId,omitempty"`
	ActorKind     string `json:"actorKind,omitempty"`
	CorrelationID string `json:"correlationId,omitempty"`
	CausationID   string `json:"causationId,omitempty"`
	// AggregateID is the id of the aggregate the stream belongs to; it is never parsed
	// back out of the stream name.
	AggregateID string `json:"aggregateId,omitempty"`
	// PrevHash is the hash of the previous event of the same stream, computed by the
	// writer (tamper evidence); empty for the first event of a stream.
	PrevHash string `json:"prevHash,omitempty"`
}

// EventData is an event to append.
type EventData struct {
	// ID is a UUID. Leave it empty to have one generated. The port does not promise to
	// deduplicate on it (EventStoreDB does, best effort; the embedded store does not):
	// idempotency is the caller's, through the expected version.
	ID   string
	Type string // stable wire name with a version, e.g. "client.key_uploaded.v1"
	Data json.RawMessage
	Meta Metadata
}

// RecordedEvent is an event as stored.
type RecordedEvent struct {
	ID      string
	Type    string
	Stream  string
	Version uint64 // the event's version within its stream, from 0
	// Position is the event's place in the global log. Events read with ReadAll or a
	// subscription always carry it; events read with ReadStream carry it when the
	// backend knows it (the embedded store does, EventStoreDB does not) and Start
	// otherwise.
	Position   Position
	RecordedAt time.Time
	Data       json.RawMessage
	Meta       Metadata
}

// AppendResult is the outcome of a successful append.
type AppendResult struct {
	// Version is the stream version of the last appended event.
	Version uint64
	// Position is the global position of the last appended event; wait for read models
	// to reach it for read-your-writes.
	Position Position
}

// Direction of a stream read.
type Direction uint8

const (
	// Forwards reads from the given version towards the stream's last event.
	Forwards Direction = iota
	// Backwards reads from the given version (or End) towards the stream's first event.
	Backwards
)

// End, as the from-version of a backwards read, starts at the stream's last event.
const End uint64 = math.MaxUint64

// Filter selects the events a subscription delivers. The zero Filter delivers every
// event.
type Filter struct {
	// StreamPrefixes, when not empty, keeps only events whose stream name starts with
	// one of them.
	StreamPrefixes []string
}

// Match reports whether an event of the named stream passes the filter.
func (f Filter) Match(stream string) bool {
	if len(f.StreamPrefixes) == 0 {
		return true
	}
	for _, p := range f.StreamPrefixes {
		if strings.HasPrefix(stream, p) {
			return true
		}
	}
	return false
}

// Store is the event log.
type Store interface {
	// Append writes events to one stream atomically if the stream is at the expected
	// version: either all of them become visible or none does. When it returns nil the
	// events are durable. When it returns ErrConcurrency or ErrInvalidAppend nothing was
	// written. When it returns ErrUnavailable or a context error the outcome is unknown
	// (the store may have committed before the answer was lost): repeat the same append
	// with the same event ids and expected version, or re-read the stream, to settle it.
	Append(ctx context.Context, stream string, expected ExpectedVersion, events ...EventData) (AppendResult, error)
	// ReadStream reads up to ReadLimit(limit) events of one stream starting at version
	// from (inclusive), forwards or backwards (from = End for the last event). A stream
	// with no events gives ErrStreamNotFound.
	ReadStream(ctx context.Context, stream string, dir Direction, from uint64, limit int) ([]RecordedEvent, error)
	// ReadAll reads up to ReadLimit(limit) events whose position is after the given one,
	// in global order. An empty result means the end of the log at the time of the call.
	ReadAll(ctx context.Context, after Position, limit int) ([]RecordedEvent, error)
	// Subscribe delivers every event after the given position that passes the filter, in
	// global order: first those already stored (catch-up), then new ones as they are
	// committed (live). It never skips an event. The subscription lives until it is
	// closed or ctx ends, whichever comes first; after that Next fails.
	Subscribe(ctx context.Context, after Position, filter Filter) (Subscription, error)
	// Ping checks that the store can serve (readiness).
	Ping(ctx context.Context) error
	// Close releases the store. In-flight appends either complete or fail; none is
	// half-written. Afterwards every call fails with ErrClosed; Close again is a no-op.
	Close() error
}

// Subscription is a catch-up subscription. Next is called by one goroutine at a time;
// Close may be called from any goroutine, also while Next is blocked.
type Subscription interface {
	// Next blocks until the next event. It returns ctx.Err() when ctx ends, ErrClosed
	// after Close, and a wrapped ErrUnavailable when the store fails in a way the
	// adapter could not recover from.
	Next(ctx context.Context) (RecordedEvent, error)
	// Close ends the subscription and releases its resources.
	Close() error
}

// ValidateAppend checks an append before any adapter touches storage, so every adapter
// refuses the same malformed input with the same error. It returns the events to write:
// a copy in which missing ids are filled in (the caller's slice is never changed, so two
// goroutines may append the same slice).
func ValidateAppend(stream string, expected ExpectedVersion, events []EventData) ([]EventData, error) {
	if stream == "" {
		return nil, fmt.Errorf("%w: empty stream name", ErrInvalidAppend)
	}
	if strings.HasPrefix(stream, "$") {
		return nil, fmt.Errorf("%w: stream %q: names starting with '$' are reserved", ErrInvalidAppend, stream)
	}
	if !expected.IsSet() {
		return nil, fmt.Errorf("%w: stream %q: expected version not set", ErrInvalidAppend, stream)
	}
	if len(events) == 0 {
		return nil, fmt.Errorf("%w: stream %q: no events", ErrInvalidAppend, stream)
	}
	out := make([]EventData, len(events))
	copy(out, events)
	for i := range out {
		e := &out[i]
		if e.Type == "" {
			return nil, fmt.Errorf("%w: stream %q event %d: empty type", ErrInvalidAppend, stream, i)
		}
		if strings.HasPrefix(e.Type, "$") {
			return nil, fmt.Errorf("%w: stream %q event %d: types starting with '$' are reserved", ErrInvalidAppend, stream, i)
		}
		if !json.Valid(e.Data) {
			return nil, fmt.Errorf("%w: stream %q event %d (%s): data is not valid JSON", ErrInvalidAppend, stream, i, e.Type)
		}
		if e.ID == "" {
			e.ID = uuid.NewString()
		} else if _, err := uuid.Parse(e.ID); err != nil {
			return nil, fmt.Errorf("%w: stream %q event %d: id %q is not a UUID", ErrInvalidAppend, stream, i, e.ID)
		}
	}
	return out, nil
}

// MaxReadLimit caps one read so that a careless limit cannot load the whole log into
// memory; a caller wanting more reads again from where the page ended.
const MaxReadLimit = 100_000

// ReadLimit is the number of events a read with the given limit returns at most: limit
// itself, or MaxReadLimit when limit is not positive or larger than MaxReadLimit. Every
// adapter applies it, so the rule has one definition.
func ReadLimit(limit int) int {
	if limit <= 0 || limit > MaxReadLimit {
		return MaxReadLimit
	}
	return limit
}

// EventHash is the tamper-evidence hash of one event: SHA-256 over the previous event's
// hash, the event's id, type and data. Each event's metadata carries the hash of the
// event before it in the same stream, so altering or removing an event breaks the chain.
func EventHash(prevHash, id, typ string, data []byte) string {
	h := sha256.New()
	for _, part := range [][]byte{[]byte(prevHash), []byte(id), []byte(typ), data} {
		var n [8]byte
		l := uint64(len(part))
		for i := range n {
			n[i] = byte(l >> (8 * i))
		}
		h.Write(n[:])
		h.Write(part)
	}
	return hex.EncodeToString(h.Sum(nil))
}
