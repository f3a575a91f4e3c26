package embedded

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/keyledger/keyledger/eventstore"
)

// Benchmarks use the default (durable) configuration. Run them with
//
//	go test -run '^$' -bench . -benchtime 3s ./eventstore/embedded/
//
// BenchmarkReadAll1M builds its 1,000,000-event fixture once per process; use
// -benchtime 3x or so for it, one iteration reads the whole log.

func benchEvent(i int) eventstore.EventData {
	data, _ := json.Marshal(map[string]any{
		"clientId": fmt.Sprintf("c-%08d", i),
		"kid":      "kid-2f9a1c0e7b6d4a3f",
		"use":      "sig",
		"alg":      "RS256",
		"name":     "production signing key",
		"at":       "2025-06-01T12:00:00Z",
	})
	return eventstore.EventData{
		Type: "client.key_uploaded.v1",
		Data: data,
		Meta: eventstore.Metadata{
			Tenant: "tenant-0001", ActorID: "user-42", ActorKind: eventstore.ActorUser,
			CorrelationID: "6f1b0a6e-0d0b-4d7a-9b57-7a7f3c2b8a11", CausationID: "0c8e5d1a-9f3b-4e62-8a4d-2b1c6e7f9a00",
			AggregateID: fmt.Sprintf("c-%08d", i), PrevHash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		},
	}
}

func benchEvents(from, n int) []eventstore.EventData {
	out := make([]eventstore.EventData, n)
	for i := range out {
		out[i] = benchEvent(from + i)
	}
	return out
}

func openBench(b *testing.B, opts ...Option) *Store {
	b.Helper()
	s, err := Open(context.Background(), b.TempDir(), opts...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

func reportEvents(b *testing.B, events int) {
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
}

func BenchmarkAppend1Writer(b *testing.B) {
	s := openBench(b)
	ctx := context.Background()
	tmpl := benchEvent(0)
	exp := eventstore.NoStream
	b.ResetTimer()
	for range b.N {
		res, err := s.Append(ctx, "client-bench", exp, tmpl)
		if err != nil {
			b.Fatal(err)
		}
		exp = eventstore.Exact(res.Version)
	}
	reportEvents(b, b.N)
}

func BenchmarkAppend16Writers(b *testing.B) {
	s := openBench(b)
	ctx := context.Background()
	tmpl := benchEvent(0)
	var next atomic.Int64
	b.SetParallelism(max(1, 16/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		stream := fmt.Sprintf("client-%d", next.Add(1))
		exp := eventstore.NoStream
		for pb.Next() {
			res, err := s.Append(ctx, stream, exp, tmpl)
			if err != nil {
				b.Error(err)
				return
			}
			exp = eventstore.Exact(res.Version)
		}
	})
	reportEvents(b, b.N)
}

func BenchmarkAppendBatch100(b *testing.B) {
	s := openBench(b)
	ctx := context.Background()
	tmpl := benchEvents(0, 100)
	batch := make([]eventstore.EventData, 100)
	exp := eventstore.NoStream
	b.ResetTimer()
	for range b.N {
		copy(batch, tmpl) // fresh ids each time, as a real caller's events have
		res, err := s.Append(ctx, "client-bench", exp, batch...)
		if err != nil {
			b.Fatal(err)
		}
		exp = eventstore.Exact(res.Version)
	}
	reportEvents(b, 100*b.N)
}

func BenchmarkReadStream10k(b *testing.B) {
	s := openBench(b)
	ctx := context.Background()
	// Another stream's events interleaved, so the stream is not one contiguous run.
	for i := range 10 {
		if _, err := s.Append(ctx, "client-read", eventstore.Any, benchEvents(i*1000, 1000)...); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Append(ctx, "client-other", eventstore.Any, benchEvents(i*1000, 1000)...); err != nil {
			b.Fatal(err)
		}
	}
	const page = 1000
	b.ResetTimer()
	for range b.N {
		n := 0
		for from := uint64(0); ; {
			evs, err := s.ReadStream(ctx, "client-read", eventstore.Forwards, from, page)
			if err != nil {
				b.Fatal(err)
			}
			n += len(evs)
			if len(evs) < page {
				break
			}
			from = evs[len(evs)-1].Version + 1
		}
		if n != 10_000 {
			b.Fatalf("read %d events, want 10000", n)
		}
	}
	reportEvents(b, 10_000*b.N)
}

const fixtureEvents = 1_000_000

var fixture struct {
	once sync.Once
	dir  string
	err  error
}

// fixtureDir builds the 1M-event store once per process, in large appends over many
// streams.
func fixtureDir(b *testing.B) string {
	fixture.once.Do(func() {
		dir, err := os.MkdirTemp("", "keyledger-bench-*")
		if err != nil {
			fixture.err = err
			return
		}
		fixture.dir = dir
		s, err := Open(context.Background(), dir)
		if err != nil {
			fixture.err = err
			return
		}
		defer s.Close()
		const per = 1000
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < fixtureEvents/per; i += 4 {
					if _, err := s.Append(context.Background(), fmt.Sprintf("client-%d", i), eventstore.NoStream, benchEvents(i*per, per)...); err != nil {
						errs[w] = err
						return
					}
				}
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				fixture.err = err
			}
		}
	})
	if fixture.err != nil {
		b.Fatalf("build fixture: %v", fixture.err)
	}
	return fixture.dir
}

func BenchmarkReadAll1M(b *testing.B) {
	dir := fixtureDir(b)
	s, err := Open(context.Background(), dir)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	const page = 1000
	b.ResetTimer()
	for range b.N {
		n := 0
		var pos eventstore.Position
		for {
			evs, err := s.ReadAll(ctx, pos, page)
			if err != nil {
				b.Fatal(err)
			}
			if len(evs) == 0 {
				break
			}
			n += len(evs)
			pos = evs[len(evs)-1].Position
		}
		if n != fixtureEvents {
			b.Fatalf("read %d events, want %d", n, fixtureEvents)
		}
	}
	reportEvents(b, fixtureEvents*b.N)
}

func TestMain(m *testing.M) {
	code := m.Run()
	if fixture.dir != "" {
		os.RemoveAll(fixture.dir)
	}
	os.Exit(code)
}
