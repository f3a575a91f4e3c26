package esdb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/eventstore/esdb/esdbtest"
	"github.com/keyledger/keyledger/eventstore/storetest"
)

// safetyLimit keeps a broken adapter from hanging the run; it is not a timing assertion.
const safetyLimit = 30 * time.Second

// fastDiscovery shortens the client's node discovery (10 × 100ms by default) for tests
// that take the node down.
const fastDiscovery = "&maxDiscoverAttempts=3&discoveryInterval=20"

// quietLogger discards the client's log lines; KEYLEDGER_ESDB_TEST_LOG=1 shows them.
func quietLogger() *slog.Logger {
	if os.Getenv("KEYLEDGER_ESDB_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), safetyLimit)
	t.Cleanup(cancel)
	return ctx
}

func newServer(t *testing.T) *esdbtest.Server {
	t.Helper()
	srv, err := esdbtest.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv
}

func openStore(t *testing.T, url string, opts ...Option) *Store {
	t.Helper()
	s, err := Open(ctxFor(t), url, append([]Option{WithLogger(quietLogger())}, opts...)...)
	if err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func event(n int) eventstore.EventData {
	d, _ := json.Marshal(map[string]int{"n": n})
	return eventstore.EventData{Type: "test.numbered.v1", Data: d, Meta: eventstore.Metadata{Tenant: "t1", AggregateID: fmt.Sprint(n)}}
}

func num(t *testing.T, e eventstore.RecordedEvent) int {
	t.Helper()
	var p struct{ N int }
	if err := json.Unmarshal(e.Data, &p); err != nil {
		t.Fatalf("event %s: %v", e.ID, err)
	}
	return p.N
}

func mustAppend(t *testing.T, s *Store, stream string, exp eventstore.ExpectedVersion, events ...eventstore.EventData) eventstore.AppendResult {
	t.Helper()
	res, err := s.Append(ctxFor(t), stream, exp, events...)
	if err != nil {
		t.Fatalf("append to %s: %v", stream, err)
	}
	return res
}

func mustNext(t *testing.T, sub eventstore.Subscription) eventstore.RecordedEvent {
	t.Helper()
	e, err := sub.Next(ctxFor(t))
	if err != nil {
		t.Fatalf("next: %v", err)
	}
	return e
}

func TestConformance(t *testing.T) {
	t.Run("fake-node", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) eventstore.Store {
			return openStore(t, newServer(t).URL())
		})
	})
	t.Run("real-node", func(t *testing.T) {
		url := os.Getenv("KEYLEDGER_ESDB_URL")
		if url == "" {
			t.Skip("KEYLEDGER_ESDB_URL is not set: the suite was NOT run against a real EventStoreDB node")
		}
		storetest.Run(t, func(t *testing.T) eventstore.Store { return openStore(t, url) })
	})
}

