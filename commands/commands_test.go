package commands

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/domain/client"
	"github.com/keyledger/keyledger/domain/keyring"
	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/eventstore/embedded"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newService(t *testing.T) (*Service, *clock, eventstore.Store) {
	t.Helper()
	store, err := embedded.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	c := &clock{t: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)}
	return New(store, Config{}, c.now, nil), c, store
}

var operator = Meta{Actor: domain.Actor{ID: "op", Kind: eventstore.ActorOperator, Operator: true}, CorrelationID: "c-op"}

func adminOf(tenant string) Meta {
	return Meta{Actor: domain.Actor{ID: tenant + "-admin", Tenant: tenant, Roles: domain.Roles{domain.RoleAdmin}}, CorrelationID: "c-" + tenant}
}

func setupTenant(t *testing.T, s *Service, id string) Meta {
	t.Helper()
	if _, err := s.CreateTenant(context.Background(), operator, id, "Tenant "+id, id+"-admin", "Admin"); err != nil {
		t.Fatal(err)
	}
	return adminOf(id)
}

func TestCreateTenantRepeatIsIdempotentAndConflictsOtherwise(t *testing.T) {
	s, _, _ := newService(t)
	ctx := context.Background()
	r1, err := s.CreateTenant(ctx, operator, "acme", "Acme", "alice", "Alice")
	if err != nil {
		t.Fatal(err)
	}
	r2, err := s.CreateTenant(ctx, operator, "acme", "Acme", "alice", "Alice")
	if err != nil || r2.ID != r1.ID {
		t.Fatalf("repeat: %+v %v", r2, err)
	}
	if _, err := s.CreateTenant(ctx, operator, "acme", "Other", "alice", "Alice"); !errors.Is(err, domain.ErrAlreadyExists) {
		t.Fatalf("different creation under the same id: %v", err)
	}
	a, err := s.ResolveActor(ctx, Principal{Subject: "alice", Tenant: "acme"})
	if err != nil || !a.Roles.Has(domain.RoleAdmin) {
		t.Fatalf("first admin: %+v %v", a, err)
	}
}

// Concurrent commands on one aggregate are retried inside the command layer: every one
// of them lands, none surfaces a version conflict.
func TestConcurrentCommandsOnOneAggregateAreRetried(t *testing.T) {
	s, _, _ := newService(t)
	ctx := context.Background()
	admin := setupTenant(t, s, "acme")
	res, err := s.CreateClient(ctx, admin, ClientSpec{Kind: client.KindAPI, Name: "Busy client"})
	if err != nil {
		t.Fatal(err)
	}
	const n = 6
	for i := range n {
		if _, err := s.RegisterUser(ctx, admin, fmt.Sprintf("u%d", i), "User", nil); err != nil {
			t.Fatal(err)
		}
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.AddMember(ctx, admin, Clients, res.ID, fmt.Sprintf("u%d", i))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("member %d: %v", i, err)
		}
	}
	c, v, err := s.GetClient(ctx, "acme", res.ID)
	if err != nil {
		t.Fatal(err)
	}
	kr := c.Keyring()
	if len(kr.Members()) != n || v != uint64(n) {
		t.Fatalf("%d members at version %d, want %d at %d", len(kr.Members()), v, n, n)
	}
}

func TestIfMatchIsNotRetried(t *testing.T) {
	s, _, _ := newService(t)
	ctx := context.Background()
	admin := setupTenant(t, s, "acme")
	if _, err := s.RegisterUser(ctx, admin, "bob", "Bob", nil); err != nil {
		t.Fatal(err)
	}
	name := "Robert"
	stale := admin
	v := uint64(3)
	stale.IfMatch = &v
	if _, err := s.UpdateUser(ctx, stale, "bob", &name, nil); !errors.Is(err, ErrPreconditionFailed) {
		t.Fatalf("stale If-Match: %v", err)
	}
	cur := admin
	v0 := uint64(0)
	cur.IfMatch = &v0
	if r, err := s.UpdateUser(ctx, cur, "bob", &name, nil); err != nil || r.Version != 1 {
		t.Fatalf("current If-Match: %+v %v", r, err)
	}
}

