package embedded

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/keyledger/keyledger/eventstore"
)

// waitLimit bounds waits so a broken store fails a test instead of hanging it; it is
// never an assertion about speed.
const waitLimit = 20 * time.Second

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	t.Cleanup(cancel)
	return ctx
}

func evt(n int) eventstore.EventData {
	return eventstore.EventData{Type: "test.happened.v1", Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, n))}
}

func num(t *testing.T, e eventstore.RecordedEvent) int {
	t.Helper()
	var p struct{ N int }
	if err := json.Unmarshal(e.Data, &p); err != nil {
		t.Fatalf("event data %q: %v", e.Data, err)
	}
	return p.N
}

func openAt(t *testing.T, dir string, opts ...Option) *Store {
	t.Helper()
	s, err := Open(context.Background(), dir, opts...)
	if err != nil {
		t.Fatalf("open %s: %v", dir, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func mustAppend(t *testing.T, s *Store, stream string, exp eventstore.ExpectedVersion, evs ...eventstore.EventData) eventstore.AppendResult {
	t.Helper()
	res, err := s.Append(ctxT(t), stream, exp, evs...)
	if err != nil {
		t.Fatalf("append to %s: %v", stream, err)
	}
	return res
}

func readAll(t *testing.T, s *Store) ([]eventstore.RecordedEvent, error) {
	t.Helper()
	var out []eventstore.RecordedEvent
	var pos eventstore.Position
	for {
		page, err := s.ReadAll(ctxT(t), pos, 100)
		if err != nil {
			return out, err
		}
		if len(page) == 0 {
			return out, nil
		}
		out = append(out, page...)
		pos = page[len(page)-1].Position
	}
}

func mustReadAll(t *testing.T, s *Store) []eventstore.RecordedEvent {
	t.Helper()
	out, err := readAll(t, s)
	if err != nil {
		t.Fatalf("read all: %v", err)
	}
	return out
}

func TestReopenContinuesWithoutGap(t *testing.T) {
	dir := t.TempDir()
	s := openAt(t, dir)
	mustAppend(t, s, "client-a", eventstore.NoStream, evt(0), evt(1), evt(2))
	mustAppend(t, s, "client-b", eventstore.NoStream, evt(10), evt(11))
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	s = openAt(t, dir)
	all := mustReadAll(t, s)
	if len(all) != 5 {
		t.Fatalf("after reopen the log holds %d events, want 5", len(all))
	}
	for i, e := range all {
		if e.Position.Commit != uint64(i+1) || e.Position.Prepare != uint64(i+1) {
			t.Errorf("event %d at %s, want %d", i, e.Position, i+1)
		}
	}
	// The version cache starts empty: expected versions are checked against the file.
	if _, err := s.Append(ctxT(t), "client-a", eventstore.NoStream, evt(3)); !errors.Is(err, eventstore.ErrConcurrency) {
		t.Errorf("no-stream append to an existing stream after reopen: %v, want ErrConcurrency", err)
	}
	var ce *eventstore.ConcurrencyError
	if _, err := s.Append(ctxT(t), "client-b", eventstore.Exact(0), evt(12)); !errors.As(err, &ce) || !ce.ActualKnown || ce.Actual != 1 {
		t.Errorf("stale append after reopen: %v, want a ConcurrencyError at version 1", err)
	}
	res := mustAppend(t, s, "client-a", eventstore.Exact(2), evt(3))
	if res.Version != 3 || res.Position.Commit != 6 {
		t.Fatalf("append after reopen: version %d position %s, want 3 and 6", res.Version, res.Position)
	}
	res = mustAppend(t, s, "client-c", eventstore.NoStream, evt(20))
	if res.Version != 0 || res.Position.Commit != 7 {
		t.Fatalf("new stream after reopen: version %d position %s, want 0 and 7", res.Version, res.Position)
	}
}

func TestSecondOpenOfSameDirectoryFails(t *testing.T) {
	dir := t.TempDir()
	s := openAt(t, dir)
	_, err := Open(context.Background(), dir)
	if !errors.Is(err, eventstore.ErrUnavailable) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("second open: %v, want ErrUnavailable naming %s", err, dir)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openAt(t, dir)
	mustAppend(t, s2, "x", eventstore.NoStream, evt(0))
}

func TestOpenGarbageFileIsCorrupt(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	garbage := make([]byte, 8192)
	for i := range garbage {
		garbage[i] = byte(rand.Uint32())
	}
	if err := os.WriteFile(path, garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(context.Background(), dir)
	if !errors.Is(err, eventstore.ErrCorrupt) || !strings.Contains(err.Error(), path) {
		t.Fatalf("open of a garbage file: %v, want ErrCorrupt naming %s", err, path)
	}
	// The file was not touched.
	if got, _ := os.ReadFile(path); !bytes.Equal(got, garbage) {
		t.Fatal("a failed open modified the data file")
	}
}

func TestOpenForeignSQLiteFileIsCorrupt(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("CREATE TABLE notes (body TEXT)"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = Open(context.Background(), dir)
	if !errors.Is(err, eventstore.ErrCorrupt) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "not a Keyledger event store") {
		t.Fatalf("open of another application's database: %v", err)
	}
}

func TestOpenNewerSchemaFails(t *testing.T) {
	dir := t.TempDir()
	s := openAt(t, dir)
	mustAppend(t, s, "x", eventstore.NoStream, evt(0))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(fmt.Sprintf("PRAGMA user_version = %d", schemaVersion+1)); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = Open(context.Background(), dir)
	if err == nil || !strings.Contains(err.Error(), "newer") || !strings.Contains(err.Error(), filepath.Join(dir, FileName)) {
		t.Fatalf("open of a newer schema: %v", err)
	}
}

// buildAndDamage writes a store of a few hundred pages, closes it, checks that the WAL
// was folded back into the data file, and overwrites a run of pages in the middle.
func buildAndDamage(t *testing.T) (dir string, events int) {
	t.Helper()
	dir = t.TempDir()
	s := openAt(t, dir)
	pad := strings.Repeat("x", 400)
	for i := range 20 {
		evs := make([]eventstore.EventData, 100)
		for j := range evs {
			evs[j] = eventstore.EventData{Type: "t.v1", Data: json.RawMessage(fmt.Sprintf(`{"n":%d,"pad":%q}`, i*100+j, pad))}
		}
		mustAppend(t, s, fmt.Sprintf("s-%d", i), eventstore.NoStream, evs...)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, FileName+"-wal")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("after a clean close the WAL still exists (%v): damaging the data file would not be seen", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, FileName), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	if fi.Size() < 100*4096 {
		t.Fatalf("data file is only %d bytes", fi.Size())
	}
	junk := bytes.Repeat([]byte{0xA5, 0x5A, 0x00, 0xFF}, 60*4096/4)
	if _, err := f.WriteAt(junk, 20*4096); err != nil {
		t.Fatal(err)
	}
	return dir, 2000
}

func TestDamagedPagesAreNeverServedAsEndOfData(t *testing.T) {
	dir, total := buildAndDamage(t)
	path := filepath.Join(dir, FileName)

	// With the quick check, Open refuses the file.
	_, err := Open(context.Background(), dir, WithQuickCheck(true))
	if !errors.Is(err, eventstore.ErrCorrupt) || !strings.Contains(err.Error(), path) {
		t.Fatalf("open with quick check of a damaged file: %v, want ErrCorrupt naming %s", err, path)
	}

	// Without it, either Open or the first read that reaches a damaged page fails
	// with ErrCorrupt; no read ever ends early as if the log were shorter.
	s, err := Open(context.Background(), dir)
	if err != nil {
		if !errors.Is(err, eventstore.ErrCorrupt) || !strings.Contains(err.Error(), path) {
			t.Fatalf("open of a damaged file: %v, want ErrCorrupt naming %s", err, path)
		}
		t.Logf("open without quick check refused the damaged file: %v", err)
		return
	}
	defer s.Close()
	got, err := readAll(t, s)
	if err == nil {
		t.Fatalf("read all of a damaged file ended without error after %d of %d events", len(got), total)
	}
	if !errors.Is(err, eventstore.ErrCorrupt) || !strings.Contains(err.Error(), path) {
		t.Fatalf("read all of a damaged file: %v, want ErrCorrupt naming %s", err, path)
	}
	t.Logf("read all stopped after %d events: %v", len(got), err)
	sub, err := s.Subscribe(ctxT(t), eventstore.Start, eventstore.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	for n := 0; ; n++ {
		if _, err := sub.Next(ctxT(t)); err != nil {
			if !errors.Is(err, eventstore.ErrCorrupt) {
				t.Fatalf("subscription over a damaged file: %v, want ErrCorrupt", err)
			}
			break
		}
		if n > total {
			t.Fatal("subscription over a damaged file delivered more events than were written")
		}
	}
}

func TestOpenUnreadableFile(t *testing.T) {
	t.Run("directory in place of the file", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, FileName)
		if err := os.Mkdir(path, 0o700); err != nil {
			t.Fatal(err)
		}
		_, err := Open(context.Background(), dir)
		if !errors.Is(err, eventstore.ErrUnavailable) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "not a regular file") {
			t.Fatalf("open with a directory at %s: %v", path, err)
		}
	})
	t.Run("no permission", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("running as root: file permissions do not block reads (the directory case covers the message)")
		}
		dir := t.TempDir()
		s := openAt(t, dir)
		mustAppend(t, s, "x", eventstore.NoStream, evt(0))
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, FileName)
		if err := os.Chmod(path, 0); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.Chmod(path, 0o600) })
		_, err := Open(context.Background(), dir)
		if !errors.Is(err, eventstore.ErrUnavailable) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "permission denied") {
			t.Fatalf("open of an unreadable file: %v", err)
		}
	})
}

