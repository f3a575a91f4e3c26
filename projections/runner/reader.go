package runner

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/projections/models"
	"github.com/keyledger/keyledger/projections/readmodel"
)

// Errors of the Reader. The API answers both with 503 and Retry-After.
var (
	// ErrNotReady means the read model has no active generation: it is being built for
	// the first time or rebuilt after its data was lost. Never answer from a partial
	// generation: refuse.
	ErrNotReady = errors.New("read model is not ready (building)")
	// ErrBehind means the read model did not reach the asked position before the wait
	// ended.
	ErrBehind = errors.New("read model has not reached the position yet")
)

// DefaultRefresh is how long a Reader trusts the active generation it resolved before
// asking the store again. A switch made by this process's Runner reaches its Reader at
// once; one made by another process (or by `keyledger rebuild`) within this interval.
const DefaultRefresh = time.Second

// Reader is what queries use to read a read model: it resolves the model's active
// generation (cached, so that a lookup stays one round trip) and waits, bounded by the
// caller's context, until the generation reflects a given log position. It is safe for
// concurrent use.
type Reader struct {
	store   readmodel.Store
	events  eventstore.Store
	defs    map[string]models.Definition
	types   map[string]map[string]bool // model → event types it applies
	refresh time.Duration
	now     func() time.Time

	mu      sync.Mutex
	active  map[string]resolved
	changed chan struct{} // closed and replaced by Notify
}

type resolved struct {
	gen string
	at  time.Time
}

// NewReader returns a Reader over the read models defs stored in store; events is the
// log the models are projected from (to tell whether a model has anything left to apply
// before a position).
func NewReader(store readmodel.Store, events eventstore.Store, defs []models.Definition) *Reader {
	r := &Reader{store: store, events: events, defs: map[string]models.Definition{}, types: map[string]map[string]bool{},
		refresh: DefaultRefresh, now: time.Now, active: map[string]resolved{}, changed: make(chan struct{})}
	for _, d := range defs {
		r.defs[d.Model] = d
		r.types[d.Model] = d.EventTypes()
	}
	return r
}

// Store returns the read-model store the Reader reads.
func (r *Reader) Store() readmodel.Store { return r.store }

// Namespace returns the active generation of model. It fails with ErrNotReady when the
// model has none, and with the store's error (readmodel.ErrUnavailable) when it cannot
// tell.
func (r *Reader) Namespace(ctx context.Context, model string) (readmodel.Namespace, error) {
	if _, ok := r.defs[model]; !ok {
		return readmodel.Namespace{}, fmt.Errorf("%w: unknown read model %q", readmodel.ErrInvalid, model)
	}
	r.mu.Lock()
	res, ok := r.active[model]
	r.mu.Unlock()
	if ok && r.now().Sub(res.at) < r.refresh {
		return readmodel.Namespace{Model: model, Generation: res.gen}, nil
	}
	gen, ok, err := r.store.Active(ctx, model)
	if err != nil {
		return readmodel.Namespace{}, err
	}
	if !ok {
		r.Invalidate(model)
		return readmodel.Namespace{}, fmt.Errorf("%w: %s", ErrNotReady, model)
	}
	r.mu.Lock()
	r.active[model] = resolved{gen: gen, at: r.now()}
	r.mu.Unlock()
	return readmodel.Namespace{Model: model, Generation: gen}, nil
}

// Invalidate forgets the cached active generation of model (the Runner calls it when it
// switches generations or finds the data lost).
func (r *Reader) Invalidate(model string) {
	r.mu.Lock()
	delete(r.active, model)
	r.mu.Unlock()
	r.Notify()
}

// Notify wakes every At waiting for progress; the Runner calls it after each applied
// event. Without it (another process projects) At polls.
func (r *Reader) Notify() {
	r.mu.Lock()
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

func (r *Reader) wake() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed
}

// pollEvery is how often At looks again when nothing notified it.
const pollEvery = 2 * time.Millisecond

// At waits until the active generation of model reflects every event of the log at or
// before pos that the model reads, and returns that generation. The zero pos (Start) does
// not wait. A position the log does not hold yet is waited for like any other. When ctx
// ends first, At fails with ErrBehind (or ErrNotReady, if the model had no active
// generation meanwhile).
func (r *Reader) At(ctx context.Context, model string, pos eventstore.Position) (readmodel.Namespace, error) {
	def, ok := r.defs[model]
	if !ok {
		return readmodel.Namespace{}, fmt.Errorf("%w: unknown read model %q", readmodel.ErrInvalid, model)
	}
	if pos == eventstore.Start {
		return r.Namespace(ctx, model)
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for {
		changed := r.wake()
		ns, err := r.Namespace(ctx, model)
		var cause error
		switch {
		case errors.Is(err, ErrNotReady):
			cause = err
		case err != nil:
			if ctx.Err() != nil {
				return ns, fmt.Errorf("%w: %s at %s: %w", ErrBehind, model, pos, err)
			}
			return ns, err
		default:
			reached, err := reached(ctx, r.store, r.events, def.Filter, r.types[model], ns, pos)
			if err != nil {
				if ctx.Err() != nil {
					return ns, fmt.Errorf("%w: %s at %s: %w", ErrBehind, model, pos, err)
				}
				return ns, err
			}
			if reached {
				return ns, nil
			}
			cause = fmt.Errorf("%w: %s at %s", ErrBehind, model, pos)
		}
		timer.Reset(pollEvery)
		select {
		case <-ctx.Done():
			return readmodel.Namespace{}, cause
		case <-changed:
			if !timer.Stop() {
				<-timer.C
			}
		case <-timer.C:
		}
	}
}

// reached reports whether ns reflects every event at or before pos that the model
// applies (of its streams, filter, and of its types): its checkpoint is at or after pos,
// or no such event lies between the checkpoint and pos (the checkpoint only moves on
// them) and the log holds pos.
func reached(ctx context.Context, store readmodel.Store, events eventstore.Store, filter eventstore.Filter, types map[string]bool, ns readmodel.Namespace, pos eventstore.Position) (bool, error) {
	cp, present, err := store.Checkpoint(ctx, ns)
	if err != nil {
		return false, err
	}
	if !present {
		return false, nil
	}
	if pos.Compare(cp) <= 0 {
		return true, nil
	}
	const page = 512
	after := cp
	for {
		evs, err := events.ReadAll(ctx, after, page)
		if err != nil {
			return false, err
		}
		for _, e := range evs {
			if pos.Compare(e.Position) < 0 {
				return true, nil
			}
			if filter.Match(e.Stream) && types[e.Type] {
				return false, nil // an event the model must apply first
			}
			if e.Position == pos {
				return true, nil
			}
		}
		if len(evs) < page {
			return false, nil // the log does not hold pos yet
		}
		after = evs[len(evs)-1].Position
	}
}
