// Package runner runs Keyledger's read models: for each one it picks or builds the
// generation to serve, projects the log into it live through a source.Router, switches
// generations atomically after a rebuild, and — when several processes share one Redis —
// lets exactly one of them project each model at a time (a lease with fencing tokens
// checked inside the read-model store's write scripts).
//
// The life of one model, in the process that holds its lease:
//
//  1. The active generation is of the model's current version and has its checkpoint:
//     project it from there.
//  2. Otherwise (first start, a version constant changed, the data was lost — Redis
//     flushed or restarted without persistence —, or `keyledger rebuild` asked for it):
//     build a new generation from the start of the log with Rebuild while the old one,
//     if any, keeps serving; start projecting it live; once it has caught up with the end
//     of the log, make it active in one write; drop the other generations after a grace
//     period (readers of other processes re-resolve the active generation within
//     DefaultRefresh).
//  3. While projecting, watch the active marker and the checkpoint: if either is gone or
//     changed, or a rebuild was requested, go back to 2.
//
// While a model has no active generation, readers get ErrNotReady (the API and the
// token endpoint answer 503) — a generation is never read before it is complete.
package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/projections/lease"
	"github.com/keyledger/keyledger/projections/models"
	"github.com/keyledger/keyledger/projections/readmodel"
	"github.com/keyledger/keyledger/projections/source"
)