// gate holds the writer at one stage of its first batch until released.
type gate struct {
	stage   writerStage
	once    sync.Once
	reached chan struct{}
	release chan struct{}
}

func newGate(stage writerStage) *gate {
	return &gate{stage: stage, reached: make(chan struct{}), release: make(chan struct{})}
}

func (g *gate) hook(st writerStage) {
	if st != g.stage {
		return
	}
	g.once.Do(func() {
		close(g.reached)
		<-g.release
	})
}

func (g *gate) wait(t *testing.T) {
	t.Helper()
	select {
	case <-g.reached:
	case <-time.After(waitLimit):
		t.Fatal("the writer never reached the gate")
	}
}

// waitQueued waits until n appends wait in the writer's queue.
func waitQueued(t *testing.T, s *Store, n int) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for len(s.queue) != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d appends queued, want %d", len(s.queue), n)
		}
		time.Sleep(time.Millisecond)
	}
}

type outcome struct {
	res eventstore.AppendResult
	err error
}

func goAppend(ctx context.Context, s *Store, stream string, exp eventstore.ExpectedVersion, evs ...eventstore.EventData) chan outcome {
	ch := make(chan outcome, 1)
	go func() {
		res, err := s.Append(ctx, stream, exp, evs...)
		ch <- outcome{res, err}
	}()
	return ch
}

