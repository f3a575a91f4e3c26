// Package source feeds Watermill from Keyledger's event log.
//
// Subscriber is a message.Subscriber over eventstore.Store: one topic is one store
// subscription that starts after the read model's stored checkpoint and delivers the
// log's events in global order, one at a time, each only after the previous one was
// acked. A nacked event is never skipped: the topic halts at it, Status and Healthy say
// where and why, and nothing after it is delivered until the projection is restarted.
//
// Router wires a Watermill router (Recoverer, bounded Retry) and a cqrs
// EventGroupProcessor to a Subscriber, so that a read model registers itself as one
// handler group of typed cqrs.NewGroupEventHandler handlers:
//
//	const groupKeys = "read-model.keys.v1" // renaming it re-projects
//
//	r, err := source.NewRouter(source.RouterConfig{Store: store, Checkpoint: keys.Checkpoint})
//	err = r.AddGroup(groupKeys, eventstore.Filter{StreamPrefixes: []string{"client-"}},
//		cqrs.NewGroupEventHandler(keys.OnKeyUploaded),
//		cqrs.NewGroupEventHandler(keys.OnKeyDeleted),
//	)
//	go r.Run(ctx)
//
// Event payload types name their store type with an EventType method (see Marshaler);
// a handler finds the event's position, stream and metadata with FromContext.
package source

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"

	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/internal/jsondec"
)

// Metadata keys set on every message. MetadataEventName is the key cqrs.JSONMarshaler
// (and Marshaler) read the event name from; MetadataCorrelationID is the key of
// Watermill's middleware.CorrelationID.
const (
	MetadataEventName     = "name"
	MetadataEventType     = "keyledger_event_type"
	MetadataStream        = "keyledger_stream"
	MetadataVersion       = "keyledger_version"
	MetadataPosition      = "keyledger_position"
	MetadataRecordedAt    = "keyledger_recorded_at" // RFC 3339 with nanoseconds, UTC
	MetadataTenant        = "keyledger_tenant"
	MetadataActorID       = "keyledger_actor_id"
	MetadataActorKind     = "keyledger_actor_kind"
	MetadataAggregateID   = "keyledger_aggregate_id"
	MetadataCausationID   = "keyledger_causation_id"
	MetadataCorrelationID = middleware.CorrelationIDMetadataKey
)

// EventTyper is implemented by event payload types: EventType returns the type name the
// event is stored under (e.g. "client.key_uploaded.v1"). Implement it on the value
// receiver so that both T and *T have it.
type EventTyper interface {
	EventType() string
}

// EventName returns v's EventType, or "" when v does not implement EventTyper.
func EventName(v any) string {
	if t, ok := v.(EventTyper); ok {
		return t.EventType()
	}
	return ""
}

// Marshaler returns the cqrs marshaler for events read from the store: an event's name
// is its EventType, the message's name is the store's type (MetadataEventName), and the
// payload is the event's JSON data, decoded with encoding/json's semantics by
// internal/jsondec (every projection decodes every event it applies).
func Marshaler() cqrs.CommandEventMarshaler {
	return marshaler{cqrs.JSONMarshaler{GenerateName: EventName}}
}

// marshaler is cqrs.JSONMarshaler with the faster decoder.
type marshaler struct{ cqrs.JSONMarshaler }

func (marshaler) Unmarshal(msg *message.Message, v any) error {
	return jsondec.Unmarshal(msg.Payload, v)
}

// Event is what a handler knows about the event it handles besides its payload.
type Event struct {
	ID         string
	Type       string
	Stream     string
	Version    uint64
	Position   eventstore.Position
	RecordedAt time.Time
	Meta       eventstore.Metadata
}

type eventKey struct{}

// FromContext returns the event being handled. It works in a cqrs handler (whose
// context carries the original message) and in a plain router handler given
// msg.Context().
func FromContext(ctx context.Context) (Event, bool) {
	if e, ok := ctx.Value(eventKey{}).(Event); ok {
		return e, true
	}
	if msg := cqrs.OriginalMessageFromCtx(ctx); msg != nil {
		e, err := EventFromMessage(msg)
		return e, err == nil
	}
	return Event{}, false
}

// EventFromMessage reads the event's description back from a message's metadata.
func EventFromMessage(msg *message.Message) (Event, error) {
	md := msg.Metadata
	pos, err := eventstore.ParsePosition(md.Get(MetadataPosition))
	if err != nil {
		return Event{}, fmt.Errorf("message %s: %w", msg.UUID, err)
	}
	version, err := strconv.ParseUint(md.Get(MetadataVersion), 10, 64)
	if err != nil {
		return Event{}, fmt.Errorf("message %s: version %q: %w", msg.UUID, md.Get(MetadataVersion), err)
	}
	at, err := time.Parse(time.RFC3339Nano, md.Get(MetadataRecordedAt))
	if err != nil {
		return Event{}, fmt.Errorf("message %s: recorded time: %w", msg.UUID, err)
	}
	return Event{
		ID:         msg.UUID,
		Type:       md.Get(MetadataEventType),
		Stream:     md.Get(MetadataStream),
		Version:    version,
		Position:   pos,
		RecordedAt: at,
		Meta: eventstore.Metadata{
			Tenant:        md.Get(MetadataTenant),
			ActorID:       md.Get(MetadataActorID),
			ActorKind:     md.Get(MetadataActorKind),
			CorrelationID: md.Get(MetadataCorrelationID),
			CausationID:   md.Get(MetadataCausationID),
			AggregateID:   md.Get(MetadataAggregateID),
		},
	}, nil
}

// newMessage turns a recorded event into a message whose context (derived from ctx)
// carries the Event for FromContext.
func newMessage(ctx context.Context, e eventstore.RecordedEvent) *message.Message {
	msg := message.NewMessage(e.ID, message.Payload(e.Data))
	md := msg.Metadata
	md.Set(MetadataEventName, e.Type)
	md.Set(MetadataEventType, e.Type)
	md.Set(MetadataStream, e.Stream)
	md.Set(MetadataVersion, strconv.FormatUint(e.Version, 10))
	md.Set(MetadataPosition, e.Position.String())
	md.Set(MetadataRecordedAt, e.RecordedAt.UTC().Format(time.RFC3339Nano))
	setIf(md, MetadataTenant, e.Meta.Tenant)
	setIf(md, MetadataActorID, e.Meta.ActorID)
	setIf(md, MetadataActorKind, e.Meta.ActorKind)
	setIf(md, MetadataAggregateID, e.Meta.AggregateID)
	setIf(md, MetadataCorrelationID, e.Meta.CorrelationID)
	setIf(md, MetadataCausationID, e.Meta.CausationID)
	msg.SetContext(WithEvent(ctx, e))
	return msg
}

func setIf(md message.Metadata, key, value string) {
	if value != "" {
		md.Set(key, value)
	}
}
