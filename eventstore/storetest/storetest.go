// Package storetest is the conformance suite every eventstore.Store adapter must pass.
// Behaviour that this suite does not check is not part of the port's contract.
//
// The suite works both on a fresh store per case and on a shared, long-lived store (a real
// EventStoreDB node): every case writes only to streams under its own random prefix and
// reads the global log only after a marker event it wrote itself, ignoring events of
// other streams.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyledger/keyledger/eventstore"
)

// Open returns a store for one test case. It registers its own cleanup with t.Cleanup.
type Open func(t *testing.T) eventstore.Store

// Option tunes what the suite may assume of an adapter.
type Option func(*config)

type config struct {
	densePositions bool
}

// DensePositions declares that the adapter numbers positions 1, 2, 3, … with no gaps and
// Commit == Prepare, and that Open gives an empty store; the suite then checks that too.
func DensePositions() Option { return func(c *config) { c.densePositions = true } }

// waitLimit bounds every blocking call so that a broken adapter fails a case instead of
// hanging the run. It is a safety net, not a performance assertion.
const waitLimit = 20 * time.Second

// Run runs every case of the suite, each as its own subtest with its own store.
func Run(t *testing.T, open Open, opts ...Option) {
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	cases := []struct {
		name string
		fn   func(t *testing.T, s eventstore.Store, ns string, cfg config)
	}{
		{"RoundTrip", testRoundTrip},
		{"ExpectedVersionRules", testExpectedVersionRules},
		{"InvalidAppendWritesNothing", testInvalidAppend},
		{"ReadStreamDirectionsAndLimits", testReadStream},
		{"ReadStreamNotFound", testReadStreamNotFound},
		{"ConcurrentWritersOneStream", testConcurrentWritersOneStream},
		{"ParallelStreamsGapFreeOrder", testParallelStreams},
		{"ReadAllPagination", testReadAllPagination},
		{"SubscribeCatchUpThenLive", testSubscribeCatchUpThenLive},
		{"SubscribeFromMidPosition", testSubscribeFromMid},
		{"SubscribeFilterByPrefix", testSubscribeFilter},
		{"SubscribeCancellation", testSubscribeCancellation},
		{"SubscribeClose", testSubscribeClose},
		{"SubscribeContextEndsSubscription", testSubscribeContextEnds},
		{"NonPositiveLimitReadsDefaultPage", testNonPositiveLimit},
		{"ClosedStoreRefusesEverything", testClosedStore},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := open(t)
			ns := fmt.Sprintf("st%08x-", rand.Uint32())
			c.fn(t, s, ns, cfg)
		})
	}
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	t.Cleanup(cancel)
	return ctx
}

type payload struct {
	N    int    `json:"n"`
	Text string `json:"text,omitempty"`
}

func ev(typ string, n int) eventstore.EventData {
	d, _ := json.Marshal(payload{N: n, Text: fmt.Sprintf("event %d ü ✓", n)})
	return eventstore.EventData{Type: typ, Data: d}
}

func evs(typ string, from, count int) []eventstore.EventData {
	out := make([]eventstore.EventData, count)
	for i := range out {
		out[i] = ev(typ, from+i)
	}
	return out
}

func numOf(t *testing.T, e eventstore.RecordedEvent) int {
	t.Helper()
	var p payload
	if err := json.Unmarshal(e.Data, &p); err != nil {
		t.Fatalf("event %s data %q: %v", e.ID, e.Data, err)
	}
	return p.N
}

func mustAppend(t *testing.T, s eventstore.Store, stream string, exp eventstore.ExpectedVersion, events ...eventstore.EventData) eventstore.AppendResult {
	t.Helper()
	res, err := s.Append(ctxFor(t), stream, exp, events...)
	if err != nil {
		t.Fatalf("append %d events to %s (expected %s): %v", len(events), stream, exp, err)
	}
	return res
}

// marker appends one event to the case's own marker stream and returns its position:
// reads of the global log after it see only events written later.
func marker(t *testing.T, s eventstore.Store, ns string) eventstore.Position {
	t.Helper()
	return mustAppend(t, s, ns+"marker-"+fmt.Sprint(rand.Uint32()), eventstore.NoStream, ev("test.marker.v1", -1)).Position
}

