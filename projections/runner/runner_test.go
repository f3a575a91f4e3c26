package runner_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/redis/go-redis/v9"

	"github.com/keyledger/keyledger/commands"
	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/domain/client"
	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/eventstore/embedded"
	"github.com/keyledger/keyledger/internal/redistest"
	"github.com/keyledger/keyledger/internal/testkeys"
	"github.com/keyledger/keyledger/projections/models"
	"github.com/keyledger/keyledger/projections/readmodel"
	"github.com/keyledger/keyledger/projections/runner"
	"github.com/keyledger/keyledger/projections/source"
)

func TestMain(m *testing.M) { redistest.Main(m, "projection runner tests") }

// safety bounds every wait: a net against a hang, never an assertion on timing.
const safety = 30 * time.Second

var (
	ctx      = context.Background()
	operator = commands.Meta{Actor: domain.Actor{ID: "op", Kind: eventstore.ActorOperator, Operator: true}, CorrelationID: "c-op"}
	admin    = commands.Meta{Actor: domain.Actor{ID: "acme-admin", Tenant: "acme", Roles: domain.Roles{domain.RoleAdmin}}, CorrelationID: "c-acme"}
)

// world is an embedded event store with a tenant and commands.
type world struct {
	t   *testing.T
	es  eventstore.Store
	cmd *commands.Service
}

func newWorld(t *testing.T) *world {
	t.Helper()
	es, err := embedded.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = es.Close() })
	w := &world{t: t, es: es, cmd: commands.New(es, commands.Config{}, nil, nil)}
	if _, err := w.cmd.CreateTenant(ctx, operator, "acme", "Acme", "acme-admin", "Admin"); err != nil {
		t.Fatal(err)
	}
	return w
}

// apiClient creates an API client with one key and returns its id, the key's kid and the
// command's result.
func (w *world) apiClient(name string) (string, string, commands.Result) {
	w.t.Helper()
	res, err := w.cmd.CreateClient(ctx, admin, commands.ClientSpec{Kind: client.KindAPI, Name: name})
	if err != nil {
		w.t.Fatal(err)
	}
	up, kid, err := w.cmd.UploadKey(ctx, admin, commands.Clients, res.ID, commands.KeyInput{Name: "k", Key: testkeys.P256PEM(w.t), Use: "sig"})
	if err != nil {
		w.t.Fatal(err)
	}
	return res.ID, kid, up
}

// start runs a runner until the test ends and checks that Run returns.
func start(t *testing.T, cfg runner.Config) (*runner.Runner, context.CancelFunc) {
	t.Helper()
	if cfg.Retry.MaxRetries == 0 {
		cfg.Retry = source.RetryConfig{MaxRetries: 2, InitialInterval: time.Millisecond, MaxInterval: 5 * time.Millisecond}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Watch == 0 {
		cfg.Watch = 20 * time.Millisecond
	}
	r, err := runner.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Run returned %v", err)
			}
		case <-time.After(safety):
			t.Error("Run did not return after cancel")
		}
	}
	t.Cleanup(stop)
	return r, stop
}

// at waits (bounded) until model reflects pos, and returns its namespace.
func at(t *testing.T, rd *runner.Reader, model string, pos eventstore.Position) readmodel.Namespace {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, safety)
	defer cancel()
	ns, err := rd.At(wctx, model, pos)
	if err != nil {
		t.Fatalf("%s at %s: %v", model, pos, err)
	}
	return ns
}

