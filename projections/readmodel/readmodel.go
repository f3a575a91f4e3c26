// Package readmodel is the storage port of Keyledger's read models: key/value entries and
// lexicographically ordered indexes, written together with the projection's checkpoint in
// one atomic step, and organised in generations so that a read model can be rebuilt next to
// the one that serves and switched over atomically.
//
// The port knows nothing of events or of any particular read model; projections translate
// events into a Batch of operations and the position of the event (or of the last event of
// a run of events) into the checkpoint. Two implementations pass the shared suite in
// readmodel/readmodeltest: Redis (NewRedis) for production and Memory (NewMemory) for the
// zero-setup default. Behaviour that the suite does not check is not part of the contract.
//
// # Generations and the life of a read model
//
// Every key of a read model lives in a Namespace: the model's name and a generation chosen
// by the caller (for example the read model's version constant and a timestamp). The usual
// life is:
//
//  1. InitGeneration creates the generation with its checkpoint at eventstore.Start.
//  2. Apply / ApplyMany project events into it; each call advances the checkpoint.
//  3. SetActive makes it the generation readers use (one atomic write).
//  4. A rebuild repeats 1–3 with a new generation while the old one keeps serving, then
//     DropGeneration deletes the old one.
//
// All data operations (Apply, Get, Range, …) act on the explicit generation named by their
// Namespace, never implicitly on the active one: a reader resolves Active once and keeps
// using that generation until it learns of a switch, so that a lookup stays one round trip.
// Readers must re-resolve Active after a switch (the old generation stops receiving
// updates, so it may still grant what has since been revoked); drop the old generation
// only once no reader can still be using it.
//
// # Data loss
//
// Apply refuses to write into a generation that has no checkpoint (ErrNoCheckpoint): in
// Redis a missing checkpoint means the data was flushed or lost on a restart without
// persistence, and the projection must stop and rebuild rather than quietly re-create a
// partial read model. Checkpoint reports such a generation as not present.
//
// # Fencing
//
// Writes to a read model must come from one projector at a time. When several processes
// share one Redis, a lease (projections/lease) elects that projector, but a holder that
// pauses past the lease's time-to-live can still be writing after another process took
// over. Fenced wraps a store so that every write to one model carries the holder's
// fencing token, and is refused with ErrFenced — in the same atomic step as the write —
// once a greater token was recorded for the model.
package readmodel

import (
	"errors"
	"fmt"

	"github.com/keyledger/keyledger/eventstore"
)

// Errors returned by every implementation. They are wrapped with context, so callers must
// test with errors.Is, never with ==.
var (
	// ErrInvalid means the call itself was malformed: a bad model or generation name, an
	// empty key, index or member, a non-positive limit, positions out of order in
	// ApplyMany, a batch over MaxBatchOps. Nothing was written.
	ErrInvalid = errors.New("readmodel: invalid request")
	// ErrNoCheckpoint means the generation has no checkpoint: it was never initialised, it
	// was dropped, or (Redis) its data was lost. Nothing was written; the projection must
	// stop and rebuild rather than carry on.
	ErrNoCheckpoint = errors.New("readmodel: generation has no checkpoint")
	// ErrGenerationActive means DropGeneration was asked to drop the generation that is
	// currently active. Nothing was deleted.
	ErrGenerationActive = errors.New("readmodel: generation is active")
	// ErrUnavailable wraps transport failures (connection refused, timeout, dropped
	// connection). A read that fails with it did not find "nothing": it found out nothing.
	ErrUnavailable = errors.New("readmodel: store unavailable")
	// ErrCorrupt means the store holds data it cannot interpret (a malformed checkpoint or
	// fencing token). The store refuses to write over it.
	ErrCorrupt = errors.New("readmodel: stored data corrupt")
	// ErrFenced means a write carried a fencing token lower than one already recorded for
	// the model: the writer is a stale projector (another process took the model's lease
	// over). Nothing was written. See Fenced.
	ErrFenced = errors.New("readmodel: stale fencing token")
)

// MaxBatchOps bounds the operations of one Batch (and of one Update of ApplyMany). A batch
// is applied in one atomic step, which in Redis blocks the server for its duration: keep
// batches to thousands of operations, not millions.
const MaxBatchOps = 100_000

// maxNameLen bounds model and generation names.
const maxNameLen = 64

// Namespace names one generation of one read model. Model and Generation consist of ASCII
// letters, digits, '_', '.' and '-' (at most 64 bytes each), so that they can never
// collide with the key layout's separators or with glob patterns.
type Namespace struct {
	// Model is the read model's name, a constant of the projection (renaming it loses the
	// data).
	Model string
	// Generation is chosen by the caller; a rebuild uses a new one.
	Generation string
}

// String renders the namespace as "model/generation" for messages.
func (ns Namespace) String() string { return ns.Model + "/" + ns.Generation }

// Validate reports ErrInvalid when the model or generation name is not allowed.
func (ns Namespace) Validate() error {
	if err := validateName("model", ns.Model); err != nil {
		return err
	}
	return validateName("generation", ns.Generation)
}

