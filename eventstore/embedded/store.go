// Package embedded is Keyledger's zero-setup event store: one SQLite file
// (events.db) under the data directory, driven by the pure-Go modernc.org/sqlite engine.
//
// Durability: the file is in WAL mode with synchronous=FULL, so an append that returned
// nil is on disk. Appends go through one writer goroutine that commits whatever is queued
// in one transaction (group commit), so concurrent appends share one fsync.
//
// Order: every event gets a global sequence number (its Position, Commit == Prepare),
// assigned inside the writer's transaction, so the global order is the commit order and
// has no gaps. Subscribers are woken by each commit; nothing polls.
//
// One Store owns the directory: Open takes an exclusive lock on events.db.lock, and a
// second Open of the same directory (in this or another process) fails until the first
// is closed.
package embedded

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/keyledger/keyledger/eventstore"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// FileName is the name of the data file inside the data directory. SQLite keeps two
// companions next to it while the store is open (events.db-wal, events.db-shm); back up
// or move the three together, or only after a clean Close.
const FileName = "events.db"

const (
	lockFileName = "events.db.lock"
	// schemaVersion is stored in PRAGMA user_version; bump it with a migration.
	schemaVersion = 1
	// pageSize is SQLite's page size for new files. Larger pages (8 and 16 KiB were
	// measured) made single-event commits slower and 100-event commits no faster.
	pageSize = 4096
	// applicationID marks the file as a Keyledger event store (PRAGMA application_id):
	// "KLES" in ASCII.
	applicationID = 0x4b4c4553
)

var _ eventstore.Store = (*Store)(nil)

// Store is the embedded event store. It is safe for concurrent use. Create it with Open
// and release it with Close.
type Store struct {
	cfg  config
	dir  string
	path string // the data file, named in every storage error
	lock *os.File

	wdb   *sql.DB   // the writer's pool, limited to one connection
	wconn *sql.Conn // the writer's pinned connection; used only by the writer goroutine
	rdb   *sql.DB   // the read pool
	cdb   *sql.DB   // the checkpointer's connection

	ckptKick chan struct{} // the writer asks for a checkpoint
	ckptDone chan struct{} // closed when the checkpointer has returned

	readAllStmt *sql.Stmt
	fwdStmt     *sql.Stmt
	bwdStmt     *sql.Stmt
	existsStmt  *sql.Stmt

	queue      chan *appendReq
	closing    chan struct{} // closed by Close: no new appends
	writerDone chan struct{} // closed when the writer goroutine has returned
	done       chan struct{} // closed after the writer stopped: subscriptions end

	// mu guards committed, subs and recent: each commit stores the new high-water mark
	// and wakes the subscriptions it concerns.
	mu        sync.Mutex
	committed uint64
	// subs are the open subscriptions; a commit wakes only those whose filter matches
	// one of its streams (every one when the commit's streams are not known). A busy
	// token endpoint commits a thousand audit batches a second, and each woken
	// subscription is a goroutine made runnable for nothing.
	subs map[*subscription]struct{}
	// recent lists the streams of the latest commits (oldest first, at most
	// maxRecentSpans): every position from recentFrom to committed lies in one of them.
	// A subscription whose filter matches none of the streams it has not examined yet
	// moves past them without a query.
	recent     []commitSpan
	recentFrom uint64

	w writer // state owned by the writer goroutine

	// readQueries counts queries made by reads and subscriptions; tests use it to
	// prove that an idle subscription does not poll.
	readQueries atomic.Int64

	closeOnce sync.Once
	closeErr  error
}

// Option configures Open.
type Option func(*config)

type config struct {
	readConns      int
	maxBatch       int
	maxBatchEvents int
	quickCheck     bool
	subPage        int
	cacheStreams   int
	mmapSize       int64
	cacheKiB       int
	walPages       int
	maxPageCount   int64 // tests only: simulates a full disk
	// writerHook, tests only, is called by the writer goroutine at each stage of a
	// batch, so that tests can hold the writer and build a batch deterministically.
	writerHook func(stage writerStage)
}

