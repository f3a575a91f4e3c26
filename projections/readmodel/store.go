package readmodel

import (
	"context"

	"github.com/keyledger/keyledger/eventstore"
)

// Store is the read-model storage port. Every method takes the context first and returns
// the package's errors (wrapped); implementations are safe for concurrent use.
//
// Writes to one Namespace must come from one projector at a time (the lease in DESIGN.md);
// the checkpoint makes concurrent or repeated deliveries of the same position harmless,
// but it cannot order two projectors feeding different events. A projector elected by a
// lease writes through Fenced, so that a stale one is refused.
type Store interface {
	// InitGeneration creates ns with its checkpoint at eventstore.Start. On a generation
	// that already exists it does nothing (it never resets a checkpoint), so it is safe to
	// call at every start-up of a projector — but only for a generation that is being
	// built from the start: calling it after a data loss would hide the loss.
	InitGeneration(ctx context.Context, ns Namespace) error

	// Apply applies every operation of batch, in order, and sets the checkpoint of ns to
	// pos — all in one atomic step — if pos is after the stored checkpoint
	// (eventstore.Position.Compare). Otherwise it writes nothing and returns false: a
	// redelivered event is skipped, never applied twice. It fails with ErrNoCheckpoint if
	// ns has no checkpoint (see InitGeneration) and ErrInvalid for a malformed batch; in
	// both cases nothing is written.
	Apply(ctx context.Context, ns Namespace, pos eventstore.Position, batch Batch) (applied bool, err error)

	// ApplyMany is Apply for a run of updates whose positions strictly increase, pipelined
	// so that a rebuild or a catching-up projection pays one round trip for many events.
	// Each update is atomic on its own and is applied only if the one before it was
	// applied or skipped, so the read model never holds an update without its
	// predecessors. It returns how many updates were applied (the others were at or below
	// the checkpoint). On error, a prefix of the updates may have been applied: deliver
	// them all again. A caller that needs fewer, larger steps can instead merge batches
	// with Batch.Append and Apply the merge with the last position.
	ApplyMany(ctx context.Context, ns Namespace, updates []Update) (applied int, err error)

	// Checkpoint returns the position of the last applied update, and false if ns has no
	// checkpoint (never initialised, dropped, or its data was lost).
	Checkpoint(ctx context.Context, ns Namespace) (pos eventstore.Position, present bool, err error)

	// Get returns the value of key in one round trip, and false if it is absent. An absent
	// generation reads as empty: callers that must tell "no entry" from "no read model"
	// check the checkpoint when they resolve the generation, not on every lookup.
	Get(ctx context.Context, ns Namespace, key string) (value []byte, found bool, err error)

	// GetMany returns the values of keys in one round trip, in the order of keys; an
	// absent key gives a nil value (a present empty value is a non-nil empty slice).
	GetMany(ctx context.Context, ns Namespace, keys []string) ([][]byte, error)

	// Range returns at most limit members of index that sort strictly after after, in
	// ascending byte order ("" starts at the first member). Pass the last member returned
	// as the next call's after to read page by page; a short page is the last. Members
	// added or removed between pages show up or not according to where they sort, as with
	// any cursor over live data. limit must be positive.
	Range(ctx context.Context, ns Namespace, index, after string, limit int) ([]string, error)

	// SetActive makes ns the active generation of ns.Model in one atomic write. It fails
	// with ErrNoCheckpoint if ns does not exist. It does not check that ns is caught up:
	// that is the rebuild's job.
	SetActive(ctx context.Context, ns Namespace) error

	// Withdraw stops serving ns: when ns is the active generation of its model, the model
	// has no active generation afterwards, so readers get nothing rather than data nobody
	// keeps current. Withdrawing a generation that is not active changes nothing. The
	// generation's data stay until DropGeneration.
	Withdraw(ctx context.Context, ns Namespace) error

	// Active returns the active generation of model, and false if none was set (a new
	// deployment, or data loss).
	Active(ctx context.Context, model string) (generation string, ok bool, err error)

	// DropGeneration deletes every key of ns, its checkpoint first so that a projector
	// still writing to it fails with ErrNoCheckpoint instead of re-creating keys. It fails
	// with ErrGenerationActive for the active generation. Dropping an absent generation
	// is not an error. On Redis it scans and unlinks in batches; it is not atomic and a
	// failed drop can be run again.
	DropGeneration(ctx context.Context, ns Namespace) error

	// Generations returns the generations of model that have a checkpoint, sorted by
	// their bytes, so that a projector can drop the leftovers of an interrupted rebuild.
	// On Redis it reads the model's registry of generations (a store written before the
	// registry existed is scanned once): call it at start-up or after a rebuild, never
	// on a request path.
	Generations(ctx context.Context, model string) ([]string, error)
}