// Config configures a Runner.
type Config struct {
	// Events is the log (required); Store the read-model store (required).
	Events eventstore.Store
	Store  readmodel.Store
	// Models to run; default models.All().
	Models []models.Definition
	// Redis, when set, is the Redis the Store lives in: each model is then projected
	// under a lease (one process at a time), writes carry the lease's fencing token, and
	// rebuild requests (RequestRebuild) are read from it. Nil: this process is the only
	// projector (the in-process store).
	Redis redis.UniversalClient
	// KeyPrefix prefixes the Redis keys of leases and rebuild requests (default
	// "keyledger:"); deployments sharing one Redis use different prefixes.
	KeyPrefix string
	// HolderID names this process in leases (default host, pid and a random suffix).
	HolderID string
	// LeaseTTL bounds how long a crashed leader blocks the others (default 10s).
	LeaseTTL time.Duration
	// Watch is how often a projecting model checks its active marker, checkpoint and
	// rebuild requests (default 500ms).
	Watch time.Duration
	// DropGrace is how long an old generation is kept after a switch (default
	// 2×DefaultRefresh + 1s).
	DropGrace time.Duration
	// Retry bounds the router's Retry middleware.
	Retry source.RetryConfig
	// Rebuild tunes rebuilds; Direct is set automatically for an in-process Store.
	Rebuild RebuildConfig
	// Logger defaults to slog.Default(); Registerer, when set, receives the metrics.
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// State is a model's state in this process.
type State string

// States.
const (
	StateStarting   State = "starting"
	StateStandby    State = "standby"     // another process holds the model's lease
	StateRebuilding State = "rebuilding"  // building a generation from the start of the log
	StateCatchingUp State = "catching-up" // a rebuilt generation is projected live until it is at the end of the log
	StateProjecting State = "projecting"  // the active generation is projected live
	StateHalted     State = "halted"      // an event could not be applied: projection stopped there
	StateFailed     State = "failed"      // the store or the log failed; retrying
	StateStopped    State = "stopped"
)

// Status is one model's status.
type Status struct {
	Model      string
	Generation string // the generation this process builds or projects
	State      State
	// Checkpoint is the position of the last event applied (projecting), or reached by
	// the rebuild.
	Checkpoint eventstore.Position
	// Reason says why the model is halted or failed.
	Reason string
	Since  time.Time
	// RebuildEvents counts the events applied by the current or last rebuild.
	RebuildEvents int
}

// Runner runs the read models. Create it with New, run it with Run.
type Runner struct {
	cfg     Config
	direct  bool
	reader  *Reader
	log     *slog.Logger
	metrics *metrics
	models  []*model
}

type model struct {
	def models.Definition
	mu  sync.Mutex
	st  Status
}

// New checks cfg and builds the Runner and its Reader.
func New(cfg Config) (*Runner, error) {
	if cfg.Events == nil || cfg.Store == nil {
		return nil, errors.New("runner: Events and Store are required")
	}
	if len(cfg.Models) == 0 {
		cfg.Models = models.All()
	}
	if cfg.HolderID == "" {
		host, _ := os.Hostname()
		cfg.HolderID = host + ":" + strconv.Itoa(os.Getpid()) + ":" + uuid.NewString()[:8]
	}
	if cfg.KeyPrefix == "" {
		cfg.KeyPrefix = DefaultKeyPrefix
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = 10 * time.Second
	}
	if cfg.Watch <= 0 {
		cfg.Watch = 500 * time.Millisecond
	}
	if cfg.DropGrace <= 0 {
		cfg.DropGrace = 2*DefaultRefresh + time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	_, inProcess := cfg.Store.(*readmodel.Memory)
	r := &Runner{cfg: cfg, direct: inProcess || cfg.Rebuild.Direct,
		reader: NewReader(cfg.Store, cfg.Events, cfg.Models),
		log:    cfg.Logger.With("component", "projections")}
	seen := map[string]bool{}
	for _, d := range cfg.Models {
		if seen[d.Model] {
			return nil, fmt.Errorf("runner: model %s given twice", d.Model)
		}
		seen[d.Model] = true
		r.models = append(r.models, &model{def: d, st: Status{Model: d.Model, State: StateStarting, Since: time.Now()}})
	}
	m, err := newMetrics(cfg.Registerer, r)
	if err != nil {
		return nil, err
	}
	r.metrics = m
	return r, nil
}

// Reader returns the Reader of the models this Runner runs; it is told at once of every
// applied event and generation switch.
func (r *Runner) Reader() *Reader { return r.reader }

// Statuses returns every model's status, in the order of Config.Models.
func (r *Runner) Statuses() []Status {
	out := make([]Status, 0, len(r.models))
	for _, m := range r.models {
		m.mu.Lock()
		out = append(out, m.st)
		m.mu.Unlock()
	}
	return out
}

// Healthy returns nil when every model can serve: it is projected here or by another
// process, and has an active generation. It names each model that is halted, failing,
// or has nothing to serve yet.
func (r *Runner) Healthy() error {
	var errs []error
	for _, st := range r.Statuses() {
		switch st.State {
		case StateHalted, StateFailed:
			errs = append(errs, fmt.Errorf("read model %s (%s) %s at %s: %s", st.Model, st.Generation, st.State, st.Checkpoint, st.Reason))
		case StateStarting, StateRebuilding, StateCatchingUp, StateStopped:
			if _, err := r.reader.Namespace(context.Background(), st.Model); err != nil {
				errs = append(errs, fmt.Errorf("read model %s %s: %w", st.Model, st.State, err))
			}
		}
	}
	return errors.Join(errs...)
}

func (m *model) set(change func(*Status)) Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	before := m.st.State
	change(&m.st)
	if m.st.State != before {
		m.st.Since = time.Now()
	}
	return m.st
}

func (r *Runner) setState(m *model, state State, gen string, reason error) {
	st := m.set(func(s *Status) {
		s.State, s.Reason = state, ""
		if gen != "" {
			s.Generation = gen
		}
		if reason != nil {
			s.Reason = reason.Error()
		}
	})
	r.metrics.state(st)
}

// Run runs every model until ctx ends, and returns ctx's error.
func (r *Runner) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, m := range r.models {
		wg.Go(func() { r.runModel(ctx, m) })
	}
	wg.Wait()
	for _, m := range r.models {
		r.setState(m, StateStopped, "", nil)
	}
	return ctx.Err()
}

func (r *Runner) runModel(ctx context.Context, m *model) {
	if r.cfg.Redis == nil {
		r.lead(ctx, m, r.cfg.Store)
		return
	}
	l, err := lease.New(r.cfg.Redis, "projection."+m.def.Model, r.cfg.HolderID, r.cfg.LeaseTTL,
		lease.WithKeyPrefix(r.cfg.KeyPrefix+"lease:"),
		lease.WithErrorHandler(func(err error) { r.log.Warn("projection lease", "model", m.def.Model, "error", err.Error()) }))
	if err != nil {
		r.setState(m, StateFailed, "", err)
		return
	}
	for ctx.Err() == nil {
		r.setState(m, StateStandby, "", nil)
		err := l.Run(ctx, func(lctx context.Context, token uint64) error {
			r.log.Info("projection lease acquired", "model", m.def.Model, "token", token)
			store, err := readmodel.Fenced(r.cfg.Store, m.def.Model, token)
			if err != nil {
				return err
			}
			r.lead(lctx, m, store)
			if cause := context.Cause(lctx); errors.Is(cause, lease.ErrLost) {
				r.log.Warn("projection lease lost", "model", m.def.Model)
			}
			return nil
		})
		if err != nil && ctx.Err() == nil {
			r.setState(m, StateFailed, "", err)
			sleep(ctx, time.Second)
		}
	}
}