func defaultConfig() config {
	return config{
		readConns:      4,
		maxBatch:       1024,
		maxBatchEvents: 16384,
		quickCheck:     false,
		subPage:        512,
		cacheStreams:   100_000,
		mmapSize:       0,
		cacheKiB:       16 * 1024,
		walPages:       4096,
	}
}

// WithReadConnections sets the size of the read pool shared by ReadStream, ReadAll,
// subscriptions and Ping. Default 4. More connections let more reads run at once but
// each holds its own page cache (see WithCacheSize); reads beyond the pool size wait.
func WithReadConnections(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.readConns = n
		}
	}
}

// WithMaxBatch bounds one group commit to n appends (default 1024) and events (default
// 16384 events, but an append is never split). Larger batches amortise the fsync over
// more appends; the danger is latency: every append of a batch waits for the whole batch.
func WithMaxBatch(appends, events int) Option {
	return func(c *config) {
		if appends > 0 {
			c.maxBatch = appends
		}
		if events > 0 {
			c.maxBatchEvents = events
		}
	}
}

// WithQuickCheck runs SQLite's PRAGMA quick_check over the whole file at Open and refuses
// to open a file that fails it. Default off: it reads every page, which took 0.7 s per
// million events (about 650 MB) with the file in the OS cache, and more from a cold
// disk, growing with the log; an Open without it takes a few milliseconds. Without it a
// damaged page is still detected, but only when a read or append touches it (the
// operation fails with ErrCorrupt; nothing is served from a damaged page). Turn it on
// after a crash of the machine or a disk error, or in an operator's verify command.
func WithQuickCheck(on bool) Option { return func(c *config) { c.quickCheck = on } }

// WithSubscriptionPage sets how many events a subscription reads per query while
// catching up. Default 512. Larger pages cost memory per subscription (the page is
// buffered) and make a slow subscriber hold a read snapshot longer.
func WithSubscriptionPage(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.subPage = n
		}
	}
}

// WithStreamCacheSize bounds the writer's in-memory map of stream → last version used
// for the expected-version check. Default 100000 streams (a few MB). A miss costs one
// indexed lookup inside the write transaction; too small a cache slows appends to many
// distinct streams, it never makes them wrong.
func WithStreamCacheSize(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.cacheStreams = n
		}
	}
}

// WithMmapSize lets read connections memory-map up to n bytes of the data file
// (PRAGMA mmap_size). Default 0 (off). Mapping saves a copy per page on large
// catch-up reads; the danger is that an I/O error on a mapped page is delivered as
// SIGBUS and crashes the process instead of failing the read with ErrUnavailable.
func WithMmapSize(n int64) Option {
	return func(c *config) {
		if n >= 0 {
			c.mmapSize = n
		}
	}
}

// WithCacheSize sets SQLite's page cache per connection in KiB. Default 16384 (16 MiB).
// Memory use is up to (read connections + 1) times this.
func WithCacheSize(kib int) Option {
	return func(c *config) {
		if kib > 0 {
			c.cacheKiB = kib
		}
	}
}

// WithWALAutocheckpoint sets the WAL size, in 4 KiB pages, at which the writer folds
// the WAL back into the data file and starts reusing it from the beginning. Default 4096
// (16 MiB). A background goroutine already copies most of it (a passive checkpoint, which
// blocks neither appends nor reads) at half this size, so the writer's own checkpoint is
// short. Reusing the WAL matters: syncing a file that grows costs about twice as much as
// syncing one that is overwritten in place. A larger WAL means fewer checkpoints but
// more disk space and a longer recovery after a crash; a much smaller one means more
// frequent syncs of the data file.
func WithWALAutocheckpoint(pages int) Option {
	return func(c *config) {
		if pages > 0 {
			c.walPages = pages
		}
	}
}

// withMaxPageCount caps the file at n pages (PRAGMA max_page_count). Tests use it to
// simulate a full disk; it is not exported because a store that fills up is an outage.
func withMaxPageCount(n int64) Option { return func(c *config) { c.maxPageCount = n } }

type writerStage int

const (
	stageReceived writerStage = iota // took the batch's first request, before draining
	stageClaimed                     // claimed the batch's requests, before the transaction
)