// Every event carries the hash of the one before it in its stream.
func TestEventsAreHashChained(t *testing.T) {
	s, _, store := newService(t)
	ctx := context.Background()
	admin := setupTenant(t, s, "acme")
	res, err := s.CreateClient(ctx, admin, ClientSpec{Kind: client.KindAPI, Name: "Chained client"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := s.RegisterUser(ctx, admin, fmt.Sprintf("m%d", i), "M", nil); err != nil {
			t.Fatal(err)
		}
		if _, err := s.AddMember(ctx, admin, Clients, res.ID, fmt.Sprintf("m%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	evs, err := store.ReadStream(ctx, client.StreamName(res.ID), eventstore.Forwards, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	prev := ""
	for _, e := range evs {
		if e.Meta.PrevHash != prev {
			t.Fatalf("event %d carries prev hash %q, want %q", e.Version, e.Meta.PrevHash, prev)
		}
		if e.Meta.AggregateID != res.ID || e.Meta.Tenant != "acme" || e.Meta.CorrelationID != "c-acme" || e.Meta.ActorID != "acme-admin" {
			t.Fatalf("event %d metadata %+v", e.Version, e.Meta)
		}
		prev = EventHash(e.Meta.PrevHash, e.ID, e.Type, e.Data)
	}
	if len(evs) != 4 {
		t.Fatalf("%d events", len(evs))
	}
	// Altering any event's data changes its hash, so the next event no longer matches.
	if EventHash(evs[0].Meta.PrevHash, evs[0].ID, evs[0].Type, append([]byte(nil), evs[0].Data[:len(evs[0].Data)-1]...)) == evs[1].Meta.PrevHash {
		t.Fatal("a changed event keeps its hash")
	}
}

// A reservation whose owner never got the key (its append failed) is taken over once the
// grace period has passed, and not before.
func TestOrphanedKidReservationIsTakenOverAfterGrace(t *testing.T) {
	s, clk, _ := newService(t)
	ctx := context.Background()
	admin := setupTenant(t, s, "acme")
	// An owner that claimed but never appended.
	if err := s.claimKID(ctx, admin, "kid-1", "client:ghost"); err != nil {
		t.Fatal(err)
	}
	if err := s.claimKID(ctx, admin, "kid-1", "client:other"); !errors.Is(err, keyring.ErrKeyAlreadyExists) {
		t.Fatalf("claim inside the grace period: %v", err)
	}
	clk.add(2 * time.Minute)
	if err := s.claimKID(ctx, admin, "kid-1", "client:other"); err != nil {
		t.Fatalf("claim of an orphan after the grace period: %v", err)
	}
	// Claiming again for the same owner is a no-op, not a conflict.
	if err := s.claimKID(ctx, admin, "kid-1", "client:other"); err != nil {
		t.Fatalf("repeat claim: %v", err)
	}
}

// Ids that could not have been registered resolve to an actor without roles, whatever
// stream their concatenation would name.
func TestResolveActorRefusesIDsThatCouldCollide(t *testing.T) {
	s, _, _ := newService(t)
	ctx := context.Background()
	admin := setupTenant(t, s, "a")
	if _, err := s.RegisterUser(ctx, admin, "b", "B", []string{"admin"}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []Principal{{Tenant: "a", Subject: "b"}, {Tenant: "a/b", Subject: ""}, {Tenant: "a", Subject: "b/"}} {
		a, err := s.ResolveActor(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		want := p.Tenant == "a" && p.Subject == "b"
		if a.Roles.Has(domain.RoleAdmin) != want {
			t.Errorf("%+v resolved to roles %v", p, a.Roles)
		}
	}
}
