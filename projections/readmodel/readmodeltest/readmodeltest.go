// Package readmodeltest is the conformance suite every readmodel.Store implementation must
// pass. Behaviour that this suite does not check is not part of the port's contract.
package readmodeltest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/projections/readmodel"
)

// KeyCounter is implemented by stores that can count the storage keys they hold (Redis
// keys under the store's prefix, or their in-memory equivalent). The suite uses it to
// check that DropGeneration deletes exactly one generation's keys; a store without it
// fails that case.
type KeyCounter interface {
	CountKeys(ctx context.Context) (int, error)
}

// waitLimit bounds every case so that a broken store fails instead of hanging the run. It
// is a safety net, not a performance assertion.
const waitLimit = 60 * time.Second

// Run runs every case of the suite, each as its own subtest with a store from open. open
// must return an empty store (or one whose other content the store's KeyCounter does not
// count) and register its own cleanup with t.Cleanup. The fencing cases wrap the store
// with readmodel.Fenced, so it must be one that Fenced accepts.
func Run(t *testing.T, open func(t *testing.T) readmodel.Store) {
	cases := []struct {
		name string
		fn   func(t *testing.T, ctx context.Context, s readmodel.Store)
	}{
		{"ApplyAndGet", testApplyAndGet},
		{"CheckpointSkipsEqualAndOlder", testCheckpointSkips},
		{"CheckpointCompares64BitPositions", testCheckpoint64Bit},
		{"MissingCheckpoint", testMissingCheckpoint},
		{"InitGenerationKeepsCheckpoint", testInitKeepsCheckpoint},
		{"EmptyBatchAdvancesCheckpoint", testEmptyBatch},
		{"InvalidBatchWritesNothing", testInvalidBatch},
		{"BatchIsAtomicForReaders", testAtomicForReaders},
		{"RangePagination", testRangePagination},
		{"RangeArguments", testRangeArguments},
		{"IndexRemoveAndDeleteIndex", testIndexRemoveAndDeleteIndex},
		{"Delete", testDelete},
		{"GetMany", testGetMany},
		{"ValuesAreNotShared", testValuesNotShared},
		{"GenerationsIsolated", testGenerationsIsolated},
		{"SetActiveSwitch", testSetActive},
		{"Withdraw", testWithdraw},
		{"DropGeneration", testDropGeneration},
		{"ConcurrentApplySamePosition", testConcurrentSamePosition},
		{"LargeBatch", testLargeBatch},
		{"ApplyMany", testApplyMany},
		{"ApplyManyRejectsDisorder", testApplyManyDisorder},
		{"MergedBatches", testMergedBatches},
		{"InvalidNames", testInvalidNames},
		{"Generations", testGenerations},
		{"FencedRefusesLowerToken", testFencedRefusesLowerToken},
		{"FenceBelongsToModel", testFenceBelongsToModel},
		{"FencedServesOneModel", testFencedServesOneModel},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := open(t)
			ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
			defer cancel()
			c.fn(t, ctx, s)
		})
	}
}

// pos returns a position with commit == prepare, as the embedded store numbers them.
func pos(n uint64) eventstore.Position { return eventstore.Position{Commit: n, Prepare: n} }

func newGen(t *testing.T, ctx context.Context, s readmodel.Store, model, gen string) readmodel.Namespace {
	t.Helper()
	ns := readmodel.Namespace{Model: model, Generation: gen}
	if err := s.InitGeneration(ctx, ns); err != nil {
		t.Fatalf("InitGeneration(%s): %v", ns, err)
	}
	return ns
}

func mustApply(t *testing.T, ctx context.Context, s readmodel.Store, ns readmodel.Namespace, p eventstore.Position, b readmodel.Batch) bool {
	t.Helper()
	ok, err := s.Apply(ctx, ns, p, b)
	if err != nil {
		t.Fatalf("Apply(%s, %s): %v", ns, p, err)
	}
	return ok
}

func wantValue(t *testing.T, ctx context.Context, s readmodel.Store, ns readmodel.Namespace, key string, want []byte) {
	t.Helper()
	got, found, err := s.Get(ctx, ns, key)
	if err != nil {
		t.Fatalf("Get(%s, %q): %v", ns, key, err)
	}
	switch {
	case want == nil && found:
		t.Fatalf("Get(%s, %q) = %q, want absent", ns, key, got)
	case want != nil && !found:
		t.Fatalf("Get(%s, %q) absent, want %q", ns, key, want)
	case want != nil && !bytes.Equal(got, want):
		t.Fatalf("Get(%s, %q) = %q, want %q", ns, key, got, want)
	}
}

func wantCheckpoint(t *testing.T, ctx context.Context, s readmodel.Store, ns readmodel.Namespace, want eventstore.Position, wantPresent bool) {
	t.Helper()
	got, present, err := s.Checkpoint(ctx, ns)
	if err != nil {
		t.Fatalf("Checkpoint(%s): %v", ns, err)
	}
	if present != wantPresent || got != want {
		t.Fatalf("Checkpoint(%s) = %s present=%v, want %s present=%v", ns, got, present, want, wantPresent)
	}
}

// rangeAll reads an index page by page.
func rangeAll(t *testing.T, ctx context.Context, s readmodel.Store, ns readmodel.Namespace, index string, page int) []string {
	t.Helper()
	var all []string
	after := ""
	for i := 0; ; i++ {
		got, err := s.Range(ctx, ns, index, after, page)
		if err != nil {
			t.Fatalf("Range(%s, %q, after %q): %v", ns, index, after, err)
		}
		if len(got) > page {
			t.Fatalf("Range returned %d members for limit %d", len(got), page)
		}
		all = append(all, got...)
		if len(got) < page {
			return all
		}
		after = got[len(got)-1]
		if i > 1_000_000 {
			t.Fatal("Range does not advance")
		}
	}
}

func wantIndex(t *testing.T, ctx context.Context, s readmodel.Store, ns readmodel.Namespace, index string, want ...string) {
	t.Helper()
	got := rangeAll(t, ctx, s, ns, index, 100)
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !slices.Equal(got, want) {
		t.Fatalf("index %s %q = %q, want %q", ns, index, got, want)
	}
}

func testApplyAndGet(t *testing.T, ctx context.Context, s readmodel.Store) {
	ns := newGen(t, ctx, s, "clients", "g1")
	wantCheckpoint(t, ctx, s, ns, eventstore.Start, true)

	binary := []byte{0, 1, 2, 0xff, '\n', 0}
	var b readmodel.Batch
	b.Put("client:1", []byte(`{"name":"one"}`))
	b.Put("bin", binary)
	b.Put("empty", []byte{})
	b.Put("clé:日本", []byte("unicode key"))
	b.IndexAdd("by-name", "one\x00client:1")
	if !mustApply(t, ctx, s, ns, pos(1), b) {
		t.Fatal("Apply at 1 on a fresh generation returned false")
	}
	wantValue(t, ctx, s, ns, "client:1", []byte(`{"name":"one"}`))
	wantValue(t, ctx, s, ns, "bin", binary)
	wantValue(t, ctx, s, ns, "empty", []byte{})
	wantValue(t, ctx, s, ns, "clé:日本", []byte("unicode key"))
	wantValue(t, ctx, s, ns, "client:2", nil)
	wantValue(t, ctx, s, ns, "by-name", nil) // an index is not a value
	wantIndex(t, ctx, s, ns, "by-name", "one\x00client:1")
	wantCheckpoint(t, ctx, s, ns, pos(1), true)

	var b2 readmodel.Batch
	b2.Put("client:1", []byte(`{"name":"uno"}`))
	b2.Put("client:1", []byte(`{"name":"one, last write wins"}`))
	if !mustApply(t, ctx, s, ns, pos(2), b2) {
		t.Fatal("Apply at 2 returned false")
	}
	wantValue(t, ctx, s, ns, "client:1", []byte(`{"name":"one, last write wins"}`))
	wantCheckpoint(t, ctx, s, ns, pos(2), true)
}