func lookup(t *testing.T, rd *runner.Reader, ns readmodel.Namespace, clientID, kid string) bool {
	t.Helper()
	_, ok, err := models.LookupEntry(ctx, rd.Store(), ns, clientID, kid, "")
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// eventually polls cond (bounded) and fails with what when it never holds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(safety)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestInProcessBuildsAtStartAndFollowsTheLog(t *testing.T) {
	w := newWorld(t)
	before, kidBefore, _ := w.apiClient("before")
	r, _ := start(t, runner.Config{Events: w.es, Store: readmodel.NewMemory()})
	rd := r.Reader()

	// Built from the log at start-up.
	_, last, res := w.apiClient("after")
	ns := at(t, rd, models.VoucherModel, res.Position)
	if !lookup(t, rd, ns, before, kidBefore) {
		t.Fatal("the key uploaded before start is not in the voucher model")
	}
	if !strings.HasPrefix(ns.Generation, models.VoucherVersion+"-") {
		t.Fatalf("generation %q is not of version %s", ns.Generation, models.VoucherVersion)
	}
	// Every model becomes healthy once built (they are built concurrently).
	eventually(t, "all read models healthy", func() bool { return r.Healthy() == nil })
	// A deletion is visible as soon as At returns.
	del, err := w.cmd.DeleteKey(ctx, admin, commands.Clients, before, kidBefore)
	if err != nil {
		t.Fatal(err)
	}
	ns = at(t, rd, models.VoucherModel, del.Position)
	if lookup(t, rd, ns, before, kidBefore) {
		t.Fatal("deleted key still in the voucher model after At")
	}
	_ = last
	// A position of an event the model does not read (a user) is reached too.
	u, err := w.cmd.RegisterUser(ctx, admin, "bob", "Bob", []string{"member"})
	if err != nil {
		t.Fatal(err)
	}
	at(t, rd, models.VoucherModel, u.Position)
	// A position the log does not hold yet is not.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := rd.At(short, models.VoucherModel, eventstore.Position{Commit: u.Position.Commit + 1000}); !errors.Is(err, runner.ErrBehind) {
		t.Fatalf("future position: got %v, want ErrBehind", err)
	}
	for _, st := range r.Statuses() {
		if st.State != runner.StateProjecting {
			t.Errorf("%s is %s, want projecting", st.Model, st.State)
		}
	}
}

// poison is a read model that cannot apply a client named "poison".
var poison = models.Definition{
	Model: "poison", Version: "poison.v1", Group: "projection.poison.v1",
	Filter: eventstore.Filter{StreamPrefixes: []string{client.StreamName("")}},
	Handlers: func(deps models.Deps, ns readmodel.Namespace) []cqrs.GroupEventHandler {
		return []cqrs.GroupEventHandler{cqrs.NewGroupEventHandler(func(ctx context.Context, e *client.Created) error {
			if e.Name == "poison pill" {
				return source.Permanent(errors.New("cannot digest poison"))
			}
			ev, _ := source.FromContext(ctx)
			var b readmodel.Batch
			b.Put("c:"+e.ID, []byte(e.Name))
			_, err := deps.Store.Apply(ctx, ns, ev.Position, b)
			return err
		})}
	},
}

func TestHaltedModelIsReportedWithItsEvent(t *testing.T) {
	w := newWorld(t)
	r, _ := start(t, runner.Config{Events: w.es, Store: readmodel.NewMemory(), Models: []models.Definition{poison}})
	w.apiClient("fine client")
	at(t, r.Reader(), "poison", eventstore.Position{Commit: 1})
	res, err := w.cmd.CreateClient(ctx, admin, commands.ClientSpec{Kind: client.KindAPI, Name: "poison pill"})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the poison model halts", func() bool { return r.Statuses()[0].State == runner.StateHalted })
	err = r.Healthy()
	if err == nil || !strings.Contains(err.Error(), "cannot digest poison") || !strings.Contains(err.Error(), res.Position.String()) {
		t.Fatalf("Healthy = %v, want the event's position %s and the reason", err, res.Position)
	}
}

func redisStore(t *testing.T) (*readmodel.Redis, *redis.Client, string) {
	t.Helper()
	c, prefix := redistest.Client(t)
	s, err := readmodel.NewRedis(c, readmodel.WithKeyPrefix(prefix))
	if err != nil {
		t.Fatal(err)
	}
	return s, c, prefix
}

func redisConfig(w *world, s readmodel.Store, c *redis.Client, prefix, holder string) runner.Config {
	return runner.Config{Events: w.es, Store: s, Redis: c, KeyPrefix: prefix + ":", HolderID: holder,
		LeaseTTL: 600 * time.Millisecond, DropGrace: 10 * time.Millisecond}
}

