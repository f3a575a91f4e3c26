package embedded

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/keyledger/keyledger/eventstore"
)

// Request states. A request moves from queued to taken (the writer will write it or
// fail it, and always replies) or to abandoned (its caller gave up while it was queued;
// the writer skips it). The compare-and-swap between the two decides, so an append whose
// context ends is either certainly not written or waited for until its outcome is known.
const (
	reqQueued int32 = iota
	reqTaken
	reqAbandoned
)

type appendReq struct {
	stream   string
	expected eventstore.ExpectedVersion
	events   []eventstore.EventData
	state    atomic.Int32
	done     chan appendOutcome // buffered, receives exactly one outcome once taken
}

type appendOutcome struct {
	res eventstore.AppendResult
	err error
}

// Append writes events to stream if the stream is at the expected version. When it
// returns nil the events are durable (fsynced) and visible to reads and subscriptions.
//
// Concurrent appends are committed together (group commit). Cancelling ctx abandons the
// append only while it is still queued; once the writer has taken it into a transaction,
// Append waits for that transaction and returns its outcome even though ctx has ended.
// So an append whose ctx was cancelled returns either ctx's error (nothing was written)
// or the real outcome (possibly success: the events were written).
func (s *Store) Append(ctx context.Context, stream string, expected eventstore.ExpectedVersion, events ...eventstore.EventData) (eventstore.AppendResult, error) {
	if err := eventstore.ValidateAppend(stream, expected, events); err != nil {
		return eventstore.AppendResult{}, err
	}
	if s.isClosed() {
		return eventstore.AppendResult{}, fmt.Errorf("append to %s: %w", stream, eventstore.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("append to %s: %w", stream, err)
	}
	r := &appendReq{stream: stream, expected: expected, events: events, done: make(chan appendOutcome, 1)}
	select {
	case s.queue <- r:
	case <-s.closing:
		return eventstore.AppendResult{}, fmt.Errorf("append to %s: %w", stream, eventstore.ErrClosed)
	case <-ctx.Done():
		return eventstore.AppendResult{}, fmt.Errorf("append to %s: %w", stream, ctx.Err())
	}
	select {
	case out := <-r.done:
		return out.res, out.err
	case <-ctx.Done():
		if r.state.CompareAndSwap(reqQueued, reqAbandoned) {
			return eventstore.AppendResult{}, fmt.Errorf("append to %s: %w", stream, ctx.Err())
		}
	case <-s.writerDone:
		// Queued after the writer's last drain: it will never be taken.
		if r.state.CompareAndSwap(reqQueued, reqAbandoned) {
			return eventstore.AppendResult{}, fmt.Errorf("append to %s: %w", stream, eventstore.ErrClosed)
		}
	}
	out := <-r.done // taken: the writer always replies
	return out.res, out.err
}

// runWriter is the one goroutine that writes. It takes one request, drains whatever else
// is queued, and commits the lot in one transaction. After Close it commits what was
// queued before and returns.
func (s *Store) runWriter() {
	defer close(s.writerDone)
	batch := make([]*appendReq, 0, s.cfg.maxBatch)
	for {
		select {
		case r := <-s.queue:
			batch = s.drain(append(batch[:0], r))
			s.commitBatch(batch)
		case <-s.closing:
			for {
				batch = s.drain(batch[:0])
				if len(batch) == 0 {
					return
				}
				s.commitBatch(batch)
			}
		}
		clear(batch) // drop references to finished requests
	}
}

// drain adds queued requests to batch without blocking, up to the batch limits.
func (s *Store) drain(batch []*appendReq) []*appendReq {
	n := 0
	for _, r := range batch {
		n += len(r.events)
	}
	for len(batch) < s.cfg.maxBatch && n < s.cfg.maxBatchEvents {
		select {
		case r := <-s.queue:
			batch = append(batch, r)
			n += len(r.events)
		default:
			return batch
		}
	}
	return batch
}

func (r *appendReq) reply(out appendOutcome) { r.done <- out }

// commitBatch writes a batch and replies to every request in it.
func (s *Store) commitBatch(batch []*appendReq) {
	live := batch[:0:0]
	for _, r := range batch {
		if r.state.CompareAndSwap(reqQueued, reqTaken) {
			live = append(live, r)
		}
	}
	for len(live) > 0 {
		culprit, err := s.w.txn(s, live)
		if err == nil {
			break
		}
		// A full disk is often caused by one large append: fail that one and give the
		// rest of the batch another chance in a new transaction.
		if culprit >= 0 && errors.Is(err, eventstore.ErrStorageFull) && len(live) > 1 {
			live[culprit].reply(appendOutcome{err: fmt.Errorf("append to %s: %w", live[culprit].stream, err)})
			live = append(live[:culprit], live[culprit+1:]...)
			continue
		}
		for _, r := range live {
			r.reply(appendOutcome{err: fmt.Errorf("append to %s: %w", r.stream, err)})
		}
		return
	}
	if len(live) == 0 {
		return
	}
	// Publish before replying, so that a caller who got position P and then subscribes
	// or reads finds P.
	s.publishIfAdvanced(s.w.lastSeq)
	for i, r := range live {
		r.reply(s.w.outcomes[i])
	}
}

func (s *Store) publishIfAdvanced(seq uint64) {
	s.mu.Lock()
	advanced := seq > s.committed
	s.mu.Unlock()
	if advanced {
		s.publish(seq)
	}
}

// writer is the state of the writer goroutine. Only runWriter (and Open/Close, which do
// not run concurrently with it) touch it.
type writer struct {
	conn    *sql.Conn
	lastSeq uint64 // last committed sequence number

	// versions caches the last committed version of streams (-1: the stream has no
	// events). It changes only after a successful COMMIT; pending holds the batch's
	// effect until then.
	versions  map[string]int64
	pending   map[string]int64
	maxCached int
	// dirty means the in-memory state may disagree with the file (a failed COMMIT or
	// ROLLBACK); it is reloaded before the next batch.
	dirty bool

	lastVersion *sql.Stmt
	inserts     map[int]*sql.Stmt // keyed by rows per statement
	args        []any
	outcomes    []appendOutcome
}

// insertChunks are the row counts of the prepared multi-row INSERTs; an append of n
// events uses the largest that fit, greedily.
var insertChunks = []int{64, 16, 4, 1}

const insertColumns = 14

func (w *writer) prepare(ctx context.Context, conn *sql.Conn) error {
	w.conn = conn
	w.versions = make(map[string]int64)
	w.pending = make(map[string]int64)
	w.inserts = make(map[int]*sql.Stmt)
	var err error
	w.lastVersion, err = conn.PrepareContext(ctx, "SELECT version FROM events WHERE stream = ? ORDER BY version DESC LIMIT 1")
	if err != nil {
		return err
	}
	row := "(" + strings.TrimSuffix(strings.Repeat("?,", insertColumns), ",") + ")"
	for _, n := range insertChunks {
		q := "INSERT INTO events (seq, stream, version, id, type, recorded_at, data, tenant, actor_id, actor_kind, correlation_id, causation_id, aggregate_id, prev_hash) VALUES " +
			strings.TrimSuffix(strings.Repeat(row+",", n), ",")
		if w.inserts[n], err = conn.PrepareContext(ctx, q); err != nil {
			return err
		}
	}
	w.args = make([]any, 0, insertChunks[0]*insertColumns)
	return nil
}

func (w *writer) close() error {
	var errs []error
	if w.lastVersion != nil {
		errs = append(errs, w.lastVersion.Close())
	}
	for _, st := range w.inserts {
		errs = append(errs, st.Close())
	}
	return errors.Join(errs...)
}

// txn runs one transaction over live and, on success, leaves one outcome per request
// in w.outcomes. On failure the transaction is rolled back, nothing of it is visible,
// and culprit is the index of the request whose statements failed (-1 when the failure
// is not one request's, such as the COMMIT).
func (w *writer) txn(s *Store, live []*appendReq) (culprit int, err error) {
	ctx := context.Background()
	if w.dirty {
		if err := w.reload(ctx, s); err != nil {
			return -1, err
		}
	}
	if _, err := w.conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		w.dirty = true
		return -1, s.storageErr("begin", err)
	}
	clear(w.pending)
	w.outcomes = w.outcomes[:0]
	seq := w.lastSeq
	now := time.Now().UnixNano()
	wrote := false
	for i, r := range live {
		cur, err := w.version(ctx, r.stream)
		if err != nil {
			w.rollback(ctx)
			return -1, s.storageErr("read stream version", err)
		}
		exists := cur >= 0
		if !r.expected.Check(exists, uint64(cur)) {
			w.outcomes = append(w.outcomes, appendOutcome{err: &eventstore.ConcurrencyError{
				Stream: r.stream, Expected: r.expected,
				Actual: uint64(cur), ActualKnown: exists, NoStream: !exists,
			}})
			continue
		}
		next := uint64(cur + 1)
		if err := w.insert(ctx, r, seq+1, next, now); err != nil {
			w.rollback(ctx)
			return i, s.storageErr("insert events", err)
		}
		n := uint64(len(r.events))
		seq += n
		last := next + n - 1
		w.pending[r.stream] = int64(last)
		w.outcomes = append(w.outcomes, appendOutcome{res: eventstore.AppendResult{
			Version:  last,
			Position: eventstore.Position{Commit: seq, Prepare: seq},
		}})
		wrote = true
	}
	if !wrote {
		// Every request failed its check: nothing to make durable.
		w.rollback(ctx)
		return -1, nil
	}
	if _, err := w.conn.ExecContext(ctx, "COMMIT"); err != nil {
		w.rollback(ctx)
		w.dirty = true // a failed COMMIT may or may not have reached the disk
		return -1, s.storageErr("commit", err)
	}
	w.lastSeq = seq
	for k, v := range w.pending {
		w.versions[k] = v
	}
	w.trimCache()
	return -1, nil
}

