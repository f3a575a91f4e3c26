package voucher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/projections/models"
	"github.com/keyledger/keyledger/projections/readmodel"
)

// The audit log's names (declared in projections/models, which reads the log and which
// this package imports).
const (
	// AuditStreamPrefix starts every audit stream's name: "voucheraudit-" + the UTC day
	// (AuditStreamName). No aggregate stream prefix is a prefix of it.
	AuditStreamPrefix = models.AuditStreamPrefix
	// AuditEventType is the store type of the audit event of one issued voucher; its
	// data is the AuditRecord's JSON.
	AuditEventType = models.AuditEventType
)

// AuditStreamName is the audit stream of the UTC day of t: "voucheraudit-20261124".
// A voucher's record goes to the stream of its VoucherIssuedAt.
func AuditStreamName(t time.Time) string {
	return AuditStreamPrefix + t.UTC().Format("20060102")
}

// Audit-writer defaults and bounds.
const (
	DefaultAuditMaxBatch    = 256
	MaxAuditMaxBatch        = 4096
	DefaultAuditMaxAttempts = 8
	DefaultAuditTimeout     = 10 * time.Second
	// DefaultAuditLinger: under load a batch waits up to 5 ms (it was 1) for the
	// records of requests already announced. RS256 requests arrive slowly enough (a
	// millisecond of signature each per core) that 1 ms held two or three records per
	// durable append; 5 ms holds 3 to 5 at 16 callers and 9 at 64. tokenload (two cores,
	// 1,000 keys, one run each against 1 ms): RS256 embedded +5 to +9 % vouchers/s at
	// c=16 and 0 to +9 % at c=64, p99 equal or lower; RS256 with Redis −2 % at c=16
	// (p99 lower) and +9 % at c=64; ES256 embedded −5 % and +4 %, within run-to-run
	// noise. A request whose record is held waits at most Linger more; a lone request
	// (nothing else announced) never waits.
	DefaultAuditLinger = 5 * time.Millisecond
)

// Audit-writer errors. Both wrap ErrUnavailable: the HTTP layer withholds the voucher
// and answers 503 for them as for any other error of Write but a context error.
var (
	// ErrAuditClosed: Write was called after Close began.
	ErrAuditClosed = fmt.Errorf("%w: audit writer closed", ErrUnavailable)
	// ErrAuditContention: the audit stream kept moving under the writer (other
	// processes appending) through every attempt.
	ErrAuditContention = fmt.Errorf("%w: audit stream contended through every attempt", ErrUnavailable)
	// ErrInvalidAuditRecord: the record lacks, or has a malformed, voucher jti, client,
	// tenant or kid. A bug of the caller: answer 500. Nothing was written.
	ErrInvalidAuditRecord = errors.New("voucher: invalid audit record")
)

// AuditConfig configures an AuditWriter.
type AuditConfig struct {
	// Store is the event store the audit is appended to. Required. The writer does not
	// close it.
	Store eventstore.Store
	// MaxBatch caps the records of one append. Default 256 (when 0), at most 4096. A
	// larger batch amortises one durable append over more vouchers but is one larger
	// write; every record of a batch shares its fate.
	MaxBatch int
	// MaxAttempts bounds the appends of one batch when the stream's version moved (other
	// processes appending to the same day's stream). Default 8. Each retry re-reads the
	// stream's last event first.
	MaxAttempts int
	// Timeout bounds each event-store call the writer makes (an append, a read of a
	// stream's tail). Default 10s. Callers leave earlier through their own contexts, but
	// the writer works on no caller's context: one caller giving up must not fail the
	// others of its batch. Too short a timeout fails appends that were still going to
	// succeed (and whose outcome is then unknown: see Write).
	Timeout time.Duration
	// Linger bounds how long a batch waits for announced records (Expect) before it is
	// appended anyway. Default DefaultAuditLinger (when 0); negative: never wait.
	Linger time.Duration
	// Now is the clock, used only for the day of a record without VoucherIssuedAt.
	// Default time.Now.
	Now func() time.Time
	// NewID returns each event's id (a UUID). Default uuid.NewString.
	NewID func() string
	// Logger receives one warning per failed batch (stream, size, attempts, error; the
	// records hold no secrets but are not logged either). Default: no logging.
	Logger *slog.Logger
}