func testCheckpointSkips(t *testing.T, ctx context.Context, s readmodel.Store) {
	ns := newGen(t, ctx, s, "clients", "g1")
	put := func(v string) readmodel.Batch {
		var b readmodel.Batch
		b.Put("k", []byte(v))
		b.IndexAdd("idx", v)
		return b
	}
	if !mustApply(t, ctx, s, ns, pos(5), put("five")) {
		t.Fatal("Apply at 5 returned false")
	}
	for _, p := range []eventstore.Position{
		pos(5), pos(4), pos(1), {Commit: 4, Prepare: 100}, {Commit: 5, Prepare: 4},
	} {
		if mustApply(t, ctx, s, ns, p, put("stale "+p.String())) {
			t.Fatalf("Apply at %s after 5 returned true", p)
		}
		wantValue(t, ctx, s, ns, "k", []byte("five"))
		wantIndex(t, ctx, s, ns, "idx", "five")
		wantCheckpoint(t, ctx, s, ns, pos(5), true)
	}
	// Same commit, later prepare: after.
	p := eventstore.Position{Commit: 5, Prepare: 6}
	if !mustApply(t, ctx, s, ns, p, put("five/six")) {
		t.Fatal("Apply at 5/6 after 5 returned false")
	}
	wantCheckpoint(t, ctx, s, ns, p, true)
	wantValue(t, ctx, s, ns, "k", []byte("five/six"))
}

func testCheckpoint64Bit(t *testing.T, ctx context.Context, s readmodel.Store) {
	ns := newGen(t, ctx, s, "clients", "g1")
	var empty readmodel.Batch
	steps := []struct {
		p    eventstore.Position
		want bool
	}{
		{pos(9), true},
		{pos(10), true}, // "10" < "9" as strings: positions must compare as numbers
		{pos(9), false},
		{pos(99), true},
		{pos(100), true},
		{pos(1 << 53), true},
		{pos(1<<53 + 1), true}, // equal to 1<<53 as a double
		{pos(1 << 53), false},
		{pos(1<<53 + 1), false},
		{eventstore.Position{Commit: 1<<53 + 1, Prepare: 1<<53 + 2}, true},
		{eventstore.Position{Commit: 1<<53 + 1, Prepare: 1<<53 + 1}, false},
		{eventstore.Position{Commit: math.MaxUint64 - 1, Prepare: math.MaxUint64}, true},
		{eventstore.Position{Commit: math.MaxUint64 - 1, Prepare: math.MaxUint64 - 1}, false},
		{eventstore.Position{Commit: math.MaxUint64, Prepare: 0}, true},
		{eventstore.Position{Commit: math.MaxUint64 - 1, Prepare: math.MaxUint64}, false},
		{eventstore.Position{Commit: math.MaxUint64, Prepare: math.MaxUint64}, true},
	}
	cur := eventstore.Start
	for _, st := range steps {
		if got := mustApply(t, ctx, s, ns, st.p, empty); got != st.want {
			t.Fatalf("Apply at %s with checkpoint %s = %v, want %v", st.p, cur, got, st.want)
		}
		if st.want {
			cur = st.p
		}
		wantCheckpoint(t, ctx, s, ns, cur, true)
	}
}

func testMissingCheckpoint(t *testing.T, ctx context.Context, s readmodel.Store) {
	ns := readmodel.Namespace{Model: "clients", Generation: "never-initialised"}
	wantCheckpoint(t, ctx, s, ns, eventstore.Start, false)
	var b readmodel.Batch
	b.Put("k", []byte("v"))
	b.IndexAdd("idx", "m")
	ok, err := s.Apply(ctx, ns, pos(1), b)
	if !errors.Is(err, readmodel.ErrNoCheckpoint) || ok {
		t.Fatalf("Apply to a generation without checkpoint = %v, %v; want false, ErrNoCheckpoint", ok, err)
	}
	n, err := s.ApplyMany(ctx, ns, []readmodel.Update{{Pos: pos(1), Batch: b}})
	if !errors.Is(err, readmodel.ErrNoCheckpoint) || n != 0 {
		t.Fatalf("ApplyMany to a generation without checkpoint = %d, %v; want 0, ErrNoCheckpoint", n, err)
	}
	wantValue(t, ctx, s, ns, "k", nil)
	wantIndex(t, ctx, s, ns, "idx")
	wantCheckpoint(t, ctx, s, ns, eventstore.Start, false)
	got, err := s.GetMany(ctx, ns, []string{"k"})
	if err != nil || len(got) != 1 || got[0] != nil {
		t.Fatalf("GetMany on a missing generation = %q, %v", got, err)
	}
}

func testInitKeepsCheckpoint(t *testing.T, ctx context.Context, s readmodel.Store) {
	ns := newGen(t, ctx, s, "clients", "g1")
	var b readmodel.Batch
	b.Put("k", []byte("v"))
	mustApply(t, ctx, s, ns, pos(7), b)
	if err := s.InitGeneration(ctx, ns); err != nil {
		t.Fatal(err)
	}
	wantCheckpoint(t, ctx, s, ns, pos(7), true)
	wantValue(t, ctx, s, ns, "k", []byte("v"))
}

func testEmptyBatch(t *testing.T, ctx context.Context, s readmodel.Store) {
	ns := newGen(t, ctx, s, "clients", "g1")
	if !mustApply(t, ctx, s, ns, pos(3), readmodel.Batch{}) {
		t.Fatal("empty batch at 3 returned false")
	}
	wantCheckpoint(t, ctx, s, ns, pos(3), true)
	if mustApply(t, ctx, s, ns, pos(3), readmodel.Batch{}) {
		t.Fatal("empty batch at 3 again returned true")
	}
}

func testInvalidBatch(t *testing.T, ctx context.Context, s readmodel.Store) {
	ns := newGen(t, ctx, s, "clients", "g1")
	build := func(last func(b *readmodel.Batch)) readmodel.Batch {
		var b readmodel.Batch
		for i := range 500 {
			b.Put(fmt.Sprintf("k%d", i), []byte("v"))
			b.IndexAdd("idx", fmt.Sprintf("m%04d", i))
			b.Delete(fmt.Sprintf("gone%d", i))
		}
		last(&b)
		return b
	}
	bad := map[string]readmodel.Batch{
		"empty member":        build(func(b *readmodel.Batch) { b.IndexAdd("idx", "") }),
		"empty member remove": build(func(b *readmodel.Batch) { b.IndexRemove("idx", "") }),
		"empty key":           build(func(b *readmodel.Batch) { b.Put("", []byte("v")) }),
		"empty delete key":    build(func(b *readmodel.Batch) { b.Delete("") }),
		"empty index":         build(func(b *readmodel.Batch) { b.IndexAdd("", "m") }),
		"empty drop index":    build(func(b *readmodel.Batch) { b.DeleteIndex("") }),
		"too many ops": build(func(b *readmodel.Batch) {
			for b.Len() <= readmodel.MaxBatchOps {
				b.Delete("x")
			}
		}),
	}
	for name, b := range bad {
		ok, err := s.Apply(ctx, ns, pos(1), b)
		if !errors.Is(err, readmodel.ErrInvalid) || ok {
			t.Fatalf("%s: Apply = %v, %v; want false, ErrInvalid", name, ok, err)
		}
		n, err := s.ApplyMany(ctx, ns, []readmodel.Update{{Pos: pos(1)}, {Pos: pos(2), Batch: b}})
		if !errors.Is(err, readmodel.ErrInvalid) || n != 0 {
			t.Fatalf("%s: ApplyMany = %d, %v; want 0, ErrInvalid", name, n, err)
		}
		wantValue(t, ctx, s, ns, "k0", nil)
		wantIndex(t, ctx, s, ns, "idx")
		wantCheckpoint(t, ctx, s, ns, eventstore.Start, true)
	}
	if c, ok := s.(KeyCounter); ok {
		n, err := c.CountKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Fatalf("after refused batches the store holds %d keys, want 1 (the checkpoint)", n)
		}
	}
}

