// Package models holds Keyledger's read models, each a Definition (names, streams,
// handlers): Voucher — one denormalised record per client, key and purpose, read by the
// token endpoint in one round trip —, Keys — keys by kid — and Directory — lists and
// details of tenants, users, clients, keychains, e-services and purposes for the API's
// queries. Each is one handler group of a source.Router and writes through a
// readmodel.Store, applying exactly one Batch per event with the event's position, so
// that the read model and its checkpoint move together atomically.
//
// projections/runner runs them (generations, rebuilds, leases); tests of the models
// alone wire a source.Router with Definition.Register.
//
// Each model has a single projector (the lease of DESIGN.md): its handlers read the
// model's auxiliary records and write the change in one batch, which is consistent only
// because no one else writes the namespace in between.
package models

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"

	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/projections/readmodel"
	"github.com/keyledger/keyledger/projections/source"
)

// Deps are what a read model's handlers use.
type Deps struct {
	// Store holds the read model's data (required).
	Store readmodel.Store
	// Events is the event log, for handlers that load an aggregate's stream (the
	// directory model); the others ignore it.
	Events eventstore.Store
}

// Definition describes one read model to whoever runs it (the projection runner, a
// rebuild, a test): its names, the streams it reads and its handlers.
type Definition struct {
	// Model is the readmodel.Namespace model name (a constant: renaming it loses the data).
	Model string
	// Version is the model's version constant: bump it whenever the stored layout or
	// meaning changes, and the model is rebuilt into a new generation. Generations of
	// this version are named Version or Version + "-" + something.
	Version string
	// Group is the router's handler group (a constant, as the issue requires).
	Group string
	// Filter selects the streams the model reads.
	Filter eventstore.Filter
	// Handlers returns the group's handlers writing into ns through deps. Each call
	// returns fresh handlers (they may keep per-instance caches).
	Handlers func(deps Deps, ns readmodel.Namespace) []cqrs.GroupEventHandler
	// ServeOnlyCurrent marks a model that grants access (the voucher model): it is never
	// served from a generation nobody keeps current. Before rebuilding it, the projector
	// withdraws the active generation, so readers find none (the token endpoint answers
	// 503) until the new one is active, rather than grant what was revoked meanwhile.
	ServeOnlyCurrent bool
}

// Register adds the model to r as its handler group, writing into ns.
func (d Definition) Register(r *source.Router, deps Deps, ns readmodel.Namespace) error {
	if ns.Model != d.Model {
		return fmt.Errorf("models: namespace %s is not of model %s", ns, d.Model)
	}
	if err := ns.Validate(); err != nil {
		return err
	}
	if deps.Store == nil {
		return fmt.Errorf("models: %s: no read-model store", d.Model)
	}
	return r.AddGroup(d.Group, d.Filter, d.Handlers(deps, ns)...)
}

// EventTypes returns the store types of the events the model's handlers apply: only
// those move its checkpoint (the router acks the others of its streams untouched).
func (d Definition) EventTypes() map[string]bool {
	out := map[string]bool{}
	m := source.Marshaler()
	for _, h := range d.Handlers(Deps{}, readmodel.Namespace{Model: d.Model, Generation: d.Version}) {
		out[m.Name(h.NewEvent())] = true
	}
	return out
}

// OwnsGeneration reports whether gen is a generation of this model's version.
func (d Definition) OwnsGeneration(gen string) bool {
	return gen == d.Version || strings.HasPrefix(gen, d.Version+"-")
}

// All returns every read model, in the order the runner starts them.
func All() []Definition { return []Definition{Voucher, Keys, Directory, Audit} }

// ErrCheckpointLost is returned by a projection's checkpoint function when the
// generation it projects has no checkpoint: its data was lost (a Redis flush or a restart
// without persistence) or it was dropped. The topic stays unavailable (Healthy says why)
// instead of quietly re-projecting into a half-empty generation; the runner rebuilds.
var ErrCheckpointLost = errors.New("models: active read-model generation has no checkpoint (data lost)")