// readAllOwn reads the whole log after `after` in pages of `page` and keeps only the
// events of streams under ns.
func readAllOwn(t *testing.T, s eventstore.Store, after eventstore.Position, ns string, page int) []eventstore.RecordedEvent {
	t.Helper()
	var out []eventstore.RecordedEvent
	pos := after
	for {
		batch, err := s.ReadAll(ctxFor(t), pos, page)
		if err != nil {
			t.Fatalf("read all after %s: %v", pos, err)
		}
		if len(batch) > page {
			t.Fatalf("read all with limit %d returned %d events", page, len(batch))
		}
		if len(batch) == 0 {
			return out
		}
		for _, e := range batch {
			if !pos.Less(e.Position) {
				t.Fatalf("read all after %s returned event at %s, not after the previous one", pos, e.Position)
			}
			pos = e.Position
			if strings.HasPrefix(e.Stream, ns) && !strings.Contains(e.Stream, "marker-") {
				out = append(out, e)
			}
		}
	}
}

func next(t *testing.T, sub eventstore.Subscription) eventstore.RecordedEvent {
	t.Helper()
	e, err := sub.Next(ctxFor(t))
	if err != nil {
		t.Fatalf("subscription next: %v", err)
	}
	return e
}

// nextOwn skips events of other streams (a shared store, the case's marker).
func nextOwn(t *testing.T, sub eventstore.Subscription, ns string) eventstore.RecordedEvent {
	t.Helper()
	for {
		e := next(t, sub)
		if strings.HasPrefix(e.Stream, ns) && !strings.Contains(e.Stream, "marker-") {
			return e
		}
	}
}

func testRoundTrip(t *testing.T, s eventstore.Store, ns string, cfg config) {
	stream := ns + "client-1"
	meta := eventstore.Metadata{
		Tenant: "tenant-a", ActorID: "user-7", ActorKind: eventstore.ActorUser,
		CorrelationID: "corr-1", CausationID: "cause-1", AggregateID: "1", PrevHash: "abc123",
	}
	in := evs("client.created.v1", 0, 3)
	for i := range in {
		in[i].Meta = meta
	}
	in[1].ID = "7f0c6f2e-3d52-4a8e-9b7a-6a1d2c3b4e5f"
	before := time.Now().Add(-time.Minute)
	from := marker(t, s, ns)
	res := mustAppend(t, s, stream, eventstore.NoStream, in...)
	if res.Version != 2 {
		t.Fatalf("append of 3 events to a new stream: version %d, want 2", res.Version)
	}
	if res.Position.IsZero() {
		t.Fatal("append returned the zero position")
	}

	got, err := s.ReadStream(ctxFor(t), stream, eventstore.Forwards, 0, 10)
	if err != nil {
		t.Fatalf("read stream: %v", err)
	}
	if len(got) != 3 {
		t.Fatalf("read %d events, want 3", len(got))
	}
	ids := map[string]bool{}
	for i, e := range got {
		if e.Stream != stream || e.Version != uint64(i) || e.Type != "client.created.v1" {
			t.Errorf("event %d: stream %q version %d type %q", i, e.Stream, e.Version, e.Type)
		}
		if numOf(t, e) != i {
			t.Errorf("event %d carries payload %d", i, numOf(t, e))
		}
		var p payload
		_ = json.Unmarshal(e.Data, &p)
		if p.Text != fmt.Sprintf("event %d ü ✓", i) {
			t.Errorf("event %d text %q: data not kept byte-exact", i, p.Text)
		}
		if e.Meta != meta {
			t.Errorf("event %d metadata %+v, want %+v", i, e.Meta, meta)
		}
		if e.ID == "" || ids[e.ID] {
			t.Errorf("event %d id %q empty or repeated", i, e.ID)
		}
		ids[e.ID] = true
		if e.RecordedAt.Before(before) || e.RecordedAt.After(time.Now().Add(time.Minute)) {
			t.Errorf("event %d recorded at %s, not around now", i, e.RecordedAt)
		}
	}
	if got[1].ID != in[1].ID {
		t.Errorf("caller-chosen id %q came back as %q", in[1].ID, got[1].ID)
	}

	all := readAllOwn(t, s, from, ns, 1000)
	if len(all) != 3 {
		t.Fatalf("read all found %d of the case's events, want 3", len(all))
	}
	if all[2].Position != res.Position {
		t.Errorf("last event at %s in the global log, append answered %s", all[2].Position, res.Position)
	}
	for i, e := range all {
		if e.ID != got[i].ID || e.Version != got[i].Version || e.Meta != meta || string(e.Data) != string(got[i].Data) {
			t.Errorf("global log event %d differs from the stream read: %+v vs %+v", i, e, got[i])
		}
		if cfg.densePositions && got[i].Position != e.Position {
			t.Errorf("stream read position %s, global log %s", got[i].Position, e.Position)
		}
	}
	if cfg.densePositions {
		for i, e := range all {
			want := from.Commit + uint64(i) + 1
			if e.Position != (eventstore.Position{Commit: want, Prepare: want}) {
				t.Errorf("dense store: event %d at %s, want %d", i, e.Position, want)
			}
		}
	}
}

