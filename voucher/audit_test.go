package voucher_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/keyledger/keyledger/commands"
	"github.com/keyledger/keyledger/domain/client"
	"github.com/keyledger/keyledger/domain/eservice"
	"github.com/keyledger/keyledger/domain/keychain"
	"github.com/keyledger/keyledger/domain/purpose"
	"github.com/keyledger/keyledger/domain/tenant"
	"github.com/keyledger/keyledger/domain/user"
	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/eventstore/embedded"
	"github.com/keyledger/keyledger/projections/models"
	"github.com/keyledger/keyledger/projections/readmodel"
	"github.com/keyledger/keyledger/projections/runner"
	"github.com/keyledger/keyledger/voucher"
)

// auditSafety bounds every wait of these tests: a net against a hang, never a timing
// assertion.
const auditSafety = 20 * time.Second

// The day of the audit tests' records.
var auditDay = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

// auditStore wraps an event store: it counts appends and the events of each, and can
// hold the next append (to let records queue behind it) or fail it without writing.
type auditStore struct {
	eventstore.Store
	mu      sync.Mutex
	sizes   []int                        // events per append call, in call order
	ends    map[eventstore.Position]bool // the positions successful appends returned
	held    *heldAppend
	failErr error
}

type heldAppend struct {
	entered chan struct{} // closed when the held append has been called
	release chan struct{} // close to let it go on
}

// holdNext makes the next Append wait until the returned release is closed.
func (s *auditStore) holdNext() *heldAppend {
	h := &heldAppend{entered: make(chan struct{}), release: make(chan struct{})}
	s.mu.Lock()
	s.held = h
	s.mu.Unlock()
	return h
}

// failNext makes the next Append return err without writing anything.
func (s *auditStore) failNext(err error) {
	s.mu.Lock()
	s.failErr = err
	s.mu.Unlock()
}

func (s *auditStore) Append(ctx context.Context, stream string, exp eventstore.ExpectedVersion, evs ...eventstore.EventData) (eventstore.AppendResult, error) {
	s.mu.Lock()
	s.sizes = append(s.sizes, len(evs))
	h, fail := s.held, s.failErr
	s.held, s.failErr = nil, nil
	s.mu.Unlock()
	if h != nil {
		close(h.entered)
		<-h.release
	}
	if fail != nil {
		return eventstore.AppendResult{}, fmt.Errorf("append to %s: %w", stream, fail)
	}
	res, err := s.Store.Append(ctx, stream, exp, evs...)
	if err == nil {
		s.mu.Lock()
		if s.ends == nil {
			s.ends = map[eventstore.Position]bool{}
		}
		s.ends[res.Position] = true
		s.mu.Unlock()
	}
	return res, err
}

// appendEnds is the set of positions successful appends returned.
func (s *auditStore) appendEnds() map[eventstore.Position]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.ends)
}

func (s *auditStore) appendSizes() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.sizes...)
}

func (h *heldAppend) waitEntered(t *testing.T) {
	t.Helper()
	select {
	case <-h.entered:
	case <-time.After(auditSafety):
		t.Fatal("the held append was never called")
	}
}

// queuedCtx tells when its Write has queued the record: Write asks for Done only once
// the record is in the queue (before, it only calls Err), so the first Done call marks
// the record as queued. It relies on that detail of Write, which these tests own.
type queuedCtx struct {
	context.Context
	once   sync.Once
	queued chan struct{}
}

func newQueuedCtx(parent context.Context) *queuedCtx {
	return &queuedCtx{Context: parent, queued: make(chan struct{})}
}

func (c *queuedCtx) Done() <-chan struct{} {
	c.once.Do(func() { close(c.queued) })
	return c.Context.Done()
}

func (c *queuedCtx) waitQueued(t *testing.T) {
	t.Helper()
	select {
	case <-c.queued:
	case <-time.After(auditSafety):
		t.Fatal("the record was never queued")
	}
}

func openAuditStore(t *testing.T) *auditStore {
	t.Helper()
	es, err := embedded.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = es.Close() })
	return &auditStore{Store: es}
}

func newAuditWriter(t *testing.T, store eventstore.Store, change ...func(*voucher.AuditConfig)) *voucher.AuditWriter {
	t.Helper()
	cfg := voucher.AuditConfig{Store: store, Now: func() time.Time { return auditDay }}
	for _, c := range change {
		c(&cfg)
	}
	w, err := voucher.NewAuditWriter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	return w
}

