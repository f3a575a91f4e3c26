package source

import (
	"context"
	"fmt"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"

	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/internal/jsondec"
)

// Dispatcher runs a handler group's handlers on recorded events directly, without a
// router or a subscriber: the rebuild path, which reads the log in large pages and
// applies events as fast as the handlers go. Handlers see the same context as under the
// router (FromContext works). A Dispatcher is not safe for concurrent use.
type Dispatcher struct {
	byName    map[string]cqrs.GroupEventHandler
	marshaler cqrs.CommandEventMarshaler
}

// NewDispatcher indexes handlers by their event's name under the default Marshaler.
// Two handlers for one event type are refused, as the router refuses them.
func NewDispatcher(handlers []cqrs.GroupEventHandler) (*Dispatcher, error) {
	d := &Dispatcher{byName: map[string]cqrs.GroupEventHandler{}, marshaler: Marshaler()}
	for i, h := range handlers {
		name := d.marshaler.Name(h.NewEvent())
		if name == "" {
			return nil, fmt.Errorf("source: handler %d: event type %T has no name", i, h.NewEvent())
		}
		if _, dup := d.byName[name]; dup {
			return nil, fmt.Errorf("source: two handlers for %s", name)
		}
		d.byName[name] = h
	}
	return d, nil
}

// Handle runs the handler of e's type and reports whether there was one (an event no
// handler wants is skipped, as AckOnUnknownEvent does under the router). The payload is
// decoded as the router's Marshaler decodes it (JSON); one that does not decode is a
// Permanent error.
func (d *Dispatcher) Handle(ctx context.Context, e eventstore.RecordedEvent) (bool, error) {
	dec, ok, err := d.Decode(e)
	if !ok || err != nil {
		return ok, err
	}
	return true, d.Apply(ctx, dec)
}

// Decoded is an event with its payload decoded for its handler, ready for Apply.
type Decoded struct {
	Event   eventstore.RecordedEvent
	handler cqrs.GroupEventHandler
	payload any
}

// Decode finds the handler of e's type and decodes the payload for it (false: no
// handler wants e). Decode is safe for concurrent use, so that a caller can decode
// ahead of the (sequential) handlers.
func (d *Dispatcher) Decode(e eventstore.RecordedEvent) (Decoded, bool, error) {
	h, ok := d.byName[e.Type]
	if !ok {
		return Decoded{}, false, nil
	}
	ev := h.NewEvent()
	if err := jsondec.Unmarshal(e.Data, ev); err != nil {
		return Decoded{}, true, Permanent(fmt.Errorf("decode %s at %s: %w", e.Type, e.Position, err))
	}
	return Decoded{Event: e, handler: h, payload: ev}, true, nil
}

// Apply runs the handler on a decoded event.
func (d *Dispatcher) Apply(ctx context.Context, dec Decoded) error {
	return dec.handler.Handle(WithEvent(ctx, dec.Event), dec.payload)
}

// WithEvent returns ctx carrying e for FromContext, as handlers see it under the router.
func WithEvent(ctx context.Context, e eventstore.RecordedEvent) context.Context {
	return context.WithValue(ctx, eventKey{}, Event{ID: e.ID, Type: e.Type, Stream: e.Stream,
		Version: e.Version, Position: e.Position, RecordedAt: e.RecordedAt, Meta: e.Meta})
}
