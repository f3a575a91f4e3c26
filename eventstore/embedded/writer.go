package embedded

import (
	"cmp"
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
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
	events, err := eventstore.ValidateAppend(stream, expected, events)
	if err != nil {
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

// writeLoop is the one goroutine that writes. It takes one request, drains whatever
// else is queued, and commits the lot in one transaction. After Close it commits what
// was queued before and returns.
func (s *Store) writeLoop() {
	batch := make([]*appendReq, 0, s.cfg.maxBatch)
	last := 0 // requests of the previous batch
	for {
		select {
		case r := <-s.queue:
			s.hook(stageReceived)
			if last > 1 {
				s.linger()
			}
			batch = s.drain(append(batch[:0], r))
			last = len(batch)
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

// linger lets appenders that are already runnable reach the queue before the batch is
// drained. When a commit answers k waiting appenders, they wake together and append
// again; without this the writer would take the first one alone and commit it with its
// own fsync while the others queue behind. Yielding costs nothing when no other
// goroutine is runnable, and the writer never sleeps on a timer. But on busy cores each
// yield waits for another goroutine's turn (a millisecond behind an RSA signature), so
// the writer lingers only after a batch of several appenders — the case it is for — and
// not behind a lone appender that batches by itself (the voucher audit writer).
func (s *Store) linger() {
	for range 4 {
		n := len(s.queue)
		runtime.Gosched()
		if len(s.queue) == n {
			return
		}
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

func (s *Store) hook(stage writerStage) {
	if s.cfg.writerHook != nil {
		s.cfg.writerHook(stage)
	}
}

func (r *appendReq) reply(out appendOutcome) { r.done <- out }

// commitBatch writes a batch and replies to every request in it.
func (s *Store) commitBatch(batch []*appendReq) {
	live := s.w.live[:0]
	defer func() { s.w.live = live[:0]; clear(live[:cap(live)]) }()
	for _, r := range batch {
		if r.state.CompareAndSwap(reqQueued, reqTaken) {
			live = append(live, r)
		}
	}
	s.hook(stageClaimed)
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
	spans := s.w.spans[:0]
	for i, r := range live {
		out := s.w.outcomes[i]
		if out.err != nil || len(r.events) == 0 || out.res.Position.Commit < uint64(len(r.events)) {
			continue // wrote nothing
		}
		last := out.res.Position.Commit
		spans = append(spans, commitSpan{first: last - uint64(len(r.events)) + 1, last: last, stream: r.stream})
	}
	slices.SortFunc(spans, func(a, b commitSpan) int { return cmp.Compare(a.first, b.first) })
	s.w.spans = spans
	s.publishIfAdvanced(s.w.lastSeq, spans)
	for i, r := range live {
		r.reply(s.w.outcomes[i])
	}
}

func (s *Store) publishIfAdvanced(seq uint64, spans []commitSpan) {
	s.mu.Lock()
	advanced := seq > s.committed
	s.mu.Unlock()
	if advanced {
		s.publish(seq, spans)
	}
}

// driverConn and driverStmt are what the writer needs of modernc.org/sqlite's
// connection and statements. The writer talks to the driver directly (inside
// sql.Conn.Raw, for the store's lifetime) rather than through database/sql, which
// would add locking and argument conversion to every statement of every append.
type driverConn interface {
	driver.Conn
	driver.ConnPrepareContext
}

type driverStmt interface {
	driver.Stmt
	driver.StmtExecContext
	driver.StmtQueryContext
}

// writer is the state of the writer goroutine. Only the writer goroutine (and Open,
// before starting it) touches it.
type writer struct {
	conn    driverConn
	lastSeq uint64 // last committed sequence number

	// versions caches the last committed version of streams (-1: the stream has no
	// events). It changes only after a successful COMMIT; pending holds the batch's
	// effect until then.
	versions  map[string]int64
	pending   map[string]int64
	maxCached int
	commits   uint64 // successful transactions, for tests
	// walPages estimates the pages written to the WAL since the last checkpoint request.
	walPages int
	// spans is reused for each commit's appended ranges.
	spans []commitSpan
	// dirty means the in-memory state may disagree with the file (a failed COMMIT or
	// ROLLBACK); it is reloaded before the next batch.
	dirty bool
	// closeErr is the error of closing the statements when the writer stopped.
	closeErr error

	begin, commit, rollbackSt, lastVersion, maxSeq driverStmt
	inserts                                        map[int]driverStmt // keyed by rows per statement
	args                                           []driver.NamedValue
	dest                                           []driver.Value
	outcomes                                       []appendOutcome
	live                                           []*appendReq // commitBatch's buffer
}

// insertChunks are the row counts of the prepared multi-row INSERTs; an append of n
// events uses the largest that fit, greedily.
var insertChunks = []int{64, 16, 4, 1}

const insertColumns = 14

// runWriter runs the writer loop inside the pinned connection's Raw callback. ready
// receives nil once the statements are prepared, or the error that prevented it.
func (s *Store) runWriter(ready chan<- error) {
	defer close(s.writerDone)
	started := false
	err := s.wconn.Raw(func(dc any) error {
		c, ok := dc.(driverConn)
		if !ok {
			return fmt.Errorf("sqlite driver connection %T does not support prepared statements with context", dc)
		}
		if err := s.w.prepare(c); err != nil {
			s.w.closeStmts()
			return s.storageErr("open event store: prepare writes", err)
		}
		started = true
		ready <- nil
		s.writeLoop()
		if err := s.w.closeStmts(); err != nil {
			s.w.closeErr = err
		}
		return nil
	})
	if !started {
		ready <- err
	}
}

func (w *writer) prepare(c driverConn) error {
	ctx := context.Background()
	w.conn = c
	w.versions = make(map[string]int64)
	w.pending = make(map[string]int64)
	w.inserts = make(map[int]driverStmt)
	prep := func(dst *driverStmt, q string) error {
		st, err := c.PrepareContext(ctx, q)
		if err != nil {
			return err
		}
		ds, ok := st.(driverStmt)
		if !ok {
			st.Close()
			return fmt.Errorf("sqlite driver statement %T does not support context", st)
		}
		*dst = ds
		return nil
	}
	for _, p := range []struct {
		dst *driverStmt
		q   string
	}{
		{&w.begin, "BEGIN IMMEDIATE"},
		{&w.commit, "COMMIT"},
		{&w.rollbackSt, "ROLLBACK"},
		{&w.lastVersion, "SELECT version FROM events WHERE stream = ? ORDER BY version DESC LIMIT 1"},
		{&w.maxSeq, "SELECT max(seq) FROM events"},
	} {
		if err := prep(p.dst, p.q); err != nil {
			return err
		}
	}
	row := "(" + strings.TrimSuffix(strings.Repeat("?,", insertColumns), ",") + ")"
	for _, n := range insertChunks {
		q := "INSERT INTO events (seq, stream, version, id, type, recorded_at, data, tenant, actor_id, actor_kind, correlation_id, causation_id, aggregate_id, prev_hash) VALUES " +
			strings.TrimSuffix(strings.Repeat(row+",", n), ",")
		var st driverStmt
		if err := prep(&st, q); err != nil {
			return err
		}
		w.inserts[n] = st
	}
	w.args = make([]driver.NamedValue, insertChunks[0]*insertColumns)
	for i := range w.args {
		w.args[i].Ordinal = i + 1
	}
	w.dest = make([]driver.Value, 1)
	return nil
}

func (w *writer) closeStmts() error {
	var errs []error
	for _, st := range []driverStmt{w.begin, w.commit, w.rollbackSt, w.lastVersion, w.maxSeq} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	for _, st := range w.inserts {
		errs = append(errs, st.Close())
	}
	return errors.Join(errs...)
}

func (w *writer) exec(ctx context.Context, st driverStmt, args []driver.NamedValue) error {
	_, err := st.ExecContext(ctx, args)
	return err
}

// queryInt runs a query that returns at most one integer; ok is false for no row or NULL.
func (w *writer) queryInt(ctx context.Context, st driverStmt, args []driver.NamedValue) (v int64, ok bool, err error) {
	rows, err := st.QueryContext(ctx, args)
	if err != nil {
		return 0, false, err
	}
	defer rows.Close()
	if err := rows.Next(w.dest); err != nil {
		if errors.Is(err, io.EOF) {
			return 0, false, nil
		}
		return 0, false, err
	}
	switch x := w.dest[0].(type) {
	case int64:
		return x, true, rows.Close()
	case nil:
		return 0, false, rows.Close()
	default:
		return 0, false, fmt.Errorf("expected an integer, got %T", x)
	}
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
	if err := w.exec(ctx, w.begin, nil); err != nil {
		w.dirty = true
		return -1, s.storageErr("begin", err)
	}
	clear(w.pending)
	w.outcomes = w.outcomes[:0]
	seq := w.lastSeq
	now := time.Now().UnixNano()
	wrote := false
	walEstimate := 0 // bytes of rows; turned into pages below
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
		for _, e := range r.events {
			walEstimate += len(e.Data) + 200
		}
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
	if err := w.exec(ctx, w.commit, nil); err != nil {
		w.rollback(ctx)
		w.dirty = true // a failed COMMIT may or may not have reached the disk
		return -1, s.storageErr("commit", err)
	}
	w.lastSeq = seq
	w.commits++
	// Each commit rewrites at least a table and an index leaf; rows fill new pages in
	// both (the index entry is smaller, counted as a whole row for simplicity).
	w.walPages += 2 + 2*walEstimate/pageSize
	if w.walPages >= s.cfg.walPages/2 {
		w.walPages = 0
		select {
		case s.ckptKick <- struct{}{}:
		default:
		}
	}
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
	v, ok, err := w.queryInt(ctx, w.lastVersion, []driver.NamedValue{{Ordinal: 1, Value: stream}})
	if err != nil {
		return 0, err
	}
	if !ok {
		v = -1
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
		args := w.args[:n*insertColumns]
		for i := range n {
			e := &evs[i]
			a := args[i*insertColumns : (i+1)*insertColumns]
			a[0].Value = int64(seq)
			a[1].Value = r.stream
			a[2].Value = int64(version)
			a[3].Value = e.ID
			a[4].Value = e.Type
			a[5].Value = now
			a[6].Value = []byte(e.Data)
			a[7].Value = e.Meta.Tenant
			a[8].Value = e.Meta.ActorID
			a[9].Value = e.Meta.ActorKind
			a[10].Value = e.Meta.CorrelationID
			a[11].Value = e.Meta.CausationID
			a[12].Value = e.Meta.AggregateID
			a[13].Value = e.Meta.PrevHash
			seq++
			version++
		}
		err := w.exec(ctx, w.inserts[n], args)
		for i := range args {
			args[i].Value = nil // do not keep the callers' payloads alive
		}
		if err != nil {
			return err
		}
		evs = evs[n:]
	}
	return nil
}

func (w *writer) rollback(ctx context.Context) {
	if err := w.exec(ctx, w.rollbackSt, nil); err != nil {
		// SQLite may already have rolled back (it does for some I/O and full-disk
		// errors); if not, the connection is in an unknown state.
		if !strings.Contains(err.Error(), "no transaction is active") {
			w.dirty = true
		}
	}
}

// reload resynchronises the in-memory state with the file after a failure.
func (w *writer) reload(ctx context.Context, s *Store) error {
	_ = w.exec(ctx, w.rollbackSt, nil) // in case a transaction is still open
	clear(w.versions)
	last, _, err := w.queryInt(ctx, w.maxSeq, nil)
	if err != nil {
		return s.storageErr("reload last position", err)
	}
	w.lastSeq = uint64(last)
	w.dirty = false
	// A COMMIT reported as failed may have reached the disk after all: make what is
	// there visible to subscriptions.
	s.publishIfAdvanced(w.lastSeq, nil) // streams unknown: subscriptions query
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

// runCheckpointer copies the WAL into the data file when the writer asks, with a
// passive checkpoint on its own connection, so that the commit that crosses the WAL
// threshold does not pay for the copy and its fsync. A failed checkpoint loses nothing
// (the WAL still holds the pages); the next one retries.
func (s *Store) runCheckpointer() {
	defer close(s.ckptDone)
	for {
		select {
		case <-s.ckptKick:
			_, _ = s.cdb.ExecContext(context.Background(), "PRAGMA wal_checkpoint(PASSIVE)")
		case <-s.done:
			return
		}
	}
}