func TestRedisRebuildOnRequestSwitchesAndDropsTheOldGeneration(t *testing.T) {
	w := newWorld(t)
	s, c, prefix := redisStore(t)
	id, kid, res := w.apiClient("client one")
	r, _ := start(t, redisConfig(w, s, c, prefix, "a"))
	rd := r.Reader()
	old := at(t, rd, models.VoucherModel, res.Position)

	asked, err := runner.RequestRebuild(ctx, c, prefix+":", models.VoucherModel)
	if err != nil {
		t.Fatal(err)
	}
	var gen string
	eventually(t, "a new voucher generation is active", func() bool {
		g, ok, err := runner.RebuiltSince(ctx, s, models.VoucherModel, asked)
		gen = g
		return err == nil && ok
	})
	if gen == old.Generation {
		t.Fatal("same generation after a rebuild")
	}
	ns := at(t, rd, models.VoucherModel, res.Position)
	if ns.Generation != gen || !lookup(t, rd, ns, id, kid) {
		t.Fatalf("rebuilt generation %s (reader: %s) lacks the key", gen, ns.Generation)
	}
	eventually(t, "the old generation is dropped", func() bool {
		gens, err := s.Generations(ctx, models.VoucherModel)
		return err == nil && len(gens) == 1 && gens[0] == gen
	})
	// The new generation follows the log.
	del, err := w.cmd.DeleteKey(ctx, admin, commands.Clients, id, kid)
	if err != nil {
		t.Fatal(err)
	}
	if lookup(t, rd, at(t, rd, models.VoucherModel, del.Position), id, kid) {
		t.Fatal("deleted key still served by the rebuilt generation")
	}
}

func TestRedisDataLossIsDetectedAndRebuilt(t *testing.T) {
	w := newWorld(t)
	s, c, prefix := redisStore(t)
	id, kid, res := w.apiClient("client one")
	r, _ := start(t, redisConfig(w, s, c, prefix, "a"))
	rd := r.Reader()
	before := at(t, rd, models.VoucherModel, res.Position)

	// Lose every read-model key, as a flush or a restart without persistence would.
	keys, err := c.Keys(ctx, prefix+":{*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("keys: %v %d", err, len(keys))
	}
	if err := c.Del(ctx, keys...).Err(); err != nil {
		t.Fatal(err)
	}
	// Until the rebuild completes nothing is served from partial data.
	if _, ok, _ := models.LookupEntry(ctx, s, before, id, kid, ""); ok {
		t.Fatal("entry still there after the loss")
	}
	var after readmodel.Namespace
	eventually(t, "the voucher model is rebuilt", func() bool {
		gen, ok, err := s.Active(ctx, models.VoucherModel)
		after = readmodel.Namespace{Model: models.VoucherModel, Generation: gen}
		return err == nil && ok && gen != before.Generation
	})
	if !lookup(t, rd, at(t, rd, models.VoucherModel, res.Position), id, kid) {
		t.Fatalf("rebuilt generation %s lacks the key", after.Generation)
	}
}

func TestRedisVersionChangeRebuildsWhileTheOldGenerationServes(t *testing.T) {
	w := newWorld(t)
	s, c, prefix := redisStore(t)
	id, kid, res := w.apiClient("client one")
	_, stop := start(t, redisConfig(w, s, c, prefix, "v1"))
	eventually(t, "v1 active", func() bool { _, ok, _ := s.Active(ctx, models.VoucherModel); return ok })
	stop()
	v1, _, _ := s.Active(ctx, models.VoucherModel)

	v2 := models.Voucher
	v2.Version = models.VoucherVersion + "0" // another version than the one running first
	r, _ := start(t, runner.Config{Events: w.es, Store: s, Redis: c, KeyPrefix: prefix + ":", HolderID: "v2",
		LeaseTTL: 600 * time.Millisecond, DropGrace: 10 * time.Millisecond, Models: []models.Definition{v2}})
	eventually(t, "the v2 generation is active", func() bool {
		gen, ok, _ := s.Active(ctx, models.VoucherModel)
		return ok && strings.HasPrefix(gen, v2.Version+"-")
	})
	if !lookup(t, r.Reader(), at(t, r.Reader(), models.VoucherModel, res.Position), id, kid) {
		t.Fatal("v2 generation lacks the key")
	}
	eventually(t, "the v1 generation is dropped", func() bool {
		gens, err := s.Generations(ctx, models.VoucherModel)
		return err == nil && len(gens) == 1 && gens[0] != v1
	})
}