// testAtomicForReaders applies batches that set two keys and an index member to the same
// generation number while readers check they never see two different generations.
func testAtomicForReaders(t *testing.T, ctx context.Context, s readmodel.Store) {
	ns := newGen(t, ctx, s, "clients", "g1")
	const rounds = 200
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for r := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				got, err := s.GetMany(ctx, ns, []string{"a", "b"})
				if err != nil {
					errs[r] = err
					return
				}
				if !bytes.Equal(got[0], got[1]) {
					errs[r] = fmt.Errorf("reader saw a=%q b=%q: half a batch", got[0], got[1])
					return
				}
			}
		}()
	}
	var applyErr error
	for i := 1; i <= rounds && applyErr == nil; i++ {
		var b readmodel.Batch
		v := []byte(fmt.Sprintf("%06d", i))
		b.Put("a", v)
		for j := range 20 {
			b.Put(fmt.Sprintf("filler%d", j), v)
		}
		b.Put("b", v)
		_, applyErr = s.Apply(ctx, ns, pos(uint64(i)), b)
	}
	close(stop)
	wg.Wait()
	if applyErr != nil {
		t.Fatal(applyErr)
	}
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	wantValue(t, ctx, s, ns, "b", []byte(fmt.Sprintf("%06d", rounds)))
}

func testRangePagination(t *testing.T, ctx context.Context, s readmodel.Store) {
	ns := newGen(t, ctx, s, "clients", "g1")
	members := []string{
		"a", "a\x00", "a\x00b", "a\x00\x00", "ab", "b", "\x01", "~", "\x7f",
		"é", "e\u0301", "日本\x00client:9", "日本語", "😀", "Zebra\x00z", "zebra\x00z",
		"name\x00id-1", "name\x00id-2", "name\x00id-10", "\xff\xfe",
	}
	for i := range 230 {
		members = append(members, fmt.Sprintf("user-%03d\x00%d", (i*37)%230, i))
	}
	var b readmodel.Batch
	for _, m := range members {
		b.IndexAdd("all", m)
	}
	b.IndexAdd("all", "a") // a duplicate is one member
	mustApply(t, ctx, s, ns, pos(1), b)

	want := slices.Clone(members)
	slices.Sort(want) // byte order, as ZRANGEBYLEX
	for _, page := range []int{1, 7, 100, len(want), len(want) + 1, 1000} {
		if got := rangeAll(t, ctx, s, ns, "all", page); !slices.Equal(got, want) {
			t.Fatalf("pages of %d: got %d members %q…, want %d", page, len(got), got[:min(len(got), 5)], len(want))
		}
	}
	// A cursor that is not a member starts after where it would sort.
	got, err := s.Range(ctx, ns, "all", "a\x00a", 3)
	if err != nil {
		t.Fatal(err)
	}
	if w := []string{"a\x00b", "ab", "b"}; !slices.Equal(got, w) {
		t.Fatalf("Range after %q = %q, want %q", "a\x00a", got, w)
	}
	// The cursor is exclusive.
	got, err = s.Range(ctx, ns, "all", "a", 2)
	if err != nil {
		t.Fatal(err)
	}
	if w := []string{"a\x00", "a\x00\x00"}; !slices.Equal(got, w) {
		t.Fatalf("Range after %q = %q, want %q", "a", got, w)
	}
	// Past the end, and an absent index.
	got, err = s.Range(ctx, ns, "all", "\xff\xff", 10)
	if err != nil || len(got) != 0 {
		t.Fatalf("Range past the end = %q, %v", got, err)
	}
	got, err = s.Range(ctx, ns, "none", "", 10)
	if err != nil || len(got) != 0 {
		t.Fatalf("Range of an absent index = %q, %v", got, err)
	}
	// A prefix scan: start just before the prefix, stop at the first member outside it.
	var named []string
	after := "name"
	for {
		page, err := s.Range(ctx, ns, "all", after, 2)
		if err != nil {
			t.Fatal(err)
		}
		done := len(page) < 2
		for _, m := range page {
			if !strings.HasPrefix(m, "name\x00") {
				done = true
				break
			}
			named = append(named, m)
		}
		if done {
			break
		}
		after = page[len(page)-1]
	}
	if w := []string{"name\x00id-1", "name\x00id-10", "name\x00id-2"}; !slices.Equal(named, w) {
		t.Fatalf("prefix scan = %q, want %q", named, w)
	}
}

func testRangeArguments(t *testing.T, ctx context.Context, s readmodel.Store) {
	ns := newGen(t, ctx, s, "clients", "g1")
	for _, limit := range []int{0, -1} {
		if _, err := s.Range(ctx, ns, "idx", "", limit); !errors.Is(err, readmodel.ErrInvalid) {
			t.Fatalf("Range with limit %d: %v, want ErrInvalid", limit, err)
		}
	}
	if _, err := s.Range(ctx, ns, "", "", 10); !errors.Is(err, readmodel.ErrInvalid) {
		t.Fatalf("Range of an empty index name: %v, want ErrInvalid", err)
	}
}

func testIndexRemoveAndDeleteIndex(t *testing.T, ctx context.Context, s readmodel.Store) {
	ns := newGen(t, ctx, s, "clients", "g1")
	var b readmodel.Batch
	for _, m := range []string{"m1", "m2", "m3"} {
		b.IndexAdd("i1", m)
		b.IndexAdd("i2", m)
	}
	b.Put("i1", []byte("a value named like an index"))
	mustApply(t, ctx, s, ns, pos(1), b)

	b.Reset()
	b.IndexRemove("i1", "m2")
	b.IndexRemove("i1", "absent")
	b.IndexRemove("absent-index", "m1")
	mustApply(t, ctx, s, ns, pos(2), b)
	wantIndex(t, ctx, s, ns, "i1", "m1", "m3")
	wantIndex(t, ctx, s, ns, "i2", "m1", "m2", "m3")

	b.Reset()
	b.DeleteIndex("i2")
	b.DeleteIndex("absent-index")
	mustApply(t, ctx, s, ns, pos(3), b)
	wantIndex(t, ctx, s, ns, "i2")
	wantIndex(t, ctx, s, ns, "i1", "m1", "m3")
	wantValue(t, ctx, s, ns, "i1", []byte("a value named like an index"))

	// Removing every member leaves an empty index; adding again works.
	b.Reset()
	b.IndexRemove("i1", "m1")
	b.IndexRemove("i1", "m3")
	b.IndexAdd("i2", "again")
	mustApply(t, ctx, s, ns, pos(4), b)
	wantIndex(t, ctx, s, ns, "i1")
	wantIndex(t, ctx, s, ns, "i2", "again")

	// Operations apply in order within a batch.
	b.Reset()
	b.IndexAdd("i3", "x")
	b.DeleteIndex("i3")
	b.IndexAdd("i3", "y")
	b.IndexAdd("i4", "z")
	b.IndexRemove("i4", "z")
	b.IndexAdd("i4", "z")
	mustApply(t, ctx, s, ns, pos(5), b)
	wantIndex(t, ctx, s, ns, "i3", "y")
	wantIndex(t, ctx, s, ns, "i4", "z")
}

func testDelete(t *testing.T, ctx context.Context, s readmodel.Store) {
	ns := newGen(t, ctx, s, "clients", "g1")
	var b readmodel.Batch
	b.Put("k1", []byte("v1"))
	b.Put("k2", []byte("v2"))
	b.IndexAdd("k1", "index named like a key")
	mustApply(t, ctx, s, ns, pos(1), b)

	b.Reset()
	b.Delete("k1")
	b.Delete("absent")
	mustApply(t, ctx, s, ns, pos(2), b)
	wantValue(t, ctx, s, ns, "k1", nil)
	wantValue(t, ctx, s, ns, "k2", []byte("v2"))
	wantIndex(t, ctx, s, ns, "k1", "index named like a key")

	b.Reset()
	b.Put("k3", []byte("v3"))
	b.Delete("k3")
	b.Delete("k2")
	b.Put("k2", []byte("back"))
	mustApply(t, ctx, s, ns, pos(3), b)
	wantValue(t, ctx, s, ns, "k3", nil)
	wantValue(t, ctx, s, ns, "k2", []byte("back"))
}