// withWriterHook installs a test hook on the writer goroutine.
func withWriterHook(h func(writerStage)) Option { return func(c *config) { c.writerHook = h } }

// Open opens the event store in dir, creating the directory and the data file if
// needed. It fails with a wrapped eventstore.ErrCorrupt when the file is not a readable
// event store, and with a wrapped eventstore.ErrUnavailable when it cannot be opened
// (permissions, a directory in its place, another Store holding it); the message names
// the file. ctx bounds the opening only.
func Open(ctx context.Context, dir string, opts ...Option) (*Store, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("open event store in %q: %w: %w", dir, eventstore.ErrUnavailable, err)
	}
	if err := os.MkdirAll(abs, 0o750); err != nil {
		return nil, fmt.Errorf("open event store: create data directory %s: %w: %w", abs, eventstore.ErrUnavailable, err)
	}
	s := &Store{
		cfg:        cfg,
		dir:        abs,
		path:       filepath.Join(abs, FileName),
		queue:      make(chan *appendReq, cfg.maxBatch),
		closing:    make(chan struct{}),
		writerDone: make(chan struct{}),
		done:       make(chan struct{}),
		subs:       map[*subscription]struct{}{},
		ckptKick:   make(chan struct{}, 1),
		ckptDone:   make(chan struct{}),
	}
	s.w.maxCached = cfg.cacheStreams
	if err := s.open(ctx); err != nil {
		s.release()
		return nil, err
	}
	ready := make(chan error, 1)
	go s.runWriter(ready)
	if err := <-ready; err != nil {
		s.release()
		return nil, err
	}
	go s.runCheckpointer()
	return s, nil
}

func (s *Store) open(ctx context.Context) error {
	lock, err := lockDir(filepath.Join(s.dir, lockFileName))
	if err != nil {
		return fmt.Errorf("open event store %s: %w", s.path, err)
	}
	s.lock = lock
	if err := preflight(s.path); err != nil {
		return err
	}

	s.wdb, err = sql.Open("sqlite", s.dsn(false))
	if err != nil {
		return s.storageErr("open event store", err)
	}
	s.wdb.SetMaxOpenConns(1)
	s.wdb.SetMaxIdleConns(1)
	s.wdb.SetConnMaxLifetime(0)
	s.wconn, err = s.wdb.Conn(ctx)
	if err != nil {
		return s.storageErr("open event store", err)
	}
	// page_size must precede the first write (journal_mode=WAL writes the header of a
	// new file); on an existing file it is a no-op.
	pragmas := []string{
		fmt.Sprintf("PRAGMA page_size = %d", pageSize),
		"PRAGMA journal_mode = WAL",
		"PRAGMA synchronous = FULL",
		// The checkpointer goroutine does the bulk of each checkpoint off the write
		// path; the writer's own, at the limit, completes it so the WAL restarts.
		fmt.Sprintf("PRAGMA wal_autocheckpoint = %d", s.cfg.walPages),
		fmt.Sprintf("PRAGMA cache_size = -%d", s.cfg.cacheKiB),
		"PRAGMA temp_store = MEMORY",
	}
	if s.cfg.maxPageCount > 0 {
		pragmas = append(pragmas, fmt.Sprintf("PRAGMA max_page_count = %d", s.cfg.maxPageCount))
	}
	for _, p := range pragmas {
		if _, err := s.wconn.ExecContext(ctx, p); err != nil {
			return s.storageErr("open event store: "+p, err)
		}
	}
	var mode string
	if err := s.wconn.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return s.storageErr("open event store: read journal mode", err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("open event store %s: journal mode is %q, not WAL (is the directory on a file system without shared memory?): %w", s.path, mode, eventstore.ErrUnavailable)
	}
	if err := s.initSchema(ctx); err != nil {
		return err
	}
	if s.cfg.quickCheck {
		if err := s.quickCheck(ctx); err != nil {
			return err
		}
	}
	if err := s.loadTail(ctx); err != nil {
		return err
	}
	s.committed = s.w.lastSeq
	s.recentFrom = s.committed + 1

	s.rdb, err = sql.Open("sqlite", s.dsn(true))
	if err != nil {
		return s.storageErr("open event store: read pool", err)
	}
	s.rdb.SetMaxOpenConns(s.cfg.readConns)
	s.rdb.SetMaxIdleConns(s.cfg.readConns)
	s.rdb.SetConnMaxLifetime(0)
	for _, p := range []struct {
		dst **sql.Stmt
		q   string
	}{
		{&s.readAllStmt, "SELECT " + columns + " FROM events WHERE seq > ? ORDER BY seq LIMIT ?"},
		{&s.fwdStmt, "SELECT " + columns + " FROM events WHERE stream = ? AND version >= ? ORDER BY version LIMIT ?"},
		{&s.bwdStmt, "SELECT " + columns + " FROM events WHERE stream = ? AND version <= ? ORDER BY version DESC LIMIT ?"},
		{&s.existsStmt, "SELECT 1 FROM events WHERE stream = ? LIMIT 1"},
	} {
		if *p.dst, err = s.rdb.PrepareContext(ctx, p.q); err != nil {
			return s.storageErr("open event store: prepare reads", err)
		}
	}
	s.cdb, err = sql.Open("sqlite", s.dsn(false))
	if err != nil {
		return s.storageErr("open event store: checkpointer", err)
	}
	s.cdb.SetMaxOpenConns(1)
	s.cdb.SetMaxIdleConns(1)
	s.cdb.SetConnMaxLifetime(0)
	return nil
}