// projector applies one batch per event into one namespace.
type projector struct {
	store readmodel.Store
	ns    readmodel.Namespace
	// reset, when set, forgets what the handlers cached: called whenever an event is not
	// applied exactly as built.
	reset func()
}

// inconsistentError: the model's own records contradict the event (a key uploaded to a
// client it never saw created). Genuine only when the event is new: a redelivered event
// reads state its own application already changed.
type inconsistentError struct{ msg string }

func (e *inconsistentError) Error() string { return e.msg }

func inconsistent(format string, args ...any) error {
	return &inconsistentError{fmt.Sprintf(format, args...)}
}

// apply runs build for the event in ctx and applies its batch at the event's position.
// Errors that no retry can fix are Permanent: the topic halts at the event and says why.
func (p projector) apply(ctx context.Context, build func(ctx context.Context, ev source.Event, b *readmodel.Batch) error) error {
	ev, ok := source.FromContext(ctx)
	if !ok {
		return source.Permanent(errors.New("models: no event in the handler's context"))
	}
	var b readmodel.Batch
	applied := false
	if p.reset != nil {
		defer func() {
			if !applied {
				p.reset()
			}
		}()
	}
	if err := build(ctx, ev, &b); err != nil {
		var inc *inconsistentError
		if !errors.As(err, &inc) {
			return err
		}
		cp, present, cerr := p.store.Checkpoint(ctx, p.ns)
		if cerr != nil {
			return cerr
		}
		if present && ev.Position.Compare(cp) <= 0 {
			return nil // a redelivery of an event already applied
		}
		return source.Permanent(fmt.Errorf("%s at %s (%s): %w", ev.Type, ev.Position, ev.Stream, err))
	}
	ok, err := p.store.Apply(ctx, p.ns, ev.Position, b)
	if err != nil {
		if errors.Is(err, readmodel.ErrNoCheckpoint) || errors.Is(err, readmodel.ErrInvalid) || errors.Is(err, readmodel.ErrCorrupt) || errors.Is(err, readmodel.ErrFenced) {
			return source.Permanent(fmt.Errorf("%s at %s: %w", ev.Type, ev.Position, err))
		}
		return err
	}
	applied = ok
	return nil
}

// on builds a typed group handler whose event goes through p.apply.
func on[E any](p projector, build func(ctx context.Context, ev source.Event, e *E, b *readmodel.Batch) error) cqrs.GroupEventHandler {
	return cqrs.NewGroupEventHandler(func(ctx context.Context, e *E) error {
		return p.apply(ctx, func(ctx context.Context, ev source.Event, b *readmodel.Batch) error {
			return build(ctx, ev, e, b)
		})
	})
}

// skip is a handler for an event the model does not need: it only moves the checkpoint,
// so that waiting for any command's position on the model's streams works.
func skip[E any](p projector) cqrs.GroupEventHandler {
	return on(p, func(context.Context, source.Event, *E, *readmodel.Batch) error { return nil })
}

// aggregateID is the id of the event's aggregate, from its metadata.
func aggregateID(ev source.Event) (string, error) {
	if ev.Meta.AggregateID == "" {
		return "", inconsistent("event has no aggregate id in its metadata")
	}
	return ev.Meta.AggregateID, nil
}

func put(b *readmodel.Batch, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return source.Permanent(fmt.Errorf("encode %s: %w", key, err))
	}
	b.Put(key, data)
	return nil
}

// rangePage is the page size of index reads.
const rangePage = 1000

// rangeAll reads every member of index.
func rangeAll(ctx context.Context, store readmodel.Store, ns readmodel.Namespace, index string) ([]string, error) {
	var out []string
	after := ""
	for {
		page, err := store.Range(ctx, ns, index, after, rangePage)
		if err != nil {
			return nil, fmt.Errorf("range %s: %w", index, err)
		}
		out = append(out, page...)
		if len(page) < rangePage {
			return out, nil
		}
		after = page[len(page)-1]
	}
}
