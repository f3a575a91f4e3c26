package runner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/projections/models"
	"github.com/keyledger/keyledger/projections/readmodel"
	"github.com/keyledger/keyledger/projections/source"
)

// NewGeneration returns a fresh generation name of def's version: the version, a dash
// and the creation time (base-36 Unix nanoseconds), so that generations sort by age
// within a version and a rebuild request can be compared with a generation's age.
func NewGeneration(def models.Definition, now time.Time) string {
	return def.Version + "-" + strconv.FormatInt(now.UnixNano(), 36)
}

// generationTime returns when gen (named by NewGeneration) was created; false for a
// generation named otherwise (the bare version of DefaultNamespaces).
func generationTime(gen string) (time.Time, bool) {
	i := strings.LastIndexByte(gen, '-')
	if i < 0 {
		return time.Time{}, false
	}
	n, err := strconv.ParseInt(gen[i+1:], 36, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(0, n), true
}

// RebuildResult is what a rebuild did.
type RebuildResult struct {
	// Checkpoint is the generation's checkpoint when the rebuild ended: the position of
	// the last event of the model's streams it applied (Start for none).
	Checkpoint eventstore.Position
	// Scanned is the position of the last event of the log it read (any stream).
	Scanned eventstore.Position
	// Events counts the events of the model's streams it applied.
	Events int
}

// RebuildConfig tunes Rebuild.
type RebuildConfig struct {
	// Direct projects straight into the target store. Right for an in-process store,
	// where a write costs no round trip. Otherwise (Redis) the handlers run against an
	// in-process copy of the generation being built and their batches are merged and
	// written in large atomic steps, each with the position of its last event.
	Direct bool
	// FlushOps is how many operations a merged write holds at most before it is sent
	// (default 20,000; each one blocks Redis for its duration).
	FlushOps int
	// ReadPage is the log page size (default 4096).
	ReadPage int
	// OverlayBytes bounds the in-process copy's values (default 256 MiB): past it, the
	// rebuild waits for its writes and the copy reads what it forgot from the target.
	OverlayBytes int
	// Progress, when set, is called after each merged write (or every ReadPage events
	// when Direct) with the checkpoint reached and the events applied so far.
	Progress func(cp eventstore.Position, events int)
}

// Rebuild builds the generation ns of def from the start of the log up to its current
// end, into target: it creates the generation (which must not exist yet), runs def's
// handlers on every event of its streams in log order, and leaves the generation's
// checkpoint at the last one. It does not make the generation active; the caller starts
// projecting from the checkpoint and switches once it has caught up. On error the
// generation is left partial: drop it.
//
// The handlers are those the router runs, so a rebuilt generation is the generation a
// projection from the start would have built — only faster, because nothing waits for a
// round trip per event.
func Rebuild(ctx context.Context, events eventstore.Store, target readmodel.Store, def models.Definition, ns readmodel.Namespace, cfg RebuildConfig) (RebuildResult, error) {
	if cfg.FlushOps <= 0 {
		cfg.FlushOps = 20_000
	}
	if cfg.FlushOps > readmodel.MaxBatchOps/2 {
		cfg.FlushOps = readmodel.MaxBatchOps / 2
	}
	if cfg.ReadPage <= 0 {
		cfg.ReadPage = 4096
	}
	if cfg.OverlayBytes <= 0 {
		cfg.OverlayBytes = 256 << 20
	}
	var res RebuildResult
	if ns.Model != def.Model {
		return res, fmt.Errorf("%w: namespace %s is not of model %s", readmodel.ErrInvalid, ns, def.Model)
	}
	if _, present, err := target.Checkpoint(ctx, ns); err != nil {
		return res, err
	} else if present {
		return res, fmt.Errorf("%w: generation %s already exists", readmodel.ErrInvalid, ns)
	}
	if err := target.InitGeneration(ctx, ns); err != nil {
		return res, err
	}
	defer boostGC()()

	handlerStore := target
	var rec *overlay
	if !cfg.Direct {
		rec = newOverlay(ns)
		handlerStore = rec
	}
	disp, err := source.NewDispatcher(def.Handlers(models.Deps{Store: handlerStore, Events: events}, ns))
	if err != nil {
		return res, err
	}

	// The writer applies merged batches while the handlers build the next one.
	type flush struct {
		pos    eventstore.Position
		batch  readmodel.Batch
		events int
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	flushes := make(chan flush, 2)
	werr := make(chan error, 1)
	var inflight sync.WaitGroup // flushes sent and not yet written (or dropped)
	go func() {
		for f := range flushes {
			if _, err := target.Apply(wctx, ns, f.pos, f.batch); err != nil {
				werr <- fmt.Errorf("write %s up to %s: %w", ns, f.pos, err)
				cancel()
				inflight.Done()
				for range flushes {
					inflight.Done()
				}
				return
			}
			if cfg.Progress != nil {
				cfg.Progress(f.pos, f.events)
			}
			inflight.Done()
		}
		werr <- nil
	}()
	send := func(pos eventstore.Position) bool {
		b := rec.take()
		inflight.Add(1)
		select {
		case flushes <- flush{pos: pos, batch: b, events: res.Events}:
		case <-wctx.Done():
			inflight.Done()
			return false
		}
		if rec.size() > cfg.OverlayBytes {
			// Bound the copy: once everything taken is written, the target holds it.
			inflight.Wait()
			if wctx.Err() != nil {
				return false
			}
			rec.forget(target)
		}
		return true
	}
	finish := func(err error) (RebuildResult, error) {
		close(flushes)
		if werrV := <-werr; werrV != nil {
			err = errors.Join(err, werrV)
		}
		if err == nil {
			err = ctx.Err()
		}
		return res, err
	}

	// A reader goroutine fetches the next page, and decodes the payloads of the events
	// the model applies, while the handlers work on this one.
	type item struct {
		dec     source.Decoded
		handled bool
	}
	type fetched struct {
		events []eventstore.RecordedEvent
		items  []item // the page's events of the model's streams, in order
		err    error
	}
	pages := make(chan fetched, 2)
	go func() {
		defer close(pages)
		after := eventstore.Start
		for {
			page, err := events.ReadAll(wctx, after, cfg.ReadPage)
			var items []item
			if err != nil {
				err = fmt.Errorf("read the log after %s: %w", after, err)
			}
			for _, e := range page {
				if err != nil {
					break
				}
				if !def.Filter.Match(e.Stream) {
					continue
				}
				dec, handled, derr := disp.Decode(e)
				if derr != nil {
					err = fmt.Errorf("%s at %s (%s): %w", e.Type, e.Position, e.Stream, derr)
				}
				items = append(items, item{dec, handled})
			}
			select {
			case pages <- fetched{page, items, err}:
			case <-wctx.Done():
				return
			}
			if err != nil || len(page) < cfg.ReadPage {
				return
			}
			after = page[len(page)-1].Position
		}
	}()
	defer func() {
		cancel()
		for range pages {
		}
	}()

	pending := eventstore.Start // position of the last event not flushed yet
	for {
		f, ok := <-pages
		if !ok {
			return finish(wctx.Err())
		}
		page, err := f.events, f.err
		if err != nil {
			return finish(err)
		}
		if len(page) > 0 {
			res.Scanned = page[len(page)-1].Position
		}
		for _, it := range f.items {
			if !it.handled {
				continue // no handler wants it: the router acks it without a checkpoint move too
			}
			e := it.dec.Event
			if err := disp.Apply(wctx, it.dec); err != nil {
				return finish(fmt.Errorf("%s at %s (%s): %w", e.Type, e.Position, e.Stream, err))
			}
			res.Events++
			res.Checkpoint = e.Position
			if rec != nil {
				pending = e.Position
				if rec.pending.Len() >= cfg.FlushOps && !send(pending) {
					return finish(nil)
				}
			}
		}
		if cfg.Direct && cfg.Progress != nil && len(page) > 0 {
			cfg.Progress(res.Checkpoint, res.Events)
		}
		if len(page) < cfg.ReadPage {
			break
		}
	}
	if rec != nil && pending != eventstore.Start && (rec.pending.Len() > 0 || rec.moved) {
		if !send(pending) {
			return finish(nil)
		}
	}
	return finish(nil)
}

// rebuildGCPercent is the garbage collector's target while any rebuild runs, unless the
// operator set GOGC: a rebuild allocates short-lived garbage at a high rate, and
// collecting it three times less often cuts its CPU use by about a tenth for a
// temporarily larger heap (its in-process copy is bounded by OverlayBytes).
const rebuildGCPercent = 300

var gcBoost struct {
	sync.Mutex
	active  int  // rebuilds running
	boosted bool // the GC target was raised when the first of them began
	prev    int
}

// boostGC raises the GC target for the duration of a rebuild (unless the operator set
// GOGC); call the returned func when it ends. Rebuilds running at once share one boost.
// When the last of them ends, the returned func also collects once, before the rebuilt
// models serve: a rebuild in process leaves gigabytes of live read models and as much
// garbage, and the first collection of that heap would otherwise fall on the first
// minute of traffic (a quarter of the cores marking for tens of seconds while vouchers
// wait); after it the next collection is a heap's growth away.
func boostGC() (restore func()) {
	gcBoost.Lock()
	if gcBoost.active == 0 {
		gcBoost.boosted = false
		if os.Getenv("GOGC") == "" {
			gcBoost.prev = debug.SetGCPercent(rebuildGCPercent)
			gcBoost.boosted = true
			if gcBoost.prev >= rebuildGCPercent || gcBoost.prev < 0 {
				debug.SetGCPercent(gcBoost.prev) // already collecting less often (or off)
			}
		}
	}
	gcBoost.active++
	gcBoost.Unlock()
	return func() {
		gcBoost.Lock()
		gcBoost.active--
		last := gcBoost.active == 0
		if last && gcBoost.boosted {
			debug.SetGCPercent(gcBoost.prev)
		}
		gcBoost.Unlock()
		if last {
			runtime.GC()
		}
	}
}