// dsn builds the connection string. The path goes in a file: URI so that characters
// like '?' or '#' in the directory name cannot be mistaken for parameters.
func (s *Store) dsn(reader bool) string {
	u := url.URL{Scheme: "file", Path: s.path}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	if reader {
		q.Add("_pragma", fmt.Sprintf("cache_size(-%d)", s.cfg.cacheKiB))
		q.Add("_pragma", fmt.Sprintf("mmap_size(%d)", s.cfg.mmapSize))
		q.Add("_query_only", "1")
	} else {
		q.Add("_txlock", "immediate")
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// preflight checks the data file before SQLite sees it, so that the common failures get
// a message that names the file and the cause instead of SQLite's generic wording.
func preflight(path string) error {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open event store: data file %s: %w: %w", path, eventstore.ErrUnavailable, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("open event store: data file %s is not a regular file (%s): %w", path, fi.Mode().Type(), eventstore.ErrUnavailable)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open event store: data file %s cannot be opened for reading and writing: %w: %w", path, eventstore.ErrUnavailable, err)
	}
	defer f.Close()
	if fi.Size() == 0 {
		return nil // SQLite treats an empty file as a new database
	}
	header := make([]byte, 16)
	if _, err := io.ReadFull(f, header); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return fmt.Errorf("open event store: data file %s is %d bytes, too short for a SQLite database: %w", path, fi.Size(), eventstore.ErrCorrupt)
		}
		return fmt.Errorf("open event store: data file %s: read header: %w: %w", path, eventstore.ErrUnavailable, err)
	}
	if string(header) != "SQLite format 3\x00" {
		return fmt.Errorf("open event store: data file %s is not a SQLite database (bad header %q): %w", path, header, eventstore.ErrCorrupt)
	}
	return nil
}

const schemaSQL = `
CREATE TABLE events (
	seq            INTEGER PRIMARY KEY,
	stream         TEXT    NOT NULL,
	version        INTEGER NOT NULL,
	id             TEXT    NOT NULL,
	type           TEXT    NOT NULL,
	recorded_at    INTEGER NOT NULL,
	data           BLOB    NOT NULL,
	tenant         TEXT    NOT NULL,
	actor_id       TEXT    NOT NULL,
	actor_kind     TEXT    NOT NULL,
	correlation_id TEXT    NOT NULL,
	causation_id   TEXT    NOT NULL,
	aggregate_id   TEXT    NOT NULL,
	prev_hash      TEXT    NOT NULL
);
CREATE UNIQUE INDEX events_stream_version ON events (stream, version);
`

