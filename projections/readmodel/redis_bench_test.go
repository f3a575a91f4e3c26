package readmodel_test

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/projections/readmodel"
)

// voucherEntry is about the size of a voucher-path entry: a public key in JWK form with
// the client's, purpose's and e-service's state.
var voucherEntry = bytes.Repeat([]byte("x"), 600)

// BenchmarkRedisGetParallel16 measures the voucher path's lookup: one GET of a ~600-byte
// entry, from 16 goroutines (GOMAXPROCS × parallelism, rounded up). Target ≥ 40,000
// lookups/s against a local Redis.
func BenchmarkRedisGetParallel16(b *testing.B) {
	ctx := context.Background()
	s, _, _ := newRedisStore(b)
	ns := readmodel.Namespace{Model: "vouchers", Generation: "bench"}
	if err := s.InitGeneration(ctx, ns); err != nil {
		b.Fatal(err)
	}
	const entries = 10_000
	var batch readmodel.Batch
	keys := make([]string, entries)
	for i := range entries {
		keys[i] = fmt.Sprintf("client-%05d:kid-%05d:purpose-1", i, i)
		batch.Put(keys[i], voucherEntry)
	}
	if _, err := s.Apply(ctx, ns, eventstore.Position{Commit: 1, Prepare: 1}, batch); err != nil {
		b.Fatal(err)
	}
	procs := runtime.GOMAXPROCS(0)
	b.SetParallelism((16 + procs - 1) / procs)
	var next atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1) % entries
			v, ok, err := s.Get(ctx, ns, keys[i])
			if err != nil || !ok || len(v) != len(voucherEntry) {
				b.Errorf("Get: %d bytes, %v, %v", len(v), ok, err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
}

// benchEvent is one projected event as a rebuild of the voucher read model writes it: the
// entry, and its membership of a list.
func benchEvent(i int) readmodel.Batch {
	var b readmodel.Batch
	b.Put(fmt.Sprintf("client-%07d:kid-%07d:purpose-1", i%100_000, i), voucherEntry)
	b.IndexAdd(fmt.Sprintf("client-keys:%d", i%100_000), fmt.Sprintf("kid-%07d", i))
	return b
}

// BenchmarkRedisApplyPipelined measures a rebuild: events applied with ApplyMany, 512 per
// pipeline, each event its own atomic checkpointed step. Target ≥ 50,000 events/s.
func BenchmarkRedisApplyPipelined(b *testing.B) {
	benchApply(b, 512, func(ctx context.Context, s *readmodel.Redis, ns readmodel.Namespace, first int, n int) error {
		updates := make([]readmodel.Update, n)
		for j := range n {
			updates[j] = readmodel.Update{Pos: eventstore.Position{Commit: uint64(first + j), Prepare: uint64(first + j)}, Batch: benchEvent(first + j)}
		}
		applied, err := s.ApplyMany(ctx, ns, updates)
		if err == nil && applied != n {
			err = fmt.Errorf("applied %d of %d", applied, n)
		}
		return err
	})
}

// BenchmarkRedisApplyMerged measures the other rebuild shape: 512 events merged into one
// batch applied with the last event's position.
func BenchmarkRedisApplyMerged(b *testing.B) {
	benchApply(b, 512, func(ctx context.Context, s *readmodel.Redis, ns readmodel.Namespace, first int, n int) error {
		var merged readmodel.Batch
		for j := range n {
			merged.Append(benchEvent(first + j))
		}
		last := uint64(first + n - 1)
		ok, err := s.Apply(ctx, ns, eventstore.Position{Commit: last, Prepare: last}, merged)
		if err == nil && !ok {
			err = fmt.Errorf("merged batch at %d not applied", last)
		}
		return err
	})
}

// BenchmarkRedisApplyOne measures live projection: one event, one round trip.
func BenchmarkRedisApplyOne(b *testing.B) {
	benchApply(b, 1, func(ctx context.Context, s *readmodel.Redis, ns readmodel.Namespace, first int, _ int) error {
		_, err := s.Apply(ctx, ns, eventstore.Position{Commit: uint64(first), Prepare: uint64(first)}, benchEvent(first))
		return err
	})
}

func benchApply(b *testing.B, per int, apply func(ctx context.Context, s *readmodel.Redis, ns readmodel.Namespace, first, n int) error) {
	ctx := context.Background()
	s, _, _ := newRedisStore(b)
	ns := readmodel.Namespace{Model: "vouchers", Generation: "bench"}
	if err := s.InitGeneration(ctx, ns); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for first := 1; first <= b.N; first += per {
		n := min(per, b.N-first+1)
		if err := apply(ctx, s, ns, first, n); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