// AuditWriter appends the audit event of every issued voucher to the event store, with
// group commit: while one append is in flight, Write calls queue, and the next append
// takes everything queued (up to MaxBatch) in one Store.Append per day's stream. A lone
// caller does not wait for company: its record is appended as soon as the writer is
// free. Safe for concurrent use; one per process.
//
// Callers that know a record is coming announce it (Expect, at the start of a token
// request). While announced records outnumber the queued ones, the writer holds the
// queue back — at most Linger — so that the requests in flight share one append instead
// of paying one durable append each two or three at a time; with nothing announced it
// appends at once. Under load this halves the appends or better, at the cost of a wait
// shorter than the requests' own work.
//
// # Streams and the hash chain
//
// Records go to one stream per UTC day of their VoucherIssuedAt (AuditStreamName); a
// batch that spans midnight becomes one append per day. Every event's metadata carries
// the hash of the previous event of its stream (eventstore.EventHash: SHA-256 over the
// previous hash, id, type and data), so the day's stream is one tamper-evident chain
// like an aggregate's.
//
// Several processes (replicas on one EventStoreDB) append to the same day's stream, so
// blind appends (expected version Any) would fork the chain: two appends computed from
// the same last hash. The writer therefore appends with the exact version it knows
// (NoStream for a new stream) and the hash of that version's event: it reads the
// stream's last event backwards the first time it writes to a stream, then follows its
// own appends. When another process appended in between, the append fails with
// eventstore.ErrConcurrency, writing nothing; the writer re-reads the tail, re-chains the
// batch and retries, at most MaxAttempts times (with a short random pause from the
// second retry on, so that contending replicas spread out), then fails the batch with
// ErrAuditContention. Replicas thus serialise on the day's stream: each conflict costs a
// read and an append, which bounds the audit throughput of many replicas under heavy
// load — the price of one verifiable chain per day.
//
// # Failures
//
// When an append fails, every Write of that batch returns the error: wrapped in
// ErrUnavailable together with the store's error (errors.Is(err,
// eventstore.ErrUnavailable) etc. hold), except eventstore.ErrInvalidAppend, a bug of the
// writer that is no outage. A failed append wrote nothing when the store says so
// (eventstore.ErrConcurrency after the last attempt, eventstore.ErrInvalidAppend); for
// other errors (eventstore.ErrUnavailable, a timeout) the store cannot tell, and the
// records may have been written although their callers got an error: the audit may then
// list a voucher that was never sent, never the reverse. The writer does not retry
// those (a retry could not tell a lost append from another process's) and re-reads the
// stream's tail before its next append, so the chain continues from whatever was
// written.
type AuditWriter struct {
	cfg AuditConfig
	log *slog.Logger

	mu     sync.Mutex
	queue  []*auditItem // guarded by mu
	closed bool         // guarded by mu
	// expected counts the announced records (Expect) not yet queued nor released;
	// firstQueued is when the oldest queued record was queued. Guarded by mu.
	expected    int
	firstQueued time.Time

	wake chan struct{} // capacity 1: something was queued, or Close began
	done chan struct{} // closed when the committer has drained the queue and exited
	once sync.Once

	// streams is the committer's knowledge of each stream's tail (committer only).
	streams map[string]*auditTail
}

// auditTail is a stream's last event as the committer knows it.
type auditTail struct {
	exists  bool
	version uint64
	hash    string
}

type itemState uint8

const (
	itemQueued itemState = iota
	itemTaken            // in an append
	itemCancelled
)