// auditRec is a record of clientID's key kid issued at at, with a fresh voucher jti.
func auditRec(clientID, kid string, at time.Time) voucher.AuditRecord {
	return voucher.AuditRecord{VoucherJTI: uuid.NewString(), ClientID: clientID, ClientKind: client.KindEService,
		Tenant: "acme", KID: kid, AssertionAlg: "ES256", PurposeID: purposeA, EServiceID: eserviceA,
		Audience: esAudience, AssertionJTI: uuid.NewString(), AssertionIssuedAt: at.Add(-time.Second),
		AssertionExpiresAt: at.Add(time.Minute), VoucherIssuedAt: at, VoucherExpiresAt: at.Add(10 * time.Minute),
		SigningKID: "signing-1", EntryPosition: "42", CallerAddress: "192.0.2.7"}
}

// writeResult is one Write's outcome.
type writeResult struct {
	rec voucher.AuditRecord
	pos eventstore.Position
	err error
}

// writeAsync writes rec in a goroutine and returns where its outcome arrives.
func writeAsync(w *voucher.AuditWriter, ctx context.Context, rec voucher.AuditRecord) <-chan writeResult {
	out := make(chan writeResult, 1)
	go func() {
		pos, err := w.Write(ctx, rec, "corr-"+rec.VoucherJTI)
		out <- writeResult{rec: rec, pos: pos, err: err}
	}()
	return out
}

func await(t *testing.T, ch <-chan writeResult) writeResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(auditSafety):
		t.Fatal("Write did not return")
		return writeResult{}
	}
}