// version returns the stream's current version as seen inside the transaction, -1 when
// the stream has no events.
func (w *writer) version(ctx context.Context, stream string) (int64, error) {
	if v, ok := w.pending[stream]; ok {
		return v, nil
	}
	if v, ok := w.versions[stream]; ok {
		return v, nil
	}
	var v int64
	err := w.lastVersion.QueryRowContext(ctx, stream).Scan(&v)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		v = -1
	case err != nil:
		return 0, err
	}
	// Only the writer writes, and this stream has no uncommitted rows (it is not in
	// pending), so what was read is committed state and safe to cache.
	w.versions[stream] = v
	return v, nil
}

func (w *writer) insert(ctx context.Context, r *appendReq, seq, version uint64, now int64) error {
	evs := r.events
	for len(evs) > 0 {
		n := insertChunks[len(insertChunks)-1]
		for _, c := range insertChunks {
			if c <= len(evs) {
				n = c
				break
			}
		}
		args := w.args[:0]
		for i := range n {
			e := &evs[i]
			args = append(args,
				int64(seq), r.stream, int64(version), e.ID, e.Type, now, []byte(e.Data),
				e.Meta.Tenant, e.Meta.ActorID, e.Meta.ActorKind, e.Meta.CorrelationID,
				e.Meta.CausationID, e.Meta.AggregateID, e.Meta.PrevHash)
			seq++
			version++
		}
		if _, err := w.inserts[n].ExecContext(ctx, args...); err != nil {
			clear(args)
			return err
		}
		clear(args) // do not keep the callers' payloads alive
		evs = evs[n:]
	}
	return nil
}