// auditItem is one Write: its record, once encoded, and its outcome.
type auditItem struct {
	ctx    context.Context
	id     string
	data   json.RawMessage
	meta   eventstore.Metadata
	stream string
	state  itemState // guarded by the writer's mu

	done chan struct{} // closed when pos and err are set
	pos  eventstore.Position
	err  error
}

func (it *auditItem) finish(pos eventstore.Position, err error) {
	it.pos, it.err = pos, err
	close(it.done)
}

// NewAuditWriter checks cfg and starts the writer. Close it to drain and stop it.
func NewAuditWriter(cfg AuditConfig) (*AuditWriter, error) {
	if cfg.Store == nil {
		return nil, errors.New("voucher: the audit writer has no event store")
	}
	switch {
	case cfg.MaxBatch == 0:
		cfg.MaxBatch = DefaultAuditMaxBatch
	case cfg.MaxBatch < 1 || cfg.MaxBatch > MaxAuditMaxBatch:
		return nil, fmt.Errorf("voucher: audit MaxBatch %d: want 1 to %d", cfg.MaxBatch, MaxAuditMaxBatch)
	}
	switch {
	case cfg.MaxAttempts == 0:
		cfg.MaxAttempts = DefaultAuditMaxAttempts
	case cfg.MaxAttempts < 1:
		return nil, fmt.Errorf("voucher: audit MaxAttempts %d: want at least 1", cfg.MaxAttempts)
	}
	switch {
	case cfg.Timeout == 0:
		cfg.Timeout = DefaultAuditTimeout
	case cfg.Timeout < 0:
		return nil, fmt.Errorf("voucher: audit Timeout %s: want a positive duration", cfg.Timeout)
	}
	if cfg.Linger == 0 {
		cfg.Linger = DefaultAuditLinger
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.NewID == nil {
		cfg.NewID = uuid.NewString
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &AuditWriter{cfg: cfg, log: log, wake: make(chan struct{}, 1), done: make(chan struct{}),
		streams: map[string]*auditTail{}}
	go w.run()
	return w, nil
}

// Write appends rec's audit event (type AuditEventType, data rec's JSON; metadata:
// tenant rec.Tenant, actor the client, aggregate id the client, correlationID) and
// returns once the append holding it is durable, with the position of that append's
// last event (never before the record's own: waiting for a read model to reach it
// covers the record) — or with the error that failed it. Send the voucher only after
// Write returned nil. (Reading every record's own position back cost the token path
// a stream read per batch.) Write is Submit followed by its wait.
//
// ctx bounds the wait. If ctx ends while the record is still queued, Write returns
// ctx.Err() and the record is not written. If ctx ends after the record was taken into
// an append, Write returns ctx.Err() at once but the append goes on for the other
// records of its batch, so the record may still be written: the audit may then list a
// voucher that was never sent, never the reverse.
func (w *AuditWriter) Write(ctx context.Context, rec AuditRecord, correlationID string) (eventstore.Position, error) {
	wait, err := w.Submit(ctx, rec, correlationID)
	if err != nil {
		return eventstore.Start, err
	}
	return wait(ctx)
}

// AuditWait waits until a submitted record's append is durable (see Write for what it
// returns). ctx bounds the wait; once ctx ends a record still queued is dropped. Call
// it once.
type AuditWait func(ctx context.Context) (eventstore.Position, error)

// Submit queues rec's audit event, as Write does, and returns at once with the wait for
// its append: the token endpoint queues the record of a voucher before signing it, so
// that the append runs while the voucher is signed (an RSA signature takes longer than
// a durable append), and answers once both are done. The record is written even if the
// voucher then cannot be signed — the audit may list a voucher that was never sent,
// never the reverse. ctx is the record's context: when it ends while the record is
// still queued, the record is dropped.
func (w *AuditWriter) Submit(ctx context.Context, rec AuditRecord, correlationID string) (AuditWait, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for _, f := range []struct{ name, v string }{{"voucher jti", rec.VoucherJTI}, {"client", rec.ClientID}, {"tenant", rec.Tenant}, {"kid", rec.KID}} {
		if !models.ValidAuditID(f.v) {
			return nil, fmt.Errorf("%w: %s %q: want 1 to 256 printable characters without '/'", ErrInvalidAuditRecord, f.name, f.v)
		}
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidAuditRecord, err)
	}
	day := rec.VoucherIssuedAt
	if day.IsZero() {
		day = w.cfg.Now()
	}
	it := &auditItem{ctx: ctx, id: w.cfg.NewID(), data: data, stream: AuditStreamName(day), done: make(chan struct{}),
		meta: eventstore.Metadata{Tenant: rec.Tenant, ActorID: rec.ClientID, ActorKind: eventstore.ActorClient,
			CorrelationID: correlationID, AggregateID: rec.ClientID}}
	slot, _ := ctx.Value(slotKey{}).(*auditSlot)
	if slot != nil && slot.w != w {
		slot = nil
	}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil, ErrAuditClosed
	}
	if slot != nil {
		w.releaseLocked(slot)
	}
	if len(w.queue) == 0 {
		w.firstQueued = time.Now()
	}
	w.queue = append(w.queue, it)
	wake := len(w.queue) == 1 || w.readyLocked()
	w.mu.Unlock()
	if wake {
		w.signal()
	}
	return func(ctx context.Context) (eventstore.Position, error) { return w.wait(ctx, it) }, nil
}