// readStream reads a whole stream forwards (none for a stream that does not exist).
func readStream(t *testing.T, s eventstore.Store, stream string) []eventstore.RecordedEvent {
	t.Helper()
	evs, err := s.ReadStream(context.Background(), stream, eventstore.Forwards, 0, 0)
	if errors.Is(err, eventstore.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// verifyChain checks the stream's hash chain with commands.EventHash, and each event's
// type, metadata and data; it returns the records by voucher jti with their events.
func verifyChain(t *testing.T, s eventstore.Store, stream string) map[string]eventstore.RecordedEvent {
	t.Helper()
	out := map[string]eventstore.RecordedEvent{}
	prev := ""
	for i, e := range readStream(t, s, stream) {
		if e.Version != uint64(i) {
			t.Fatalf("%s: event %d has version %d", stream, i, e.Version)
		}
		if e.Meta.PrevHash != prev {
			t.Fatalf("%s@%d: prevHash %q, want %q: the chain is broken", stream, i, e.Meta.PrevHash, prev)
		}
		prev = commands.EventHash(prev, e.ID, e.Type, e.Data)
		if e.Type != voucher.AuditEventType {
			t.Fatalf("%s@%d: type %q", stream, i, e.Type)
		}
		var rec voucher.AuditRecord
		if err := json.Unmarshal(e.Data, &rec); err != nil {
			t.Fatal(err)
		}
		want := eventstore.Metadata{Tenant: rec.Tenant, ActorID: rec.ClientID, ActorKind: eventstore.ActorClient,
			CorrelationID: "corr-" + rec.VoucherJTI, AggregateID: rec.ClientID, PrevHash: e.Meta.PrevHash}
		if e.Meta != want {
			t.Fatalf("%s@%d: metadata %+v, want %+v", stream, i, e.Meta, want)
		}
		if voucher.AuditStreamName(rec.VoucherIssuedAt) != stream {
			t.Fatalf("record issued at %s is in stream %s", rec.VoucherIssuedAt, stream)
		}
		if _, dup := out[rec.VoucherJTI]; dup {
			t.Fatalf("voucher %s audited twice", rec.VoucherJTI)
		}
		out[rec.VoucherJTI] = e
	}
	return out
}

func TestAuditStreamName(t *testing.T) {
	at := time.Date(2026, 11, 24, 23, 59, 59, 0, time.FixedZone("CET", 3600))
	if got := voucher.AuditStreamName(at); got != "voucheraudit-20261124" {
		t.Fatalf("AuditStreamName = %q (the UTC day of 2026-11-25 00:59:59 CET is the 24th)", got)
	}
	for _, agg := range []string{client.StreamName(""), keychain.StreamName(""), purpose.StreamName(""),
		eservice.StreamName(""), tenant.StreamName(""), user.StreamName("", ""), "kid-"} {
		if strings.HasPrefix(voucher.AuditStreamPrefix, agg) || strings.HasPrefix(agg, voucher.AuditStreamPrefix) {
			t.Errorf("aggregate stream prefix %q and the audit prefix %q overlap", agg, voucher.AuditStreamPrefix)
		}
	}
}

// The index reads the record through models.VoucherIssued: its JSON names must be
// AuditRecord's.
func TestAuditRecordFeedsTheIndex(t *testing.T) {
	rec := auditRec(esClient, "kid-1", auditDay)
	data, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	var got models.VoucherIssued
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	want := models.VoucherIssued{VoucherJTI: rec.VoucherJTI, ClientID: rec.ClientID, Tenant: rec.Tenant, KID: rec.KID}
	if got != want {
		t.Fatalf("the index reads %+v from %s", got, data)
	}
	if !strings.Contains(string(data), `"callerAddress":"192.0.2.7"`) {
		t.Fatalf("no caller address in %s", data)
	}
}

func TestAuditConcurrentWritersGroupCommit(t *testing.T) {
	store := openAuditStore(t)
	w := newAuditWriter(t, store)
	const writers, each = 64, 20
	results := make(chan writeResult, writers*each)
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for i := range each {
				rec := auditRec(fmt.Sprintf("client-%d", g), fmt.Sprintf("kid-%d", i%3), auditDay)
				pos, err := w.Write(context.Background(), rec, "corr-"+rec.VoucherJTI)
				results <- writeResult{rec: rec, pos: pos, err: err}
			}
		})
	}
	wg.Wait()
	close(results)

	written := verifyChain(t, store, voucher.AuditStreamName(auditDay))
	appendEnds := store.appendEnds()
	n := 0
	for r := range results {
		n++
		if r.err != nil {
			t.Errorf("Write: %v", r.err)
			continue
		}
		e, ok := written[r.rec.VoucherJTI]
		if !ok {
			t.Errorf("voucher %s: Write succeeded but no event", r.rec.VoucherJTI)
			continue
		}
		if r.pos.Less(e.Position) || !appendEnds[r.pos] {
			t.Errorf("voucher %s: Write returned position %s, want the position of the last event of the append holding its event at %s",
				r.rec.VoucherJTI, r.pos, e.Position)
		}
		var got voucher.AuditRecord
		if err := json.Unmarshal(e.Data, &got); err != nil || !reflect.DeepEqual(normal(got), normal(r.rec)) {
			t.Errorf("voucher %s: stored %+v (%v), wrote %+v", r.rec.VoucherJTI, got, err, r.rec)
		}
	}
	if n != writers*each || len(written) != writers*each {
		t.Fatalf("%d writes, %d events, want %d of each", n, len(written), writers*each)
	}
	sizes := appendsTotal(store.appendSizes())
	if sizes.calls >= writers*each || sizes.events != writers*each {
		t.Fatalf("%d appends of %d events in all for %d records: no group commit", sizes.calls, sizes.events, writers*each)
	}
	t.Logf("%d records in %d appends (largest %d)", sizes.events, sizes.calls, sizes.largest)
}

// normal makes a record's times comparable after a JSON round trip.
func normal(r voucher.AuditRecord) voucher.AuditRecord {
	for _, p := range []*time.Time{&r.AssertionIssuedAt, &r.AssertionExpiresAt, &r.VoucherIssuedAt, &r.VoucherExpiresAt} {
		*p = p.UTC()
	}
	return r
}

type appendTotals struct{ calls, events, largest int }

func appendsTotal(sizes []int) appendTotals {
	var a appendTotals
	for _, s := range sizes {
		a.calls++
		a.events += s
		a.largest = max(a.largest, s)
	}
	return a
}