func (w *writer) rollback(ctx context.Context) {
	if _, err := w.conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		// SQLite may already have rolled back (it does for some I/O and full-disk
		// errors); if not, the connection is in an unknown state.
		if !strings.Contains(err.Error(), "no transaction is active") {
			w.dirty = true
		}
	}
}

// reload resynchronises the in-memory state with the file after a failure.
func (w *writer) reload(ctx context.Context, s *Store) error {
	_, _ = w.conn.ExecContext(ctx, "ROLLBACK") // in case a transaction is still open
	clear(w.versions)
	var last sql.NullInt64
	if err := w.conn.QueryRowContext(ctx, "SELECT max(seq) FROM events").Scan(&last); err != nil {
		return s.storageErr("reload last position", err)
	}
	w.lastSeq = uint64(last.Int64)
	w.dirty = false
	// A COMMIT reported as failed may have reached the disk after all: make what is
	// there visible to subscriptions.
	s.publishIfAdvanced(w.lastSeq)
	return nil
}

// trimCache keeps the version cache within its bound by dropping arbitrary entries;
// a dropped stream is looked up again on its next append.
func (w *writer) trimCache() {
	if len(w.versions) <= w.maxCached {
		return
	}
	target := w.maxCached * 9 / 10
	for k := range w.versions {
		if len(w.versions) <= target {
			break
		}
		delete(w.versions, k)
	}
}
