package models

// Test-only wiring: the voucher and keys models projected into fixed namespaces by one
// router, without the runner (projections/runner is the production wiring).

import (
	"context"
	"errors"
	"fmt"
	"time"

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