func TestRedisOneLeaderAtATimeAndTakeOver(t *testing.T) {
	w := newWorld(t)
	s, c, prefix := redisStore(t)
	a, stopA := start(t, redisConfig(w, s, c, prefix, "a"))
	b, stopB := start(t, redisConfig(w, s, c, prefix, "b"))
	leading := func(r *runner.Runner) bool { return r.Statuses()[0].State == runner.StateProjecting }
	eventually(t, "one runner projects the voucher model", func() bool { return leading(a) || leading(b) })
	leader, follower, stopLeader := a, b, stopA
	if leading(b) {
		leader, follower, stopLeader = b, a, stopB
	}
	// The other stands by, and stays so while the leader lives.
	time.Sleep(200 * time.Millisecond)
	if st := follower.Statuses()[0].State; st != runner.StateStandby {
		t.Fatalf("follower is %s while the leader projects", st)
	}
	if err := follower.Healthy(); err != nil {
		t.Fatalf("a standby follower must be healthy: %v", err)
	}
	_ = leader
	stopLeader()
	id, kid, res := w.apiClient("after-failover")
	rd := follower.Reader()
	if !lookup(t, rd, at(t, rd, models.VoucherModel, res.Position), id, kid) {
		t.Fatal("the follower did not take over the projection")
	}
	if st := follower.Statuses()[0].State; st != runner.StateProjecting {
		t.Fatalf("follower is %s after taking over", st)
	}
}

// gatedEvents holds every read of the log from its start while gate is closed: a
// rebuild then stays in progress until the test opens it.
type gatedEvents struct {
	eventstore.Store
	mu   sync.Mutex
	gate chan struct{} // nil: open
}

func (g *gatedEvents) close() { g.mu.Lock(); g.gate = make(chan struct{}); g.mu.Unlock() }
func (g *gatedEvents) open()  { g.mu.Lock(); close(g.gate); g.gate = nil; g.mu.Unlock() }

func (g *gatedEvents) ReadAll(ctx context.Context, after eventstore.Position, limit int) ([]eventstore.RecordedEvent, error) {
	g.mu.Lock()
	gate := g.gate
	g.mu.Unlock()
	if gate != nil && after.IsZero() {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return g.Store.ReadAll(ctx, after, limit)
}

// TestRedisRebuildWithdrawsTheVoucherModel: while the voucher model (which grants access)
// is rebuilt, its previous generation is not served — nobody applies revocations to it —
// and it serves again, complete, once the new generation is active.
func TestRedisRebuildWithdrawsTheVoucherModel(t *testing.T) {
	w := newWorld(t)
	s, c, prefix := redisStore(t)
	id, kid, res := w.apiClient("client one")
	events := &gatedEvents{Store: w.es}
	cfg := redisConfig(w, s, c, prefix, "a")
	cfg.Events = events
	r, _ := start(t, cfg)
	rd := r.Reader()
	old := at(t, rd, models.VoucherModel, res.Position)
	dir := at(t, rd, models.DirectoryModel, res.Position)

	events.close()
	if _, err := runner.RequestRebuild(ctx, c, prefix+":", models.VoucherModel); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the voucher model is withdrawn during its rebuild", func() bool {
		_, err := rd.Namespace(ctx, models.VoucherModel)
		return errors.Is(err, runner.ErrNotReady)
	})
	if gen, ok, err := s.Active(ctx, models.VoucherModel); err != nil || ok {
		t.Fatalf("active voucher generation %q during the rebuild (err %v)", gen, err)
	}
	// A model that grants nothing keeps serving.
	if ns, err := rd.Namespace(ctx, models.DirectoryModel); err != nil || ns != dir {
		t.Fatalf("directory during the voucher rebuild: %v %v", ns, err)
	}
	events.open()
	eventually(t, "the rebuilt voucher generation is active", func() bool {
		gen, ok, err := s.Active(ctx, models.VoucherModel)
		return err == nil && ok && gen != old.Generation
	})
	if !lookup(t, rd, at(t, rd, models.VoucherModel, res.Position), id, kid) {
		t.Fatal("the rebuilt generation lacks the key")
	}
}
