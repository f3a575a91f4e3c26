package source_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"go.uber.org/goleak"

	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/eventstore/embedded"
	"github.com/keyledger/keyledger/projections/source"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Test events, named as the store names them.
type keyUploaded struct {
	Kid string `json:"kid"`
}

func (keyUploaded) EventType() string { return "test.key_uploaded.v1" }

type keyDeleted struct {
	Kid string `json:"kid"`
}

func (keyDeleted) EventType() string { return "test.key_deleted.v1" }

// unknownEvent has no handler in any group.
type unknownEvent struct {
	N int `json:"n"`
}

func (unknownEvent) EventType() string { return "test.unknown.v1" }

const groupKeys = "test.keys.v1"

// safety is the bound of every wait: a safety net, never an assertion on timing.
const safety = 20 * time.Second

// fastRetry keeps the retry middleware's backoff short in tests.
var fastRetry = source.RetryConfig{MaxRetries: 3, InitialInterval: time.Millisecond, MaxInterval: 2 * time.Millisecond}

func openStore(t *testing.T) *embedded.Store {
	t.Helper()
	s, err := embedded.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func appendEvent(t *testing.T, s eventstore.Store, stream string, ev source.EventTyper) eventstore.Position {
	t.Helper()
	data, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Append(context.Background(), stream, eventstore.Any, eventstore.EventData{
		Type: ev.EventType(),
		Data: data,
		Meta: eventstore.Metadata{Tenant: "tenant-1", ActorID: "user-1", ActorKind: eventstore.ActorUser, CorrelationID: "corr-" + stream, CausationID: "cause-1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return res.Position
}

// handled is one event a handler applied.
type handled struct {
	Pos    eventstore.Position
	Type   string
	Kid    string
	Stream string
}

// recorder records what the group's handlers applied and fails the test when two
// handlers run at the same time.
type recorder struct {
	t        *testing.T
	mu       sync.Mutex
	got      []handled
	inFlight atomic.Int32
	// fail, when set, is consulted before applying; an error is returned as is.
	fail func(h handled) error
}

func (r *recorder) apply(ctx context.Context, typ, kid string) error {
	if r.inFlight.Add(1) != 1 {
		r.t.Errorf("two events handled at the same time")
	}
	defer r.inFlight.Add(-1)
	ev, ok := source.FromContext(ctx)
	if !ok {
		return source.Permanent(errors.New("no event in context"))
	}
	h := handled{Pos: ev.Position, Type: typ, Kid: kid, Stream: ev.Stream}
	if ev.Type != typ {
		r.t.Errorf("context says type %s, handler got %s", ev.Type, typ)
	}
	if ev.Meta.Tenant != "tenant-1" || ev.Meta.CorrelationID != "corr-"+ev.Stream || ev.Meta.ActorKind != eventstore.ActorUser {
		r.t.Errorf("event metadata not carried: %+v", ev.Meta)
	}
	if msg := cqrs.OriginalMessageFromCtx(ctx); msg == nil || middleware.MessageCorrelationID(msg) != "corr-"+ev.Stream {
		r.t.Errorf("watermill correlation id not set")
	}
	if r.fail != nil {
		if err := r.fail(h); err != nil {
			return err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := len(r.got); n > 0 && !r.got[n-1].Pos.Less(h.Pos) {
		r.t.Errorf("event at %s handled after event at %s", h.Pos, r.got[n-1].Pos)
	}
	r.got = append(r.got, h)
	return nil
}

func (r *recorder) handlers() []cqrs.GroupEventHandler {
	return []cqrs.GroupEventHandler{
		cqrs.NewGroupEventHandler(func(ctx context.Context, e *keyUploaded) error {
			return r.apply(ctx, e.EventType(), e.Kid)
		}),
		cqrs.NewGroupEventHandler(func(ctx context.Context, e *keyDeleted) error {
			return r.apply(ctx, e.EventType(), e.Kid)
		}),
	}
}

func (r *recorder) snapshot() []handled {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]handled(nil), r.got...)
}

func (r *recorder) positions() []eventstore.Position {
	var out []eventstore.Position
	for _, h := range r.snapshot() {
		out = append(out, h.Pos)
	}
	return out
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(safety)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// run starts r and stops it at the end of the test, checking that Run returns.
func run(t *testing.T, r *source.Router) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- r.Run(context.Background()) }()
	select {
	case <-r.Running():
	case err := <-done:
		t.Fatalf("router stopped at once: %v", err)
	case <-time.After(safety):
		t.Fatal("router did not start")
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("close router: %v", err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("router run: %v", err)
			}
		case <-time.After(safety):
			t.Error("router Run did not return after Close")
		}
	})
}

func newRouter(t *testing.T, cfg source.RouterConfig, rec *recorder, filter eventstore.Filter) *source.Router {
	t.Helper()
	if cfg.Checkpoint == nil {
		cfg.Checkpoint = source.FromStart
	}
	if cfg.Retry == (source.RetryConfig{}) {
		cfg.Retry = fastRetry
	}
	r, err := source.NewRouter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.AddGroup(groupKeys, filter, rec.handlers()...); err != nil {
		t.Fatal(err)
	}
	return r
}

func eqPositions(t *testing.T, got, want []eventstore.Position) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("handled positions %v, want %v", got, want)
	}
}