func testGetMany(t *testing.T, ctx context.Context, s readmodel.Store) {
	ns := newGen(t, ctx, s, "clients", "g1")
	var b readmodel.Batch
	b.Put("a", []byte("A"))
	b.Put("c", []byte("C"))
	b.Put("empty", []byte{})
	mustApply(t, ctx, s, ns, pos(1), b)

	got, err := s.GetMany(ctx, ns, []string{"c", "missing", "a", "empty", "a"})
	if err != nil {
		t.Fatal(err)
	}
	want := [][]byte{[]byte("C"), nil, []byte("A"), {}, []byte("A")}
	if len(got) != len(want) {
		t.Fatalf("GetMany returned %d values, want %d", len(got), len(want))
	}
	for i := range want {
		if (got[i] == nil) != (want[i] == nil) || !bytes.Equal(got[i], want[i]) {
			t.Fatalf("GetMany[%d] = %q (nil %v), want %q (nil %v)", i, got[i], got[i] == nil, want[i], want[i] == nil)
		}
	}
	got, err = s.GetMany(ctx, ns, nil)
	if err != nil || len(got) != 0 {
		t.Fatalf("GetMany of no keys = %q, %v", got, err)
	}
}

func testValuesNotShared(t *testing.T, ctx context.Context, s readmodel.Store) {
	ns := newGen(t, ctx, s, "clients", "g1")
	v := []byte("original")
	var b readmodel.Batch
	b.Put("k", v)
	mustApply(t, ctx, s, ns, pos(1), b)
	copy(v, "MUTATED!")
	wantValue(t, ctx, s, ns, "k", []byte("original"))
	got, _, err := s.Get(ctx, ns, "k")
	if err != nil {
		t.Fatal(err)
	}
	copy(got, "MUTATED!")
	many, err := s.GetMany(ctx, ns, []string{"k"})
	if err != nil {
		t.Fatal(err)
	}
	copy(many[0], "MUTATED!")
	wantValue(t, ctx, s, ns, "k", []byte("original"))
}

func testGenerationsIsolated(t *testing.T, ctx context.Context, s readmodel.Store) {
	g1 := newGen(t, ctx, s, "clients", "g1")
	g2 := newGen(t, ctx, s, "clients", "g2")
	g10 := newGen(t, ctx, s, "clients", "g10")
	other := newGen(t, ctx, s, "clients2", "g1")
	for i, ns := range []readmodel.Namespace{g1, g2, g10, other} {
		var b readmodel.Batch
		b.Put("k", []byte(ns.String()))
		b.IndexAdd("idx", ns.String())
		mustApply(t, ctx, s, ns, pos(uint64(10+i)), b)
	}
	for i, ns := range []readmodel.Namespace{g1, g2, g10, other} {
		wantValue(t, ctx, s, ns, "k", []byte(ns.String()))
		wantIndex(t, ctx, s, ns, "idx", ns.String())
		wantCheckpoint(t, ctx, s, ns, pos(uint64(10+i)), true)
	}
	// A position applied to g1 is not "old" for g2.
	var b readmodel.Batch
	b.Put("k", []byte("g1 later"))
	mustApply(t, ctx, s, g1, pos(100), b)
	b.Reset()
	b.Put("k2", []byte("g2 at 50"))
	if !mustApply(t, ctx, s, g2, pos(50), b) {
		t.Fatal("g2's checkpoint followed g1's")
	}
	wantValue(t, ctx, s, g2, "k", []byte(g2.String()))
	wantValue(t, ctx, s, g1, "k2", nil)
}

func testSetActive(t *testing.T, ctx context.Context, s readmodel.Store) {
	if gen, ok, err := s.Active(ctx, "clients"); err != nil || ok {
		t.Fatalf("Active on a new store = %q, %v, %v; want absent", gen, ok, err)
	}
	g1 := newGen(t, ctx, s, "clients", "g1")
	g2 := readmodel.Namespace{Model: "clients", Generation: "g2"}
	if err := s.SetActive(ctx, g2); !errors.Is(err, readmodel.ErrNoCheckpoint) {
		t.Fatalf("SetActive of an absent generation: %v, want ErrNoCheckpoint", err)
	}
	if gen, ok, err := s.Active(ctx, "clients"); err != nil || ok {
		t.Fatalf("Active after a refused switch = %q, %v, %v; want absent", gen, ok, err)
	}
	if err := s.SetActive(ctx, g1); err != nil {
		t.Fatal(err)
	}
	wantActive(t, ctx, s, "clients", "g1")
	newGen(t, ctx, s, "clients", "g2")
	if err := s.SetActive(ctx, g2); err != nil {
		t.Fatal(err)
	}
	wantActive(t, ctx, s, "clients", "g2")
	if gen, ok, err := s.Active(ctx, "keys"); err != nil || ok {
		t.Fatalf("Active of another model = %q, %v, %v; want absent", gen, ok, err)
	}
	// Switching back is allowed (a rollback).
	if err := s.SetActive(ctx, g1); err != nil {
		t.Fatal(err)
	}
	wantActive(t, ctx, s, "clients", "g1")
}