func await(t *testing.T, ch chan outcome) outcome {
	t.Helper()
	select {
	case o := <-ch:
		return o
	case <-time.After(waitLimit):
		t.Fatal("append did not return")
		return outcome{}
	}
}

func TestBatchWithFailedExpectedVersion(t *testing.T) {
	g := newGate(stageReceived)
	s := openAt(t, t.TempDir(), withWriterHook(g.hook))
	ctx := ctxT(t)

	a := goAppend(ctx, s, "a", eventstore.NoStream, evt(0))
	g.wait(t)
	var chans []chan outcome
	for i, c := range []struct {
		stream string
		exp    eventstore.ExpectedVersion
	}{
		{"b", eventstore.NoStream}, // ok
		{"a", eventstore.NoStream}, // fails: the batch's first append created a
		{"a", eventstore.Exact(0)}, // ok: sees the first append's effect
		{"c", eventstore.Exact(5)}, // fails: no such stream
		{"a", eventstore.Exact(1)}, // ok: sees the third
	} {
		chans = append(chans, goAppend(ctx, s, c.stream, c.exp, evt(i+1)))
		waitQueued(t, s, i+1) // one at a time, so the queue order is known
	}
	close(g.release)

	if o := await(t, a); o.err != nil || o.res.Version != 0 || o.res.Position.Commit != 1 {
		t.Fatalf("first append: %+v", o)
	}
	want := []struct {
		ok      bool
		version uint64
		pos     uint64
	}{{true, 0, 2}, {false, 0, 0}, {true, 1, 3}, {false, 0, 0}, {true, 2, 4}}
	for i, w := range want {
		o := await(t, chans[i])
		if !w.ok {
			var ce *eventstore.ConcurrencyError
			if !errors.As(o.err, &ce) {
				t.Errorf("append %d: %v, want a ConcurrencyError", i+1, o.err)
			}
			continue
		}
		if o.err != nil || o.res.Version != w.version || o.res.Position.Commit != w.pos {
			t.Errorf("append %d: %+v, want version %d at %d", i+1, o, w.version, w.pos)
		}
	}
	if s.w.commits != 1 {
		t.Errorf("the batch took %d commits, want 1", s.w.commits)
	}
	all := mustReadAll(t, s)
	var got []int
	for _, e := range all {
		got = append(got, num(t, e))
	}
	if fmt.Sprint(got) != "[0 1 3 5]" {
		t.Fatalf("log holds payloads %v, want [0 1 3 5]", got)
	}
	var ce *eventstore.ConcurrencyError
	if o := mustFail(t, s, "c", eventstore.Exact(5)); !errors.As(o, &ce) || !ce.NoStream {
		t.Errorf("append to a missing stream: %v, want a ConcurrencyError with NoStream", o)
	}
}