func TestGroupHandlesEventsInGlobalOrderWithTypes(t *testing.T) {
	store := openStore(t)
	var want []handled
	add := func(stream string, ev source.EventTyper, kid string) {
		pos := appendEvent(t, store, stream, ev)
		want = append(want, handled{Pos: pos, Type: ev.EventType(), Kid: kid, Stream: stream})
	}
	add("client-a", keyUploaded{Kid: "k1"}, "k1")
	add("client-b", keyUploaded{Kid: "k2"}, "k2")
	add("client-a", keyDeleted{Kid: "k1"}, "k1")

	rec := &recorder{t: t}
	r := newRouter(t, source.RouterConfig{Store: store}, rec, eventstore.Filter{})
	run(t, r)

	add("client-b", keyDeleted{Kid: "k2"}, "k2")
	add("client-c", keyUploaded{Kid: "k3"}, "k3")
	add("client-a", keyUploaded{Kid: "k4"}, "k4")

	last := want[len(want)-1].Pos
	eventually(t, "six events acked", func() bool { st, _ := r.Status(groupKeys); return st.Position == last })
	if got := rec.snapshot(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("handled\n%v\nwant\n%v", got, want)
	}
	st, ok := r.Status(groupKeys)
	if !ok || st.State != source.StateRunning || st.Acked != uint64(len(want)) {
		t.Fatalf("status %+v", st)
	}
	if err := r.Healthy(); err != nil {
		t.Fatal(err)
	}
}

func TestStreamFilterPerGroup(t *testing.T) {
	store := openStore(t)
	appendEvent(t, store, "client-a", keyUploaded{Kid: "k1"})
	p2 := appendEvent(t, store, "keychain-x", keyUploaded{Kid: "k2"})
	appendEvent(t, store, "client-b", keyUploaded{Kid: "k3"})
	p4 := appendEvent(t, store, "keychain-y", keyDeleted{Kid: "k2"})

	rec := &recorder{t: t}
	r := newRouter(t, source.RouterConfig{Store: store}, rec, eventstore.Filter{StreamPrefixes: []string{"keychain-"}})
	run(t, r)
	eventually(t, "filtered events", func() bool { st, _ := r.Status(groupKeys); return st.Position == p4 })
	eqPositions(t, rec.positions(), []eventstore.Position{p2, p4})
}

