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

	mu       sync.Mutex
	active   map[string]resolved
	progress map[string]*progress // by model
}

// progress is what this process knows of a model without asking the store: a channel
// closed (and replaced) at every change, and the checkpoint of the generation its own
// runner projects (gen "" when it projects none).
type progress struct {
	changed chan struct{}
	gen     string
	cp      eventstore.Position
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
		refresh: DefaultRefresh, now: time.Now, active: map[string]resolved{}, progress: map[string]*progress{}}
	for _, d := range defs {
		r.defs[d.Model] = d
		r.types[d.Model] = d.EventTypes()
		r.progress[d.Model] = &progress{changed: make(chan struct{})}
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

// Invalidate forgets the cached active generation of model and what this process
// projects of it (the Runner calls it when it switches generations or finds the data
// lost), and wakes its waiters.
func (r *Reader) Invalidate(model string) {
	r.mu.Lock()
	delete(r.active, model)
	if p := r.progress[model]; p != nil {
		p.gen, p.cp = "", eventstore.Start
	}
	r.mu.Unlock()
	r.notify(model)
}

// Applied tells the Reader that this process's runner applied the event at pos to the
// generation gen of model (durably: the store acknowledged the write), and wakes the
// model's waiters. Without it (another process projects) At asks the store and polls.
func (r *Reader) Applied(model, gen string, pos eventstore.Position) {
	r.mu.Lock()
	if p := r.progress[model]; p != nil {
		p.gen, p.cp = gen, pos
	}
	r.mu.Unlock()
	r.notify(model)
}

func (r *Reader) notify(model string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p := r.progress[model]; p != nil {
		close(p.changed)
		p.changed = make(chan struct{})
	}
}

// watch returns the model's change channel and the checkpoint this process knows for
// generation gen (false when it does not project gen).
func (r *Reader) watch(model, gen string) (<-chan struct{}, eventstore.Position, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.progress[model]
	return p.changed, p.cp, p.gen != "" && p.gen == gen
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
	var known bool                 // target is known
	var target eventstore.Position // the last event at or before pos the model applies
	for {
		ns, err := r.Namespace(ctx, model)
		var cause error
		var changed <-chan struct{}
		switch {
		case errors.Is(err, ErrNotReady):
			cause = err
			changed, _, _ = r.watch(model, "")
		case err != nil:
			if ctx.Err() != nil {
				return ns, fmt.Errorf("%w: %s at %s: %w", ErrBehind, model, pos, err)
			}
			return ns, err
		default:
			var cp eventstore.Position
			var local bool
			changed, cp, local = r.watch(model, ns.Generation)
			present := true
			if !local {
				if cp, present, err = r.store.Checkpoint(ctx, ns); err != nil {
					if ctx.Err() != nil {
						return ns, fmt.Errorf("%w: %s at %s: %w", ErrBehind, model, pos, err)
					}
					return ns, err
				}
				if !present {
					r.Invalidate(model) // switched away or lost: resolve again
				}
			}
			if present {
				if pos.Compare(cp) <= 0 || (known && target.Compare(cp) <= 0) {
					return ns, nil
				}
				if !known {
					// Once: the last event at or before pos that the model applies. The
					// model reflects pos as soon as its checkpoint reaches it; later
					// wake-ups compare positions and read nothing.
					last, holds, err := lastApplied(ctx, r.events, def.Filter, r.types[model], cp, pos)
					if err != nil {
						if ctx.Err() != nil {
							return ns, fmt.Errorf("%w: %s at %s: %w", ErrBehind, model, pos, err)
						}
						return ns, err
					}
					if holds {
						known, target = true, last
						if target.Compare(cp) <= 0 {
							return ns, nil
						}
					}
				}
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
// applies (of its streams, filter, and of its types), reading its checkpoint from the
// store.
func reached(ctx context.Context, store readmodel.Store, events eventstore.Store, filter eventstore.Filter, types map[string]bool, ns readmodel.Namespace, pos eventstore.Position) (bool, error) {
	cp, present, err := store.Checkpoint(ctx, ns)
	if err != nil || !present {
		return false, err
	}
	if pos.Compare(cp) <= 0 {
		return true, nil
	}
	last, holds, err := lastApplied(ctx, events, filter, types, cp, pos)
	return holds && last.Compare(cp) <= 0, err
}

// lastApplied returns the position of the last event after cp and at or before pos
// that the model applies (cp when there is none): a generation whose checkpoint is cp
// reflects pos once its checkpoint reaches that position, because the checkpoint only
// moves on such events. holds is false when the log does not hold pos yet.
func lastApplied(ctx context.Context, events eventstore.Store, filter eventstore.Filter, types map[string]bool, cp, pos eventstore.Position) (last eventstore.Position, holds bool, err error) {
	last = cp
	page := 16
	after := cp
	for {
		evs, err := events.ReadAll(ctx, after, page)
		if err != nil {
			return last, false, err
		}
		for _, e := range evs {
			if pos.Compare(e.Position) < 0 {
				return last, true, nil
			}
			if filter.Match(e.Stream) && types[e.Type] {
				last = e.Position
			}
			if e.Position == pos {
				return last, true, nil
			}
		}
		if len(evs) < page {
			return last, false, nil
		}
		after = evs[len(evs)-1].Position
		page = min(4*page, 1024)
	}
}