func testWithdraw(t *testing.T, ctx context.Context, s readmodel.Store) {
	g1 := newGen(t, ctx, s, "clients", "g1")
	g2 := newGen(t, ctx, s, "clients", "g2")
	k1 := newGen(t, ctx, s, "keys", "g1")
	mustApply(t, ctx, s, g1, pos(1), fencedBatch("v"))
	for _, ns := range []readmodel.Namespace{g1, k1} {
		if err := s.SetActive(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	// A generation that is not active: nothing changes.
	if err := s.Withdraw(ctx, g2); err != nil {
		t.Fatal(err)
	}
	wantActive(t, ctx, s, "clients", "g1")
	if err := s.Withdraw(ctx, g1); err != nil {
		t.Fatal(err)
	}
	if gen, ok, err := s.Active(ctx, "clients"); err != nil || ok {
		t.Fatalf("Active after Withdraw = %q, %v, %v; want absent", gen, ok, err)
	}
	// Another model's generation of the same name still serves; the data stay.
	wantActive(t, ctx, s, "keys", "g1")
	wantValue(t, ctx, s, g1, "k", []byte("v"))
	wantCheckpoint(t, ctx, s, g1, pos(1), true)
	if err := s.Withdraw(ctx, g1); err != nil {
		t.Fatalf("withdrawing again: %v", err)
	}
	if err := s.Withdraw(ctx, readmodel.Namespace{Model: "clients"}); !errors.Is(err, readmodel.ErrInvalid) {
		t.Fatalf("Withdraw of an invalid namespace: %v", err)
	}
	// Once withdrawn, the generation can be dropped and another made active.
	if err := s.DropGeneration(ctx, g1); err != nil {
		t.Fatal(err)
	}
	if err := s.SetActive(ctx, g2); err != nil {
		t.Fatal(err)
	}
	wantActive(t, ctx, s, "clients", "g2")
}

func wantActive(t *testing.T, ctx context.Context, s readmodel.Store, model, want string) {
	t.Helper()
	gen, ok, err := s.Active(ctx, model)
	if err != nil || !ok || gen != want {
		t.Fatalf("Active(%s) = %q, %v, %v; want %q", model, gen, ok, err, want)
	}
}

func countKeys(t *testing.T, ctx context.Context, s readmodel.Store) int {
	t.Helper()
	c, ok := s.(KeyCounter)
	if !ok {
		t.Fatalf("%T does not implement readmodeltest.KeyCounter", s)
	}
	n, err := c.CountKeys(ctx)
	if err != nil {
		t.Fatalf("CountKeys: %v", err)
	}
	return n
}

func fill(t *testing.T, ctx context.Context, s readmodel.Store, ns readmodel.Namespace, n int) {
	t.Helper()
	var b readmodel.Batch
	for i := range n {
		b.Put(fmt.Sprintf("key-%05d", i), []byte(ns.String()))
		if i%10 == 0 {
			b.IndexAdd(fmt.Sprintf("idx-%d", i%3), fmt.Sprintf("m%05d", i))
		}
	}
	mustApply(t, ctx, s, ns, pos(1), b)
}

func testDropGeneration(t *testing.T, ctx context.Context, s readmodel.Store) {
	start := countKeys(t, ctx, s)
	g1 := newGen(t, ctx, s, "clients", "g1")
	fill(t, ctx, s, g1, 2500)
	g10 := newGen(t, ctx, s, "clients", "g10") // g1 is a prefix of g10
	fill(t, ctx, s, g10, 10)
	other := newGen(t, ctx, s, "clients-x", "g2") // another model, same generation
	fill(t, ctx, s, other, 10)
	if err := s.SetActive(ctx, g1); err != nil {
		t.Fatal(err)
	}
	before := countKeys(t, ctx, s)
	// 2500 values, 3 indexes and a checkpoint per big generation; 10 values, 1 index and
	// a checkpoint per small one; one active pointer.
	if want := start + 2504 + 12 + 12 + 1; before != want {
		t.Fatalf("store holds %d keys, want %d", before, want)
	}

	g2 := newGen(t, ctx, s, "clients", "g2")
	fill(t, ctx, s, g2, 2500)
	if n := countKeys(t, ctx, s); n != before+2504 {
		t.Fatalf("after building g2 the store holds %d keys, want %d", n, before+2504)
	}
	if err := s.SetActive(ctx, g2); err != nil {
		t.Fatal(err)
	}
	if err := s.DropGeneration(ctx, g2); !errors.Is(err, readmodel.ErrGenerationActive) {
		t.Fatalf("DropGeneration of the active generation: %v, want ErrGenerationActive", err)
	}
	wantValue(t, ctx, s, g2, "key-00000", []byte(g2.String()))

	if err := s.DropGeneration(ctx, g1); err != nil {
		t.Fatal(err)
	}
	if n := countKeys(t, ctx, s); n != before {
		t.Fatalf("after dropping g1 the store holds %d keys, want %d", n, before)
	}
	wantValue(t, ctx, s, g1, "key-00000", nil)
	wantIndex(t, ctx, s, g1, "idx-0")
	wantCheckpoint(t, ctx, s, g1, eventstore.Start, false)
	var b readmodel.Batch
	b.Put("late", []byte("write"))
	if _, err := s.Apply(ctx, g1, pos(2), b); !errors.Is(err, readmodel.ErrNoCheckpoint) {
		t.Fatalf("Apply to a dropped generation: %v, want ErrNoCheckpoint", err)
	}
	if err := s.SetActive(ctx, g1); !errors.Is(err, readmodel.ErrNoCheckpoint) {
		t.Fatalf("SetActive of a dropped generation: %v, want ErrNoCheckpoint", err)
	}
	for _, ns := range []readmodel.Namespace{g2, g10, other} {
		wantValue(t, ctx, s, ns, "key-00009", []byte(ns.String()))
		if got, err := s.Range(ctx, ns, "idx-0", "", 1); err != nil || !slices.Equal(got, []string{"m00000"}) {
			t.Fatalf("Range(%s, idx-0) = %q, %v", ns, got, err)
		}
		wantCheckpoint(t, ctx, s, ns, pos(1), true)
	}
	wantActive(t, ctx, s, "clients", "g2")

	// Dropping again, or dropping what never existed, is not an error.
	if err := s.DropGeneration(ctx, g1); err != nil {
		t.Fatal(err)
	}
	if err := s.DropGeneration(ctx, readmodel.Namespace{Model: "nothing", Generation: "here"}); err != nil {
		t.Fatal(err)
	}
	if n := countKeys(t, ctx, s); n != before {
		t.Fatalf("after idle drops the store holds %d keys, want %d", n, before)
	}
	// A dropped generation can be built again from the start.
	newGen(t, ctx, s, "clients", "g1")
	wantCheckpoint(t, ctx, s, g1, eventstore.Start, true)
}

// testConcurrentSamePosition delivers each position from several goroutines at once; each
// must be applied exactly once. Errors are checked only after every goroutine finished.
func testConcurrentSamePosition(t *testing.T, ctx context.Context, s readmodel.Store) {
	ns := newGen(t, ctx, s, "clients", "g1")
	const (
		positions = 50
		writers   = 4
	)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		applied = make(map[uint64]int)
		errs    []error
	)
	for p := uint64(1); p <= positions; p++ {
		start := make(chan struct{})
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var b readmodel.Batch
				b.Put("last", []byte(fmt.Sprintf("%d by %d", p, w)))
				b.IndexAdd("seen", fmt.Sprintf("%03d", p))
				<-start
				ok, err := s.Apply(ctx, ns, pos(p), b)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
				}
				if ok {
					applied[p]++
				}
			}()
		}
		close(start)
		wg.Wait() // positions are delivered in order, each one by racing writers
	}
	if len(errs) > 0 {
		t.Fatalf("%d concurrent applies failed, first: %v", len(errs), errs[0])
	}
	for p := uint64(1); p <= positions; p++ {
		if applied[p] != 1 {
			t.Fatalf("position %d was applied %d times, want 1", p, applied[p])
		}
	}
	wantCheckpoint(t, ctx, s, ns, pos(positions), true)
	if got := rangeAll(t, ctx, s, ns, "seen", 1000); len(got) != positions {
		t.Fatalf("index holds %d members, want %d", len(got), positions)
	}

	// All at once, out of order: the checkpoint ends at the highest, nothing fails.
	var wg2 sync.WaitGroup
	errs2 := make([]error, 40)
	for i := range errs2 {
		wg2.Add(1)
		go func() {
			defer wg2.Done()
			var b readmodel.Batch
			b.Put("burst", []byte("x"))
			_, errs2[i] = s.Apply(ctx, ns, pos(uint64(positions+1+i)), b)
		}()
	}
	wg2.Wait()
	for _, err := range errs2 {
		if err != nil {
			t.Fatal(err)
		}
	}
	wantCheckpoint(t, ctx, s, ns, pos(uint64(positions+len(errs2))), true)
}

func testLargeBatch(t *testing.T, ctx context.Context, s readmodel.Store) {
	ns := newGen(t, ctx, s, "clients", "g1")
	var b readmodel.Batch
	value := bytes.Repeat([]byte("v"), 100)
	for i := range 5000 {
		b.Put(fmt.Sprintf("key-%05d", i), value)
		b.IndexAdd("all", fmt.Sprintf("member-%05d", i))
	}
	if b.Len() != 10_000 {
		t.Fatalf("batch has %d ops", b.Len())
	}
	if !mustApply(t, ctx, s, ns, pos(1), b) {
		t.Fatal("large batch not applied")
	}
	keys := make([]string, 5000)
	for i := range keys {
		keys[i] = fmt.Sprintf("key-%05d", i)
	}
	got, err := s.GetMany(ctx, ns, keys)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range got {
		if !bytes.Equal(v, value) {
			t.Fatalf("%s = %q", keys[i], v)
		}
	}
	if members := rangeAll(t, ctx, s, ns, "all", 999); len(members) != 5000 || members[4999] != "member-04999" {
		t.Fatalf("index holds %d members", len(members))
	}
	// The same batch again is skipped as a whole.
	if mustApply(t, ctx, s, ns, pos(1), b) {
		t.Fatal("large batch applied twice")
	}
	// Deleting everything in one batch.
	b.Reset()
	for _, k := range keys {
		b.Delete(k)
	}
	b.DeleteIndex("all")
	mustApply(t, ctx, s, ns, pos(2), b)
	wantValue(t, ctx, s, ns, "key-04999", nil)
	wantIndex(t, ctx, s, ns, "all")
}

func testApplyMany(t *testing.T, ctx context.Context, s readmodel.Store) {
	ns := newGen(t, ctx, s, "clients", "g1")
	var b readmodel.Batch
	b.Put("k", []byte("at 10"))
	mustApply(t, ctx, s, ns, pos(10), b)

	var updates []readmodel.Update
	for i := uint64(1); i <= 300; i++ {
		var b readmodel.Batch
		b.Put("k", []byte(fmt.Sprintf("at %d", i)))
		b.Put(fmt.Sprintf("e%03d", i), []byte("x"))
		b.IndexAdd("seen", fmt.Sprintf("%03d", i))
		updates = append(updates, readmodel.Update{Pos: pos(i), Batch: b})
	}
	n, err := s.ApplyMany(ctx, ns, updates)
	if err != nil {
		t.Fatal(err)
	}
	if n != 290 {
		t.Fatalf("ApplyMany applied %d updates, want 290 (10 at or below the checkpoint)", n)
	}
	wantCheckpoint(t, ctx, s, ns, pos(300), true)
	wantValue(t, ctx, s, ns, "k", []byte("at 300"))
	wantValue(t, ctx, s, ns, "e010", nil)
	wantValue(t, ctx, s, ns, "e011", []byte("x"))
	if got := rangeAll(t, ctx, s, ns, "seen", 1000); len(got) != 290 || got[0] != "011" {
		t.Fatalf("index holds %d members from %q", len(got), got[:1])
	}
	// Redelivery of the whole run applies nothing.
	n, err = s.ApplyMany(ctx, ns, updates)
	if err != nil || n != 0 {
		t.Fatalf("ApplyMany redelivered = %d, %v; want 0", n, err)
	}
	n, err = s.ApplyMany(ctx, ns, nil)
	if err != nil || n != 0 {
		t.Fatalf("ApplyMany of nothing = %d, %v", n, err)
	}
}