func TestStartsAfterCheckpoint(t *testing.T) {
	store := openStore(t)
	var pos []eventstore.Position
	for i := range 5 {
		pos = append(pos, appendEvent(t, store, "client-a", keyUploaded{Kid: fmt.Sprint("k", i)}))
	}
	var askedTopic atomic.Value
	stored := pos[1]
	checkpoint := func(_ context.Context, topic string) (eventstore.Position, error) {
		askedTopic.Store(topic)
		return stored, nil
	}
	rec := &recorder{t: t}
	r := newRouter(t, source.RouterConfig{
		Store:      store,
		Checkpoint: checkpoint,
		Topic:      func(group string) string { return "projection/" + group },
	}, rec, eventstore.Filter{})
	run(t, r)
	pos = append(pos, appendEvent(t, store, "client-b", keyDeleted{Kid: "k0"}))

	eventually(t, "events after the checkpoint", func() bool { return len(rec.snapshot()) >= 4 })
	eqPositions(t, rec.positions(), pos[2:])
	if got := askedTopic.Load(); got != "projection/"+groupKeys {
		t.Fatalf("checkpoint asked for topic %v", got)
	}
	if st, _ := r.Status(groupKeys); st.Topic != "projection/"+groupKeys {
		t.Fatalf("status under topic %q", st.Topic)
	}
}

func TestTransientFailureIsRetriedWithoutSkipOrReorder(t *testing.T) {
	store := openStore(t)
	var pos []eventstore.Position
	for i := range 4 {
		pos = append(pos, appendEvent(t, store, "client-a", keyUploaded{Kid: fmt.Sprint("k", i)}))
	}
	var attempts atomic.Int32
	rec := &recorder{t: t}
	rec.fail = func(h handled) error {
		if h.Kid == "k1" && h.Type == "test.key_uploaded.v1" && attempts.Add(1) <= 2 { // fails twice, then succeeds (3 retries allowed)
			return errors.New("redis: connection reset")
		}
		return nil
	}
	var nacks atomic.Int32
	r := newRouter(t, source.RouterConfig{
		Store:    store,
		Observer: source.ObserverFuncs{OnNacked: func(string, eventstore.RecordedEvent, int) { nacks.Add(1) }},
	}, rec, eventstore.Filter{})
	run(t, r)
	pos = append(pos, appendEvent(t, store, "client-a", keyDeleted{Kid: "k1"}))

	eventually(t, "all events", func() bool { return len(rec.snapshot()) >= 5 })
	eqPositions(t, rec.positions(), pos)
	if n := attempts.Load(); n != 3 {
		t.Fatalf("k1 handled %d times, want 3 (two failures, one success)", n)
	}
	if n := nacks.Load(); n != 0 {
		t.Fatalf("%d nacks: the retry middleware should have absorbed the failures", n)
	}
	if err := r.Healthy(); err != nil {
		t.Fatal(err)
	}
}