func validateName(what, s string) error {
	if s == "" || len(s) > maxNameLen {
		return fmt.Errorf("%w: %s name %q must be 1 to %d bytes", ErrInvalid, what, s, maxNameLen)
	}
	if !nameChars(s) {
		return fmt.Errorf("%w: %s name %q may hold only letters, digits, '_', '.' and '-'", ErrInvalid, what, s)
	}
	return nil
}

// isName reports whether validateName accepts s, without building an error.
func isName(s string) bool { return s != "" && len(s) <= maxNameLen && nameChars(s) }

// nameChars reports whether s holds only the characters of model and generation names.
func nameChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '.', c == '-':
		default:
			return false
		}
	}
	return true
}

// OpKind is the kind of one operation of a Batch.
type OpKind uint8

// Operation kinds.
const (
	// OpPut sets Key to Value.
	OpPut OpKind = iota + 1
	// OpDelete removes Key.
	OpDelete
	// OpIndexAdd adds Member to Index.
	OpIndexAdd
	// OpIndexRemove removes Member from Index.
	OpIndexRemove
	// OpDeleteIndex removes the whole Index.
	OpDeleteIndex
)

// Op is one operation of a Batch. Build batches with the Batch methods; Ops exposes them to
// implementations.
type Op struct {
	Kind OpKind
	// Key is the entry's key (OpPut, OpDelete) or the index's name (the index kinds).
	Key string
	// Value is the entry's value (OpPut).
	Value []byte
	// Member is the index member (OpIndexAdd, OpIndexRemove).
	Member string
}

// Batch is an ordered list of operations applied together, in order, atomically with a
// checkpoint. The zero value is an empty batch, ready to use; an empty batch is valid and
// only advances the checkpoint (an event the read model does not care about).
//
// Keys and index names share no namespace: an index may have the same name as a key.
// Members are ordered by their bytes (Redis ZRANGEBYLEX order, which is also Go's string
// order), so a list sorted by some field uses members like "sortkey\x00id". Keys, index
// names and members must not be empty.
//
// A Batch keeps the value slices given to Put: do not modify them until Apply returns. A
// Batch is not safe for concurrent use.
type Batch struct {
	ops []Op
}

// Put sets key to value.
func (b *Batch) Put(key string, value []byte) {
	b.ops = append(b.ops, Op{Kind: OpPut, Key: key, Value: value})
}

// Delete removes key (a missing key is not an error).
func (b *Batch) Delete(key string) { b.ops = append(b.ops, Op{Kind: OpDelete, Key: key}) }

// IndexAdd adds member to index (adding a present member is not an error).
func (b *Batch) IndexAdd(index, member string) {
	b.ops = append(b.ops, Op{Kind: OpIndexAdd, Key: index, Member: member})
}

// IndexRemove removes member from index (a missing member is not an error).
func (b *Batch) IndexRemove(index, member string) {
	b.ops = append(b.ops, Op{Kind: OpIndexRemove, Key: index, Member: member})
}

// DeleteIndex removes index with all its members.
func (b *Batch) DeleteIndex(index string) {
	b.ops = append(b.ops, Op{Kind: OpDeleteIndex, Key: index})
}

// Append adds other's operations after b's, so that a rebuild can merge the batches of a
// run of events into one and apply it with the position of the last event.
func (b *Batch) Append(other Batch) { b.ops = append(b.ops, other.ops...) }

// Len returns the number of operations.
func (b Batch) Len() int { return len(b.ops) }

// Ops returns the operations in order. The slice is the batch's own: do not modify it.
func (b Batch) Ops() []Op { return b.ops }

// Reset empties the batch, keeping its capacity.
func (b *Batch) Reset() {
	clear(b.ops)
	b.ops = b.ops[:0]
}

// Validate reports ErrInvalid for an operation that an implementation would refuse, so that
// implementations can refuse the whole batch before writing anything.
func (b Batch) Validate() error {
	if len(b.ops) > MaxBatchOps {
		return fmt.Errorf("%w: batch has %d operations, more than %d", ErrInvalid, len(b.ops), MaxBatchOps)
	}
	for i, op := range b.ops {
		if op.Key == "" {
			return fmt.Errorf("%w: operation %d: empty key or index name", ErrInvalid, i)
		}
		switch op.Kind {
		case OpPut, OpDelete, OpDeleteIndex:
		case OpIndexAdd, OpIndexRemove:
			if op.Member == "" {
				return fmt.Errorf("%w: operation %d: empty index member", ErrInvalid, i)
			}
		default:
			return fmt.Errorf("%w: operation %d: unknown kind %d", ErrInvalid, i, op.Kind)
		}
	}
	return nil
}

// Update is one step of ApplyMany: a batch and the position it brings the checkpoint to.
type Update struct {
	Pos   eventstore.Position
	Batch Batch
}

// validateUpdates checks every batch and that positions strictly increase.
func validateUpdates(updates []Update) error {
	for i, u := range updates {
		if err := u.Batch.Validate(); err != nil {
			return fmt.Errorf("update %d at %s: %w", i, u.Pos, err)
		}
		if i > 0 && u.Pos.Compare(updates[i-1].Pos) <= 0 {
			return fmt.Errorf("%w: update %d at %s is not after update %d at %s", ErrInvalid, i, u.Pos, i-1, updates[i-1].Pos)
		}
	}
	return nil
}