func testExpectedVersionRules(t *testing.T, s eventstore.Store, ns string, _ config) {
	existing := ns + "existing"
	mustAppend(t, s, existing, eventstore.NoStream, evs("t.v1", 0, 2)...) // versions 0, 1

	cases := []struct {
		name    string
		stream  string
		exp     eventstore.ExpectedVersion
		wantErr error
		wantVer uint64
	}{
		{"no-stream on a new stream", ns + "new-1", eventstore.NoStream, nil, 0},
		{"no-stream on an existing stream", existing, eventstore.NoStream, eventstore.ErrConcurrency, 0},
		{"exact on a new stream", ns + "new-2", eventstore.Exact(0), eventstore.ErrConcurrency, 0},
		{"stale exact", existing, eventstore.Exact(0), eventstore.ErrConcurrency, 0},
		{"future exact", existing, eventstore.Exact(5), eventstore.ErrConcurrency, 0},
		{"current exact", existing, eventstore.Exact(1), nil, 2},
		{"any on an existing stream", existing, eventstore.Any, nil, 3},
		{"any on a new stream", ns + "new-3", eventstore.Any, nil, 0},
		{"stream-exists on a new stream", ns + "new-4", eventstore.StreamExists, eventstore.ErrConcurrency, 0},
		{"stream-exists on an existing stream", existing, eventstore.StreamExists, nil, 4},
		{"unset expected version", existing, eventstore.ExpectedVersion{}, eventstore.ErrInvalidAppend, 0},
	}
	for _, c := range cases {
		res, err := s.Append(ctxFor(t), c.stream, c.exp, ev("t.v1", 100))
		if c.wantErr != nil {
			if !errors.Is(err, c.wantErr) {
				t.Errorf("%s: error %v, want %v", c.name, err, c.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if res.Version != c.wantVer {
			t.Errorf("%s: version %d, want %d", c.name, res.Version, c.wantVer)
		}
	}
	// A concurrency error carries its detail for callers that want it.
	_, err := s.Append(ctxFor(t), existing, eventstore.Exact(0), ev("t.v1", 1))
	var ce *eventstore.ConcurrencyError
	if !errors.As(err, &ce) || ce.Stream != existing {
		t.Errorf("stale append error %v is not a *ConcurrencyError for %s", err, existing)
	}
	// Failed appends left nothing behind.
	got, err := s.ReadStream(ctxFor(t), existing, eventstore.Forwards, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 {
		t.Fatalf("existing stream has %d events after the rule checks, want 5", len(got))
	}
	for _, st := range []string{ns + "new-2", ns + "new-4"} {
		if _, err := s.ReadStream(ctxFor(t), st, eventstore.Forwards, 0, 1); !errors.Is(err, eventstore.ErrStreamNotFound) {
			t.Errorf("refused append to %s created the stream (read error %v)", st, err)
		}
	}
}

func testInvalidAppend(t *testing.T, s eventstore.Store, ns string, _ config) {
	stream := ns + "invalid"
	bad := []struct {
		name   string
		stream string
		events []eventstore.EventData
	}{
		{"no events", stream, nil},
		{"invalid JSON in the second event", stream, []eventstore.EventData{ev("t.v1", 0), {Type: "t.v1", Data: json.RawMessage(`{"n":`)}}},
		{"empty type", stream, []eventstore.EventData{{Data: json.RawMessage(`{}`)}}},
		{"id not a UUID", stream, []eventstore.EventData{{ID: "nope", Type: "t.v1", Data: json.RawMessage(`{}`)}}},
		{"reserved stream name", "$" + stream, []eventstore.EventData{ev("t.v1", 0)}},
		{"empty stream name", "", []eventstore.EventData{ev("t.v1", 0)}},
	}
	for _, b := range bad {
		if _, err := s.Append(ctxFor(t), b.stream, eventstore.Any, b.events...); !errors.Is(err, eventstore.ErrInvalidAppend) {
			t.Errorf("%s: error %v, want ErrInvalidAppend", b.name, err)
		}
	}
	if _, err := s.ReadStream(ctxFor(t), stream, eventstore.Forwards, 0, 10); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Errorf("after refused appends the stream exists (read error %v)", err)
	}
}

func testReadStream(t *testing.T, s eventstore.Store, ns string, _ config) {
	stream := ns + "long"
	mustAppend(t, s, stream, eventstore.NoStream, evs("t.v1", 0, 10)...)
	mustAppend(t, s, stream, eventstore.Exact(9), evs("t.v1", 10, 5)...) // 0..14

	read := func(dir eventstore.Direction, from uint64, limit int) []int {
		t.Helper()
		got, err := s.ReadStream(ctxFor(t), stream, dir, from, limit)
		if err != nil {
			t.Fatalf("read %d from %d limit %d: %v", dir, from, limit, err)
		}
		out := make([]int, len(got))
		for i, e := range got {
			if numOf(t, e) != int(e.Version) {
				t.Fatalf("event at version %d carries %d", e.Version, numOf(t, e))
			}
			out[i] = int(e.Version)
		}
		return out
	}
	cases := []struct {
		name  string
		dir   eventstore.Direction
		from  uint64
		limit int
		want  []int
	}{
		{"forwards from start", eventstore.Forwards, 0, 4, []int{0, 1, 2, 3}},
		{"forwards from middle", eventstore.Forwards, 8, 4, []int{8, 9, 10, 11}},
		{"forwards across the end", eventstore.Forwards, 12, 10, []int{12, 13, 14}},
		{"forwards past the end", eventstore.Forwards, 15, 10, []int{}},
		{"backwards from end", eventstore.Backwards, eventstore.End, 3, []int{14, 13, 12}},
		{"backwards from middle", eventstore.Backwards, 5, 3, []int{5, 4, 3}},
		{"backwards across the start", eventstore.Backwards, 1, 10, []int{1, 0}},
		{"backwards from past the end", eventstore.Backwards, 100, 2, []int{14, 13}},
	}
	for _, c := range cases {
		if got := read(c.dir, c.from, c.limit); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: versions %v, want %v", c.name, got, c.want)
		}
	}
}

func testReadStreamNotFound(t *testing.T, s eventstore.Store, ns string, _ config) {
	mustAppend(t, s, ns+"present", eventstore.NoStream, ev("t.v1", 0))
	for _, dir := range []eventstore.Direction{eventstore.Forwards, eventstore.Backwards} {
		from := uint64(0)
		if dir == eventstore.Backwards {
			from = eventstore.End
		}
		_, err := s.ReadStream(ctxFor(t), ns+"absent", dir, from, 10)
		if !errors.Is(err, eventstore.ErrStreamNotFound) {
			t.Errorf("direction %d: error %v, want ErrStreamNotFound", dir, err)
		}
		// A prefix of an existing stream is not that stream.
		_, err = s.ReadStream(ctxFor(t), ns+"pres", dir, from, 10)
		if !errors.Is(err, eventstore.ErrStreamNotFound) {
			t.Errorf("direction %d, prefix of a stream: error %v, want ErrStreamNotFound", dir, err)
		}
	}
}

func testConcurrentWritersOneStream(t *testing.T, s eventstore.Store, ns string, _ config) {
	stream := ns + "contended"
	mustAppend(t, s, stream, eventstore.NoStream, ev("t.v1", 0))
	const writers = 16
	var wg sync.WaitGroup
	errs := make([]error, writers)
	start := make(chan struct{})
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, errs[i] = s.Append(context.Background(), stream, eventstore.Exact(0), ev("t.v1", 1000+i))
		}()
	}
	close(start)
	wg.Wait() // check only after every writer has finished
	wins := 0
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			wins++
			winner = i
		case errors.Is(err, eventstore.ErrConcurrency):
		default:
			t.Errorf("writer %d: unexpected error %v", i, err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d of %d writers with the same expected version succeeded, want exactly 1", wins, writers)
	}
	got, err := s.ReadStream(ctxFor(t), stream, eventstore.Forwards, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || numOf(t, got[1]) != 1000+winner {
		t.Fatalf("stream holds %d events (second carries %d), want 2 with the winner's %d", len(got), numOf(t, got[len(got)-1]), 1000+winner)
	}
}

func testParallelStreams(t *testing.T, s eventstore.Store, ns string, cfg config) {
	from := marker(t, s, ns)
	sub, err := s.Subscribe(ctxFor(t), from, eventstore.Filter{StreamPrefixes: []string{ns}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()

	const writers, appends = 8, 40
	var wg sync.WaitGroup
	errs := make([]error, writers)
	results := make([][]eventstore.AppendResult, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stream := fmt.Sprintf("%sp-%d", ns, w)
			exp := eventstore.NoStream
			for a := range appends {
				n := 1 + a%3
				res, err := s.Append(context.Background(), stream, exp, evs("t.v1", w*10000+a*10, n)...)
				if err != nil {
					errs[w] = fmt.Errorf("append %d: %w", a, err)
					return
				}
				results[w] = append(results[w], res)
				exp = eventstore.Exact(res.Version)
			}
		}()
	}
	wg.Wait()
	for w, err := range errs {
		if err != nil {
			t.Fatalf("writer %d: %v", w, err)
		}
	}

	total := 0
	for a := range appends {
		total += 1 + a%3
	}
	total *= writers

	all := readAllOwn(t, s, from, ns, 97)
	if len(all) != total {
		t.Fatalf("global log holds %d of the case's events, want %d", len(all), total)
	}
	ids := map[string]bool{}
	nextVersion := map[string]uint64{}
	lastNum := map[string]int{}
	for i, e := range all {
		if ids[e.ID] {
			t.Fatalf("event %s appears twice in the global log", e.ID)
		}
		ids[e.ID] = true
		if e.Version != nextVersion[e.Stream] {
			t.Fatalf("global log event %d: %s version %d, want %d (stream order broken)", i, e.Stream, e.Version, nextVersion[e.Stream])
		}
		nextVersion[e.Stream]++
		if n, seen := lastNum[e.Stream]; seen && numOf(t, e) <= n {
			t.Fatalf("%s: payload %d after %d", e.Stream, numOf(t, e), n)
		}
		lastNum[e.Stream] = numOf(t, e)
		if cfg.densePositions && i > 0 && e.Position.Commit != all[i-1].Position.Commit+1 {
			t.Fatalf("dense store: position %s follows %s", e.Position, all[i-1].Position)
		}
	}
	// Every append's answered position is the position of its last event.
	byPos := map[eventstore.Position]eventstore.RecordedEvent{}
	for _, e := range all {
		byPos[e.Position] = e
	}
	for w := range writers {
		for a, res := range results[w] {
			e, ok := byPos[res.Position]
			if !ok || e.Stream != fmt.Sprintf("%sp-%d", ns, w) || e.Version != res.Version {
				t.Fatalf("writer %d append %d answered %s/v%d, which is not its last event in the log", w, a, res.Position, res.Version)
			}
		}
	}
	// A subscriber that was live during the writes saw exactly the global order.
	for i := range all {
		e := nextOwn(t, sub, ns)
		if e.ID != all[i].ID || e.Position != all[i].Position {
			t.Fatalf("subscription event %d is %s at %s, global log has %s at %s", i, e.ID, e.Position, all[i].ID, all[i].Position)
		}
	}
}

func testReadAllPagination(t *testing.T, s eventstore.Store, ns string, _ config) {
	from := marker(t, s, ns)
	for i := range 5 {
		mustAppend(t, s, fmt.Sprintf("%spage-%d", ns, i), eventstore.NoStream, evs("t.v1", i*5, 5)...)
	}
	whole := readAllOwn(t, s, from, ns, 1000)
	if len(whole) != 25 {
		t.Fatalf("read all found %d events, want 25", len(whole))
	}
	for _, size := range []int{1, 7, 25} {
		paged := readAllOwn(t, s, from, ns, size)
		if len(paged) != len(whole) {
			t.Fatalf("pages of %d gave %d events, one read gave %d", size, len(paged), len(whole))
		}
		for i := range whole {
			if paged[i].ID != whole[i].ID || paged[i].Position != whole[i].Position {
				t.Fatalf("pages of %d: event %d differs", size, i)
			}
		}
	}
	// The first page after the marker starts with the first event written after it.
	first, err := s.ReadAll(ctxFor(t), from, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != 1 || !from.Less(first[0].Position) {
		t.Fatalf("read all after %s with limit 1 returned %d events", from, len(first))
	}
	// Reading after the last event gives an empty page, not an error.
	last := whole[len(whole)-1].Position
	rest, err := s.ReadAll(ctxFor(t), last, 10)
	if err != nil {
		t.Fatalf("read all after the last event: %v", err)
	}
	for _, e := range rest {
		if strings.HasPrefix(e.Stream, ns) {
			t.Fatalf("read all after the last event returned the case's event %s", e.ID)
		}
	}
}

func testSubscribeCatchUpThenLive(t *testing.T, s eventstore.Store, ns string, _ config) {
	from := marker(t, s, ns)
	stream := ns + "sub"
	mustAppend(t, s, stream, eventstore.NoStream, evs("t.v1", 0, 10)...)
	sub, err := s.Subscribe(ctxFor(t), from, eventstore.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	for i := range 10 {
		if e := nextOwn(t, sub, ns); numOf(t, e) != i || e.Version != uint64(i) {
			t.Fatalf("catch-up event %d carries %d at version %d", i, numOf(t, e), e.Version)
		}
	}
	// Live: events appended after the subscriber caught up arrive in order, including
	// while the subscriber is blocked waiting.
	errc := make(chan error, 1)
	go func() {
		for i := 10; i < 20; i++ {
			if _, err := s.Append(context.Background(), stream, eventstore.Exact(uint64(i-1)), ev("t.v1", i)); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	for i := 10; i < 20; i++ {
		if e := nextOwn(t, sub, ns); numOf(t, e) != i || e.Stream != stream {
			t.Fatalf("live event %d carries %d on %s", i, numOf(t, e), e.Stream)
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func testSubscribeFromMid(t *testing.T, s eventstore.Store, ns string, _ config) {
	stream := ns + "mid"
	var mid eventstore.Position
	for i := range 10 {
		res := mustAppend(t, s, stream, eventstore.Any, ev("t.v1", i))
		if i == 4 {
			mid = res.Position
		}
	}
	sub, err := s.Subscribe(ctxFor(t), mid, eventstore.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	for i := 5; i < 10; i++ {
		e := nextOwn(t, sub, ns)
		if numOf(t, e) != i {
			t.Fatalf("subscription after the 5th event delivered %d, want %d", numOf(t, e), i)
		}
		if !mid.Less(e.Position) {
			t.Fatalf("subscription after %s delivered an event at %s", mid, e.Position)
		}
	}
}

func testSubscribeFilter(t *testing.T, s eventstore.Store, ns string, _ config) {
	from := marker(t, s, ns)
	keep := ns + "alpha-"
	mustAppend(t, s, keep+"1", eventstore.NoStream, ev("t.v1", 0))
	mustAppend(t, s, ns+"beta-1", eventstore.NoStream, ev("t.v1", 100))
	mustAppend(t, s, ns+"alph-1", eventstore.NoStream, ev("t.v1", 101))
	mustAppend(t, s, keep+"2", eventstore.NoStream, ev("t.v1", 1))
	sub, err := s.Subscribe(ctxFor(t), from, eventstore.Filter{StreamPrefixes: []string{keep}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	go func() {
		_, _ = s.Append(context.Background(), ns+"beta-2", eventstore.NoStream, ev("t.v1", 102))
		_, _ = s.Append(context.Background(), keep+"3", eventstore.NoStream, ev("t.v1", 2))
	}()
	for i := range 3 {
		e := next(t, sub)
		if !strings.HasPrefix(e.Stream, keep) {
			t.Fatalf("filtered subscription delivered %s", e.Stream)
		}
		if numOf(t, e) != i {
			t.Fatalf("filtered subscription event %d carries %d", i, numOf(t, e))
		}
	}
	// Two prefixes: both kinds arrive, nothing else.
	sub2, err := s.Subscribe(ctxFor(t), from, eventstore.Filter{StreamPrefixes: []string{keep, ns + "beta-"}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub2.Close()
	seen := map[int]bool{}
	for range 5 {
		e := next(t, sub2)
		if strings.HasPrefix(e.Stream, ns+"alph-") {
			t.Fatalf("two-prefix subscription delivered %s", e.Stream)
		}
		seen[numOf(t, e)] = true
	}
	for _, n := range []int{0, 1, 2, 100, 102} {
		if !seen[n] {
			t.Errorf("two-prefix subscription missed event %d (saw %v)", n, seen)
		}
	}
}

func testSubscribeCancellation(t *testing.T, s eventstore.Store, ns string, _ config) {
	from := marker(t, s, ns)
	sub, err := s.Subscribe(ctxFor(t), from, eventstore.Filter{StreamPrefixes: []string{ns + "quiet-"}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	// A Next blocked on an idle log returns when its context ends.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := sub.Next(ctx)
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Next after cancel: %v, want context.Canceled", err)
		}
	case <-time.After(waitLimit):
		t.Fatal("Next did not return after its context was cancelled")
	}
	// The subscription still works afterwards.
	mustAppend(t, s, ns+"quiet-1", eventstore.NoStream, ev("t.v1", 7))
	if e := next(t, sub); numOf(t, e) != 7 {
		t.Fatalf("after a cancelled Next the subscription delivered %d, want 7", numOf(t, e))
	}
	// An already-cancelled context fails at once.
	ctx2, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if _, err := sub.Next(ctx2); !errors.Is(err, context.Canceled) {
		t.Fatalf("Next with a cancelled context: %v", err)
	}
}

func testSubscribeClose(t *testing.T, s eventstore.Store, ns string, _ config) {
	from := marker(t, s, ns)
	sub, err := s.Subscribe(ctxFor(t), from, eventstore.Filter{StreamPrefixes: []string{ns + "quiet-"}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := sub.Next(context.Background())
		done <- err
	}()
	// Give Next a moment to block, then close from another goroutine. Whether Next was
	// already waiting or not, it must return ErrClosed.
	time.Sleep(50 * time.Millisecond)
	if err := sub.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, eventstore.ErrClosed) {
			t.Fatalf("Next blocked across Close: %v, want ErrClosed", err)
		}
	case <-time.After(waitLimit):
		t.Fatal("Next did not return after Close")
	}
	if _, err := sub.Next(ctxFor(t)); !errors.Is(err, eventstore.ErrClosed) {
		t.Fatalf("Next after Close: %v, want ErrClosed", err)
	}
	if err := sub.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

func testSubscribeContextEnds(t *testing.T, s eventstore.Store, ns string, _ config) {
	from := marker(t, s, ns)
	ctx, cancel := context.WithCancel(context.Background())
	sub, err := s.Subscribe(ctx, from, eventstore.Filter{StreamPrefixes: []string{ns + "quiet-"}})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	defer sub.Close()
	mustAppend(t, s, ns+"quiet-1", eventstore.NoStream, ev("t.v1", 1))
	if e := next(t, sub); numOf(t, e) != 1 {
		t.Fatalf("subscription delivered %d, want 1", numOf(t, e))
	}
	cancel()
	// Once the subscribing context has ended, Next fails even with a live context of its
	// own and even when events are waiting.
	mustAppend(t, s, ns+"quiet-2", eventstore.NoStream, ev("t.v1", 2))
	deadline := time.Now().Add(waitLimit)
	for {
		_, err := sub.Next(ctxFor(t))
		if err != nil {
			if !errors.Is(err, context.Canceled) && !errors.Is(err, eventstore.ErrClosed) {
				t.Fatalf("Next after the subscribing context ended: %v, want context.Canceled or ErrClosed", err)
			}
			return
		}
		// An event already handed over before the cancel was noticed may still arrive;
		// the subscription must end soon after.
		if time.Now().After(deadline) {
			t.Fatal("subscription kept delivering after its context ended")
		}
	}
}

func testNonPositiveLimit(t *testing.T, s eventstore.Store, ns string, _ config) {
	from := marker(t, s, ns)
	stream := ns + "limits"
	mustAppend(t, s, stream, eventstore.NoStream, evs("t.v1", 0, 12)...)
	for _, limit := range []int{0, -1} {
		got, err := s.ReadStream(ctxFor(t), stream, eventstore.Forwards, 0, limit)
		if err != nil || len(got) != 12 {
			t.Errorf("read stream with limit %d: %d events, %v; want all 12", limit, len(got), err)
		}
		got, err = s.ReadStream(ctxFor(t), stream, eventstore.Backwards, eventstore.End, limit)
		if err != nil || len(got) != 12 || got[0].Version != 11 {
			t.Errorf("read stream backwards with limit %d: %d events, %v; want all 12 from the last", limit, len(got), err)
		}
		all, err := s.ReadAll(ctxFor(t), from, limit)
		if err != nil {
			t.Fatalf("read all with limit %d: %v", limit, err)
		}
		own := 0
		for _, e := range all {
			if e.Stream == stream {
				own++
			}
		}
		if own != 12 {
			t.Errorf("read all with limit %d returned %d of the 12 events", limit, own)
		}
	}
	if eventstore.ReadLimit(0) != eventstore.MaxReadLimit || eventstore.ReadLimit(7) != 7 || eventstore.ReadLimit(eventstore.MaxReadLimit+1) != eventstore.MaxReadLimit {
		t.Error("ReadLimit does not follow its rule")
	}
}

func testClosedStore(t *testing.T, s eventstore.Store, ns string, _ config) {
	stream := ns + "closing"
	from := marker(t, s, ns)
	mustAppend(t, s, stream, eventstore.NoStream, ev("t.v1", 0))
	sub, err := s.Subscribe(ctxFor(t), from, eventstore.Filter{StreamPrefixes: []string{ns + "quiet-"}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if _, err := s.Append(ctxFor(t), stream, eventstore.Exact(0), ev("t.v1", 1)); !errors.Is(err, eventstore.ErrClosed) {
		t.Errorf("append after close: %v, want ErrClosed", err)
	}
	if _, err := s.ReadStream(ctxFor(t), stream, eventstore.Forwards, 0, 10); !errors.Is(err, eventstore.ErrClosed) {
		t.Errorf("read stream after close: %v, want ErrClosed", err)
	}
	if _, err := s.ReadAll(ctxFor(t), from, 10); !errors.Is(err, eventstore.ErrClosed) {
		t.Errorf("read all after close: %v, want ErrClosed", err)
	}
	if _, err := s.Subscribe(ctxFor(t), from, eventstore.Filter{}); !errors.Is(err, eventstore.ErrClosed) {
		t.Errorf("subscribe after close: %v, want ErrClosed", err)
	}
	if _, err := sub.Next(ctxFor(t)); !errors.Is(err, eventstore.ErrClosed) {
		t.Errorf("next on a subscription of a closed store: %v, want ErrClosed", err)
	}
	if err := s.Ping(ctxFor(t)); err == nil {
		t.Error("ping of a closed store succeeded")
	}
}