// lead projects m while ctx lasts (the lease is held), rebuilding when needed.
func (r *Runner) lead(ctx context.Context, m *model, store readmodel.Store) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		ns, fresh, err := r.prepare(ctx, m, store)
		if err == nil {
			err = r.project(ctx, m, store, ns, fresh)
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			r.log.Error("projection failed; retrying", "model", m.def.Model, "error", err.Error(), "retry_in", backoff.String())
			r.setState(m, StateFailed, "", err)
			sleep(ctx, backoff)
			backoff = min(2*backoff, 10*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
	}
}

// prepare returns the generation to project: the active one when it can be continued,
// otherwise a new one, rebuilt up to the end of the log (fresh: not active yet).
func (r *Runner) prepare(ctx context.Context, m *model, store readmodel.Store) (readmodel.Namespace, bool, error) {
	def := m.def
	active, ok, err := store.Active(ctx, def.Model)
	if err != nil {
		return readmodel.Namespace{}, false, err
	}
	why := "no active generation"
	if ok {
		why = "active generation " + active + " is of another version"
		if def.OwnsGeneration(active) {
			ns := readmodel.Namespace{Model: def.Model, Generation: active}
			_, present, err := store.Checkpoint(ctx, ns)
			if err != nil {
				return ns, false, err
			}
			req, err := r.rebuildRequested(ctx, def.Model, active)
			if err != nil {
				return ns, false, err
			}
			switch {
			case present && !req:
				return ns, false, nil
			case req:
				why = "rebuild requested"
			default:
				why = "active generation " + active + " lost its checkpoint (data lost)"
			}
		}
	}
	if ok && def.ServeOnlyCurrent {
		old := readmodel.Namespace{Model: def.Model, Generation: active}
		if err := store.Withdraw(ctx, old); err != nil {
			return old, false, fmt.Errorf("withdraw %s before its rebuild: %w", old, err)
		}
		r.reader.Invalidate(def.Model)
		r.log.Warn("read model withdrawn until its rebuild is active: it is not served meanwhile",
			"model", def.Model, "generation", active, "why", why)
	}
	ns := readmodel.Namespace{Model: def.Model, Generation: NewGeneration(def, time.Now())}
	r.log.Info("rebuilding read model", "model", def.Model, "generation", ns.Generation, "why", why)
	r.setState(m, StateRebuilding, ns.Generation, nil)
	m.set(func(s *Status) { s.RebuildEvents, s.Checkpoint = 0, eventstore.Start })
	cfg := r.cfg.Rebuild
	cfg.Direct = r.direct
	cfg.Progress = func(cp eventstore.Position, n int) {
		m.set(func(s *Status) { s.Checkpoint, s.RebuildEvents = cp, n })
	}
	start := time.Now()
	res, err := Rebuild(ctx, r.cfg.Events, store, def, ns, cfg)
	if err != nil {
		if derr := store.DropGeneration(context.WithoutCancel(ctx), ns); derr != nil {
			r.log.Warn("dropping a failed rebuild", "model", def.Model, "generation", ns.Generation, "error", derr.Error())
		}
		return ns, false, fmt.Errorf("rebuild %s: %w", ns, err)
	}
	r.metrics.rebuilt(def.Model, res.Events, time.Since(start))
	m.set(func(s *Status) { s.Checkpoint, s.RebuildEvents = res.Checkpoint, res.Events })
	r.log.Info("read model rebuilt", "model", def.Model, "generation", ns.Generation, "events", res.Events,
		"checkpoint", res.Checkpoint.String(), "took", time.Since(start).String())
	return ns, true, nil
}

