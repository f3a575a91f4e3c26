package commands

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/eventstore"
)

// Meta is who asks and under which correlation; every appended event carries it.
type Meta struct {
	Actor         domain.Actor
	CorrelationID string
	CausationID   string
	// IfMatch, when set, is the stream version the caller last saw: the command fails
	// with ErrPreconditionFailed instead of retrying on a newer version.
	IfMatch *uint64
}

// Result is what a successful command answers.
type Result struct {
	// ID of the aggregate the command created or changed.
	ID string
	// Version is the aggregate's stream version after the command (its ETag).
	Version uint64
	// Position is the global position of the last appended event (read-your-writes);
	// zero when the command changed nothing.
	Position eventstore.Position
	// Changed is false when the command was a no-op.
	Changed bool
}

// Errors of the command layer.
var (
	// ErrPreconditionFailed: If-Match named a version that is no longer current.
	ErrPreconditionFailed = errors.New("the resource changed since the version given in If-Match")
	// ErrContention: the aggregate kept changing under the command through every retry.
	ErrContention = errors.New("the resource is changing too fast; try again")
)

// maxAttempts bounds load → decide → append retries on a version conflict.
const maxAttempts = 8

// Config holds the command layer's limits.
type Config struct {
	// MaxClientKeys caps keys per client. Default 100.
	MaxClientKeys int
	// MaxKeychainKeys caps keys per keychain. Default 30.
	MaxKeychainKeys int
	// ReservationGrace is how long a uniqueness reservation whose owner does not hold the
	// value is still considered in progress (the owner's append may be on its way).
	// Default 1 minute.
	ReservationGrace time.Duration
}

// Service handles every command. It is safe for concurrent use.
type Service struct {
	store eventstore.Store
	now   func() time.Time
	newID func() string
	cfg   Config
}

// New builds the service. now and newID default to the wall clock and random UUIDs.
func New(store eventstore.Store, cfg Config, now func() time.Time, newID func() string) *Service {
	if now == nil {
		now = time.Now
	}
	if newID == nil {
		newID = uuid.NewString
	}
	if cfg.MaxClientKeys <= 0 {
		cfg.MaxClientKeys = 100
	}
	if cfg.MaxKeychainKeys <= 0 {
		cfg.MaxKeychainKeys = 30
	}
	if cfg.ReservationGrace <= 0 {
		cfg.ReservationGrace = time.Minute
	}
	return &Service{store: store, now: now, newID: newID, cfg: cfg}
}

// Store exposes the event store (history queries read it directly).
func (s *Service) Store() eventstore.Store { return s.store }

// aggregate is what the load → decide → append helper needs of an aggregate.
type aggregate interface {
	Rehydrate([]domain.Event)
	Pending() []domain.Event
}

// loaded is an aggregate read from its stream.
type loaded struct {
	version  uint64
	exists   bool
	lastHash string
}

// load reads the whole stream into agg.
func (s *Service) load(ctx context.Context, stream string, codec domain.Codec, agg aggregate) (loaded, error) {
	var l loaded
	from := uint64(0)
	const page = 1000
	for {
		evs, err := s.store.ReadStream(ctx, stream, eventstore.Forwards, from, page)
		if errors.Is(err, eventstore.ErrStreamNotFound) {
			return l, nil
		}
		if err != nil {
			return l, fmt.Errorf("load %s: %w", stream, err)
		}
		decoded := make([]domain.Event, 0, len(evs))
		for _, re := range evs {
			e, err := codec.Decode(re.Type, re.Data)
			if err != nil {
				return l, fmt.Errorf("load %s version %d: %w", stream, re.Version, err)
			}
			decoded = append(decoded, e)
			l.version, l.exists = re.Version, true
			l.lastHash = EventHash(re.Meta.PrevHash, re.ID, re.Type, re.Data)
		}
		agg.Rehydrate(decoded)
		if len(evs) < page {
			return l, nil
		}
		from = l.version + 1
	}
}

// EventHash is eventstore.EventHash, the tamper-evidence hash chaining each stream.
var EventHash = eventstore.EventHash

// update is the one load → decide → append helper: it loads the aggregate fresh,
// lets decide change it, and appends the pending events with the loaded version as the
// expected version, retrying from the load on a version conflict.
func update[A aggregate](ctx context.Context, s *Service, meta Meta, aggID, stream string, codec domain.Codec, fresh func() A, decide func(A) error) (Result, error) {
	for attempt := 0; ; attempt++ {
		agg := fresh()
		l, err := s.load(ctx, stream, codec, agg)
		if err != nil {
			return Result{}, err
		}
		if meta.IfMatch != nil && (!l.exists || *meta.IfMatch != l.version) {
			return Result{}, ErrPreconditionFailed
		}
		if err := decide(agg); err != nil {
			return Result{}, err
		}
		pending := agg.Pending()
		if len(pending) == 0 {
			return Result{ID: aggID, Version: l.version}, nil
		}
		expected := eventstore.NoStream
		if l.exists {
			expected = eventstore.Exact(l.version)
		}
		res, err := s.appendEvents(ctx, meta, aggID, stream, expected, l.lastHash, pending)
		if errors.Is(err, eventstore.ErrConcurrency) {
			if meta.IfMatch != nil {
				return Result{}, ErrPreconditionFailed
			}
			if attempt+1 < maxAttempts {
				continue
			}
			return Result{}, fmt.Errorf("%s: %w", stream, ErrContention)
		}
		if err != nil {
			return Result{}, err
		}
		return Result{ID: aggID, Version: res.Version, Position: res.Position, Changed: true}, nil
	}
}

// appendEvents encodes domain events with metadata and the hash chain, and appends.
func (s *Service) appendEvents(ctx context.Context, meta Meta, aggID, stream string, expected eventstore.ExpectedVersion, prevHash string, events []domain.Event) (eventstore.AppendResult, error) {
	kind := meta.Actor.Kind
	if kind == "" {
		kind = eventstore.ActorUser
	}
	data := make([]eventstore.EventData, len(events))
	for i, e := range events {
		b, err := json.Marshal(e)
		if err != nil {
			return eventstore.AppendResult{}, fmt.Errorf("encode %s: %w", e.EventType(), err)
		}
		id := uuid.NewString()
		data[i] = eventstore.EventData{ID: id, Type: e.EventType(), Data: b, Meta: eventstore.Metadata{
			Tenant: meta.Actor.Tenant, ActorID: meta.Actor.ID, ActorKind: kind,
			CorrelationID: meta.CorrelationID, CausationID: meta.CausationID,
			AggregateID: aggID, PrevHash: prevHash,
		}}
		prevHash = EventHash(prevHash, id, e.EventType(), b)
	}
	return s.store.Append(ctx, stream, expected, data...)
}

// get loads an aggregate for a query; ok is false when its stream has no events.
func get[A aggregate](ctx context.Context, s *Service, stream string, codec domain.Codec, agg A) (A, uint64, bool, error) {
	l, err := s.load(ctx, stream, codec, agg)
	return agg, l.version, l.exists, err
}