func TestPermanentFailureHaltsTheGroupAtTheEvent(t *testing.T) {
	for _, tc := range []struct {
		name     string
		fail     func() error
		wantErr  string
		attempts int
	}{
		{"error", func() error { return errors.New("cannot apply: key k2 unknown") }, "cannot apply: key k2 unknown", 1 + fastRetry.MaxRetries},
		{"panic", func() error { panic("boom in handler") }, "panic: boom in handler", 1 + fastRetry.MaxRetries},
		{"permanent", func() error { return source.Permanent(errors.New("malformed event")) }, "malformed event", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := openStore(t)
			var pos []eventstore.Position
			for i := range 4 {
				pos = append(pos, appendEvent(t, store, "client-a", keyUploaded{Kid: fmt.Sprint("k", i)}))
			}
			var attempts atomic.Int32
			rec := &recorder{t: t}
			rec.fail = func(h handled) error {
				if h.Kid == "k2" {
					attempts.Add(1)
					return tc.fail()
				}
				return nil
			}
			halted := make(chan source.Status, 1)
			var acked atomic.Int32
			r := newRouter(t, source.RouterConfig{
				Store: store,
				Observer: source.ObserverFuncs{
					OnAcked: func(string, eventstore.RecordedEvent) { acked.Add(1) },
					OnStateChanged: func(st source.Status) {
						if st.State == source.StateHalted {
							halted <- st
						}
					},
				},
			}, rec, eventstore.Filter{})
			run(t, r)

			var st source.Status
			select {
			case st = <-halted:
			case <-time.After(safety):
				t.Fatal("group did not halt")
			}
			// Appended after the halt: must not be handled either.
			appendEvent(t, store, "client-b", keyDeleted{Kid: "k9"})

			if got, _ := r.Status(groupKeys); got.State != source.StateHalted || got.Failure != st.Failure {
				t.Fatalf("status %+v", got)
			}
			f := st.Failure
			if f == nil || f.Position != pos[2] || f.EventType != "test.key_uploaded.v1" || f.Stream != "client-a" || f.Version != 2 || f.Attempts != 1 {
				t.Fatalf("failure %+v", f)
			}
			if !strings.Contains(f.Error(), tc.wantErr) {
				t.Fatalf("failure reason %q does not say %q", f.Err, tc.wantErr)
			}
			if st.Position != pos[1] {
				t.Fatalf("last acked position %s, want %s", st.Position, pos[1])
			}
			if n := attempts.Load(); n != int32(tc.attempts) {
				t.Fatalf("failing event tried %d times, want %d", n, tc.attempts)
			}
			err := r.Healthy()
			if err == nil || !strings.Contains(err.Error(), groupKeys) || !strings.Contains(err.Error(), "position "+pos[2].String()) {
				t.Fatalf("Healthy() = %v", err)
			}

			// Stop the router: nothing after the failing event may have been handled.
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
			eqPositions(t, rec.positions(), pos[:2])
			if n := acked.Load(); n != 2 {
				t.Fatalf("%d events acked, want 2", n)
			}
			if got, _ := r.Status(groupKeys); got.State != source.StateHalted {
				t.Fatalf("after close: status %+v, want halted", got)
			}
		})
	}
}

func TestEventWithoutHandlerIsAckedAndSkipped(t *testing.T) {
	store := openStore(t)
	p1 := appendEvent(t, store, "client-a", keyUploaded{Kid: "k1"})
	p2 := appendEvent(t, store, "client-a", unknownEvent{N: 1})
	p3 := appendEvent(t, store, "client-a", keyDeleted{Kid: "k1"})

	var ackedTypes []string
	var mu sync.Mutex
	rec := &recorder{t: t}
	r := newRouter(t, source.RouterConfig{
		Store: store,
		Observer: source.ObserverFuncs{OnAcked: func(_ string, e eventstore.RecordedEvent) {
			mu.Lock()
			ackedTypes = append(ackedTypes, e.Type)
			mu.Unlock()
		}},
	}, rec, eventstore.Filter{})
	run(t, r)
	p4 := appendEvent(t, store, "client-b", unknownEvent{N: 2})
	p5 := appendEvent(t, store, "client-b", keyUploaded{Kid: "k5"})

	eventually(t, "last event", func() bool {
		mu.Lock()
		defer mu.Unlock()
		st, _ := r.Status(groupKeys)
		return st.Position == p5 && len(ackedTypes) == 5
	})
	eqPositions(t, rec.positions(), []eventstore.Position{p1, p3, p5})
	st, _ := r.Status(groupKeys)
	if st.Acked != 5 || st.State != source.StateRunning {
		t.Fatalf("status %+v (the unknown events at %s and %s should be acked)", st, p2, p4)
	}
	mu.Lock()
	defer mu.Unlock()
	if got := strings.Join(ackedTypes, ","); got != "test.key_uploaded.v1,test.unknown.v1,test.key_deleted.v1,test.unknown.v1,test.key_uploaded.v1" {
		t.Fatalf("acked %s", got)
	}
}