// While one append is in flight, records queue; the next append takes them all at once.
func TestAuditQueuedRecordsShareOneAppend(t *testing.T) {
	store := openAuditStore(t)
	w := newAuditWriter(t, store)
	h := store.holdNext()
	first := writeAsync(w, context.Background(), auditRec(esClient, "kid-1", auditDay))
	h.waitEntered(t)
	var queued []<-chan writeResult
	for range 10 {
		ctx := newQueuedCtx(context.Background())
		queued = append(queued, writeAsync(w, ctx, auditRec(esClient, "kid-2", auditDay)))
		ctx.waitQueued(t)
	}
	close(h.release)
	if r := await(t, first); r.err != nil {
		t.Fatal(r.err)
	}
	for _, ch := range queued {
		if r := await(t, ch); r.err != nil {
			t.Fatal(r.err)
		}
	}
	if got := store.appendSizes(); !reflect.DeepEqual(got, []int{1, 10}) {
		t.Fatalf("appends of %v events, want [1 10]", got)
	}
	verifyChain(t, store, voucher.AuditStreamName(auditDay))
}

func TestAuditMaxBatch(t *testing.T) {
	store := openAuditStore(t)
	w := newAuditWriter(t, store, func(c *voucher.AuditConfig) { c.MaxBatch = 4 })
	h := store.holdNext()
	first := writeAsync(w, context.Background(), auditRec(esClient, "kid-1", auditDay))
	h.waitEntered(t)
	var queued []<-chan writeResult
	for range 10 {
		ctx := newQueuedCtx(context.Background())
		queued = append(queued, writeAsync(w, ctx, auditRec(esClient, "kid-1", auditDay)))
		ctx.waitQueued(t)
	}
	close(h.release)
	for _, ch := range append(queued, first) {
		if r := await(t, ch); r.err != nil {
			t.Fatal(r.err)
		}
	}
	if got := store.appendSizes(); !reflect.DeepEqual(got, []int{1, 4, 4, 2}) {
		t.Fatalf("appends of %v events, want [1 4 4 2]", got)
	}
	if got := len(verifyChain(t, store, voucher.AuditStreamName(auditDay))); got != 11 {
		t.Fatalf("%d events, want 11", got)
	}
}

func TestAuditAppendFailureFailsTheWholeBatch(t *testing.T) {
	store := openAuditStore(t)
	w := newAuditWriter(t, store)
	h := store.holdNext()
	first := writeAsync(w, context.Background(), auditRec(esClient, "kid-1", auditDay))
	h.waitEntered(t)
	var queued []<-chan writeResult
	for range 5 {
		ctx := newQueuedCtx(context.Background())
		queued = append(queued, writeAsync(w, ctx, auditRec(esClient, "kid-1", auditDay)))
		ctx.waitQueued(t)
	}
	store.failNext(eventstore.ErrUnavailable) // the batch of the five
	close(h.release)
	if r := await(t, first); r.err != nil {
		t.Fatal(r.err)
	}
	for _, ch := range queued {
		r := await(t, ch)
		if !errors.Is(r.err, voucher.ErrUnavailable) || !errors.Is(r.err, eventstore.ErrUnavailable) {
			t.Fatalf("Write of a failed batch: %v, want voucher.ErrUnavailable wrapping the store's error", r.err)
		}
		if !r.pos.IsZero() {
			t.Fatalf("failed Write returned position %s", r.pos)
		}
	}
	stream := voucher.AuditStreamName(auditDay)
	if got := len(verifyChain(t, store, stream)); got != 1 {
		t.Fatalf("%d events after the failed batch, want only the first", got)
	}
	// The writer goes on, re-reading the tail: the chain stays whole.
	if _, err := w.Write(context.Background(), auditRec(esClient, "kid-1", auditDay), "corr-x"); err != nil {
		t.Fatal(err)
	}
	evs := readStream(t, store, stream)
	if len(evs) != 2 || evs[1].Meta.PrevHash != commands.EventHash(evs[0].Meta.PrevHash, evs[0].ID, evs[0].Type, evs[0].Data) {
		t.Fatalf("after the failure: %d events, chain %+v", len(evs), evs)
	}
}