// project runs the router on ns until ctx ends or the generation must change. A fresh
// generation is made active once it has caught up with the end of the log.
func (r *Runner) project(ctx context.Context, m *model, store readmodel.Store, ns readmodel.Namespace, fresh bool) error {
	def := m.def
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	router, err := source.NewRouter(source.RouterConfig{
		Store: r.cfg.Events,
		Checkpoint: func(ctx context.Context, _ string) (eventstore.Position, error) {
			cp, present, err := store.Checkpoint(ctx, ns)
			if err == nil && !present {
				err = fmt.Errorf("%w: %s", models.ErrCheckpointLost, ns)
			}
			return cp, err
		},
		Retry: r.cfg.Retry,
		Observer: source.ObserverFuncs{
			OnAcked: func(_ string, e eventstore.RecordedEvent) {
				m.set(func(s *Status) { s.Checkpoint = e.Position })
				r.metrics.acked(def.Model, e)
				r.reader.Applied(def.Model, ns.Generation, e.Position)
			},
		},
		Logger: watermill.NewSlogLogger(r.log.With("model", def.Model)),
	})
	if err != nil {
		return err
	}
	if err := def.Register(router, models.Deps{Store: store, Events: r.cfg.Events}, ns); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- router.Run(pctx) }()
	defer func() {
		cancel()
		if err := router.Close(); err != nil {
			r.log.Warn("closing the projection router", "model", def.Model, "error", err.Error())
		}
		<-done
	}()

	if fresh {
		r.setState(m, StateCatchingUp, ns.Generation, nil)
		if err := r.catchUp(pctx, def, store, ns, done); err != nil {
			return err
		}
		if err := store.SetActive(ctx, ns); err != nil {
			return fmt.Errorf("activate %s: %w", ns, err)
		}
		r.reader.Invalidate(def.Model)
		r.log.Info("read model generation active", "model", def.Model, "generation", ns.Generation)
		go r.dropOthers(ctx, store, ns)
	}
	r.setState(m, StateProjecting, ns.Generation, nil)

	tick := time.NewTicker(r.cfg.Watch)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-done:
			done <- err // for the deferred wait
			return fmt.Errorf("projection router stopped: %w", err)
		case <-tick.C:
		}
		if st, ok := router.Status(def.Group); ok {
			switch {
			case st.State == source.StateHalted && st.Failure != nil:
				r.setState(m, StateHalted, ns.Generation, st.Failure)
			case st.State == source.StateUnavailable && st.Failure != nil:
				r.setState(m, StateFailed, ns.Generation, st.Failure)
			default:
				r.setState(m, StateProjecting, ns.Generation, nil)
			}
		}
		change, err := r.mustChange(ctx, store, def, ns)
		if err != nil {
			r.log.Warn("checking the read model", "model", def.Model, "error", err.Error())
			continue
		}
		if change != "" {
			r.log.Warn("leaving read model generation", "model", def.Model, "generation", ns.Generation, "why", change)
			r.reader.Invalidate(def.Model)
			return nil
		}
	}
}

// mustChange says why ns can no longer be projected ("" if it can).
func (r *Runner) mustChange(ctx context.Context, store readmodel.Store, def models.Definition, ns readmodel.Namespace) (string, error) {
	active, ok, err := store.Active(ctx, def.Model)
	if err != nil {
		return "", err
	}
	if !ok {
		return "the active marker is gone (data lost)", nil
	}
	if active != ns.Generation {
		return "generation " + active + " is active now", nil
	}
	if _, present, err := store.Checkpoint(ctx, ns); err != nil {
		return "", err
	} else if !present {
		return "its checkpoint is gone (data lost)", nil
	}
	if req, err := r.rebuildRequested(ctx, def.Model, ns.Generation); err != nil {
		return "", err
	} else if req {
		return "a rebuild was requested", nil
	}
	return "", nil
}