func mustFail(t *testing.T, s *Store, stream string, exp eventstore.ExpectedVersion) error {
	t.Helper()
	_, err := s.Append(ctxT(t), stream, exp, evt(99))
	if err == nil {
		t.Fatalf("append to %s with %s succeeded", stream, exp)
	}
	return err
}

func bigEvent(n, size int) eventstore.EventData {
	return eventstore.EventData{Type: "t.v1", Data: json.RawMessage(fmt.Sprintf(`{"n":%d,"pad":%q}`, n, strings.Repeat("z", size)))}
}

func TestStorageFull(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	// 64 pages of 4 KiB: room for the schema and a few small events, not for 400 KB.
	s := openAt(t, dir, withMaxPageCount(64))
	for i := range 5 {
		mustAppend(t, s, "small", eventstore.Any, evt(i))
	}
	_, err := s.Append(ctxT(t), "big", eventstore.NoStream, bigEvent(100, 400_000))
	if !errors.Is(err, eventstore.ErrStorageFull) || !strings.Contains(err.Error(), path) {
		t.Fatalf("append beyond the size limit: %v, want ErrStorageFull naming %s", err, path)
	}
	if _, err := s.ReadStream(ctxT(t), "big", eventstore.Forwards, 0, 10); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Fatalf("the failed append is visible (read: %v)", err)
	}
	// Later, smaller appends still work and the log stays gap-free.
	res := mustAppend(t, s, "small", eventstore.Exact(4), evt(5))
	if res.Position.Commit != 6 {
		t.Fatalf("append after the full-disk failure at %s, want 6", res.Position)
	}
	all := mustReadAll(t, s)
	if len(all) != 6 {
		t.Fatalf("log holds %d events, want 6", len(all))
	}
	for i, e := range all {
		if e.Stream != "small" || num(t, e) != i {
			t.Fatalf("event %d: %s carries %d", i, e.Stream, num(t, e))
		}
	}
}