func TestAuditContextEndsWhileQueued(t *testing.T) {
	store := openAuditStore(t)
	w := newAuditWriter(t, store)
	h := store.holdNext()
	first := writeAsync(w, context.Background(), auditRec(esClient, "kid-1", auditDay))
	h.waitEntered(t)
	ctx, cancel := context.WithCancel(context.Background())
	qctx := newQueuedCtx(ctx)
	dropped := auditRec(esClient, "kid-1", auditDay)
	gone := writeAsync(w, qctx, dropped)
	qctx.waitQueued(t)
	cancel()
	if r := await(t, gone); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("Write whose context ended while queued: %v, want context.Canceled", r.err)
	}
	kept := writeAsync(w, context.Background(), auditRec(esClient, "kid-1", auditDay))
	close(h.release)
	for _, ch := range []<-chan writeResult{first, kept} {
		if r := await(t, ch); r.err != nil {
			t.Fatal(r.err)
		}
	}
	written := verifyChain(t, store, voucher.AuditStreamName(auditDay))
	if _, ok := written[dropped.VoucherJTI]; ok || len(written) != 2 {
		t.Fatalf("%d events, the cancelled record written: %v; want the two others only", len(written), ok)
	}
}

// A context that ends once the record is in an append: Write returns at once, and the
// record is written anyway (documented).
func TestAuditContextEndsInFlight(t *testing.T) {
	store := openAuditStore(t)
	w := newAuditWriter(t, store)
	h := store.holdNext()
	ctx, cancel := context.WithCancel(context.Background())
	rec := auditRec(esClient, "kid-1", auditDay)
	ch := writeAsync(w, ctx, rec)
	h.waitEntered(t)
	cancel()
	if r := await(t, ch); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("Write: %v, want context.Canceled", r.err)
	}
	close(h.release)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := verifyChain(t, store, voucher.AuditStreamName(auditDay))[rec.VoucherJTI]; !ok {
		t.Fatal("the record of an append in flight was not written")
	}
}

func TestAuditBatchAcrossMidnightSplitsPerDay(t *testing.T) {
	store := openAuditStore(t)
	w := newAuditWriter(t, store)
	before := time.Date(2026, 11, 24, 23, 59, 59, 0, time.UTC)
	after := before.Add(2 * time.Second)
	h := store.holdNext()
	first := writeAsync(w, context.Background(), auditRec(esClient, "kid-1", before))
	h.waitEntered(t)
	var queued []<-chan writeResult
	for i := range 6 {
		at := before
		if i%2 == 1 {
			at = after
		}
		ctx := newQueuedCtx(context.Background())
		queued = append(queued, writeAsync(w, ctx, auditRec(esClient, "kid-1", at)))
		ctx.waitQueued(t)
	}
	close(h.release)
	for _, ch := range append(queued, first) {
		if r := await(t, ch); r.err != nil {
			t.Fatal(r.err)
		}
	}
	if got := store.appendSizes(); !reflect.DeepEqual(got, []int{1, 3, 3}) {
		t.Fatalf("appends of %v events, want [1 3 3]: one per day", got)
	}
	d1 := verifyChain(t, store, "voucheraudit-20261124")
	d2 := verifyChain(t, store, "voucheraudit-20261125")
	if len(d1) != 4 || len(d2) != 3 {
		t.Fatalf("%d events on the 24th, %d on the 25th; want 4 and 3", len(d1), len(d2))
	}
}

// A record without VoucherIssuedAt goes to the day of the writer's clock.
func TestAuditDayFromClock(t *testing.T) {
	store := openAuditStore(t)
	w := newAuditWriter(t, store)
	rec := auditRec(esClient, "kid-1", auditDay)
	rec.VoucherIssuedAt = time.Time{}
	if _, err := w.Write(context.Background(), rec, "corr-"+rec.VoucherJTI); err != nil {
		t.Fatal(err)
	}
	if evs := readStream(t, store, voucher.AuditStreamName(auditDay)); len(evs) != 1 {
		t.Fatalf("%d events in the clock's day", len(evs))
	}
}

// Another process appends to the day's stream behind the writer's back: its next append
// conflicts, it re-reads the tail and chains on the other's event.
func TestAuditTwoWritersKeepOneChain(t *testing.T) {
	store := openAuditStore(t)
	w1 := newAuditWriter(t, store)
	w2 := newAuditWriter(t, store)
	write := func(w *voucher.AuditWriter) {
		t.Helper()
		rec := auditRec(esClient, "kid-1", auditDay)
		if _, err := w.Write(context.Background(), rec, "corr-"+rec.VoucherJTI); err != nil {
			t.Fatal(err)
		}
	}
	write(w1)
	write(w2)
	write(w1) // w1 still believes the stream is at version 0
	write(w2)
	if got := len(verifyChain(t, store, voucher.AuditStreamName(auditDay))); got != 4 {
		t.Fatalf("%d events, want 4", got)
	}
	if got := store.appendSizes(); len(got) != 6 {
		t.Fatalf("%d append calls, want 6 (4 records, 2 conflicts)", len(got))
	}
}