// catchUp waits until ns reflects the log up to its end as it is now.
func (r *Runner) catchUp(ctx context.Context, def models.Definition, store readmodel.Store, ns readmodel.Namespace, done <-chan error) error {
	// The log's head is at or after where the rebuild left the generation: look for it
	// from there (from the start, every model read the whole log again after its
	// rebuild — gigabytes read and dropped at start-up with 1,000,000 keys).
	from, _, err := store.Checkpoint(ctx, ns)
	if err != nil {
		return err
	}
	head, err := logHead(ctx, r.cfg.Events, from)
	if err != nil {
		return err
	}
	if head == eventstore.Start {
		return nil
	}
	for {
		ok, err := reached(ctx, store, r.cfg.Events, def.Filter, r.reader.types[def.Model], ns, head)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-done:
			return fmt.Errorf("projection router stopped while catching up: %w", err)
		case <-time.After(pollEvery):
		}
	}
}

// logHead returns the position of the log's last event, looking from the position from
// on (from when nothing follows it; Start for an empty log).
func logHead(ctx context.Context, events eventstore.Store, from eventstore.Position) (eventstore.Position, error) {
	// The port reads forwards only: page from from, a large page at a time.
	const page = 10_000
	head := from
	for {
		evs, err := events.ReadAll(ctx, head, page)
		if err != nil {
			return head, err
		}
		if len(evs) > 0 {
			head = evs[len(evs)-1].Position
		}
		if len(evs) < page {
			return head, nil
		}
	}
}

// dropOthers deletes, after the grace period, every generation of ns.Model but ns.
func (r *Runner) dropOthers(ctx context.Context, store readmodel.Store, ns readmodel.Namespace) {
	if !sleep(ctx, r.cfg.DropGrace) {
		return
	}
	gens, err := store.Generations(ctx, ns.Model)
	if err != nil {
		r.log.Warn("listing read model generations", "model", ns.Model, "error", err.Error())
		return
	}
	for _, g := range gens {
		if g == ns.Generation {
			continue
		}
		old := readmodel.Namespace{Model: ns.Model, Generation: g}
		if err := store.DropGeneration(ctx, old); err != nil && !errors.Is(err, readmodel.ErrGenerationActive) {
			r.log.Warn("dropping an old read model generation", "generation", old.String(), "error", err.Error())
			continue
		}
		r.log.Info("old read model generation dropped", "generation", old.String())
	}
}

// DefaultKeyPrefix is Config.KeyPrefix's default.
const DefaultKeyPrefix = "keyledger:"

// rebuildKey is the Redis key RequestRebuild sets for model.
func rebuildKey(prefix, model string) string { return prefix + "rebuild:" + model }

// RequestRebuild asks the process that projects model (whichever holds its lease) to
// rebuild it into a new generation and switch to it; the old generation serves until
// then. prefix is the projecting processes' Config.KeyPrefix ("" for the default). It
// returns the time of the request: the rebuild is done once the active generation was
// created after it (see RebuiltSince).
func RequestRebuild(ctx context.Context, rdb redis.UniversalClient, prefix, model string) (time.Time, error) {
	if prefix == "" {
		prefix = DefaultKeyPrefix
	}
	now := time.Now()
	if err := rdb.Set(ctx, rebuildKey(prefix, model), strconv.FormatInt(now.UnixNano(), 10), 0).Err(); err != nil {
		return now, fmt.Errorf("%w: request rebuild of %s: %w", readmodel.ErrUnavailable, model, err)
	}
	return now, nil
}

// RebuiltSince reports whether model's active generation was created at or after t.
func RebuiltSince(ctx context.Context, store readmodel.Store, model string, t time.Time) (string, bool, error) {
	gen, ok, err := store.Active(ctx, model)
	if err != nil || !ok {
		return gen, false, err
	}
	at, named := generationTime(gen)
	return gen, named && !at.Before(t), nil
}

// rebuildRequested reports whether a rebuild of model was requested after gen was made.
func (r *Runner) rebuildRequested(ctx context.Context, model, gen string) (bool, error) {
	if r.cfg.Redis == nil {
		return false, nil
	}
	v, err := r.cfg.Redis.Get(ctx, rebuildKey(r.cfg.KeyPrefix, model)).Result()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("%w: %w", readmodel.ErrUnavailable, err)
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return false, nil // not ours to interpret; ignore
	}
	at, named := generationTime(gen)
	return !named || at.Before(time.Unix(0, n)), nil
}

// ModelNames returns the names of defs, for messages.
func ModelNames(defs []models.Definition) []string {
	out := make([]string, 0, len(defs))
	for _, d := range defs {
		out = append(out, d.Model)
	}
	slices.Sort(out)
	return out
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