// initSchema creates the schema in a new file and checks it in an existing one.
func (s *Store) initSchema(ctx context.Context) error {
	var appID, userVersion, objects int64
	if err := s.wconn.QueryRowContext(ctx, "PRAGMA application_id").Scan(&appID); err != nil {
		return s.storageErr("open event store: read application id", err)
	}
	if err := s.wconn.QueryRowContext(ctx, "PRAGMA user_version").Scan(&userVersion); err != nil {
		return s.storageErr("open event store: read schema version", err)
	}
	if err := s.wconn.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema").Scan(&objects); err != nil {
		return s.storageErr("open event store: read schema", err)
	}
	switch {
	case appID == 0 && userVersion == 0 && objects == 0:
		return s.createSchema(ctx)
	case appID != applicationID:
		return fmt.Errorf("open event store: data file %s is a SQLite database but not a Keyledger event store (application id %#x): %w", s.path, appID, eventstore.ErrCorrupt)
	case userVersion > schemaVersion:
		return fmt.Errorf("open event store: data file %s has schema version %d, written by a newer Keyledger; this build reads version %d: %w", s.path, userVersion, schemaVersion, eventstore.ErrUnavailable)
	case userVersion != schemaVersion:
		return fmt.Errorf("open event store: data file %s has unknown schema version %d: %w", s.path, userVersion, eventstore.ErrCorrupt)
	}
	var n int64
	if err := s.wconn.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'events'").Scan(&n); err != nil {
		return s.storageErr("open event store: read schema", err)
	}
	if n != 1 {
		return fmt.Errorf("open event store: data file %s has no events table: %w", s.path, eventstore.ErrCorrupt)
	}
	return nil
}

func (s *Store) createSchema(ctx context.Context) (err error) {
	if _, err := s.wconn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return s.storageErr("create schema", err)
	}
	defer func() {
		if err != nil {
			_, _ = s.wconn.ExecContext(context.Background(), "ROLLBACK")
		}
	}()
	for _, q := range []string{
		schemaSQL,
		fmt.Sprintf("PRAGMA application_id = %d", applicationID),
		fmt.Sprintf("PRAGMA user_version = %d", schemaVersion),
	} {
		if _, err := s.wconn.ExecContext(ctx, q); err != nil {
			return s.storageErr("create schema", err)
		}
	}
	if _, err := s.wconn.ExecContext(ctx, "COMMIT"); err != nil {
		return s.storageErr("create schema", err)
	}
	return nil
}

func (s *Store) quickCheck(ctx context.Context) error {
	rows, err := s.wconn.QueryContext(ctx, "PRAGMA quick_check(10)")
	if err != nil {
		return s.storageErr("open event store: quick check", err)
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var msg string
		if err := rows.Scan(&msg); err != nil {
			return s.storageErr("open event store: quick check", err)
		}
		if msg != "ok" {
			problems = append(problems, msg)
		}
	}
	if err := rows.Err(); err != nil {
		return s.storageErr("open event store: quick check", err)
	}
	if len(problems) > 0 {
		return fmt.Errorf("open event store: data file %s failed its integrity check: %s: %w", s.path, strings.Join(problems, "; "), eventstore.ErrCorrupt)
	}
	return nil
}

// loadTail reads the last sequence number. Reading the last row also walks the rightmost
// path of the table's b-tree, so a file damaged at its end fails here, at Open.
func (s *Store) loadTail(ctx context.Context) error {
	var last sql.NullInt64
	if err := s.wconn.QueryRowContext(ctx, "SELECT max(seq) FROM events").Scan(&last); err != nil {
		return s.storageErr("open event store: read last position", err)
	}
	s.w.lastSeq = uint64(last.Int64)
	return nil
}

// Ping reports whether the store can serve reads: it runs a query on the read pool.
// It returns ErrClosed after Close.
func (s *Store) Ping(ctx context.Context) error {
	if s.isClosed() {
		return fmt.Errorf("ping: %w", eventstore.ErrClosed)
	}
	var n int64
	err := s.existsStmt.QueryRowContext(ctx, "").Scan(&n)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return s.readErr(ctx, "ping", err)
	}
	return nil
}

