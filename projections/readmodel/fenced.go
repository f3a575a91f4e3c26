package readmodel

import (
	"context"
	"fmt"

	"github.com/keyledger/keyledger/eventstore"
)

// fenceable is implemented by the stores Fenced can wrap: their write paths take a fencing
// token, 0 meaning unfenced (the path of their exported methods).
type fenceable interface {
	Store
	initGeneration(ctx context.Context, ns Namespace, token uint64) error
	apply(ctx context.Context, ns Namespace, token uint64, pos eventstore.Position, batch Batch) (bool, error)
	applyMany(ctx context.Context, ns Namespace, token uint64, updates []Update) (int, error)
	setActive(ctx context.Context, ns Namespace, token uint64) error
	withdraw(ctx context.Context, ns Namespace, token uint64) error
	dropGeneration(ctx context.Context, ns Namespace, token uint64) error
}

var (
	_ fenceable = (*Redis)(nil)
	_ fenceable = (*Memory)(nil)
)

// Fenced returns a Store that behaves like s, except that every write to a namespace of
// model (InitGeneration, Apply, ApplyMany, SetActive, DropGeneration) carries token: in
// the same atomic step as the write, it fails with ErrFenced, writing nothing, if a token
// greater than token was recorded for model, and otherwise records token (a write with an
// equal token passes: one holder writes many times). token is the fencing token of the
// lease the caller holds on model (projections/lease); it must not be 0.
//
// The recorded token belongs to the model, not to a generation: DropGeneration keeps it,
// so a stale projector stays refused after a rebuild. Fences are per model and never
// reset. A write refused with any error records nothing; a write that succeeds records
// its token even when it changes nothing (a redelivered position, an InitGeneration of a
// generation that exists, the drop of an absent generation). On Redis, ApplyMany checks
// the fence in every chunk, so a projector fenced in the middle of a run has applied a
// prefix of it; DropGeneration checks the fence once, in the step that deletes the
// checkpoint, and then deletes the rest of the generation without further checks (a drop
// is not atomic anyway).
//
// A Fenced store serves one model: a write to another model's namespace fails with
// ErrInvalid. Reads (Checkpoint, Get, GetMany, Range, Active, Generations) pass through
// unchanged, for any model, and are not fenced. Writes through s itself, or through any
// store on the same data that is not fenced, neither check nor record tokens: the
// unfenced path is for single-process deployments and tests, and mixing it with fenced
// writers defeats the fence.
//
// s must be a (non-nil) *Redis or *Memory; Fenced fails with ErrInvalid for any other
// store — one Fenced returned (fence the plain store again to change the token), or a
// wrapper that embeds a *Redis or a *Memory — for an invalid model name and for token 0.
func Fenced(s Store, model string, token uint64) (Store, error) {
	if err := validateName("model", model); err != nil {
		return nil, fmt.Errorf("fence: %w", err)
	}
	if token == 0 {
		return nil, fmt.Errorf("fence %s: %w: fencing token 0 (tokens start at 1)", model, ErrInvalid)
	}
	// Only the exact types: a wrapper that embeds a *Memory or a *Redis has their
	// unexported methods too, and fencing it would bypass the wrapper's own writes.
	var f fenceable
	switch s := s.(type) {
	case *Redis:
		if s != nil {
			f = s
		}
	case *Memory:
		if s != nil {
			f = s
		}
	case *fencedStore:
		return nil, fmt.Errorf("fence %s: %w: the store is fenced already; fence the plain store", model, ErrInvalid)
	}
	if f == nil {
		return nil, fmt.Errorf("fence %s: %w: a %T cannot be fenced", model, ErrInvalid, s)
	}
	return &fencedStore{s: f, model: model, token: token}, nil
}

// fencedStore is the Store Fenced returns.
type fencedStore struct {
	s     fenceable
	model string
	token uint64
}

var _ Store = (*fencedStore)(nil)

// check refuses a write to a namespace that is invalid or not of the fenced model.
func (f *fencedStore) check(ns Namespace) error {
	if err := ns.Validate(); err != nil {
		return err
	}
	if ns.Model != f.model {
		return fmt.Errorf("%w: a store fenced for model %s cannot write to %s", ErrInvalid, f.model, ns)
	}
	return nil
}

// InitGeneration implements Store, fenced.
func (f *fencedStore) InitGeneration(ctx context.Context, ns Namespace) error {
	if err := f.check(ns); err != nil {
		return err
	}
	return f.s.initGeneration(ctx, ns, f.token)
}

// Apply implements Store, fenced.
func (f *fencedStore) Apply(ctx context.Context, ns Namespace, pos eventstore.Position, batch Batch) (bool, error) {
	if err := f.check(ns); err != nil {
		return false, err
	}
	return f.s.apply(ctx, ns, f.token, pos, batch)
}

// ApplyMany implements Store, fenced.
func (f *fencedStore) ApplyMany(ctx context.Context, ns Namespace, updates []Update) (int, error) {
	if err := f.check(ns); err != nil {
		return 0, err
	}
	return f.s.applyMany(ctx, ns, f.token, updates)
}

// SetActive implements Store, fenced.
func (f *fencedStore) SetActive(ctx context.Context, ns Namespace) error {
	if err := f.check(ns); err != nil {
		return err
	}
	return f.s.setActive(ctx, ns, f.token)
}

// Withdraw implements Store, fenced.
func (f *fencedStore) Withdraw(ctx context.Context, ns Namespace) error {
	if err := f.check(ns); err != nil {
		return err
	}
	return f.s.withdraw(ctx, ns, f.token)
}

// DropGeneration implements Store, fenced.
func (f *fencedStore) DropGeneration(ctx context.Context, ns Namespace) error {
	if err := f.check(ns); err != nil {
		return err
	}
	return f.s.dropGeneration(ctx, ns, f.token)
}

// Checkpoint implements Store: not fenced.
func (f *fencedStore) Checkpoint(ctx context.Context, ns Namespace) (eventstore.Position, bool, error) {
	return f.s.Checkpoint(ctx, ns)
}

// Get implements Store: not fenced.
func (f *fencedStore) Get(ctx context.Context, ns Namespace, key string) ([]byte, bool, error) {
	return f.s.Get(ctx, ns, key)
}

// GetMany implements Store: not fenced.
func (f *fencedStore) GetMany(ctx context.Context, ns Namespace, keys []string) ([][]byte, error) {
	return f.s.GetMany(ctx, ns, keys)
}

// Range implements Store: not fenced.
func (f *fencedStore) Range(ctx context.Context, ns Namespace, index, after string, limit int) ([]string, error) {
	return f.s.Range(ctx, ns, index, after, limit)
}

// Active implements Store: not fenced.
func (f *fencedStore) Active(ctx context.Context, model string) (string, bool, error) {
	return f.s.Active(ctx, model)
}

// Generations implements Store: not fenced.
func (f *fencedStore) Generations(ctx context.Context, model string) ([]string, error) {
	return f.s.Generations(ctx, model)
}

// fencedError reports a write refused because a greater token than token was recorded.
func fencedError(what string, token uint64) error {
	return fmt.Errorf("%s with fencing token %d: %w", what, token, ErrFenced)
}
