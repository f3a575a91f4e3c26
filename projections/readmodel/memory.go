package readmodel

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/keyledger/keyledger/eventstore"
)

// Memory is the in-process Store: the default when no Redis is configured. It holds
// everything in memory, so it starts empty and must be rebuilt from the event store at
// every start-up. It is safe for concurrent use: writers take an exclusive lock for the
// whole of an Apply, so readers never see half a batch.
type Memory struct {
	mu     sync.RWMutex
	gens   map[Namespace]*memGen
	active map[string]string
	fences map[string]uint64 // the greatest fencing token recorded per model
}

var _ Store = (*Memory)(nil)

type memGen struct {
	cp      eventstore.Position
	values  *valueTable
	indexes *indexTree
}

// NewMemory returns an empty in-process store.
func NewMemory() *Memory {
	return &Memory{
		gens:   make(map[Namespace]*memGen),
		active: make(map[string]string),
		fences: make(map[string]uint64),
	}
}

// stale reports whether a token greater than token was recorded for model; token 0
// (unfenced) is never stale. The caller holds m.mu for writing.
func (m *Memory) stale(model string, token uint64) bool {
	return token != 0 && token < m.fences[model]
}

// lockWrite starts a write to ns with token: it checks the namespace and the context,
// takes m.mu, and refuses a stale token (what names the write in the error). On success
// the caller holds m.mu and must unlock it.
func (m *Memory) lockWrite(ctx context.Context, ns Namespace, token uint64, what string) error {
	if err := ns.Validate(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	if m.stale(ns.Model, token) {
		m.mu.Unlock()
		return fencedError(what+" "+ns.String(), token)
	}
	return nil
}

// recordFence records token for model once nothing can refuse the write it guards; token
// 0 (unfenced) records nothing. The caller holds m.mu for writing.
func (m *Memory) recordFence(model string, token uint64) {
	if token > m.fences[model] {
		m.fences[model] = token
	}
}

// InitGeneration implements Store.
func (m *Memory) InitGeneration(ctx context.Context, ns Namespace) error {
	return m.initGeneration(ctx, ns, 0)
}

func (m *Memory) initGeneration(ctx context.Context, ns Namespace, token uint64) error {
	if err := m.lockWrite(ctx, ns, token, "init"); err != nil {
		return err
	}
	defer m.mu.Unlock()
	m.recordFence(ns.Model, token)
	if _, ok := m.gens[ns]; !ok {
		m.gens[ns] = &memGen{values: newValueTable(), indexes: newIndexTree()}
	}
	return nil
}

// Apply implements Store.
func (m *Memory) Apply(ctx context.Context, ns Namespace, pos eventstore.Position, batch Batch) (bool, error) {
	return m.apply(ctx, ns, 0, pos, batch)
}

func (m *Memory) apply(ctx context.Context, ns Namespace, token uint64, pos eventstore.Position, batch Batch) (bool, error) {
	n, err := m.applyMany(ctx, ns, token, []Update{{Pos: pos, Batch: batch}})
	return n == 1, err
}

// ApplyMany implements Store. All updates are applied under one lock.
func (m *Memory) ApplyMany(ctx context.Context, ns Namespace, updates []Update) (int, error) {
	return m.applyMany(ctx, ns, 0, updates)
}

func (m *Memory) applyMany(ctx context.Context, ns Namespace, token uint64, updates []Update) (int, error) {
	if err := ns.Validate(); err != nil {
		return 0, err
	}
	if err := validateUpdates(updates); err != nil {
		return 0, fmt.Errorf("apply to %s: %w", ns, err)
	}
	if err := m.lockWrite(ctx, ns, token, "apply to"); err != nil {
		return 0, err
	}
	defer m.mu.Unlock()
	g, ok := m.gens[ns]
	if !ok {
		return 0, fmt.Errorf("apply to %s: %w", ns, ErrNoCheckpoint)
	}
	m.recordFence(ns.Model, token)
	applied := 0
	for _, u := range updates {
		if u.Pos.Compare(g.cp) <= 0 {
			continue
		}
		for _, op := range u.Batch.ops {
			g.apply(op)
		}
		g.cp = u.Pos
		applied++
	}
	return applied, nil
}

// apply performs one validated operation; it cannot fail.
func (g *memGen) apply(op Op) {
	switch op.Kind {
	case OpPut:
		g.values.put(op.Key, op.Value)
	case OpDelete:
		g.values.del(op.Key)
	case OpIndexAdd:
		g.indexes.add(op.Key, op.Member)
	case OpIndexRemove:
		g.indexes.remove(op.Key, op.Member)
	case OpDeleteIndex:
		g.indexes.deleteIndex(op.Key)
	}
}

// Checkpoint implements Store.
func (m *Memory) Checkpoint(ctx context.Context, ns Namespace) (eventstore.Position, bool, error) {
	if err := ns.Validate(); err != nil {
		return eventstore.Position{}, false, err
	}
	if err := ctx.Err(); err != nil {
		return eventstore.Position{}, false, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	g, ok := m.gens[ns]
	if !ok {
		return eventstore.Position{}, false, nil
	}
	return g.cp, true, nil
}

// Get implements Store. The value returned is a copy.
func (m *Memory) Get(ctx context.Context, ns Namespace, key string) ([]byte, bool, error) {
	if err := ns.Validate(); err != nil {
		return nil, false, err
	}
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	g, ok := m.gens[ns]
	if !ok {
		return nil, false, nil
	}
	v, ok := g.values.get(key)
	if !ok {
		return nil, false, nil
	}
	return append([]byte{}, v...), true, nil
}

// GetMany implements Store. The values returned are copies.
func (m *Memory) GetMany(ctx context.Context, ns Namespace, keys []string) ([][]byte, error) {
	if err := ns.Validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([][]byte, len(keys))
	g, ok := m.gens[ns]
	if !ok {
		return out, nil
	}
	for i, k := range keys {
		if v, ok := g.values.get(k); ok {
			out[i] = append([]byte{}, v...)
		}
	}
	return out, nil
}

// Range implements Store.
func (m *Memory) Range(ctx context.Context, ns Namespace, index, after string, limit int) ([]string, error) {
	if err := validateRange(ns, index, limit); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	g, ok := m.gens[ns]
	if !ok {
		return nil, nil
	}
	var out []string
	g.indexes.members(index, after, func(member []byte) bool {
		out = append(out, string(member))
		return len(out) < limit
	})
	return out, nil
}

func validateRange(ns Namespace, index string, limit int) error {
	if err := ns.Validate(); err != nil {
		return err
	}
	if index == "" {
		return fmt.Errorf("%w: empty index name", ErrInvalid)
	}
	if limit <= 0 {
		return fmt.Errorf("%w: range limit %d is not positive", ErrInvalid, limit)
	}
	return nil
}

// SetActive implements Store.
func (m *Memory) SetActive(ctx context.Context, ns Namespace) error {
	return m.setActive(ctx, ns, 0)
}

func (m *Memory) setActive(ctx context.Context, ns Namespace, token uint64) error {
	if err := m.lockWrite(ctx, ns, token, "set active"); err != nil {
		return err
	}
	defer m.mu.Unlock()
	if _, ok := m.gens[ns]; !ok {
		return fmt.Errorf("set active %s: %w", ns, ErrNoCheckpoint)
	}
	m.recordFence(ns.Model, token)
	m.active[ns.Model] = ns.Generation
	return nil
}

// Snapshot returns a copy of every value and index of ns (indexes sorted), for tests and
// diagnostics that compare generations.
func (m *Memory) Snapshot(ns Namespace) (values map[string][]byte, indexes map[string][]string) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	values, indexes = map[string][]byte{}, map[string][]string{}
	g := m.gens[ns]
	if g == nil {
		return values, indexes
	}
	g.values.each(func(k string, v []byte) { values[k] = bytes.Clone(v) })
	g.indexes.each(func(index, member []byte) {
		indexes[string(index)] = append(indexes[string(index)], string(member))
	})
	return values, indexes
}

// Withdraw implements Store.
func (m *Memory) Withdraw(ctx context.Context, ns Namespace) error {
	return m.withdraw(ctx, ns, 0)
}

func (m *Memory) withdraw(ctx context.Context, ns Namespace, token uint64) error {
	if err := m.lockWrite(ctx, ns, token, "withdraw"); err != nil {
		return err
	}
	defer m.mu.Unlock()
	m.recordFence(ns.Model, token)
	if m.active[ns.Model] == ns.Generation {
		delete(m.active, ns.Model)
	}
	return nil
}

// Active implements Store.
func (m *Memory) Active(ctx context.Context, model string) (string, bool, error) {
	if err := validateName("model", model); err != nil {
		return "", false, err
	}
	if err := ctx.Err(); err != nil {
		return "", false, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	gen, ok := m.active[model]
	return gen, ok, nil
}

// DropGeneration implements Store. In memory it is atomic.
func (m *Memory) DropGeneration(ctx context.Context, ns Namespace) error {
	return m.dropGeneration(ctx, ns, 0)
}

func (m *Memory) dropGeneration(ctx context.Context, ns Namespace, token uint64) error {
	if err := m.lockWrite(ctx, ns, token, "drop"); err != nil {
		return err
	}
	defer m.mu.Unlock()
	if gen, ok := m.active[ns.Model]; ok && gen == ns.Generation {
		return fmt.Errorf("drop %s: %w", ns, ErrGenerationActive)
	}
	m.recordFence(ns.Model, token)
	delete(m.gens, ns)
	return nil
}

// Generations implements Store.
func (m *Memory) Generations(ctx context.Context, model string) ([]string, error) {
	if err := validateName("model", model); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	var gens []string
	for ns := range m.gens {
		if ns.Model == model {
			gens = append(gens, ns.Generation)
		}
	}
	slices.Sort(gens)
	return gens, nil
}

// CountKeys returns how many storage keys the store holds, counted as Redis would: one per
// generation's checkpoint, value, non-empty index, active pointer and recorded fencing
// token. It exists for tests and diagnostics.
func (m *Memory) CountKeys(ctx context.Context) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	n := len(m.active) + len(m.fences)
	for _, g := range m.gens {
		n += 1 + g.values.len() + g.indexes.names()
	}
	return n, nil
}