// wait is an AuditWait: it waits for the item's outcome or for ctx to end.
func (w *AuditWriter) wait(ctx context.Context, it *auditItem) (eventstore.Position, error) {
	select {
	case <-it.done:
		return it.pos, it.err
	case <-ctx.Done():
	}
	select {
	case <-it.done: // finished meanwhile: its outcome is known, report it
		return it.pos, it.err
	default:
	}
	w.mu.Lock()
	if it.state == itemQueued {
		it.state = itemCancelled // the committer drops it
	}
	w.mu.Unlock()
	return eventstore.Start, ctx.Err()
}

// slotKey is the context key of an announced record (Expect).
type slotKey struct{}

// auditSlot is one announced record.
type auditSlot struct {
	w        *AuditWriter
	released bool // guarded by w.mu
}

// Expect announces a record that will probably follow: call it when a token request
// begins, pass the returned context to the Write of the request's record, and call
// release when the request ends (after Write returned, or when it was refused: release
// is idempotent and cheap). The Write of that context ends the announcement when it
// queues the record; release ends it for a request that never writes.
func (w *AuditWriter) Expect(ctx context.Context) (_ context.Context, release func()) {
	if w.cfg.Linger < 0 {
		return ctx, func() {}
	}
	s := &auditSlot{w: w}
	w.mu.Lock()
	w.expected++
	w.mu.Unlock()
	return context.WithValue(ctx, slotKey{}, s), func() {
		w.mu.Lock()
		wake := !s.released && len(w.queue) > 0
		w.releaseLocked(s)
		wake = wake && w.readyLocked()
		w.mu.Unlock()
		if wake {
			w.signal()
		}
	}
}

func (w *AuditWriter) releaseLocked(s *auditSlot) {
	if !s.released {
		s.released = true
		w.expected--
	}
}

// readyLocked reports whether the queue should be appended now rather than wait for
// announced records: nothing more is announced, the queued records are at least as many
// as the announced ones (waiting longer would leave the cores idle while half the
// requests wait), the queue fills a batch, or the writer is closing.
func (w *AuditWriter) readyLocked() bool {
	return w.expected <= 0 || len(w.queue) >= w.expected || len(w.queue) >= w.cfg.MaxBatch || w.closed
}

// Close stops accepting records (Write then fails with ErrAuditClosed), waits until
// every record already queued has been appended or failed, and stops the writer. It
// does not close the store. Calling it again is a no-op.
func (w *AuditWriter) Close() error {
	w.once.Do(func() {
		w.mu.Lock()
		w.closed = true
		w.mu.Unlock()
		w.signal()
		<-w.done
	})
	return nil
}