func testApplyManyDisorder(t *testing.T, ctx context.Context, s readmodel.Store) {
	ns := newGen(t, ctx, s, "clients", "g1")
	var b readmodel.Batch
	b.Put("k", []byte("v"))
	for _, run := range [][]eventstore.Position{
		{pos(1), pos(3), pos(2)},
		{pos(1), pos(1)},
		{{Commit: 2, Prepare: 2}, {Commit: 2, Prepare: 1}},
	} {
		var updates []readmodel.Update
		for _, p := range run {
			updates = append(updates, readmodel.Update{Pos: p, Batch: b})
		}
		if n, err := s.ApplyMany(ctx, ns, updates); !errors.Is(err, readmodel.ErrInvalid) || n != 0 {
			t.Fatalf("ApplyMany %v = %d, %v; want 0, ErrInvalid", run, n, err)
		}
	}
	wantValue(t, ctx, s, ns, "k", nil)
	wantCheckpoint(t, ctx, s, ns, eventstore.Start, true)
}

// testMergedBatches is the other rebuild shape: many events merged into one batch applied
// with the last event's position.
func testMergedBatches(t *testing.T, ctx context.Context, s readmodel.Store) {
	ns := newGen(t, ctx, s, "clients", "g1")
	var merged readmodel.Batch
	for i := range 100 {
		var b readmodel.Batch
		b.Put("counter", []byte(fmt.Sprint(i)))
		b.IndexAdd("events", fmt.Sprintf("%03d", i))
		if i%2 == 1 {
			b.IndexRemove("events", fmt.Sprintf("%03d", i-1))
		}
		merged.Append(b)
	}
	if merged.Len() != 250 {
		t.Fatalf("merged batch has %d ops, want 250", merged.Len())
	}
	mustApply(t, ctx, s, ns, pos(100), merged)
	wantValue(t, ctx, s, ns, "counter", []byte("99"))
	if got := rangeAll(t, ctx, s, ns, "events", 1000); len(got) != 50 || got[0] != "001" {
		t.Fatalf("events index = %d members from %q", len(got), got[:1])
	}
	ops := merged.Ops()
	if ops[0].Kind != readmodel.OpPut || ops[0].Key != "counter" || string(ops[0].Value) != "0" {
		t.Fatalf("first op = %+v", ops[0])
	}
}

func testInvalidNames(t *testing.T, ctx context.Context, s readmodel.Store) {
	bad := []readmodel.Namespace{
		{Model: "", Generation: "g1"},
		{Model: "clients", Generation: ""},
		{Model: "cli:ents", Generation: "g1"},
		{Model: "clients", Generation: "g:1"},
		{Model: "cli{ents}", Generation: "g1"},
		{Model: "clients", Generation: "g*"},
		{Model: "clients", Generation: "g?"},
		{Model: "clients", Generation: "g[1]"},
		{Model: "clients", Generation: "g 1"},
		{Model: "clients", Generation: "gé"},
		{Model: strings.Repeat("m", 65), Generation: "g1"},
	}
	var b readmodel.Batch
	b.Put("k", []byte("v"))
	for _, ns := range bad {
		if err := s.InitGeneration(ctx, ns); !errors.Is(err, readmodel.ErrInvalid) {
			t.Fatalf("InitGeneration(%q): %v, want ErrInvalid", ns, err)
		}
		if _, err := s.Apply(ctx, ns, pos(1), b); !errors.Is(err, readmodel.ErrInvalid) {
			t.Fatalf("Apply(%q): %v, want ErrInvalid", ns, err)
		}
		if _, _, err := s.Get(ctx, ns, "k"); !errors.Is(err, readmodel.ErrInvalid) {
			t.Fatalf("Get(%q): %v, want ErrInvalid", ns, err)
		}
		if _, _, err := s.Checkpoint(ctx, ns); !errors.Is(err, readmodel.ErrInvalid) {
			t.Fatalf("Checkpoint(%q): %v, want ErrInvalid", ns, err)
		}
		if err := s.SetActive(ctx, ns); !errors.Is(err, readmodel.ErrInvalid) {
			t.Fatalf("SetActive(%q): %v, want ErrInvalid", ns, err)
		}
		if err := s.DropGeneration(ctx, ns); !errors.Is(err, readmodel.ErrInvalid) {
			t.Fatalf("DropGeneration(%q): %v, want ErrInvalid", ns, err)
		}
	}
	if _, _, err := s.Active(ctx, "a*"); !errors.Is(err, readmodel.ErrInvalid) {
		t.Fatalf("Active(a*): %v, want ErrInvalid", err)
	}
	for _, model := range []string{"", "a*", "cli:ents", "cli{ents}", "c[l]", strings.Repeat("m", 65)} {
		if _, err := s.Generations(ctx, model); !errors.Is(err, readmodel.ErrInvalid) {
			t.Fatalf("Generations(%q): %v, want ErrInvalid", model, err)
		}
	}
	ok := readmodel.Namespace{Model: "Voucher_entries.v2", Generation: "v2-20260101T000000-abc"}
	if err := s.InitGeneration(ctx, ok); err != nil {
		t.Fatalf("InitGeneration(%s): %v", ok, err)
	}
}

func wantGenerations(t *testing.T, ctx context.Context, s readmodel.Store, model string, want ...string) {
	t.Helper()
	got, err := s.Generations(ctx, model)
	if err != nil {
		t.Fatalf("Generations(%s): %v", model, err)
	}
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Generations(%s) = %q, want %q", model, got, want)
	}
}

func testGenerations(t *testing.T, ctx context.Context, s readmodel.Store) {
	wantGenerations(t, ctx, s, "clients")
	var g1, g2 readmodel.Namespace
	for _, gen := range []string{"g2", "v2.0-rebuild_1", "g10", "g1"} {
		ns := newGen(t, ctx, s, "clients", gen)
		switch gen {
		case "g1":
			g1 = ns
		case "g2":
			g2 = ns
		}
	}
	newGen(t, ctx, s, "clients-x", "other") // a model whose name starts with another's
	newGen(t, ctx, s, "client", "other")    // a model whose name is a prefix of another's
	// Keys and indexes that end like a checkpoint do not make generations.
	var b readmodel.Batch
	for _, k := range []string{"@cp", "x:@cp", "g3:@cp", ":@cp", "g1:@cp"} {
		b.Put(k, []byte("v"))
		b.IndexAdd(k, "m")
	}
	mustApply(t, ctx, s, g1, pos(1), b)
	wantGenerations(t, ctx, s, "clients", "g1", "g10", "g2", "v2.0-rebuild_1")
	wantGenerations(t, ctx, s, "clients-x", "other")
	wantGenerations(t, ctx, s, "client", "other")
	wantGenerations(t, ctx, s, "nothing")

	if err := s.SetActive(ctx, g1); err != nil {
		t.Fatal(err)
	}
	if err := s.DropGeneration(ctx, g2); err != nil {
		t.Fatal(err)
	}
	wantGenerations(t, ctx, s, "clients", "g1", "g10", "v2.0-rebuild_1")
	for _, gen := range []string{"g10", "v2.0-rebuild_1"} {
		if err := s.DropGeneration(ctx, readmodel.Namespace{Model: "clients", Generation: gen}); err != nil {
			t.Fatal(err)
		}
	}
	wantGenerations(t, ctx, s, "clients", "g1")
	wantGenerations(t, ctx, s, "clients-x", "other")
}

// fenced returns s fenced for model with token.
func fenced(t *testing.T, s readmodel.Store, model string, token uint64) readmodel.Store {
	t.Helper()
	f, err := readmodel.Fenced(s, model, token)
	if err != nil {
		t.Fatalf("Fenced(%s, %d): %v", model, token, err)
	}
	return f
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: %v, want %v", what, err, want)
	}
}