// Close stops accepting appends, lets the writer finish the appends it has already
// accepted, ends every subscription (their Next returns ErrClosed), and closes the data
// file. It is idempotent; later calls return the first call's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.closing)
		<-s.writerDone
		close(s.done)
		<-s.ckptDone
		s.closeErr = s.release()
	})
	return s.closeErr
}

func (s *Store) isClosed() bool {
	select {
	case <-s.closing:
		return true
	default:
		return false
	}
}

// release closes whatever open() managed to open, readers first so that the writer's
// connection is the last one and SQLite checkpoints and removes the WAL.
func (s *Store) release() error {
	var errs []error
	for _, st := range []*sql.Stmt{s.readAllStmt, s.fwdStmt, s.bwdStmt, s.existsStmt} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	if s.rdb != nil {
		errs = append(errs, s.rdb.Close())
	}
	if s.cdb != nil {
		errs = append(errs, s.cdb.Close())
	}
	errs = append(errs, s.w.closeErr)
	if s.wconn != nil {
		errs = append(errs, s.wconn.Close())
	}
	if s.wdb != nil {
		errs = append(errs, s.wdb.Close())
	}
	if s.lock != nil {
		errs = append(errs, unlockDir(s.lock))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close event store %s: %w: %w", s.path, eventstore.ErrUnavailable, err)
	}
	return nil
}

// watermark returns the last committed position.
func (s *Store) watermark() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.committed
}

// commitSpan is the positions first..last that one append gave to stream.
type commitSpan struct {
	first, last uint64
	stream      string
}

// maxRecentSpans bounds Store.recent.
const maxRecentSpans = 4096

// unmatchedSince reports whether no event in (after, upto] is of a stream filter
// matches, as far as the recent commits tell (false when they do not cover the range).
func (s *Store) unmatchedSince(filter eventstore.Filter, after, upto uint64) bool {
	if len(filter.StreamPrefixes) == 0 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if after+1 < s.recentFrom || upto > s.committed {
		return false
	}
	for i := len(s.recent) - 1; i >= 0 && s.recent[i].last > after; i-- {
		if sp := s.recent[i]; sp.first <= upto && filter.Match(sp.stream) {
			return false
		}
	}
	return true
}

// contiguous reports whether spans cover exactly from..to, in order.
func contiguous(spans []commitSpan, from, to uint64) bool {
	next := from
	for _, sp := range spans {
		if sp.first != next || sp.last < sp.first {
			return false
		}
		next = sp.last + 1
	}
	return len(spans) > 0 && next == to+1
}

// publish makes a commit visible to subscriptions and wakes them. spans are the commit's
// appends, in position order, ending at seq.
func (s *Store) publish(seq uint64, spans []commitSpan) {
	s.mu.Lock()
	if !contiguous(spans, s.committed+1, seq) {
		// Positions this commit does not account for: nothing before seq is covered.
		s.recent, s.recentFrom = s.recent[:0], seq+1
	} else {
		s.recent = append(s.recent, spans...)
		if over := len(s.recent) - maxRecentSpans; over > 0 {
			s.recent = append(s.recent[:0], s.recent[over:]...)
			s.recentFrom = s.recent[0].first
		}
	}
	s.committed = seq
	known := len(s.recent) > 0 && s.recent[len(s.recent)-1].last == seq
	for sub := range s.subs {
		if !known || matchesAny(sub.filter, spans) {
			select {
			case sub.wake <- struct{}{}:
			default: // already due to look
			}
		}
	}
	s.mu.Unlock()
}

// matchesAny reports whether f matches the stream of one of spans.
func matchesAny(f eventstore.Filter, spans []commitSpan) bool {
	for _, sp := range spans {
		if f.Match(sp.stream) {
			return true
		}
	}
	return false
}

func (s *Store) register(sub *subscription) {
	s.mu.Lock()
	s.subs[sub] = struct{}{}
	s.mu.Unlock()
}

func (s *Store) unregister(sub *subscription) {
	s.mu.Lock()
	delete(s.subs, sub)
	s.mu.Unlock()
}