func TestStorageFullFailsOnlyTheOffendingAppendOfABatch(t *testing.T) {
	g := newGate(stageReceived)
	s := openAt(t, t.TempDir(), withMaxPageCount(64), withWriterHook(g.hook))
	ctx := ctxT(t)
	first := goAppend(ctx, s, "a", eventstore.NoStream, evt(0))
	g.wait(t)
	big := goAppend(ctx, s, "big", eventstore.NoStream, bigEvent(1, 400_000))
	waitQueued(t, s, 1)
	last := goAppend(ctx, s, "a", eventstore.Exact(0), evt(2))
	waitQueued(t, s, 2)
	close(g.release)

	if o := await(t, first); o.err != nil || o.res.Position.Commit != 1 {
		t.Fatalf("first append: %+v", o)
	}
	if o := await(t, big); !errors.Is(o.err, eventstore.ErrStorageFull) {
		t.Fatalf("oversized append: %v, want ErrStorageFull", o.err)
	}
	if o := await(t, last); o.err != nil || o.res.Version != 1 || o.res.Position.Commit != 2 {
		t.Fatalf("append after the oversized one: %+v, want version 1 at 2", o)
	}
	all := mustReadAll(t, s)
	if len(all) != 2 || all[0].Stream != "a" || all[1].Stream != "a" {
		t.Fatalf("log holds %d events, want the two small ones", len(all))
	}
}

func TestCancelledWhileQueuedIsNotWritten(t *testing.T) {
	g := newGate(stageReceived)
	s := openAt(t, t.TempDir(), withWriterHook(g.hook))
	first := goAppend(ctxT(t), s, "a", eventstore.NoStream, evt(0))
	g.wait(t)
	ctx, cancel := context.WithCancel(context.Background())
	queued := goAppend(ctx, s, "b", eventstore.NoStream, evt(1))
	waitQueued(t, s, 1)
	cancel()
	if o := await(t, queued); !errors.Is(o.err, context.Canceled) {
		t.Fatalf("append cancelled while queued: %+v, want context.Canceled", o)
	}
	close(g.release)
	if o := await(t, first); o.err != nil {
		t.Fatal(o.err)
	}
	if _, err := s.ReadStream(ctxT(t), "b", eventstore.Forwards, 0, 1); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Fatalf("the cancelled append was written (read: %v)", err)
	}
	// The log stays gap-free after a skipped request.
	if res := mustAppend(t, s, "c", eventstore.NoStream, evt(2)); res.Position.Commit != 2 {
		t.Fatalf("next append at %s, want 2", res.Position)
	}
}

func TestCancelledAfterTakenReturnsTheOutcome(t *testing.T) {
	g := newGate(stageClaimed)
	s := openAt(t, t.TempDir(), withWriterHook(g.hook))
	ctx, cancel := context.WithCancel(context.Background())
	taken := goAppend(ctx, s, "a", eventstore.NoStream, evt(0))
	g.wait(t) // the writer has claimed the append
	cancel()
	select {
	case o := <-taken:
		t.Fatalf("append returned %+v while its transaction had not run", o)
	default:
	}
	close(g.release)
	o := await(t, taken)
	if o.err != nil || o.res.Position.Commit != 1 {
		t.Fatalf("append cancelled after the writer took it: %+v, want its success", o)
	}
	if got := mustReadAll(t, s); len(got) != 1 {
		t.Fatalf("log holds %d events, want 1", len(got))
	}
}