// A marshaler other than the default: names from a table, as a read model could map
// the store's type names to its own Go types.
func TestCustomMarshalerMapsStoreTypes(t *testing.T) {
	type uploaded struct {
		Kid string `json:"kid"`
	}
	names := map[string]string{fmt.Sprintf("%T", &uploaded{}): "test.key_uploaded.v1"}
	marshaler := cqrs.JSONMarshaler{GenerateName: func(v any) string { return names[fmt.Sprintf("%T", v)] }}

	store := openStore(t)
	p1 := appendEvent(t, store, "client-a", keyUploaded{Kid: "k1"})
	appendEvent(t, store, "client-a", keyDeleted{Kid: "k1"})
	p3 := appendEvent(t, store, "client-a", keyUploaded{Kid: "k3"})

	r, err := source.NewRouter(source.RouterConfig{Store: store, Checkpoint: source.FromStart, Marshaler: marshaler, Retry: fastRetry})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var kids []string
	err = r.AddGroup(groupKeys, eventstore.Filter{}, cqrs.NewGroupEventHandler(func(_ context.Context, e *uploaded) error {
		mu.Lock()
		kids = append(kids, e.Kid)
		mu.Unlock()
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	run(t, r)
	eventually(t, "last event", func() bool { st, _ := r.Status(groupKeys); return st.Position == p3 })
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(kids, ",") != "k1,k3" {
		t.Fatalf("handled %v (first at %s)", kids, p1)
	}
}

func TestAddGroupRejectsUnnamedEvents(t *testing.T) {
	store := openStore(t)
	r, err := source.NewRouter(source.RouterConfig{Store: store, Checkpoint: source.FromStart})
	if err != nil {
		t.Fatal(err)
	}
	type anonymous struct{}
	err = r.AddGroup(groupKeys, eventstore.Filter{}, cqrs.NewGroupEventHandler(func(context.Context, *anonymous) error { return nil }))
	if err == nil || !strings.Contains(err.Error(), "EventType") {
		t.Fatalf("AddGroup = %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}

// A router with groups that never ran closes at once (Watermill's own Close would wait
// CloseTimeout for the handlers that never started).
func TestCloseWithoutRun(t *testing.T) {
	store := openStore(t)
	rec := &recorder{t: t}
	r := newRouter(t, source.RouterConfig{Store: store, CloseTimeout: safety}, rec, eventstore.Filter{})
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Run(context.Background()); err == nil {
		t.Fatal("Run after Close succeeded")
	}
}

// A checkpoint that cannot be read makes the group unavailable (with the reason), not
// the router fail; once it can be read, the group starts after it.
func TestCheckpointFailureMakesGroupUnavailableUntilItRecovers(t *testing.T) {
	store := openStore(t)
	p1 := appendEvent(t, store, "client-a", keyUploaded{Kid: "k1"})
	p2 := appendEvent(t, store, "client-a", keyUploaded{Kid: "k2"})
	var calls atomic.Int32
	release := make(chan struct{})
	checkpoint := func(context.Context, string) (eventstore.Position, error) {
		if calls.Add(1) == 1 {
			return eventstore.Start, errors.New("redis down")
		}
		<-release
		return p1, nil
	}
	rec := &recorder{t: t}
	r := newRouter(t, source.RouterConfig{Store: store, Checkpoint: checkpoint, ReconnectDelay: time.Millisecond}, rec, eventstore.Filter{})
	run(t, r)
	eventually(t, "unavailable", func() bool { st, _ := r.Status(groupKeys); return st.State == source.StateUnavailable })
	if err := r.Healthy(); err == nil || !strings.Contains(err.Error(), "redis down") {
		t.Fatalf("Healthy() = %v", err)
	}
	close(release)
	eventually(t, "event after the checkpoint", func() bool { st, _ := r.Status(groupKeys); return st.Position == p2 })
	eqPositions(t, rec.positions(), []eventstore.Position{p2})
	if err := r.Healthy(); err != nil {
		t.Fatal(err)
	}
}

// flakyStore fails the first subscription's read after `after` events, as a dropped
// connection would.
type flakyStore struct {
	eventstore.Store
	after int
	mu    sync.Mutex
	subs  []eventstore.Position
}

func (f *flakyStore) Subscribe(ctx context.Context, after eventstore.Position, filter eventstore.Filter) (eventstore.Subscription, error) {
	sub, err := f.Store.Subscribe(ctx, after, filter)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.subs = append(f.subs, after)
	if len(f.subs) > 1 {
		return sub, nil
	}
	return &flakySubscription{Subscription: sub, left: f.after}, nil
}

type flakySubscription struct {
	eventstore.Subscription
	left int
}

func (f *flakySubscription) Next(ctx context.Context) (eventstore.RecordedEvent, error) {
	if f.left == 0 {
		return eventstore.RecordedEvent{}, fmt.Errorf("connection reset: %w", eventstore.ErrUnavailable)
	}
	f.left--
	return f.Subscription.Next(ctx)
}

// A store failure makes the subscriber resubscribe after the last acked event: nothing
// is skipped or handled twice.
func TestStoreFailureResubscribesAfterLastAckedEvent(t *testing.T) {
	store := &flakyStore{Store: openStore(t), after: 2}
	var pos []eventstore.Position
	for i := range 4 {
		pos = append(pos, appendEvent(t, store, "client-a", keyUploaded{Kid: fmt.Sprint("k", i)}))
	}
	var states []source.State
	var mu sync.Mutex
	rec := &recorder{t: t}
	r := newRouter(t, source.RouterConfig{Store: store, ReconnectDelay: time.Millisecond, Observer: source.ObserverFuncs{
		OnStateChanged: func(st source.Status) {
			mu.Lock()
			states = append(states, st.State)
			mu.Unlock()
		},
	}}, rec, eventstore.Filter{})
	run(t, r)
	eventually(t, "all events", func() bool { st, _ := r.Status(groupKeys); return st.Position == pos[3] })
	eqPositions(t, rec.positions(), pos)
	store.mu.Lock()
	if fmt.Sprint(store.subs) != fmt.Sprint([]eventstore.Position{eventstore.Start, pos[1]}) {
		t.Errorf("subscribed after %v", store.subs)
	}
	store.mu.Unlock()
	mu.Lock()
	defer mu.Unlock()
	if got := fmt.Sprint(states); got != "[starting running unavailable running]" {
		t.Fatalf("states %s", got)
	}
}

// The subscriber on its own: one message at a time, a nack redelivers (when allowed)
// the same event, context cancel ends one topic, Close ends all.
func TestSubscriberDelivery(t *testing.T) {
	store := openStore(t)
	p1 := appendEvent(t, store, "client-a", keyUploaded{Kid: "k1"})
	p2 := appendEvent(t, store, "client-a", keyDeleted{Kid: "k1"})

	sub, err := source.NewSubscriber(source.Config{Store: store, Checkpoint: source.FromStart, Redeliveries: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	chA, err := sub.Subscribe(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Subscribe(ctx, "a"); err == nil {
		t.Fatal("a topic subscribed twice")
	}
	ctxB, cancelB := context.WithCancel(context.Background())
	defer cancelB()
	chB, err := sub.Subscribe(ctxB, "b")
	if err != nil {
		t.Fatal(err)
	}

	recv := func(ch <-chan *message.Message) *message.Message {
		t.Helper()
		select {
		case m, ok := <-ch:
			if !ok {
				t.Fatal("channel closed")
			}
			return m
		case <-time.After(safety):
			t.Fatal("no message")
		}
		return nil
	}
	m1 := recv(chA)
	if m1.Metadata.Get(source.MetadataEventName) != "test.key_uploaded.v1" || m1.Metadata.Get(source.MetadataPosition) != p1.String() ||
		m1.Metadata.Get(source.MetadataStream) != "client-a" || m1.Metadata.Get(source.MetadataVersion) != "0" ||
		m1.Metadata.Get(source.MetadataTenant) != "tenant-1" || m1.Metadata.Get(source.MetadataActorID) != "user-1" ||
		m1.Metadata.Get(source.MetadataCausationID) != "cause-1" || middleware.MessageCorrelationID(m1) != "corr-client-a" {
		t.Fatalf("metadata %v", m1.Metadata)
	}
	if ev, err := source.EventFromMessage(m1); err != nil || ev.Position != p1 || ev.ID != m1.UUID || ev.RecordedAt.IsZero() {
		t.Fatalf("EventFromMessage = %+v, %v", ev, err)
	}
	if string(m1.Payload) != `{"kid":"k1"}` {
		t.Fatalf("payload %s", m1.Payload)
	}
	m1.Nack()
	again := recv(chA)
	if again.UUID != m1.UUID {
		t.Fatalf("nack delivered %s, want %s again", again.UUID, m1.UUID)
	}
	again.Ack()
	m2 := recv(chA)
	if m2.Metadata.Get(source.MetadataPosition) != p2.String() {
		t.Fatalf("second message at %s", m2.Metadata.Get(source.MetadataPosition))
	}
	m2.Ack()

	// Topic b: cancelling its context closes its channel and only its channel.
	recv(chB).Ack()
	cancelB()
	for range chB { // drain until closed
	}
	if st, _ := sub.Status("b"); st.State != source.StateStopped {
		t.Fatalf("b: %+v", st)
	}
	eventually(t, "a acked up to p2", func() bool { st, _ := sub.Status("a"); return st.Position == p2 })
	if st, _ := sub.Status("a"); st.State != source.StateRunning || st.Acked != 2 {
		t.Fatalf("a: %+v", st)
	}
	// b may be subscribed again, and starts after its checkpoint again.
	chB, err = sub.Subscribe(context.Background(), "b")
	if err != nil {
		t.Fatal(err)
	}
	if m := recv(chB); m.Metadata.Get(source.MetadataPosition) != p1.String() {
		t.Fatalf("b restarted at %s", m.Metadata.Get(source.MetadataPosition))
	}

	// Close ends every subscription, also one waiting for an ack, and is idempotent.
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	for _, ch := range []<-chan *message.Message{chA, chB} {
		select {
		case _, ok := <-ch:
			if ok {
				t.Fatal("message after Close")
			}
		case <-time.After(safety):
			t.Fatal("channel not closed by Close")
		}
	}
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Subscribe(context.Background(), "c"); !errors.Is(err, eventstore.ErrClosed) {
		t.Fatalf("Subscribe after Close = %v", err)
	}
}

func TestSubscriberNackWithoutRedeliveryHalts(t *testing.T) {
	store := openStore(t)
	p1 := appendEvent(t, store, "client-a", keyUploaded{Kid: "k1"})
	appendEvent(t, store, "client-a", keyUploaded{Kid: "k2"})
	sub, err := source.NewSubscriber(source.Config{Store: store, Checkpoint: source.FromStart})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Close() }()
	ch, err := sub.Subscribe(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	(<-ch).Nack()
	eventually(t, "halt", func() bool { st, _ := sub.Status("a"); return st.State == source.StateHalted })
	st, _ := sub.Status("a")
	if st.Failure.Position != p1 || !errors.Is(st.Failure, source.ErrNackedWithoutError) {
		t.Fatalf("failure %+v", st.Failure)
	}
}

// Run's context ending stops the router and every subscription.
func TestRouterStopsOnContextCancel(t *testing.T) {
	store := openStore(t)
	appendEvent(t, store, "client-a", keyUploaded{Kid: "k1"})
	rec := &recorder{t: t}
	r := newRouter(t, source.RouterConfig{Store: store}, rec, eventstore.Filter{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	eventually(t, "first event", func() bool { return len(rec.snapshot()) == 1 })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(safety):
		t.Fatal("Run did not return after cancel")
	}
	if st, _ := r.Status(groupKeys); st.State != source.StateStopped {
		t.Fatalf("status %+v", st)
	}
}