func TestSubscriptionResumesAfterDrop(t *testing.T) {
	srv := newServer(t)
	s := openStore(t, srv.URL(), WithResubscribe(50, time.Millisecond, 20*time.Millisecond))
	stream := "drop-1"
	sub, err := s.Subscribe(ctxFor(t), eventstore.Start, eventstore.Filter{StreamPrefixes: []string{"drop-"}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	for i := range 5 {
		mustAppend(t, s, stream, eventstore.Any, event(i))
	}
	for want := range 3 {
		if got := num(t, mustNext(t, sub)); got != want {
			t.Fatalf("before the drop: event %d, want %d", got, want)
		}
	}
	if n := srv.DropSubscriptions(); n != 1 {
		t.Fatalf("server dropped %d subscriptions, want 1", n)
	}
	for i := 5; i < 10; i++ {
		mustAppend(t, s, stream, eventstore.Any, event(i))
	}
	seen := map[string]bool{}
	for want := 3; want < 10; want++ {
		e := mustNext(t, sub)
		if got := num(t, e); got != want {
			t.Fatalf("after the drop: event %d, want %d (lost or duplicated)", got, want)
		}
		if seen[e.ID] {
			t.Fatalf("event %s delivered twice", e.ID)
		}
		seen[e.ID] = true
	}
	// Nothing extra is queued between the last event and a new one.
	mustAppend(t, s, stream, eventstore.Any, event(100))
	if got := num(t, mustNext(t, sub)); got != 100 {
		t.Fatalf("after the drop the next event is %d, want 100", got)
	}
	if n := srv.Subscriptions(); n < 2 {
		t.Fatalf("server saw %d subscriptions: the adapter did not resubscribe", n)
	}
}

func TestServerRestartRebuildsClient(t *testing.T) {
	srv := newServer(t)
	s := openStore(t, srv.URL()+fastDiscovery, WithResubscribe(10000, time.Millisecond, 50*time.Millisecond))
	stream := "restart-1"
	sub, err := s.Subscribe(ctxFor(t), eventstore.Start, eventstore.Filter{StreamPrefixes: []string{"restart-"}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	mustAppend(t, s, stream, eventstore.NoStream, event(0))
	if got := num(t, mustNext(t, sub)); got != 0 {
		t.Fatalf("first event %d", got)
	}

	srv.Stop()
	_, err = s.Append(ctxFor(t), stream, eventstore.Exact(0), event(1))
	if !errors.Is(err, eventstore.ErrUnavailable) {
		t.Fatalf("append while the node is down: %v, want ErrUnavailable", err)
	}
	if g := s.generation(); g == 0 {
		t.Fatal("the client closed for good while the node was down, but was not rebuilt")
	}
	if err := s.Ping(ctxFor(t)); !errors.Is(err, eventstore.ErrUnavailable) {
		t.Fatalf("ping while the node is down: %v, want ErrUnavailable", err)
	}

	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	res, err := s.Append(ctxFor(t), stream, eventstore.Exact(0), event(1))
	if err != nil {
		t.Fatalf("append after the node came back: %v", err)
	}
	if res.Version != 1 {
		t.Fatalf("append after restart: version %d, want 1 (the failed append must not have been written)", res.Version)
	}
	if err := s.Ping(ctxFor(t)); err != nil {
		t.Fatalf("ping after restart: %v", err)
	}
	// The subscription survived: it resumes after event 0, without repeating it.
	if got := num(t, mustNext(t, sub)); got != 1 {
		t.Fatalf("subscription after restart delivered %d, want 1", got)
	}
	mustAppend(t, s, stream, eventstore.Exact(1), event(2))
	if got := num(t, mustNext(t, sub)); got != 2 {
		t.Fatalf("subscription after restart delivered %d, want 2", got)
	}
	got, err := s.ReadStream(ctxFor(t), stream, eventstore.Forwards, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("stream holds %d events after the restart, want 3", len(got))
	}
}

func TestReadFailureIsNotAShortRead(t *testing.T) {
	srv := newServer(t)
	s := openStore(t, srv.URL())
	stream := "long-1"
	for i := range 10 {
		mustAppend(t, s, stream, eventstore.Any, event(i))
	}
	cases := []struct {
		name string
		read func() ([]eventstore.RecordedEvent, error)
	}{
		{"stream forwards", func() ([]eventstore.RecordedEvent, error) {
			return s.ReadStream(ctxFor(t), stream, eventstore.Forwards, 0, 100)
		}},
		{"stream backwards", func() ([]eventstore.RecordedEvent, error) {
			return s.ReadStream(ctxFor(t), stream, eventstore.Backwards, eventstore.End, 100)
		}},
		{"all", func() ([]eventstore.RecordedEvent, error) {
			return s.ReadAll(ctxFor(t), eventstore.Start, 100)
		}},
	}
	for _, c := range cases {
		for _, after := range []int{0, 3} {
			srv.FailNextRead(after)
			got, err := c.read()
			if !errors.Is(err, eventstore.ErrUnavailable) {
				t.Errorf("%s failing after %d events: %d events, error %v; want ErrUnavailable", c.name, after, len(got), err)
			}
			if got != nil {
				t.Errorf("%s failing after %d events returned %d events with the error", c.name, after, len(got))
			}
		}
		// The store is still usable, and the data is whole.
		got, err := c.read()
		if err != nil || len(got) != 10 {
			t.Errorf("%s after the failures: %d events, %v; want 10", c.name, len(got), err)
		}
	}
}

func TestOpenUnreachable(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	_ = lis.Close()
	s, err := Open(ctxFor(t), "esdb://"+addr+"?tls=false", WithLogger(quietLogger()))
	if err == nil {
		_ = s.Close()
		t.Fatal("open of a closed port succeeded")
	}
	if !errors.Is(err, eventstore.ErrUnavailable) {
		t.Fatalf("open error %v does not wrap ErrUnavailable", err)
	}
	if !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("open error %q does not name the node and the cause", err)
	}
}

func TestOpenInvalidURL(t *testing.T) {
	_, err := Open(ctxFor(t), "esdb://user:secret@", WithLogger(quietLogger()))
	if err == nil {
		t.Fatal("open of an invalid connection string succeeded")
	}
	if errors.Is(err, eventstore.ErrUnavailable) {
		t.Fatalf("invalid connection string reported as unavailable: %v", err)
	}
	if strings.Contains(err.Error(), "secret") {
		t.Fatalf("error leaks the password: %v", err)
	}
}

func TestConcurrencyErrorDetail(t *testing.T) {
	s := openStore(t, newServer(t).URL())
	mustAppend(t, s, "cc-1", eventstore.NoStream, event(0), event(1))
	_, err := s.Append(ctxFor(t), "cc-1", eventstore.NoStream, event(2))
	var ce *eventstore.ConcurrencyError
	if !errors.As(err, &ce) || !ce.ActualKnown || ce.Actual != 1 || ce.NoStream {
		t.Fatalf("no-stream on a stream at 1: %#v (%v)", ce, err)
	}
	_, err = s.Append(ctxFor(t), "cc-2", eventstore.Exact(3), event(0))
	if !errors.As(err, &ce) || !ce.NoStream || ce.Stream != "cc-2" {
		t.Fatalf("exact on a missing stream: %#v (%v)", ce, err)
	}
}

func TestPositionsAndSystemEvents(t *testing.T) {
	s := openStore(t, newServer(t).URL())
	var results []eventstore.AppendResult
	for i := range 12 { // the fake node writes a system event after every fifth append
		results = append(results, mustAppend(t, s, fmt.Sprintf("pos-%d", i%3), eventstore.Any, event(2*i), event(2*i+1)))
	}
	all, err := s.ReadAll(ctxFor(t), eventstore.Start, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 24 {
		t.Fatalf("read all: %d events, want 24", len(all))
	}
	for i, e := range all {
		if strings.HasPrefix(e.Stream, "$") || strings.HasPrefix(e.Type, "$") {
			t.Fatalf("read all returned system event %s/%s", e.Stream, e.Type)
		}
		if num(t, e) != i {
			t.Fatalf("read all event %d carries %d", i, num(t, e))
		}
		if i%2 == 1 && e.Position != results[i/2].Position {
			t.Fatalf("append %d answered %s, its last event is at %s", i/2, results[i/2].Position, e.Position)
		}
		if e.Meta.AggregateID != fmt.Sprint(i) || e.Meta.Tenant != "t1" {
			t.Fatalf("event %d metadata %+v", i, e.Meta)
		}
	}
	got, err := s.ReadStream(ctxFor(t), "pos-0", eventstore.Forwards, 0, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range got {
		if !e.Position.IsZero() {
			t.Fatalf("stream read carries position %s; EventStoreDB gives none", e.Position)
		}
	}
	// Paging by one through the log gives the same events.
	pos := eventstore.Start
	for i := range 24 {
		page, err := s.ReadAll(ctxFor(t), pos, 1)
		if err != nil || len(page) != 1 || page[0].ID != all[i].ID {
			t.Fatalf("page %d after %s: %d events, %v", i, pos, len(page), err)
		}
		pos = page[0].Position
	}
	if rest, err := s.ReadAll(ctxFor(t), pos, 5); err != nil || len(rest) != 0 {
		t.Fatalf("read after the last event: %d events, %v", len(rest), err)
	}
}

func TestClosedStore(t *testing.T) {
	s := openStore(t, newServer(t).URL())
	sub, err := s.Subscribe(ctxFor(t), eventstore.Start, eventstore.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Next(ctxFor(t)); !errors.Is(err, eventstore.ErrClosed) {
		t.Fatalf("next after the store closed: %v", err)
	}
	if _, err := s.Append(ctxFor(t), "x", eventstore.Any, event(0)); !errors.Is(err, eventstore.ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
	if _, err := s.ReadStream(ctxFor(t), "x", eventstore.Forwards, 0, 1); !errors.Is(err, eventstore.ErrClosed) {
		t.Fatalf("read after close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

func TestSubscriptionGivesUpWhenNodeStaysDown(t *testing.T) {
	srv := newServer(t)
	s := openStore(t, srv.URL()+fastDiscovery, WithResubscribe(2, time.Millisecond, time.Millisecond))
	sub, err := s.Subscribe(ctxFor(t), eventstore.Start, eventstore.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	mustAppend(t, s, "down-1", eventstore.NoStream, event(0))
	if got := num(t, mustNext(t, sub)); got != 0 {
		t.Fatalf("first event %d", got)
	}
	srv.Stop()
	for range 2 { // the failure is sticky
		_, err := sub.Next(ctxFor(t))
		if !errors.Is(err, eventstore.ErrUnavailable) {
			t.Fatalf("next with the node gone: %v, want ErrUnavailable", err)
		}
	}
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Next(ctxFor(t)); !errors.Is(err, eventstore.ErrClosed) {
		t.Fatalf("next after close: %v, want ErrClosed", err)
	}
}

func TestSubscriptionHidesSystemEvents(t *testing.T) {
	s := openStore(t, newServer(t).URL())
	for i := range 12 { // the fake node writes a system event after every fifth append
		mustAppend(t, s, "sys-1", eventstore.Any, event(i))
	}
	sub, err := s.Subscribe(ctxFor(t), eventstore.Start, eventstore.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	for want := range 12 {
		e := mustNext(t, sub)
		if strings.HasPrefix(e.Stream, "$") || strings.HasPrefix(e.Type, "$") {
			t.Fatalf("subscription delivered system event %s/%s", e.Stream, e.Type)
		}
		if got := num(t, e); got != want {
			t.Fatalf("subscription event %d, want %d", got, want)
		}
	}
}

func TestSubscriptionEndsWithItsContext(t *testing.T) {
	s := openStore(t, newServer(t).URL())
	ctx, cancel := context.WithCancel(ctxFor(t))
	sub, err := s.Subscribe(ctx, eventstore.Start, eventstore.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	cancel()
	if _, err := sub.Next(ctxFor(t)); !errors.Is(err, context.Canceled) {
		t.Fatalf("next after Subscribe's context ended: %v, want context.Canceled", err)
	}
}
