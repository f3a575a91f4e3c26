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
//
// Its values are bounded: once they exceed the rebuild's budget, the rebuild waits until
// every batch taken so far is written, then forgets them (forget). From then on a value
// the overlay does not hold is read from the target store, which has it: everything
// written before the forget is there, and everything written after it is in the overlay
// (a deletion as a tombstone). Indexes, much smaller, are kept whole.
type overlay struct {
	ns      readmodel.Namespace
	cp      eventstore.Position
	values  map[string][]byte
	bytes   int // approximate size of values
	indexes map[string]map[string]struct{}
	pending readmodel.Batch
	moved   bool // an Apply since the last take (possibly with an empty batch)

	// target backs the values forgotten; nil until the first forget.
	target  readmodel.Store
	deleted map[string]struct{} // deletions since the last forget
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
			o.bytes += len(op.Key) + len(op.Value) - len(o.values[op.Key])
			o.values[op.Key] = op.Value
			if o.deleted != nil {
				delete(o.deleted, op.Key)
			}
		case readmodel.OpDelete:
			if v, ok := o.values[op.Key]; ok {
				o.bytes -= len(op.Key) + len(v)
				delete(o.values, op.Key)
			}
			if o.target != nil {
				o.deleted[op.Key] = struct{}{}
			}
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
func (o *overlay) Get(ctx context.Context, ns readmodel.Namespace, key string) ([]byte, bool, error) {
	if err := o.check(ns); err != nil {
		return nil, false, err
	}
	if v, ok := o.values[key]; ok {
		return v, true, nil
	}
	if _, gone := o.deleted[key]; gone || o.target == nil {
		return nil, false, nil
	}
	return o.target.Get(ctx, ns, key)
}

// GetMany implements readmodel.Store: one GetMany of the target for the values it lacks.
func (o *overlay) GetMany(ctx context.Context, ns readmodel.Namespace, keys []string) ([][]byte, error) {
	if err := o.check(ns); err != nil {
		return nil, err
	}
	out := make([][]byte, len(keys))
	var missing []int
	for i, k := range keys {
		v, ok := o.values[k]
		out[i] = v
		if _, gone := o.deleted[k]; !ok && !gone && o.target != nil {
			missing = append(missing, i)
		}
	}
	if len(missing) == 0 {
		return out, nil
	}
	ask := make([]string, len(missing))
	for j, i := range missing {
		ask[j] = keys[i]
	}
	got, err := o.target.GetMany(ctx, ns, ask)
	if err != nil {
		return nil, err
	}
	for j, i := range missing {
		out[i] = got[j]
	}
	return out, nil
}

// size is the approximate size of the values held.
func (o *overlay) size() int { return o.bytes }

// forget drops every value: call it only once every batch taken has been written to
// target, which then holds them.
func (o *overlay) forget(target readmodel.Store) {
	o.values, o.bytes = map[string][]byte{}, 0
	o.target, o.deleted = target, map[string]struct{}{}
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
