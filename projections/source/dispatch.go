package source

import (
	"context"
	"fmt"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"

	"github.com/keyledger/keyledger/eventstore"
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
// handler wants is skipped, as AckOnUnknownEvent does under the router). A payload that
// does not decode is a Permanent error.
func (d *Dispatcher) Handle(ctx context.Context, e eventstore.RecordedEvent) (bool, error) {
	h, ok := d.byName[e.Type]
	if !ok {
		return false, nil
	}
	msg := newMessage(ctx, e)
	ev := h.NewEvent()
	if err := d.marshaler.Unmarshal(msg, ev); err != nil {
		return true, Permanent(fmt.Errorf("decode %s at %s: %w", e.Type, e.Position, err))
	}
	return true, h.Handle(msg.Context(), ev)
}
