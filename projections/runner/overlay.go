package runner

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/projections/readmodel"
)

// overlay is the in-process copy of one generation being rebuilt: the handlers read and
// write it, and every batch they apply is also kept, merged, for the real store. It is
// leaner than readmodel.Memory — plain maps, no locking, indexes sorted only when a
// handler ranges over one — because it serves one goroutine, one namespace, for the
// length of a rebuild. Only what handlers use is implemented.
type overlay struct {
	ns      readmodel.Namespace
	cp      eventstore.Position
	values  map[string][]byte
	indexes map[string]map[string]struct{}
	pending readmodel.Batch
	moved   bool // an Apply since the last take (possibly with an empty batch)
}

var _ readmodel.Store = (*overlay)(nil)

func newOverlay(ns readmodel.Namespace) *overlay {
	return &overlay{ns: ns, values: map[string][]byte{}, indexes: map[string]map[string]struct{}{}}
}

func (o *overlay) check(ns readmodel.Namespace) error {
	if ns != o.ns {
		return fmt.Errorf("%w: rebuild of %s used for %s", readmodel.ErrInvalid, o.ns, ns)
	}
	return nil
}

// InitGeneration implements readmodel.Store (the overlay exists already).
func (o *overlay) InitGeneration(_ context.Context, ns readmodel.Namespace) error { return o.check(ns) }

// Apply applies batch to the copy and keeps it for the real store.
func (o *overlay) Apply(_ context.Context, ns readmodel.Namespace, pos eventstore.Position, b readmodel.Batch) (bool, error) {
	if err := o.check(ns); err != nil {
		return false, err
	}
	if pos.Compare(o.cp) <= 0 {
		return false, nil
	}
	if err := b.Validate(); err != nil {
		return false, err
	}
	for _, op := range b.Ops() {
		switch op.Kind {
		case readmodel.OpPut:
			o.values[op.Key] = op.Value
		case readmodel.OpDelete:
			delete(o.values, op.Key)
		case readmodel.OpIndexAdd:
			ix := o.indexes[op.Key]
			if ix == nil {
				ix = map[string]struct{}{}
				o.indexes[op.Key] = ix
			}
			ix[op.Member] = struct{}{}
		case readmodel.OpIndexRemove:
			if ix := o.indexes[op.Key]; ix != nil {
				delete(ix, op.Member)
				if len(ix) == 0 {
					delete(o.indexes, op.Key)
				}
			}
		case readmodel.OpDeleteIndex:
			delete(o.indexes, op.Key)
		}
	}
	o.cp = pos
	o.pending.Append(b)
	o.moved = true
	return true, nil
}

// ApplyMany is not used by handlers; refuse it so that a future use is noticed.
func (o *overlay) ApplyMany(context.Context, readmodel.Namespace, []readmodel.Update) (int, error) {
	return 0, fmt.Errorf("%w: ApplyMany during a rebuild", readmodel.ErrInvalid)
}

// Checkpoint implements readmodel.Store.
func (o *overlay) Checkpoint(_ context.Context, ns readmodel.Namespace) (eventstore.Position, bool, error) {
	return o.cp, true, o.check(ns)
}

// Get implements readmodel.Store.
func (o *overlay) Get(_ context.Context, ns readmodel.Namespace, key string) ([]byte, bool, error) {
	v, ok := o.values[key]
	return v, ok, o.check(ns)
}

// GetMany implements readmodel.Store.
func (o *overlay) GetMany(_ context.Context, ns readmodel.Namespace, keys []string) ([][]byte, error) {
	out := make([][]byte, len(keys))
	for i, k := range keys {
		out[i] = o.values[k]
	}
	return out, o.check(ns)
}

// Range implements readmodel.Store (sorting the index: handlers range rarely).
func (o *overlay) Range(_ context.Context, ns readmodel.Namespace, index, after string, limit int) ([]string, error) {
	if err := o.check(ns); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, fmt.Errorf("%w: limit %d", readmodel.ErrInvalid, limit)
	}
	var out []string
	for m := range o.indexes[index] {
		if m > after {
			out = append(out, m)
		}
	}
	slices.SortFunc(out, strings.Compare)
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// The generation operations are the rebuild's own, never a handler's.
func (o *overlay) SetActive(context.Context, readmodel.Namespace) error { return errNotInRebuild }
func (o *overlay) Active(context.Context, string) (string, bool, error) {
	return "", false, errNotInRebuild
}
func (o *overlay) DropGeneration(context.Context, readmodel.Namespace) error { return errNotInRebuild }
func (o *overlay) Withdraw(context.Context, readmodel.Namespace) error       { return errNotInRebuild }
func (o *overlay) Generations(context.Context, string) ([]string, error) {
	return nil, errNotInRebuild
}

var errNotInRebuild = fmt.Errorf("%w: not available to handlers during a rebuild", readmodel.ErrInvalid)

// take returns the merged batch and starts a new one.
func (o *overlay) take() readmodel.Batch {
	b := o.pending
	o.pending = readmodel.Batch{}
	o.moved = false
	return b
}