// fencedBatch puts v under "k" and adds it to index "idx".
func fencedBatch(v string) readmodel.Batch {
	var b readmodel.Batch
	b.Put("k", []byte(v))
	b.IndexAdd("idx", v)
	return b
}

func testFencedRefusesLowerToken(t *testing.T, ctx context.Context, s readmodel.Store) {
	g1 := newGen(t, ctx, s, "clients", "g1")
	g2 := newGen(t, ctx, s, "clients", "g2")
	g3 := readmodel.Namespace{Model: "clients", Generation: "g3"}
	if err := s.SetActive(ctx, g1); err != nil {
		t.Fatal(err)
	}
	lo, hi := fenced(t, s, "clients", 5), fenced(t, s, "clients", 7)

	// Nothing recorded yet: any token passes, and each records itself.
	if ok, err := lo.Apply(ctx, g1, pos(2), fencedBatch("lo")); err != nil || !ok {
		t.Fatalf("first fenced Apply = %v, %v", ok, err)
	}
	if ok, err := hi.Apply(ctx, g1, pos(3), fencedBatch("hi")); err != nil || !ok {
		t.Fatalf("Apply with a greater token = %v, %v", ok, err)
	}

	// 7 is recorded: every write with 5 is refused and writes nothing.
	wantErr(t, "stale InitGeneration", lo.InitGeneration(ctx, g3), readmodel.ErrFenced)
	wantCheckpoint(t, ctx, s, g3, eventstore.Start, false)
	ok, err := lo.Apply(ctx, g1, pos(4), fencedBatch("stale"))
	wantErr(t, "stale Apply", err, readmodel.ErrFenced)
	if ok {
		t.Fatal("stale Apply returned true")
	}
	// Even at a position the checkpoint has passed: a stale writer must learn it lost the
	// lease, not that it is redelivering.
	ok, err = lo.Apply(ctx, g1, pos(1), fencedBatch("stale"))
	wantErr(t, "stale Apply of an old position", err, readmodel.ErrFenced)
	if ok {
		t.Fatal("stale Apply of an old position returned true")
	}
	var updates []readmodel.Update
	for i := uint64(4); i <= 303; i++ { // several script calls on Redis
		updates = append(updates, readmodel.Update{Pos: pos(i), Batch: fencedBatch(fmt.Sprintf("u%03d", i))})
	}
	n, err := lo.ApplyMany(ctx, g1, updates)
	wantErr(t, "stale ApplyMany", err, readmodel.ErrFenced)
	if n != 0 {
		t.Fatalf("stale ApplyMany applied %d updates", n)
	}
	wantValue(t, ctx, s, g1, "k", []byte("hi"))
	wantIndex(t, ctx, s, g1, "idx", "hi", "lo")
	wantCheckpoint(t, ctx, s, g1, pos(3), true)
	wantErr(t, "stale SetActive", lo.SetActive(ctx, g2), readmodel.ErrFenced)
	wantActive(t, ctx, s, "clients", "g1")
	wantErr(t, "stale Withdraw", lo.Withdraw(ctx, g1), readmodel.ErrFenced)
	wantActive(t, ctx, s, "clients", "g1")
	wantErr(t, "stale DropGeneration", lo.DropGeneration(ctx, g2), readmodel.ErrFenced)
	wantCheckpoint(t, ctx, s, g2, eventstore.Start, true)

	// A stale store still reads, unfenced.
	if v, found, err := lo.Get(ctx, g1, "k"); err != nil || !found || string(v) != "hi" {
		t.Fatalf("Get through a stale store = %q, %v, %v", v, found, err)
	}
	if vs, err := lo.GetMany(ctx, g1, []string{"k"}); err != nil || len(vs) != 1 || string(vs[0]) != "hi" {
		t.Fatalf("GetMany through a stale store = %q, %v", vs, err)
	}
	if got, err := lo.Range(ctx, g1, "idx", "", 10); err != nil || !slices.Equal(got, []string{"hi", "lo"}) {
		t.Fatalf("Range through a stale store = %q, %v", got, err)
	}
	wantCheckpoint(t, ctx, lo, g1, pos(3), true)
	wantActive(t, ctx, lo, "clients", "g1")
	wantGenerations(t, ctx, lo, "clients", "g1", "g2")

	// An equal token passes: the same holder, through this handle or another.
	same := fenced(t, s, "clients", 7)
	if ok, err := same.Apply(ctx, g1, pos(4), fencedBatch("same")); err != nil || !ok {
		t.Fatalf("Apply with an equal token = %v, %v", ok, err)
	}
	if n, err := hi.ApplyMany(ctx, g1, updates); err != nil || n != len(updates)-1 {
		t.Fatalf("ApplyMany with an equal token = %d, %v; want %d", n, err, len(updates)-1)
	}
	wantCheckpoint(t, ctx, s, g1, pos(303), true)
	wantValue(t, ctx, s, g1, "k", []byte("u303"))
	if err := hi.InitGeneration(ctx, g3); err != nil {
		t.Fatal(err)
	}
	if err := hi.SetActive(ctx, g3); err != nil {
		t.Fatal(err)
	}
	if err := hi.DropGeneration(ctx, g1); err != nil {
		t.Fatal(err)
	}
	wantActive(t, ctx, s, "clients", "g3")
	wantCheckpoint(t, ctx, s, g1, eventstore.Start, false)

	// A greater token takes over; tokens compare exactly, also above 2^53 where two
	// neighbours are the same double.
	if ok, err := fenced(t, s, "clients", 1<<53+1).Apply(ctx, g3, pos(1), fencedBatch("2^53+1")); err != nil || !ok {
		t.Fatalf("Apply with token 2^53+1 = %v, %v", ok, err)
	}
	_, err = hi.Apply(ctx, g3, pos(2), fencedBatch("stale"))
	wantErr(t, "Apply with the overtaken token", err, readmodel.ErrFenced)
	_, err = fenced(t, s, "clients", 1<<53).Apply(ctx, g3, pos(2), fencedBatch("stale"))
	wantErr(t, "Apply with token 2^53 after 2^53+1", err, readmodel.ErrFenced)
	if ok, err := fenced(t, s, "clients", math.MaxUint64).Apply(ctx, g3, pos(2), fencedBatch("max")); err != nil || !ok {
		t.Fatalf("Apply with token 2^64-1 = %v, %v", ok, err)
	}
	_, err = fenced(t, s, "clients", math.MaxUint64-1).Apply(ctx, g3, pos(3), fencedBatch("stale"))
	wantErr(t, "Apply with token 2^64-2 after 2^64-1", err, readmodel.ErrFenced)
	wantValue(t, ctx, s, g3, "k", []byte("max"))
	wantCheckpoint(t, ctx, s, g3, pos(2), true)
}