func TestIdleSubscriptionDoesNotQuery(t *testing.T) {
	s := openAt(t, t.TempDir())
	mustAppend(t, s, "a", eventstore.NoStream, evt(0))
	sub, err := s.Subscribe(ctxT(t), eventstore.Start, eventstore.Filter{StreamPrefixes: []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if e, err := sub.Next(ctxT(t)); err != nil || num(t, e) != 0 {
		t.Fatalf("catch-up: %v", err)
	}

	got := make(chan eventstore.RecordedEvent, 1)
	go func() {
		e, err := sub.Next(ctxT(t))
		if err != nil {
			t.Errorf("live next: %v", err)
		}
		got <- e
	}()
	before := s.readQueries.Load()
	// Events of other streams wake the subscription; it sees from the commit's streams
	// that none is its own and goes back to sleep without a query.
	for i := range 50 {
		mustAppend(t, s, fmt.Sprintf("b-%d", i), eventstore.NoStream, evt(1))
	}
	time.Sleep(200 * time.Millisecond) // an observation window, not a timing assertion
	afterOther := s.readQueries.Load()
	if afterOther != before {
		t.Fatalf("50 unrelated commits cost %d subscription queries, want none", afterOther-before)
	}
	time.Sleep(200 * time.Millisecond)
	if n := s.readQueries.Load(); n != afterOther {
		t.Fatalf("an idle subscription ran %d queries without any commit: it polls", n-afterOther)
	}
	select {
	case e := <-got:
		t.Fatalf("subscription delivered %s, which its filter excludes", e.Stream)
	default:
	}
	mustAppend(t, s, "a", eventstore.Exact(0), evt(2))
	select {
	case e := <-got:
		if num(t, e) != 2 {
			t.Fatalf("live event carries %d, want 2", num(t, e))
		}
	case <-time.After(waitLimit):
		t.Fatal("subscription was not woken by the commit")
	}
}

func TestStoreCloseEndsSubscriptionsAndRefusesWork(t *testing.T) {
	s, err := Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, "a", eventstore.NoStream, evt(0))
	if err := s.Ping(ctxT(t)); err != nil {
		t.Fatalf("ping: %v", err)
	}
	sub, err := s.Subscribe(ctxT(t), eventstore.Start, eventstore.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Next(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := sub.Next(context.Background())
		done <- err
	}()
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, eventstore.ErrClosed) {
			t.Fatalf("blocked Next after store close: %v, want ErrClosed", err)
		}
	case <-time.After(waitLimit):
		t.Fatal("store close did not wake the subscription")
	}
	if _, err := sub.Next(ctxT(t)); !errors.Is(err, eventstore.ErrClosed) {
		t.Errorf("Next after store close: %v", err)
	}
	if err := sub.Close(); err != nil {
		t.Errorf("subscription close after store close: %v", err)
	}
	if _, err := s.Append(ctxT(t), "a", eventstore.Any, evt(1)); !errors.Is(err, eventstore.ErrClosed) {
		t.Errorf("append after close: %v", err)
	}
	if _, err := s.ReadAll(ctxT(t), eventstore.Start, 10); !errors.Is(err, eventstore.ErrClosed) {
		t.Errorf("read all after close: %v", err)
	}
	if _, err := s.ReadStream(ctxT(t), "a", eventstore.Forwards, 0, 10); !errors.Is(err, eventstore.ErrClosed) {
		t.Errorf("read stream after close: %v", err)
	}
	if _, err := s.Subscribe(ctxT(t), eventstore.Start, eventstore.Filter{}); !errors.Is(err, eventstore.ErrClosed) {
		t.Errorf("subscribe after close: %v", err)
	}
	if err := s.Ping(ctxT(t)); !errors.Is(err, eventstore.ErrClosed) {
		t.Errorf("ping after close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
}

func TestCloseWithInFlightAppends(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	const writers = 16
	type record struct {
		ok     []string // ids of acknowledged events, in order
		failed []string // ids of the events of the append that failed
		err    error
	}
	records := make([]record, writers)
	var acked sync.WaitGroup
	acked.Add(writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stream := fmt.Sprintf("w-%d", w)
			exp := eventstore.NoStream
			for i := 0; ; i++ {
				evs := []eventstore.EventData{evt(i), evt(i)}
				evs[0].ID, evs[1].ID = uuid.NewString(), uuid.NewString()
				res, err := s.Append(context.Background(), stream, exp, evs...)
				if i == 3 {
					acked.Done()
				}
				if err != nil {
					records[w].failed = []string{evs[0].ID, evs[1].ID}
					records[w].err = err
					if i < 3 {
						acked.Done()
					}
					return
				}
				records[w].ok = append(records[w].ok, evs[0].ID, evs[1].ID)
				exp = eventstore.Exact(res.Version)
			}
		}()
	}
	acked.Wait() // every writer has had a few appends acknowledged and keeps going
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	wg.Wait()
	for w, r := range records {
		if !errors.Is(r.err, eventstore.ErrClosed) {
			t.Errorf("writer %d stopped with %v, want ErrClosed", w, r.err)
		}
	}

	s = openAt(t, dir)
	all := mustReadAll(t, s)
	byStream := map[string][]string{}
	for i, e := range all {
		if e.Position.Commit != uint64(i+1) {
			t.Fatalf("after reopen event %d is at %s: gap", i, e.Position)
		}
		byStream[e.Stream] = append(byStream[e.Stream], e.ID)
	}
	for w, r := range records {
		got := byStream[fmt.Sprintf("w-%d", w)]
		if fmt.Sprint(got) != fmt.Sprint(r.ok) {
			t.Errorf("writer %d: log holds %d events, %d were acknowledged (or they differ)", w, len(got), len(r.ok))
		}
		for _, id := range r.failed {
			for _, g := range got {
				if g == id {
					t.Errorf("writer %d: event %s of a failed append is in the log", w, id)
				}
			}
		}
	}
}

func TestFilterPrefixesWithSpecialCharacters(t *testing.T) {
	s := openAt(t, t.TempDir())
	streams := []string{"a%_1", "abc", "a%x", "a_%", "a\\%_", "ü-1", "ü", "ü\U0010FFFF", "v", "\xff\xff-x", "\xff\xfe"}
	for i, st := range streams {
		mustAppend(t, s, st, eventstore.NoStream, evt(i))
	}
	for _, prefixes := range [][]string{
		{"a%_"}, {"a_"}, {"a\\"}, {"ü"}, {"ü-"}, {"\xff\xff"}, {"\xff"}, {"a%", "v"}, {""}, {"zzz"},
	} {
		f := eventstore.Filter{StreamPrefixes: prefixes}
		var want []string
		for _, st := range streams {
			if f.Match(st) {
				want = append(want, st)
			}
		}
		sub, err := s.Subscribe(ctxT(t), eventstore.Start, f)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for range want {
			e, err := sub.Next(ctxT(t))
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, e.Stream)
		}
		// Nothing more is pending: a marker that every filter passes would be ideal, but
		// the filters differ, so check that the subscription has examined the whole log.
		if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) {
			t.Errorf("prefixes %q: delivered %q, want %q", prefixes, got, want)
		}
		sub.(*subscription).mustBeIdle(t)
		sub.Close()
	}
}

