package readmodel_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/projections/readmodel"
)

// BenchmarkMemoryGC1M measures what a million voucher-path entries in the in-process
// store cost every garbage collection: one full runtime.GC() with 1,000,000 ~600-byte
// entries and 1,000,000 index members held (the token endpoint's heap at 1M keys, in
// the small). It is why the store keeps its entries in byte arenas.
func BenchmarkMemoryGC1M(b *testing.B) {
	ctx := context.Background()
	s := readmodel.NewMemory()
	ns := readmodel.Namespace{Model: "vouchers", Generation: "bench"}
	if err := s.InitGeneration(ctx, ns); err != nil {
		b.Fatal(err)
	}
	const entries, perBatch = 1_000_000, 10_000
	for i := 0; i < entries; i += perBatch {
		var batch readmodel.Batch
		for j := i; j < i+perBatch; j++ {
			batch.Put(fmt.Sprintf("client-%07d:kid-%07d:purpose-1", j, j), voucherEntry)
			batch.IndexAdd(fmt.Sprintf("keys:client-%07d", j), fmt.Sprintf("kid-%07d", j))
		}
		if _, err := s.Apply(ctx, ns, eventstore.Position{Commit: uint64(i + 1), Prepare: uint64(i + 1)}, batch); err != nil {
			b.Fatal(err)
		}
	}
	runtime.GC()
	b.ResetTimer()
	for b.Loop() {
		runtime.GC()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "gc-ms")
	runtime.KeepAlive(s)
}