func testFenceBelongsToModel(t *testing.T, ctx context.Context, s readmodel.Store) {
	g1 := readmodel.Namespace{Model: "clients", Generation: "g1"}
	g2 := readmodel.Namespace{Model: "clients", Generation: "g2"}
	lo, hi := fenced(t, s, "clients", 5), fenced(t, s, "clients", 7)
	start := countKeys(t, ctx, s)
	if err := hi.InitGeneration(ctx, g1); err != nil {
		t.Fatal(err)
	}
	if n := countKeys(t, ctx, s); n != start+2 {
		t.Fatalf("after a fenced InitGeneration the store holds %d keys, want %d (a checkpoint and a fence)", n, start+2)
	}
	if err := hi.InitGeneration(ctx, g2); err != nil {
		t.Fatal(err)
	}
	if err := hi.SetActive(ctx, g2); err != nil {
		t.Fatal(err)
	}

	// The fence survives drops, fenced or not: it belongs to the model.
	if err := hi.DropGeneration(ctx, g1); err != nil {
		t.Fatal(err)
	}
	g4 := newGen(t, ctx, s, "clients", "g4")
	if err := s.DropGeneration(ctx, g4); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "stale InitGeneration after drops", lo.InitGeneration(ctx, g1), readmodel.ErrFenced)
	wantCheckpoint(t, ctx, s, g1, eventstore.Start, false)
	_, err := lo.Apply(ctx, g2, pos(1), fencedBatch("stale"))
	wantErr(t, "stale Apply after drops", err, readmodel.ErrFenced)

	// Fences are per model: a lower token for another model passes, and leaves clients'
	// fence alone.
	other := readmodel.Namespace{Model: "clients-x", Generation: "g1"}
	o := fenced(t, s, "clients-x", 1)
	if err := o.InitGeneration(ctx, other); err != nil {
		t.Fatalf("InitGeneration of another model with a lower token: %v", err)
	}
	if ok, err := o.Apply(ctx, other, pos(1), fencedBatch("other")); err != nil || !ok {
		t.Fatalf("Apply to another model with a lower token = %v, %v", ok, err)
	}
	_, err = lo.Apply(ctx, g2, pos(1), fencedBatch("stale"))
	wantErr(t, "stale Apply after another model's write", err, readmodel.ErrFenced)

	// The plain store neither checks nor records tokens (single-process deployments and
	// tests): its writes pass, and afterwards the recorded token still does.
	g5 := readmodel.Namespace{Model: "clients", Generation: "g5"}
	if err := s.InitGeneration(ctx, g5); err != nil {
		t.Fatalf("plain InitGeneration under a fence: %v", err)
	}
	if ok, err := s.Apply(ctx, g5, pos(1), fencedBatch("plain")); err != nil || !ok {
		t.Fatalf("plain Apply under a fence = %v, %v", ok, err)
	}
	if n, err := s.ApplyMany(ctx, g5, []readmodel.Update{{Pos: pos(2), Batch: fencedBatch("plain 2")}}); err != nil || n != 1 {
		t.Fatalf("plain ApplyMany under a fence = %d, %v", n, err)
	}
	if err := s.SetActive(ctx, g5); err != nil {
		t.Fatalf("plain SetActive under a fence: %v", err)
	}
	if err := s.DropGeneration(ctx, g2); err != nil {
		t.Fatalf("plain DropGeneration under a fence: %v", err)
	}
	if ok, err := hi.Apply(ctx, g5, pos(3), fencedBatch("hi")); err != nil || !ok {
		t.Fatalf("fenced Apply after plain writes = %v, %v", ok, err)
	}
	_, err = lo.Apply(ctx, g5, pos(4), fencedBatch("stale"))
	wantErr(t, "stale Apply after plain writes", err, readmodel.ErrFenced)

	// A fenced write refused for another reason records nothing: the greater token's
	// failures leave hi in charge.
	top := fenced(t, s, "clients", 9)
	missing := readmodel.Namespace{Model: "clients", Generation: "missing"}
	_, err = top.Apply(ctx, missing, pos(9), fencedBatch("top"))
	wantErr(t, "Apply without checkpoint", err, readmodel.ErrNoCheckpoint)
	_, err = top.ApplyMany(ctx, missing, []readmodel.Update{{Pos: pos(9), Batch: fencedBatch("top")}})
	wantErr(t, "ApplyMany without checkpoint", err, readmodel.ErrNoCheckpoint)
	wantErr(t, "SetActive without checkpoint", top.SetActive(ctx, missing), readmodel.ErrNoCheckpoint)
	wantErr(t, "DropGeneration of the active generation", top.DropGeneration(ctx, g5), readmodel.ErrGenerationActive)
	var bad readmodel.Batch
	bad.Put("", []byte("v"))
	_, err = top.Apply(ctx, g5, pos(9), bad)
	wantErr(t, "Apply of an invalid batch", err, readmodel.ErrInvalid)
	if ok, err := hi.Apply(ctx, g5, pos(4), fencedBatch("hi 4")); err != nil || !ok {
		t.Fatalf("Apply after a greater token's refused writes = %v, %v", ok, err)
	}
	wantValue(t, ctx, s, g5, "k", []byte("hi 4"))
}

// wrappedStore is a Store that Fenced does not know.
type wrappedStore struct{ readmodel.Store }

func testFencedServesOneModel(t *testing.T, ctx context.Context, s readmodel.Store) {
	keys := newGen(t, ctx, s, "keys", "g1")
	keys2 := readmodel.Namespace{Model: "keys", Generation: "g2"}
	mustApply(t, ctx, s, keys, pos(1), fencedBatch("v"))
	f := fenced(t, s, "clients", 5)
	wantErr(t, "InitGeneration of another model", f.InitGeneration(ctx, keys2), readmodel.ErrInvalid)
	_, err := f.Apply(ctx, keys, pos(2), fencedBatch("other"))
	wantErr(t, "Apply to another model", err, readmodel.ErrInvalid)
	_, err = f.ApplyMany(ctx, keys, []readmodel.Update{{Pos: pos(2), Batch: fencedBatch("other")}})
	wantErr(t, "ApplyMany to another model", err, readmodel.ErrInvalid)
	wantErr(t, "SetActive of another model", f.SetActive(ctx, keys), readmodel.ErrInvalid)
	wantErr(t, "DropGeneration of another model", f.DropGeneration(ctx, keys), readmodel.ErrInvalid)
	wantValue(t, ctx, s, keys, "k", []byte("v"))
	wantCheckpoint(t, ctx, s, keys, pos(1), true)
	wantCheckpoint(t, ctx, s, keys2, eventstore.Start, false)
	if gen, ok, err := s.Active(ctx, "keys"); err != nil || ok {
		t.Fatalf("Active(keys) after a refused switch = %q, %v, %v", gen, ok, err)
	}
	// The refused writes recorded no token, for either model.
	if ok, err := fenced(t, s, "keys", 1).Apply(ctx, keys, pos(2), fencedBatch("w")); err != nil || !ok {
		t.Fatalf("Apply with token 1 after refused writes = %v, %v", ok, err)
	}
	if err := fenced(t, s, "clients", 1).InitGeneration(ctx, readmodel.Namespace{Model: "clients", Generation: "g1"}); err != nil {
		t.Fatalf("InitGeneration with token 1 after refused writes: %v", err)
	}

	// Invalid namespaces are refused as by the plain store.
	var b readmodel.Batch
	b.Put("k", []byte("v"))
	for _, ns := range []readmodel.Namespace{
		{Model: "clients", Generation: "g*"},
		{Model: "clients", Generation: ""},
		{Model: "", Generation: "g1"},
	} {
		wantErr(t, fmt.Sprintf("fenced InitGeneration(%q)", ns), f.InitGeneration(ctx, ns), readmodel.ErrInvalid)
		_, err := f.Apply(ctx, ns, pos(1), b)
		wantErr(t, fmt.Sprintf("fenced Apply(%q)", ns), err, readmodel.ErrInvalid)
		_, _, err = f.Get(ctx, ns, "k")
		wantErr(t, fmt.Sprintf("fenced Get(%q)", ns), err, readmodel.ErrInvalid)
	}

	// Reads pass through for any model.
	wantValue(t, ctx, f, keys, "k", []byte("w"))
	wantGenerations(t, ctx, f, "keys", "g1")
	if err := s.SetActive(ctx, keys); err != nil {
		t.Fatal(err)
	}
	wantActive(t, ctx, f, "keys", "g1")

	// Fenced refuses a bad model, token 0, and a store it cannot fence, a fenced one
	// included.
	for name, fn := range map[string]func() (readmodel.Store, error){
		"bad model":     func() (readmodel.Store, error) { return readmodel.Fenced(s, "a*", 1) },
		"empty model":   func() (readmodel.Store, error) { return readmodel.Fenced(s, "", 1) },
		"token 0":       func() (readmodel.Store, error) { return readmodel.Fenced(s, "clients", 0) },
		"fenced store":  func() (readmodel.Store, error) { return readmodel.Fenced(f, "clients", 6) },
		"fenced, other": func() (readmodel.Store, error) { return readmodel.Fenced(f, "keys", 6) },
		"unknown store": func() (readmodel.Store, error) { return readmodel.Fenced(wrappedStore{s}, "clients", 6) },
		"nil store":     func() (readmodel.Store, error) { return readmodel.Fenced(nil, "clients", 6) },
	} {
		got, err := fn()
		wantErr(t, "Fenced with a "+name, err, readmodel.ErrInvalid)
		if got != nil {
			t.Fatalf("Fenced with a %s returned a store", name)
		}
	}
}