func TestAuditTwoWritersConcurrently(t *testing.T) {
	store := openAuditStore(t)
	// Contention is the point here: enough attempts that none fails for it.
	more := func(c *voucher.AuditConfig) { c.MaxAttempts = 1000 }
	ws := []*voucher.AuditWriter{newAuditWriter(t, store, more), newAuditWriter(t, store, more)}
	const goroutines, each = 16, 10
	errs := make(chan error, len(ws)*goroutines*each)
	var wg sync.WaitGroup
	for _, w := range ws {
		for g := range goroutines {
			wg.Go(func() {
				for range each {
					rec := auditRec(fmt.Sprintf("client-%d", g), "kid-1", auditDay)
					_, err := w.Write(context.Background(), rec, "corr-"+rec.VoucherJTI)
					errs <- err
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	n := 0
	for err := range errs {
		n++
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := len(verifyChain(t, store, voucher.AuditStreamName(auditDay))); got != n {
		t.Fatalf("%d events for %d writes", got, n)
	}
}

func TestAuditContentionExhausted(t *testing.T) {
	store := openAuditStore(t)
	w := newAuditWriter(t, store, func(c *voucher.AuditConfig) { c.MaxAttempts = 1 })
	other := newAuditWriter(t, store)
	rec := auditRec(esClient, "kid-1", auditDay)
	if _, err := w.Write(context.Background(), rec, "corr-"+rec.VoucherJTI); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Write(context.Background(), auditRec(esClient, "kid-1", auditDay), "c"); err != nil {
		t.Fatal(err)
	}
	_, err := w.Write(context.Background(), auditRec(esClient, "kid-1", auditDay), "c")
	if !errors.Is(err, voucher.ErrAuditContention) || !errors.Is(err, voucher.ErrUnavailable) || !errors.Is(err, eventstore.ErrConcurrency) {
		t.Fatalf("Write after one conflicting attempt: %v", err)
	}
}

func TestAuditCloseDrains(t *testing.T) {
	store := openAuditStore(t)
	w := newAuditWriter(t, store)
	h := store.holdNext()
	first := writeAsync(w, context.Background(), auditRec(esClient, "kid-1", auditDay))
	h.waitEntered(t)
	var queued []<-chan writeResult
	for range 3 {
		ctx := newQueuedCtx(context.Background())
		queued = append(queued, writeAsync(w, ctx, auditRec(esClient, "kid-1", auditDay)))
		ctx.waitQueued(t)
	}
	closed := make(chan error, 1)
	go func() { closed <- w.Close() }()
	// Close has begun once a Write is refused. A probe that comes before it queues
	// behind the held append, and leaves (unwritten) when its short context ends.
	deadline := time.Now().Add(auditSafety)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
		_, err := w.Write(ctx, auditRec(esClient, "kid-1", auditDay), "c")
		cancel()
		if errors.Is(err, voucher.ErrAuditClosed) {
			if !errors.Is(err, voucher.ErrUnavailable) {
				t.Fatalf("ErrAuditClosed does not wrap ErrUnavailable: %v", err)
			}
			break
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("probe before Close: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatal("Close never began")
		}
	}
	close(h.release)
	for _, ch := range append(queued, first) {
		if r := await(t, ch); r.err != nil {
			t.Fatalf("a record queued before Close: %v", r.err)
		}
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestAuditRefusesInvalidRecords(t *testing.T) {
	store := openAuditStore(t)
	w := newAuditWriter(t, store)
	for name, change := range map[string]func(*voucher.AuditRecord){
		"no jti":       func(r *voucher.AuditRecord) { r.VoucherJTI = "" },
		"no client":    func(r *voucher.AuditRecord) { r.ClientID = "" },
		"no tenant":    func(r *voucher.AuditRecord) { r.Tenant = "" },
		"no kid":       func(r *voucher.AuditRecord) { r.KID = "" },
		"slash":        func(r *voucher.AuditRecord) { r.ClientID = "a/b" },
		"control char": func(r *voucher.AuditRecord) { r.Tenant = "acme\n" },
	} {
		rec := auditRec(esClient, "kid-1", auditDay)
		change(&rec)
		if _, err := w.Write(context.Background(), rec, "c"); !errors.Is(err, voucher.ErrInvalidAuditRecord) {
			t.Errorf("%s: %v, want ErrInvalidAuditRecord", name, err)
		}
	}
	if got := store.appendSizes(); len(got) != 0 {
		t.Fatalf("appends %v for invalid records", got)
	}
}

func TestNewAuditWriterConfig(t *testing.T) {
	store := openAuditStore(t)
	for name, cfg := range map[string]voucher.AuditConfig{
		"no store":         {},
		"batch too large":  {Store: store, MaxBatch: voucher.MaxAuditMaxBatch + 1},
		"negative batch":   {Store: store, MaxBatch: -1},
		"negative attempt": {Store: store, MaxAttempts: -1},
		"negative timeout": {Store: store, Timeout: -time.Second},
	} {
		if w, err := voucher.NewAuditWriter(cfg); err == nil {
			_ = w.Close()
			t.Errorf("%s: accepted", name)
		}
	}
}

// The records the writer appends, indexed by the audit model (rebuilt from the log),
// come back through ListAudit decoded, newest first, per client and per key.
func TestAuditListedThroughTheIndex(t *testing.T) {
	store := openAuditStore(t)
	w := newAuditWriter(t, store)
	var recs []voucher.AuditRecord
	for i := range 7 {
		rec := auditRec(esClient, fmt.Sprintf("kid-%d", i%2), auditDay.Add(time.Duration(i)*time.Hour*3))
		if _, err := w.Write(context.Background(), rec, "corr-"+rec.VoucherJTI); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
	}
	rm := readmodel.NewMemory()
	ns := readmodel.Namespace{Model: models.AuditModel, Generation: models.AuditVersion}
	if _, err := runner.Rebuild(context.Background(), store, rm, models.Audit, ns, runner.RebuildConfig{Direct: true}); err != nil {
		t.Fatal(err)
	}
	page, err := voucher.ListAudit(context.Background(), rm, ns, store, models.AuditQuery{Tenant: "acme", ClientID: esClient, KID: "kid-1"})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := len(recs) - 1; i >= 0; i-- {
		if recs[i].KID == "kid-1" {
			want = append(want, recs[i].VoucherJTI)
		}
	}
	var got []string
	for _, e := range page.Items {
		got = append(got, e.Record.VoucherJTI)
		if e.Record.CallerAddress != "192.0.2.7" || e.Position.IsZero() || e.RecordedAt.IsZero() ||
			e.Stream != voucher.AuditStreamName(e.Record.VoucherIssuedAt) {
			t.Fatalf("entry %+v", e)
		}
	}
	if !reflect.DeepEqual(got, want) || page.NextCursor != "" {
		t.Fatalf("listed %v (next %q), want %v", got, page.NextCursor, want)
	}
}

// A lone announced request is appended at once, not after the linger.
func TestAuditExpectLoneRequestDoesNotWait(t *testing.T) {
	store := openAuditStore(t)
	w := newAuditWriter(t, store, func(c *voucher.AuditConfig) { c.Linger = time.Hour })
	ctx, release := w.Expect(context.Background())
	defer release()
	if r := await(t, writeAsync(w, ctx, auditRec(esClient, "kid-1", auditDay))); r.err != nil {
		t.Fatal(r.err)
	}
	if got := store.appendSizes(); !slices.Equal(got, []int{1}) {
		t.Fatalf("appends %v, want [1]", got)
	}
}

// While announced requests outnumber the queued records, the queue waits for them; a
// request that ends without a record (refused) releases its announcement, and the
// records go as soon as they are at least as many as those still announced.
func TestAuditExpectHoldsForAnnouncedRecords(t *testing.T) {
	store := openAuditStore(t)
	w := newAuditWriter(t, store, func(c *voucher.AuditConfig) { c.Linger = time.Hour })
	ctx1, release1 := w.Expect(context.Background())
	defer release1()
	ctx2, release2 := w.Expect(context.Background())
	defer release2()
	_, release3 := w.Expect(context.Background())

	first := writeAsync(w, ctx1, auditRec(esClient, "kid-1", auditDay))
	select {
	case r := <-first:
		t.Fatalf("the record went before the announced ones (1 queued, 2 announced): %v", r.err)
	case <-time.After(100 * time.Millisecond):
	}
	if got := store.appendSizes(); len(got) != 0 {
		t.Fatalf("appends %v while holding", got)
	}
	release3()                              // a refused request: 1 queued, 1 announced
	release3()                              // idempotent
	if r := await(t, first); r.err != nil { // await fails after auditSafety
		t.Fatal(r.err)
	}
	if r := await(t, writeAsync(w, ctx2, auditRec(esClient, "kid-2", auditDay))); r.err != nil {
		t.Fatal(r.err)
	}
	if got := store.appendSizes(); !slices.Equal(got, []int{1, 1}) {
		t.Fatalf("appends %v, want [1 1]", got)
	}
	verifyChain(t, store, voucher.AuditStreamName(auditDay))
}

// The announced records are waited for at most Linger.
func TestAuditExpectWaitsAtMostLinger(t *testing.T) {
	store := openAuditStore(t)
	const linger = 50 * time.Millisecond
	w := newAuditWriter(t, store, func(c *voucher.AuditConfig) { c.Linger = linger })
	ctx, release := w.Expect(context.Background())
	defer release()
	_, never := w.Expect(context.Background()) // a request that hangs
	defer never()
	_, never2 := w.Expect(context.Background())
	defer never2()
	start := time.Now()
	if r := await(t, writeAsync(w, ctx, auditRec(esClient, "kid-1", auditDay))); r.err != nil {
		t.Fatal(r.err)
	}
	if took := time.Since(start); took < linger {
		t.Fatalf("appended after %s, before the linger of %s with two records still announced", took, linger)
	}
}

// Announced records are appended together: many concurrent announced requests need
// far fewer appends than records, and every record is in the chain.
func TestAuditExpectBatchesConcurrentRequests(t *testing.T) {
	store := openAuditStore(t)
	w := newAuditWriter(t, store, func(c *voucher.AuditConfig) { c.Linger = time.Hour })
	const n = 32
	var wg sync.WaitGroup
	ctxs := make([]context.Context, n)
	releases := make([]func(), n)
	for i := range n {
		ctxs[i], releases[i] = w.Expect(context.Background())
	}
	for i := range n {
		wg.Go(func() {
			defer releases[i]()
			rec := auditRec(fmt.Sprintf("client-%d", i), "kid-1", auditDay)
			if _, err := w.Write(ctxs[i], rec, "corr-"+rec.VoucherJTI); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	sizes := store.appendSizes()
	total := 0
	for _, s := range sizes {
		total += s
	}
	// Each append waits until the queued records are at least as many as the announced
	// ones, so each takes at least half of what is left: at most about log2(n) + 1.
	if total != n || len(sizes) > 7 {
		t.Fatalf("appends %v for %d announced records", sizes, n)
	}
	if got := len(verifyChain(t, store, voucher.AuditStreamName(auditDay))); got != n {
		t.Fatalf("%d records in the chain, want %d", got, n)
	}
}

// TestAuditSubmitAppendsWithoutWaiting: a submitted record is appended whether or not
// its caller waits yet (the token endpoint signs meanwhile); the wait then reports the
// append that holds it.
func TestAuditSubmitAppendsWithoutWaiting(t *testing.T) {
	store := openAuditStore(t)
	w := newAuditWriter(t, store)
	rec := auditRec(esClient, "kid-1", auditDay)
	wait, err := w.Submit(context.Background(), rec, "corr-"+rec.VoucherJTI)
	if err != nil {
		t.Fatal(err)
	}
	stream := voucher.AuditStreamName(auditDay)
	deadline := time.Now().Add(auditSafety)
	for len(readStream(t, store, stream)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the submitted record was not appended before its wait")
		}
		time.Sleep(time.Millisecond)
	}
	pos, err := wait(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := verifyChain(t, store, stream)
	e, ok := got[rec.VoucherJTI]
	if len(got) != 1 || !ok || !store.appendEnds()[pos] || pos.Less(e.Position) {
		t.Fatalf("wait gave %v; the stream holds %v", pos, got)
	}
	if _, err := w.Submit(context.Background(), voucher.AuditRecord{ClientID: esClient}, "corr"); !errors.Is(err, voucher.ErrInvalidAuditRecord) {
		t.Fatalf("a record without jti: %v", err)
	}
}
