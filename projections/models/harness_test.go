package models_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/keyledger/keyledger/commands"
	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/eventstore/embedded"
	"github.com/keyledger/keyledger/internal/testkeys"
	"github.com/keyledger/keyledger/projections/models"
	"github.com/keyledger/keyledger/projections/readmodel"
	"github.com/keyledger/keyledger/projections/source"
)

// safety bounds every wait: a safety net against a hang, never an assertion on timing.
const safety = 20 * time.Second

// backends runs fn once per read-model store: in memory and on Redis.
func backends(t *testing.T, fn func(t *testing.T, newStore func(t *testing.T) readmodel.Store)) {
	t.Run("memory", func(t *testing.T) {
		fn(t, func(*testing.T) readmodel.Store { return readmodel.NewMemory() })
	})
	t.Run("redis", func(t *testing.T) {
		fn(t, func(t *testing.T) readmodel.Store { s, _, _ := newRedisStore(t); return s })
	})
}

// env is a command service on an embedded event store, with both read models projected
// by a running router into rm.
type env struct {
	t   *testing.T
	cmd *commands.Service
	rm  readmodel.Store
	ns  models.Namespaces
	r   *source.Router
	// entries reads every entry entry() reads, through its cache: it must agree with
	// LookupEntry as entries change.
	entries *models.EntryReader
}

var operator = commands.Meta{Actor: domain.Actor{ID: "op", Kind: eventstore.ActorOperator, Operator: true}, CorrelationID: "c-op"}

func newEnv(t *testing.T, rm readmodel.Store) *env {
	t.Helper()
	ctx := context.Background()
	es, err := embedded.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = es.Close() })
	ns := models.DefaultNamespaces()
	r, err := source.NewRouter(source.RouterConfig{
		Store:      es,
		Checkpoint: models.Checkpoint(rm, ns),
		Retry:      source.RetryConfig{MaxRetries: 3, InitialInterval: time.Millisecond, MaxInterval: 5 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := models.Register(r, rm, ns); err != nil {
		t.Fatal(err)
	}
	runRouter(t, r)
	return &env{t: t, cmd: commands.New(es, commands.Config{}, nil, nil), rm: rm, ns: ns, r: r, entries: models.NewEntryReader(0)}
}

// runRouter runs r until the test ends, and checks that it starts and stops cleanly.
func runRouter(t *testing.T, r *source.Router) {
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

func adminOf(tenant string) commands.Meta {
	return commands.Meta{Actor: domain.Actor{ID: tenant + "-admin", Tenant: tenant, Roles: domain.Roles{domain.RoleAdmin}}, CorrelationID: "c-" + tenant}
}

func (e *env) tenant(id string) commands.Meta {
	e.t.Helper()
	if _, err := e.cmd.CreateTenant(context.Background(), operator, id, "Tenant "+id, id+"-admin", "Admin"); err != nil {
		e.t.Fatal(err)
	}
	return adminOf(id)
}

// wait waits (bounded) until the read models of nss have applied the log up to
// res.Position. A model's checkpoint moves only with the events of the streams it reads,
// so wait only for the models that read the command's stream.
func (e *env) wait(res commands.Result, nss ...readmodel.Namespace) {
	e.t.Helper()
	if !res.Changed {
		e.t.Fatalf("command changed nothing: %+v", res)
	}
	ctx, cancel := context.WithTimeout(context.Background(), safety)
	defer cancel()
	for _, ns := range nss {
		if err := models.WaitFor(ctx, e.rm, ns, res.Position); err != nil {
			e.t.Fatalf("%v (router health: %v)", err, e.r.Healthy())
		}
	}
}

// must fails the test on err and waits for the voucher model to reach the result (for
// commands on purposes and e-services).
func (e *env) must(res commands.Result, err error) commands.Result {
	e.t.Helper()
	if err != nil {
		e.t.Fatal(err)
	}
	e.wait(res, e.ns.Voucher)
	return res
}

// mustBoth is must for commands on clients, which both models read.
func (e *env) mustBoth(res commands.Result, err error) commands.Result {
	e.t.Helper()
	if err != nil {
		e.t.Fatal(err)
	}
	e.wait(res, e.ns.Voucher, e.ns.Keys)
	return res
}

// mustKeys is must for commands on keychains, which only the keys model reads.
func (e *env) mustKeys(res commands.Result, err error) commands.Result {
	e.t.Helper()
	if err != nil {
		e.t.Fatal(err)
	}
	e.wait(res, e.ns.Keys)
	return res
}

func (e *env) entry(clientID, kid, purposeID string) (models.VoucherEntry, bool) {
	e.t.Helper()
	v, ok, err := models.LookupEntry(context.Background(), e.rm, e.ns.Voucher, clientID, kid, purposeID)
	if err != nil {
		e.t.Fatal(err)
	}
	for range 2 { // a miss (or a stale cached entry), then a hit
		cv, cok, err := e.entries.Lookup(context.Background(), e.rm, e.ns.Voucher, clientID, kid, purposeID)
		if err != nil || cok != ok || !reflect.DeepEqual(cv, v) {
			e.t.Fatalf("EntryReader.Lookup = %+v, %v, %v; LookupEntry = %+v, %v", cv, cok, err, v, ok)
		}
	}
	return v, ok
}

func (e *env) key(kid string) (models.KeyEntry, bool) {
	e.t.Helper()
	v, ok, err := models.LookupKey(context.Background(), e.rm, e.ns.Keys, kid)
	if err != nil {
		e.t.Fatal(err)
	}
	return v, ok
}

// present fails unless the entry exists and returns it.
func (e *env) present(clientID, kid, purposeID string) models.VoucherEntry {
	e.t.Helper()
	v, ok := e.entry(clientID, kid, purposeID)
	if !ok {
		e.t.Fatalf("no voucher entry for client %s key %s purpose %q", clientID, kid, purposeID)
	}
	return v
}

func (e *env) absent(clientID, kid, purposeID string) {
	e.t.Helper()
	if v, ok := e.entry(clientID, kid, purposeID); ok {
		e.t.Fatalf("voucher entry for client %s key %s purpose %q still there: %+v", clientID, kid, purposeID, v)
	}
}

func keyInput(t *testing.T, name string) commands.KeyInput {
	return commands.KeyInput{Name: name, Key: testkeys.P256PEM(t), Use: "sig"}
}

// keyCounter is implemented by both stores (for tests).
type keyCounter interface {
	CountKeys(ctx context.Context) (int, error)
}

func countKeys(t *testing.T, s readmodel.Store) int {
	t.Helper()
	n, err := s.(keyCounter).CountKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}