func (w *AuditWriter) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// run is the committer: it takes what is queued and appends it, until Close and an
// empty queue.
func (w *AuditWriter) run() {
	defer close(w.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		batch, closed, hold := w.take()
		if len(batch) > 0 {
			w.commit(batch)
			continue
		}
		if closed {
			return
		}
		if hold <= 0 {
			<-w.wake
			continue
		}
		timer.Reset(hold)
		select {
		case <-w.wake:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// take removes up to MaxBatch live records from the queue, marking them taken, and drops
// the cancelled ones (and those whose context has ended: they are not written). It
// takes nothing while the queue waits for announced records: hold is then how much
// longer it may wait.
func (w *AuditWriter) take() (_ []*auditItem, closed bool, hold time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.queue) > 0 && !w.readyLocked() {
		if hold = w.cfg.Linger - time.Since(w.firstQueued); hold > 0 {
			return nil, false, hold
		}
	}
	var batch []*auditItem
	i := 0
	for ; i < len(w.queue) && len(batch) < w.cfg.MaxBatch; i++ {
		it := w.queue[i]
		if it.state == itemCancelled {
			continue
		}
		if it.ctx.Err() != nil {
			it.state = itemCancelled // its Write returns ctx.Err()
			continue
		}
		it.state = itemTaken
		batch = append(batch, it)
	}
	rest := copy(w.queue, w.queue[i:])
	clear(w.queue[rest:])
	w.queue = w.queue[:rest]
	if rest > 0 {
		w.firstQueued = time.Now().Add(-w.cfg.Linger) // the rest waited already: hold them no longer
	}
	return batch, w.closed, 0
}

// commit appends a batch, one append per stream (day), in the order of first appearance.
func (w *AuditWriter) commit(batch []*auditItem) {
	var order []string
	groups := map[string][]*auditItem{}
	for _, it := range batch {
		if _, ok := groups[it.stream]; !ok {
			order = append(order, it.stream)
		}
		groups[it.stream] = append(groups[it.stream], it)
	}
	for _, stream := range order {
		w.appendGroup(stream, groups[stream])
	}
	if len(w.streams) > 4 { // forget the days gone by
		for s := range w.streams {
			if _, ok := groups[s]; !ok {
				delete(w.streams, s)
			}
		}
	}
}

// appendGroup appends the records of one stream in one append, chained on the stream's
// tail, retrying on a version conflict.
func (w *AuditWriter) appendGroup(stream string, items []*auditItem) {
	events := make([]eventstore.EventData, len(items))
	for attempt := 1; ; attempt++ {
		tail, err := w.tail(stream)
		if err != nil {
			w.fail(stream, items, attempt, fmt.Errorf("%w: audit: read the tail of %s: %w", ErrUnavailable, stream, err))
			return
		}
		prev := tail.hash
		for i, it := range items {
			m := it.meta
			m.PrevHash = prev
			events[i] = eventstore.EventData{ID: it.id, Type: AuditEventType, Data: it.data, Meta: m}
			prev = eventstore.EventHash(prev, it.id, AuditEventType, it.data)
		}
		expected := eventstore.NoStream
		if tail.exists {
			expected = eventstore.Exact(tail.version)
		}
		ctx, cancel := context.WithTimeout(context.Background(), w.cfg.Timeout)
		res, err := w.cfg.Store.Append(ctx, stream, expected, events...)
		cancel()
		if err == nil {
			*tail = auditTail{exists: true, version: res.Version, hash: prev}
			w.delivered(items, res)
			return
		}
		delete(w.streams, stream) // read the tail again before the next append
		if errors.Is(err, eventstore.ErrConcurrency) && attempt < w.cfg.MaxAttempts {
			w.pause(attempt)
			continue
		}
		switch {
		case errors.Is(err, eventstore.ErrConcurrency):
			err = fmt.Errorf("%w: append to %s: %w", ErrAuditContention, stream, err)
		case errors.Is(err, eventstore.ErrInvalidAppend):
			err = fmt.Errorf("voucher: audit: %w", err) // a bug, not an outage: 500
		default:
			err = fmt.Errorf("%w: audit: %w", ErrUnavailable, err)
		}
		w.fail(stream, items, attempt, err)
		return
	}
}

// pause spreads contending writers out from their second retry on: a random wait of up
// to 2^(attempt-1) ms, at most 64 ms.
func (w *AuditWriter) pause(attempt int) {
	if attempt < 2 {
		return
	}
	limit := time.Duration(1<<min(attempt-1, 6)) * time.Millisecond
	time.Sleep(rand.N(limit) + time.Microsecond)
}

func (w *AuditWriter) fail(stream string, items []*auditItem, attempts int, err error) {
	w.log.Warn("voucher audit append failed; its vouchers are withheld",
		"stream", stream, "records", len(items), "attempts", attempts, "error", err.Error())
	for _, it := range items {
		it.finish(eventstore.Start, err)
	}
}

// tail returns what the writer knows of the stream's last event, reading it when it
// knows nothing.
func (w *AuditWriter) tail(stream string) (*auditTail, error) {
	if t, ok := w.streams[stream]; ok {
		return t, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.Timeout)
	defer cancel()
	evs, err := w.cfg.Store.ReadStream(ctx, stream, eventstore.Backwards, eventstore.End, 1)
	t := &auditTail{}
	switch {
	case errors.Is(err, eventstore.ErrStreamNotFound):
	case err != nil:
		return nil, err
	case len(evs) == 0:
		return nil, fmt.Errorf("%w: reading the last event of %s gave none", eventstore.ErrUnavailable, stream)
	default:
		e := evs[0]
		t = &auditTail{exists: true, version: e.Version, hash: eventstore.EventHash(e.Meta.PrevHash, e.ID, e.Type, e.Data)}
	}
	w.streams[stream] = t
	return t, nil
}

// delivered answers the records of a successful append, each with the append's
// position (its last event's).
func (w *AuditWriter) delivered(items []*auditItem, res eventstore.AppendResult) {
	for _, it := range items {
		it.finish(res.Position, nil)
	}
}

// AuditEntry is one issued voucher's audit event, decoded. It is not a DTO: the API
// shapes its own answer.
type AuditEntry struct {
	Record AuditRecord
	// Stream and Version locate the event; Position is its global position, RecordedAt
	// when the store recorded it.
	Stream     string
	Version    uint64
	Position   eventstore.Position
	RecordedAt time.Time
}

// ListAudit is models.ListVoucherAudit with the records decoded: the audit of one
// client's vouchers (or of those signed with one of its keys), newest first. See
// models.ListVoucherAudit for the errors, the tenant isolation and which generation ns
// must be.
func ListAudit(ctx context.Context, store readmodel.Store, ns readmodel.Namespace, events eventstore.Store, q models.AuditQuery) (models.Page[AuditEntry], error) {
	p, err := models.ListVoucherAudit(ctx, store, ns, events, q)
	if err != nil {
		return models.Page[AuditEntry]{Items: []AuditEntry{}}, err
	}
	out := models.Page[AuditEntry]{Items: make([]AuditEntry, 0, len(p.Items)), NextCursor: p.NextCursor}
	for _, e := range p.Items {
		var rec AuditRecord
		if err := json.Unmarshal(e.Record, &rec); err != nil {
			return models.Page[AuditEntry]{Items: []AuditEntry{}}, fmt.Errorf("%w: audit event %s@%d: %v", readmodel.ErrCorrupt, e.Stream, e.Version, err)
		}
		out.Items = append(out.Items, AuditEntry{Record: rec, Stream: e.Stream, Version: e.Version, Position: e.Position, RecordedAt: e.RecordedAt})
	}
	return out, nil
}