// mustBeIdle checks that a subscription has nothing buffered and has examined the log
// up to the last commit, so it would deliver nothing more without a new commit.
func (sub *subscription) mustBeIdle(t *testing.T) {
	t.Helper()
	for sub.next == len(sub.buf) {
		high := sub.s.watermark()
		if sub.cursor >= high {
			return
		}
		if err := sub.fetch(ctxT(t), high); err != nil {
			t.Fatal(err)
		}
	}
	t.Fatalf("subscription has %q pending", sub.buf[sub.next].Stream)
}

func TestPrefixUpperBound(t *testing.T) {
	for _, c := range []struct {
		in, want string
		ok       bool
	}{
		{"a", "b", true}, {"ab", "ac", true}, {"a\xff", "b", true}, {"\xff\xff", "", false}, {"ü", "ü"[:1] + "\xbd", true},
	} {
		got, ok := prefixUpperBound(c.in)
		if got != c.want || ok != c.ok {
			t.Errorf("prefixUpperBound(%q) = %q, %v; want %q, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

func TestReadLimitsAndBounds(t *testing.T) {
	s := openAt(t, t.TempDir())
	mustAppend(t, s, "a", eventstore.NoStream, evt(0), evt(1), evt(2))
	if got, err := s.ReadStream(ctxT(t), "a", eventstore.Forwards, eventstore.End, 10); err != nil || len(got) != 0 {
		t.Errorf("forwards from End: %d events, %v", len(got), err)
	}
	if got, err := s.ReadStream(ctxT(t), "a", eventstore.Forwards, 0, 0); err != nil || len(got) != 3 {
		t.Errorf("limit 0: %d events, %v; want all 3", len(got), err)
	}
	if got, err := s.ReadAll(ctxT(t), eventstore.Position{Commit: 1 << 63, Prepare: 1 << 63}, 10); err != nil || len(got) != 0 {
		t.Errorf("read all after a huge position: %d events, %v", len(got), err)
	}
	got, err := s.ReadStream(ctxT(t), "a", eventstore.Backwards, eventstore.End, 1)
	if err != nil || len(got) != 1 || got[0].Version != 2 || got[0].Position.Commit != 3 {
		t.Errorf("backwards from End: %+v, %v", got, err)
	}
}

// TestFilteredSubscriptionAcrossManyCommits: a subscription that falls more than the
// remembered commits behind queries again, and one that keeps up skips what is not its
// own; both deliver exactly their streams' events, in order, however the commits mixed
// them.
func TestFilteredSubscriptionAcrossManyCommits(t *testing.T) {
	s := openAt(t, t.TempDir())
	lagging, err := s.Subscribe(ctxT(t), eventstore.Start, eventstore.Filter{StreamPrefixes: []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	defer lagging.Close()
	var version uint64
	want := []int{}
	var wg sync.WaitGroup
	for round := range 3 {
		for i := range maxRecentSpans/2 + 10 {
			wg.Add(1)
			go func() { // concurrent appends share commits
				defer wg.Done()
				mustAppend(t, s, fmt.Sprintf("b-%d-%d", round, i), eventstore.NoStream, evt(-1))
			}()
		}
		wg.Wait()
		n := 100 + round
		expected := eventstore.NoStream
		if round > 0 {
			expected = eventstore.Exact(version)
		}
		mustAppend(t, s, "a", expected, evt(n))
		version = uint64(round)
		want = append(want, n)
	}
	for _, n := range want {
		e, err := lagging.Next(ctxT(t))
		if err != nil || e.Stream != "a" || num(t, e) != n {
			t.Fatalf("next: %s %v, want a #%d", e.Stream, err, n)
		}
	}
}

// A commit wakes only the subscriptions whose filter matches one of its streams; the
// others stay asleep, and still deliver their streams' events when those come.
func TestCommitWakesOnlyMatchingSubscriptions(t *testing.T) {
	s := openAt(t, t.TempDir())
	subX, err := s.Subscribe(ctxT(t), eventstore.Start, eventstore.Filter{StreamPrefixes: []string{"x-"}})
	if err != nil {
		t.Fatal(err)
	}
	defer subX.Close()
	all, err := s.Subscribe(ctxT(t), eventstore.Start, eventstore.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	defer all.Close()
	x, a := subX.(*subscription), all.(*subscription)
	for i := range 50 {
		mustAppend(t, s, fmt.Sprintf("y-%d", i), eventstore.NoStream, evt(0))
	}
	if len(x.wake) != 0 {
		t.Fatal("commits of y- streams woke the x- subscription")
	}
	if len(a.wake) != 1 {
		t.Fatal("commits did not wake the subscription to every stream")
	}
	mustAppend(t, s, "x-1", eventstore.NoStream, evt(0))
	if len(x.wake) != 1 {
		t.Fatal("a commit of x-1 did not wake the x- subscription")
	}
	e, err := subX.Next(ctxT(t))
	if err != nil || e.Stream != "x-1" {
		t.Fatalf("x- subscription delivered %q, %v", e.Stream, err)
	}
	x.mustBeIdle(t)
}
