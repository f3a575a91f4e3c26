// Package models holds Keyledger's read models, each a Definition (names, streams,
// handlers): Voucher — one denormalised record per client, key and purpose, read by the
// token endpoint in one round trip —, Keys — keys by kid — and Directory — lists and
// details of tenants, users, clients, keychains, e-services and purposes for the API's
// queries. Each is one handler group of a source.Router and writes through a
// readmodel.Store, applying exactly one Batch per event with the event's position, so
// that the read model and its checkpoint move together atomically.
//
// projections/runner runs them in production (generations, rebuilds, leases). The
// lighter wiring below (Register with Checkpoint and WaitFor) projects the voucher and
// keys models into fixed namespaces, for tests of the models themselves:
//
//	ns := models.DefaultNamespaces()
//	r, err := source.NewRouter(source.RouterConfig{Store: events, Checkpoint: models.Checkpoint(store, ns)})
//	err = models.Register(r, store, ns)
//	go r.Run(ctx)
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
	"time"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"

	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/projections/readmodel"
	"github.com/keyledger/keyledger/projections/source"
)

// Namespaces names the generation each read model writes and reads. The zero value is
// not usable: start from DefaultNamespaces, and give a rebuild a new generation.
type Namespaces struct {
	Voucher readmodel.Namespace
	Keys    readmodel.Namespace
}

// DefaultNamespaces returns each model's name with its version constant as the
// generation. Changing a version constant therefore starts a new generation, projected
// from the start of the log.
func DefaultNamespaces() Namespaces {
	return Namespaces{
		Voucher: readmodel.Namespace{Model: VoucherModel, Generation: VoucherVersion},
		Keys:    readmodel.Namespace{Model: KeysModel, Generation: KeysVersion},
	}
}

// Register adds the voucher and keys read models to r (before r.Run). The router's
// Checkpoint must be Checkpoint(store, ns), with RouterConfig.Topic left at its default
// (topic = group).
func Register(r *source.Router, store readmodel.Store, ns Namespaces) error {
	if err := Voucher.Register(r, Deps{Store: store}, ns.Voucher); err != nil {
		return err
	}
	return Keys.Register(r, Deps{Store: store}, ns.Keys)
}

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
func All() []Definition { return []Definition{Voucher, Keys, Directory} }

// ErrCheckpointLost is returned by the Checkpoint function when a generation that is the
// active one of its model has no checkpoint: its data was lost (a Redis flush or a restart
// without persistence) after it had been serving. The topic stays unavailable (Healthy
// says why) instead of quietly re-projecting into a half-empty generation that readers
// are using; the operator (or the automatic rebuild) builds a new generation and switches
// to it.
var ErrCheckpointLost = errors.New("models: active read-model generation has no checkpoint (data lost)")

// Checkpoint returns the source.CheckpointFunc for a router running the models of ns: the
// topic of each group (its group name) maps to the namespace's stored checkpoint.
//
// A namespace without a checkpoint is told apart as follows:
//   - it is not the model's active generation (no active generation yet, or another one
//     serves): this is the first start of this generation. InitGeneration creates it at
//     the start of the log and projection starts from there. Readers do not use it until
//     the wiring calls SetActive once it has caught up.
//   - it is the model's active generation: it had been serving and its data is gone.
//     ErrCheckpointLost; nothing is created.
//
// When Redis loses everything, the active marker goes with the data: the model is then
// rebuilt from the start like a first start, and readers find no active generation (the
// token endpoint refuses with 503) until the rebuilt one is made active — it never
// answers from the partial data. A reader that had resolved the generation before the
// loss finds no entries, and refuses: absence never grants access.
func Checkpoint(store readmodel.Store, ns Namespaces) source.CheckpointFunc {
	byTopic := map[string]readmodel.Namespace{VoucherGroup: ns.Voucher, KeysGroup: ns.Keys}
	return func(ctx context.Context, topic string) (eventstore.Position, error) {
		n, ok := byTopic[topic]
		if !ok {
			return eventstore.Start, fmt.Errorf("models: no read model for topic %q", topic)
		}
		return namespaceCheckpoint(ctx, store, n)
	}
}

func namespaceCheckpoint(ctx context.Context, store readmodel.Store, ns readmodel.Namespace) (eventstore.Position, error) {
	pos, present, err := store.Checkpoint(ctx, ns)
	if err != nil {
		return eventstore.Start, fmt.Errorf("models: checkpoint of %s: %w", ns, err)
	}
	if present {
		return pos, nil
	}
	active, ok, err := store.Active(ctx, ns.Model)
	if err != nil {
		return eventstore.Start, fmt.Errorf("models: active generation of %s: %w", ns.Model, err)
	}
	if ok && active == ns.Generation {
		return eventstore.Start, fmt.Errorf("%w: %s", ErrCheckpointLost, ns)
	}
	if err := store.InitGeneration(ctx, ns); err != nil {
		return eventstore.Start, fmt.Errorf("models: init %s: %w", ns, err)
	}
	return eventstore.Start, nil
}

// WaitFor waits until the checkpoint of ns is at or after pos, polling every few
// milliseconds, and fails when ctx ends first. Only events the model handles move its
// checkpoint (every event of the streams it reads), so pos must be the position of such
// an event — a command's Result.Position for a command on a client, keychain, purpose or
// e-service.
func WaitFor(ctx context.Context, store readmodel.Store, ns readmodel.Namespace, pos eventstore.Position) error {
	const poll = time.Millisecond
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("models: waiting for %s to reach %s: %w", ns, pos, ctx.Err())
		case <-t.C:
		}
		cp, present, err := store.Checkpoint(ctx, ns)
		if err != nil && !errors.Is(err, readmodel.ErrUnavailable) {
			return err
		}
		if err == nil && present && pos.Compare(cp) <= 0 {
			return nil
		}
		t.Reset(poll)
	}
}

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
