package models_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyledger/keyledger/commands"
	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/domain/client"
	"github.com/keyledger/keyledger/domain/keyring"
	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/eventstore/embedded"
	"github.com/keyledger/keyledger/projections/models"
	"github.com/keyledger/keyledger/projections/readmodel"
	"github.com/keyledger/keyledger/projections/source"
)

// dirEnv is a command service on an embedded event store with the directory model
// projected into rm by a router that a test can stop and start again (fresh handlers,
// so an empty aggregate cache, continuing from the stored checkpoint).
type dirEnv struct {
	t      *testing.T
	es     *countingEvents
	cmd    *commands.Service
	rm     *recordingStore
	ns     readmodel.Namespace
	router *source.Router
	done   chan error
}

func newDirEnv(t *testing.T, rm readmodel.Store) *dirEnv {
	t.Helper()
	es, err := embedded.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = es.Close() })
	e := &dirEnv{t: t, es: &countingEvents{Store: es}, rm: &recordingStore{Store: rm},
		ns: readmodel.Namespace{Model: models.DirectoryModel, Generation: models.DirectoryVersion}}
	e.cmd = commands.New(es, commands.Config{}, nil, nil)
	e.start()
	t.Cleanup(e.stop)
	return e
}

// start runs a new router with fresh directory handlers.
func (e *dirEnv) start() {
	e.t.Helper()
	rm, ns := e.rm, e.ns
	r, err := source.NewRouter(source.RouterConfig{
		Store: e.es,
		Checkpoint: func(ctx context.Context, topic string) (eventstore.Position, error) {
			if topic != models.DirectoryGroup {
				return eventstore.Start, fmt.Errorf("no model for topic %q", topic)
			}
			pos, present, err := rm.Checkpoint(ctx, ns)
			if err != nil || present {
				return pos, err
			}
			return eventstore.Start, rm.InitGeneration(ctx, ns)
		},
		Retry: source.RetryConfig{MaxRetries: 3, InitialInterval: time.Millisecond, MaxInterval: 5 * time.Millisecond},
	})
	if err != nil {
		e.t.Fatal(err)
	}
	if err := models.Directory.Register(r, models.Deps{Store: e.rm, Events: e.es}, e.ns); err != nil {
		e.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Run(context.Background()) }()
	select {
	case <-r.Running():
	case err := <-done:
		e.t.Fatalf("router stopped at once: %v", err)
	case <-time.After(safety):
		e.t.Fatal("router did not start")
	}
	e.router, e.done = r, done
}

// stop closes the running router (if any) and waits for it.
func (e *dirEnv) stop() {
	if e.router == nil {
		return
	}
	if err := e.router.Close(); err != nil {
		e.t.Errorf("close router: %v", err)
	}
	select {
	case err := <-e.done:
		if err != nil {
			e.t.Errorf("router run: %v", err)
		}
	case <-time.After(safety):
		e.t.Error("router Run did not return after Close")
	}
	e.router = nil
}

// must fails on err and waits (bounded) until the directory has applied the result.
func (e *dirEnv) must(res commands.Result, err error) commands.Result {
	e.t.Helper()
	if err != nil {
		e.t.Fatal(err)
	}
	e.waitFor(res.Position)
	return res
}

func (e *dirEnv) waitFor(pos eventstore.Position) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), safety)
	defer cancel()
	if err := models.WaitFor(ctx, e.rm, e.ns, pos); err != nil {
		health := error(nil)
		if e.router != nil {
			health = e.router.Healthy()
		}
		e.t.Fatalf("%v (router health: %v)", err, health)
	}
}

func (e *dirEnv) tenant(id string) commands.Meta {
	e.t.Helper()
	e.must(e.cmd.CreateTenant(context.Background(), operator, id, "Tenant "+id, id+"-admin", "Admin of "+id))
	return adminOf(id)
}

func (e *dirEnv) user(admin commands.Meta, id, name string, roles ...string) {
	e.t.Helper()
	e.must(e.cmd.RegisterUser(ctx, admin, id, name, roles))
}

func (e *dirEnv) client(admin commands.Meta, kind client.Kind, name string, members ...string) string {
	e.t.Helper()
	return e.must(e.cmd.CreateClient(ctx, admin, commands.ClientSpec{Kind: kind, Name: name, Members: members})).ID
}

func (e *dirEnv) getClient(tenant, id string) (models.ClientView, models.RecordMeta, bool) {
	e.t.Helper()
	v, m, ok, err := models.GetClient(ctx, e.rm, e.ns, tenant, id)
	if err != nil {
		e.t.Fatal(err)
	}
	return v, m, ok
}

// countingEvents counts the stream reads of the handlers (cache misses).
type countingEvents struct {
	eventstore.Store
	streamReads atomic.Int64
}

func (c *countingEvents) ReadStream(ctx context.Context, stream string, dir eventstore.Direction, from uint64, limit int) ([]eventstore.RecordedEvent, error) {
	c.streamReads.Add(1)
	return c.Store.ReadStream(ctx, stream, dir, from, limit)
}

// recordingStore keeps every record value the directory wrote, with the position of
// the batch, so that a test can check each against the aggregate at that version.
type recordingStore struct {
	readmodel.Store
	mu     sync.Mutex
	writes []recordedWrite
}

type recordedWrite struct {
	pos   eventstore.Position
	key   string
	value []byte
}

func (s *recordingStore) Apply(ctx context.Context, ns readmodel.Namespace, pos eventstore.Position, b readmodel.Batch) (bool, error) {
	applied, err := s.Store.Apply(ctx, ns, pos, b)
	if err == nil && applied {
		s.mu.Lock()
		for _, op := range b.Ops() {
			if op.Kind == readmodel.OpPut {
				s.writes = append(s.writes, recordedWrite{pos: pos, key: op.Key, value: op.Value})
			}
		}
		s.mu.Unlock()
	}
	return applied, err
}

func (s *recordingStore) recorded() []recordedWrite {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.writes)
}

// pages reads a whole list page by page and returns the pages.
func pages[T any](t *testing.T, limit int, read func(cursor string, limit int) (models.Page[T], error)) [][]T {
	t.Helper()
	var out [][]T
	cursor := ""
	for range 100 {
		p, err := read(cursor, limit)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Items) > limit {
			t.Fatalf("page of %d items with limit %d", len(p.Items), limit)
		}
		out = append(out, p.Items)
		if p.NextCursor == "" {
			return out
		}
		cursor = p.NextCursor
	}
	t.Fatal("the list never ends")
	return nil
}

// flat returns the ids of all pages in order.
func flat[T any](ps [][]T, id func(T) string) []string {
	var out []string
	for _, p := range ps {
		for _, v := range p {
			out = append(out, id(v))
		}
	}
	return out
}

func sizes[T any](ps [][]T) []int {
	out := make([]int, len(ps))
	for i, p := range ps {
		out[i] = len(p)
	}
	return out
}

func clientID(c models.ClientView) string     { return c.ID }
func keychainID(k models.KeychainView) string { return k.ID }
func eserviceID(s models.EServiceView) string { return s.ID }
func purposeID(p models.PurposeView) string   { return p.ID }
func userID(u models.UserView) string         { return u.ID }
func tenantID(t models.TenantView) string     { return t.ID }

// expectList checks that a list read with limit 3 gives want (ids, in order) in pages of
// 3, with no duplicate or omission.
func expectList[T any](t *testing.T, what string, want []string, id func(T) string, read func(cursor string, limit int) (models.Page[T], error)) {
	t.Helper()
	ps := pages(t, 3, read)
	got := flat(ps, id)
	if !slices.Equal(got, want) {
		t.Fatalf("%s: %v, want %v", what, got, want)
	}
	wantSizes := []int{}
	for n := len(want); n > 0; n -= 3 {
		wantSizes = append(wantSizes, min(n, 3))
	}
	if len(want) == 0 {
		wantSizes = []int{0}
	}
	if !slices.Equal(sizes(ps), wantSizes) {
		t.Fatalf("%s: page sizes %v, want %v", what, sizes(ps), wantSizes)
	}
}

func queryCode(err error) string {
	var qe *models.QueryError
	if errors.As(err, &qe) {
		return qe.Code
	}
	return ""
}

// Seven of each, named so that the name order differs from the creation order (and
// mixes cases): every list comes in three pages of 3, 3 and 1, in name order.
func TestDirectoryListsPaginate(t *testing.T) {
	backends(t, func(t *testing.T, newStore func(*testing.T) readmodel.Store) {
		e := newDirEnv(t, newStore(t))
		names := []string{"golf", "Alpha", "echo", "Charlie", "bravo", "Foxtrot", "delta"}
		sorted := []int{1, 4, 3, 6, 2, 5, 0} // indexes of names in name order
		inOrder := func(ids []string) []string {
			out := make([]string, len(sorted))
			for i, j := range sorted {
				out[i] = ids[j]
			}
			return out
		}
		cons, prod := e.tenant("cons"), e.tenant("prod")
		var clients, keychains, eservices, purposes, users []string
		for _, n := range names {
			clients = append(clients, e.client(cons, client.KindAPI, n+" client"))
			keychains = append(keychains, e.must(e.cmd.CreateKeychain(ctx, cons, commands.KeychainSpec{Name: n + " chain"})).ID)
			eservices = append(eservices, e.must(e.cmd.CreateEService(ctx, prod, n+" service", "https://"+n, 600)).ID)
			e.user(cons, "u-"+strings.ToLower(n), n)
			users = append(users, "u-"+strings.ToLower(n))
		}
		for _, n := range names {
			purposes = append(purposes, e.must(e.cmd.CreatePurpose(ctx, cons, eservices[0], n+" purpose")).ID)
		}
		expectList(t, "clients", inOrder(clients), clientID, func(c string, l int) (models.Page[models.ClientView], error) {
			return models.ListClients(ctx, e.rm, e.ns, "cons", models.ClientFilter{}, c, l)
		})
		expectList(t, "keychains", inOrder(keychains), keychainID, func(c string, l int) (models.Page[models.KeychainView], error) {
			return models.ListKeychains(ctx, e.rm, e.ns, "cons", models.KeychainFilter{}, c, l)
		})
		expectList(t, "e-services", inOrder(eservices), eserviceID, func(c string, l int) (models.Page[models.EServiceView], error) {
			return models.ListEServices(ctx, e.rm, e.ns, models.EServiceFilter{}, c, l)
		})
		for _, tenant := range []string{"cons", "prod"} { // consumer and producer both list them
			expectList(t, "purposes of "+tenant, inOrder(purposes), purposeID, func(c string, l int) (models.Page[models.PurposeView], error) {
				return models.ListPurposes(ctx, e.rm, e.ns, tenant, models.PurposeFilter{}, c, l)
			})
		}
		// The users of cons: the seven and the administrator ("Admin of cons" sorts first).
		expectList(t, "users", append([]string{"cons-admin"}, inOrder(users)...), userID, func(c string, l int) (models.Page[models.UserView], error) {
			return models.ListUsers(ctx, e.rm, e.ns, "cons", models.UserFilter{}, c, l)
		})
		expectList(t, "tenants", []string{"cons", "prod"}, tenantID, func(c string, l int) (models.Page[models.TenantView], error) {
			return models.ListTenants(ctx, e.rm, e.ns, "", c, l)
		})

		// The whole list in one page: no cursor. The default limit applies to 0.
		p, err := models.ListClients(ctx, e.rm, e.ns, "cons", models.ClientFilter{}, "", 0)
		if err != nil || len(p.Items) != 7 || p.NextCursor != "" {
			t.Fatalf("default page: %d items, cursor %q, %v", len(p.Items), p.NextCursor, err)
		}
		p, err = models.ListClients(ctx, e.rm, e.ns, "cons", models.ClientFilter{}, "", 7)
		if err != nil || len(p.Items) != 7 || p.NextCursor != "" {
			t.Fatalf("page of exactly the list: %d items, cursor %q, %v", len(p.Items), p.NextCursor, err)
		}
		for _, l := range []int{-1, models.MaxLimit + 1} {
			if _, err := models.ListClients(ctx, e.rm, e.ns, "cons", models.ClientFilter{}, "", l); queryCode(err) != models.CodeInvalidLimit || !errors.Is(err, models.ErrInvalidQuery) {
				t.Fatalf("limit %d: %v", l, err)
			}
		}
		if _, err := models.ListClients(ctx, e.rm, e.ns, "cons", models.ClientFilter{}, "", models.MaxLimit); err != nil {
			t.Fatalf("limit %d: %v", models.MaxLimit, err)
		}

		// A cursor is honoured only by the list, tenant and filters it was issued for.
		first, err := models.ListClients(ctx, e.rm, e.ns, "cons", models.ClientFilter{}, "", 3)
		if err != nil {
			t.Fatal(err)
		}
		foreign := []func(string) error{
			func(c string) error {
				_, err := models.ListKeychains(ctx, e.rm, e.ns, "cons", models.KeychainFilter{}, c, 3)
				return err
			},
			func(c string) error {
				_, err := models.ListClients(ctx, e.rm, e.ns, "prod", models.ClientFilter{}, c, 3)
				return err
			},
			func(c string) error {
				_, err := models.ListClients(ctx, e.rm, e.ns, "cons", models.ClientFilter{Kind: client.KindAPI}, c, 3)
				return err
			},
			func(c string) error {
				_, err := models.ListClients(ctx, e.rm, e.ns, "cons", models.ClientFilter{NamePrefix: "a"}, c, 3)
				return err
			},
		}
		for i, read := range foreign {
			if err := read(first.NextCursor); queryCode(err) != models.CodeInvalidCursor {
				t.Fatalf("foreign cursor %d: %v", i, err)
			}
		}
		for _, bad := range []string{"%%%", "bm90LWpzb24", first.NextCursor[:len(first.NextCursor)-2]} {
			if _, err := models.ListClients(ctx, e.rm, e.ns, "cons", models.ClientFilter{}, bad, 3); queryCode(err) != models.CodeInvalidCursor {
				t.Fatalf("malformed cursor %q: %v", bad, err)
			}
		}
		// A different limit with the same cursor is fine: the cursor names a place.
		if p, err := models.ListClients(ctx, e.rm, e.ns, "cons", models.ClientFilter{}, first.NextCursor, 10); err != nil || len(p.Items) != 4 {
			t.Fatalf("rest after the first page: %d %v", len(p.Items), err)
		}
	})
}

func TestDirectoryFilters(t *testing.T) {
	backends(t, func(t *testing.T, newStore func(*testing.T) readmodel.Store) {
		e := newDirEnv(t, newStore(t))
		cons, prod, other := e.tenant("cons"), e.tenant("prod"), e.tenant("other")
		for _, u := range []string{"ann", "bob"} {
			e.user(cons, u, "User "+u)
		}
		e.user(cons, "bea", "Beatrice")
		es := e.must(e.cmd.CreateEService(ctx, prod, "Registry", "https://registry", 600)).ID
		es2 := e.must(e.cmd.CreateEService(ctx, other, "Other registry", "https://other", 600)).ID
		p1 := e.must(e.cmd.CreatePurpose(ctx, cons, es, "Check registrations")).ID
		p2 := e.must(e.cmd.CreatePurpose(ctx, cons, es2, "Audit registrations")).ID
		pOwn := e.must(e.cmd.CreatePurpose(ctx, prod, es2, "Producer's own need")).ID
		for _, p := range []string{p1} {
			e.must(e.cmd.ActivatePurpose(ctx, prod, p))
		}
		e.must(e.cmd.ActivatePurpose(ctx, other, p2))

		// Clients: kind, member, purpose, name prefix, and combinations.
		apiAnn := e.client(cons, client.KindAPI, "Api with Ann", "ann")
		apiBoth := e.client(cons, client.KindAPI, "api with both", "ann", "bob")
		svcAnn := e.client(cons, client.KindEService, "Service with Ann", "ann")
		svcNone := e.client(cons, client.KindEService, "Service alone")
		svcP2 := e.client(cons, client.KindEService, "Another service")
		e.must(e.cmd.AddClientPurpose(ctx, cons, svcAnn, p1))
		e.must(e.cmd.AddClientPurpose(ctx, cons, svcNone, p1))
		e.must(e.cmd.AddClientPurpose(ctx, cons, svcP2, p2))
		listClients := func(f models.ClientFilter) func(string, int) (models.Page[models.ClientView], error) {
			return func(c string, l int) (models.Page[models.ClientView], error) {
				return models.ListClients(ctx, e.rm, e.ns, "cons", f, c, l)
			}
		}
		cases := []struct {
			f    models.ClientFilter
			want []string
		}{
			{models.ClientFilter{}, []string{svcP2, apiAnn, apiBoth, svcNone, svcAnn}},
			{models.ClientFilter{Kind: client.KindAPI}, []string{apiAnn, apiBoth}},
			{models.ClientFilter{Kind: client.KindEService}, []string{svcP2, svcNone, svcAnn}},
			{models.ClientFilter{MemberUserID: "ann"}, []string{apiAnn, apiBoth, svcAnn}},
			{models.ClientFilter{MemberUserID: "bob"}, []string{apiBoth}},
			{models.ClientFilter{MemberUserID: "nobody"}, nil},
			{models.ClientFilter{PurposeID: p1}, []string{svcNone, svcAnn}},
			{models.ClientFilter{PurposeID: p2}, []string{svcP2}},
			{models.ClientFilter{NamePrefix: "API"}, []string{apiAnn, apiBoth}},
			{models.ClientFilter{NamePrefix: "service "}, []string{svcNone, svcAnn}},
			{models.ClientFilter{NamePrefix: "service with ann"}, []string{svcAnn}},
			{models.ClientFilter{NamePrefix: "zz"}, nil},
			{models.ClientFilter{Kind: client.KindEService, MemberUserID: "ann"}, []string{svcAnn}},
			{models.ClientFilter{Kind: client.KindAPI, PurposeID: p1}, nil},
			{models.ClientFilter{MemberUserID: "ann", PurposeID: p1}, []string{svcAnn}},
			{models.ClientFilter{MemberUserID: "ann", NamePrefix: "api"}, []string{apiAnn, apiBoth}},
			{models.ClientFilter{Kind: client.KindEService, NamePrefix: "s"}, []string{svcNone, svcAnn}},
		}
		for _, c := range cases {
			expectList(t, fmt.Sprintf("clients %+v", c.f), c.want, clientID, listClients(c.f))
			// Page by page with limit 1 as well: the filtered scans continue exactly.
			if got := flat(pages(t, 1, listClients(c.f)), clientID); !slices.Equal(got, c.want) {
				t.Fatalf("clients %+v by ones: %v, want %v", c.f, got, c.want)
			}
		}
		// Another tenant's clients never show, whatever the filter.
		if p, err := models.ListClients(ctx, e.rm, e.ns, "prod", models.ClientFilter{MemberUserID: "ann"}, "", 10); err != nil || len(p.Items) != 0 {
			t.Fatalf("prod's clients with member ann: %v %v", p.Items, err)
		}

		// Keychains by member and name prefix.
		kc1 := e.must(e.cmd.CreateKeychain(ctx, cons, commands.KeychainSpec{Name: "Chain of Ann", Members: []string{"ann"}})).ID
		kc2 := e.must(e.cmd.CreateKeychain(ctx, cons, commands.KeychainSpec{Name: "Chain of Bob", Members: []string{"bob"}})).ID
		kc3 := e.must(e.cmd.CreateKeychain(ctx, cons, commands.KeychainSpec{Name: "Keys of nobody"})).ID
		for _, c := range []struct {
			f    models.KeychainFilter
			want []string
		}{
			{models.KeychainFilter{}, []string{kc1, kc2, kc3}},
			{models.KeychainFilter{MemberUserID: "bob"}, []string{kc2}},
			{models.KeychainFilter{NamePrefix: "chain"}, []string{kc1, kc2}},
			{models.KeychainFilter{MemberUserID: "ann", NamePrefix: "keys"}, nil},
		} {
			expectList(t, fmt.Sprintf("keychains %+v", c.f), c.want, keychainID, func(cur string, l int) (models.Page[models.KeychainView], error) {
				return models.ListKeychains(ctx, e.rm, e.ns, "cons", c.f, cur, l)
			})
		}

		// E-services: all, or one producer's.
		for _, c := range []struct {
			f    models.EServiceFilter
			want []string
		}{
			{models.EServiceFilter{}, []string{es2, es}},
			{models.EServiceFilter{Producer: "prod"}, []string{es}},
			{models.EServiceFilter{Producer: "cons"}, nil},
			{models.EServiceFilter{NamePrefix: "REG"}, []string{es}},
		} {
			expectList(t, fmt.Sprintf("e-services %+v", c.f), c.want, eserviceID, func(cur string, l int) (models.Page[models.EServiceView], error) {
				return models.ListEServices(ctx, e.rm, e.ns, c.f, cur, l)
			})
		}

		// Purposes: the tenant's as consumer, as producer, or both; by title prefix.
		for _, c := range []struct {
			tenant string
			f      models.PurposeFilter
			want   []string
		}{
			{"cons", models.PurposeFilter{}, []string{p2, p1}},
			{"cons", models.PurposeFilter{Role: models.PurposeConsumer}, []string{p2, p1}},
			{"cons", models.PurposeFilter{Role: models.PurposeProducer}, nil},
			{"prod", models.PurposeFilter{}, []string{p1, pOwn}},
			{"prod", models.PurposeFilter{Role: models.PurposeProducer}, []string{p1}},
			{"prod", models.PurposeFilter{Role: models.PurposeConsumer}, []string{pOwn}},
			{"other", models.PurposeFilter{}, []string{p2, pOwn}},
			{"cons", models.PurposeFilter{TitlePrefix: "check"}, []string{p1}},
		} {
			expectList(t, fmt.Sprintf("purposes of %s %+v", c.tenant, c.f), c.want, purposeID, func(cur string, l int) (models.Page[models.PurposeView], error) {
				return models.ListPurposes(ctx, e.rm, e.ns, c.tenant, c.f, cur, l)
			})
		}
		if _, err := models.ListPurposes(ctx, e.rm, e.ns, "cons", models.PurposeFilter{Role: "bystander"}, "", 1); !errors.Is(err, models.ErrInvalidQuery) {
			t.Fatalf("unknown role: %v", err)
		}

		// Users by name prefix.
		expectList(t, "users named b…", []string{"bea"}, userID, func(cur string, l int) (models.Page[models.UserView], error) {
			return models.ListUsers(ctx, e.rm, e.ns, "cons", models.UserFilter{NamePrefix: "b"}, cur, l)
		})
		expectList(t, "users named user…", []string{"ann", "bob"}, userID, func(cur string, l int) (models.Page[models.UserView], error) {
			return models.ListUsers(ctx, e.rm, e.ns, "cons", models.UserFilter{NamePrefix: "user "}, cur, l)
		})
	})
}

// The views are the Render functions of the aggregates as the command layer loads them,
// and the record meta is the aggregate's version and the last event's position.
func TestDirectoryViewsAreTheAggregatesRendered(t *testing.T) {
	backends(t, func(t *testing.T, newStore func(*testing.T) readmodel.Store) {
		e := newDirEnv(t, newStore(t))
		cons, prod := e.tenant("cons"), e.tenant("prod")
		e.user(cons, "sam", "Sam", "security")
		es := e.must(e.cmd.CreateEService(ctx, prod, "Registry", "https://registry", 600)).ID
		pid := e.must(e.cmd.CreatePurpose(ctx, cons, es, "Check registrations")).ID
		e.must(e.cmd.ActivatePurpose(ctx, prod, pid))
		res := e.must(e.cmd.CreateClient(ctx, cons, commands.ClientSpec{Kind: client.KindEService, Name: "Consumer client",
			Members: []string{"sam"}, Keys: []commands.KeyInput{keyInput(t, "first")}}))
		cid := res.ID
		e.must(e.cmd.AddClientPurpose(ctx, cons, cid, pid))
		last := e.must(e.cmd.SuspendEService(ctx, prod, es))

		same := func(what string, got, want any) {
			t.Helper()
			g, _ := json.Marshal(got)
			w, _ := json.Marshal(want)
			if string(g) != string(w) {
				t.Fatalf("%s:\n got %s\nwant %s", what, g, w)
			}
		}
		c, cv, err := e.cmd.GetClient(ctx, "cons", cid)
		if err != nil {
			t.Fatal(err)
		}
		got, meta, ok := e.getClient("cons", cid)
		if !ok || meta.Version != cv {
			t.Fatalf("client %v version %d, want %d", ok, meta.Version, cv)
		}
		same("client", got, models.RenderClient(c))
		if len(got.Purposes) != 1 || len(got.Members) != 1 || len(got.Keys) != 1 {
			t.Fatalf("client view %+v", got)
		}
		s, _, err := e.cmd.GetEService(ctx, es)
		if err != nil {
			t.Fatal(err)
		}
		sv, smeta, ok, err := models.GetEService(ctx, e.rm, e.ns, es)
		if err != nil || !ok || smeta.Position != last.Position || smeta.Version != last.Version || sv.State != "suspended" {
			t.Fatalf("e-service %+v %+v %v %v (last %+v)", sv, smeta, ok, err, last)
		}
		same("e-service", sv, models.RenderEService(s))
		p, _, err := e.cmd.GetPurpose(ctx, "cons", pid)
		if err != nil {
			t.Fatal(err)
		}
		pv, _, ok, err := models.GetPurpose(ctx, e.rm, e.ns, "prod", pid)
		if err != nil || !ok {
			t.Fatalf("purpose as producer: %v %v", ok, err)
		}
		same("purpose", pv, models.RenderPurpose(p))
		u, uv, err := e.cmd.GetUser(ctx, "cons", "sam")
		if err != nil {
			t.Fatal(err)
		}
		gu, umeta, ok, err := models.GetUser(ctx, e.rm, e.ns, "cons", "sam")
		if err != nil || !ok || umeta.Version != uv {
			t.Fatalf("user %v %v %+v", ok, err, umeta)
		}
		same("user", gu, models.RenderUser(u))
		tn, _, err := e.cmd.GetTenant(ctx, "cons")
		if err != nil {
			t.Fatal(err)
		}
		admin, _, err := e.cmd.GetUser(ctx, "cons", "cons-admin")
		if err != nil {
			t.Fatal(err)
		}
		gt, _, ok, err := models.GetTenant(ctx, e.rm, e.ns, "cons")
		if err != nil || !ok {
			t.Fatalf("tenant %v %v", ok, err)
		}
		same("tenant", gt, models.RenderTenant(tn, admin))

		// One key with its JWK, in one read.
		kr := c.Keyring()
		k := kr.Keys()[0]
		want, err := models.RenderKey(kr, k)
		if err != nil {
			t.Fatal(err)
		}
		kv, kmeta, err := models.GetClientKey(ctx, e.rm, e.ns, "cons", cid, k.KID)
		if err != nil || kmeta.Version != cv || len(kv.JWK) == 0 {
			t.Fatalf("key %+v %+v %v", kv, kmeta, err)
		}
		same("key", kv, want)
		if _, _, err := models.GetClientKey(ctx, e.rm, e.ns, "cons", cid, "no-such-kid"); !errors.Is(err, keyring.ErrKeyNotFound) {
			t.Fatalf("unknown kid: %v", err)
		}
		if _, _, err := models.GetKeychainKey(ctx, e.rm, e.ns, "cons", cid, k.KID); !errors.Is(err, domain.ErrNotFound) {
			t.Fatalf("a client's key as a keychain's: %v", err)
		}
	})
}

func TestDirectoryTenantIsolation(t *testing.T) {
	backends(t, func(t *testing.T, newStore func(*testing.T) readmodel.Store) {
		e := newDirEnv(t, newStore(t))
		cons, prod := e.tenant("cons"), e.tenant("prod")
		e.tenant("third")
		e.user(cons, "carl", "Carl")
		es := e.must(e.cmd.CreateEService(ctx, prod, "Registry", "https://registry", 600)).ID
		pid := e.must(e.cmd.CreatePurpose(ctx, cons, es, "Check registrations")).ID
		cid := e.must(e.cmd.CreateClient(ctx, cons, commands.ClientSpec{Kind: client.KindAPI, Name: "Consumer client",
			Members: []string{"carl"}, Keys: []commands.KeyInput{keyInput(t, "k")}})).ID
		kid := e.must(e.cmd.CreateKeychain(ctx, cons, commands.KeychainSpec{Name: "Consumer chain"})).ID

		for _, tenant := range []string{"prod", "third"} {
			if _, _, ok := e.getClient(tenant, cid); ok {
				t.Fatalf("%s reads cons's client", tenant)
			}
			if _, _, ok, err := models.GetKeychain(ctx, e.rm, e.ns, tenant, kid); ok || err != nil {
				t.Fatalf("%s reads cons's keychain: %v", tenant, err)
			}
			if _, _, ok, err := models.GetUser(ctx, e.rm, e.ns, tenant, "carl"); ok || err != nil {
				t.Fatalf("%s reads cons's user: %v", tenant, err)
			}
			v, _, _ := e.getClient("cons", cid)
			if _, _, err := models.GetClientKey(ctx, e.rm, e.ns, tenant, cid, v.Keys[0].KID); !errors.Is(err, domain.ErrNotFound) {
				t.Fatalf("%s reads cons's key: %v", tenant, err)
			}
			if p, err := models.ListClients(ctx, e.rm, e.ns, tenant, models.ClientFilter{}, "", 10); err != nil || len(p.Items) != 0 {
				t.Fatalf("%s lists clients %v %v", tenant, p.Items, err)
			}
			if p, err := models.ListKeychains(ctx, e.rm, e.ns, tenant, models.KeychainFilter{}, "", 10); err != nil || len(p.Items) != 0 {
				t.Fatalf("%s lists keychains %v %v", tenant, p.Items, err)
			}
			if p, err := models.ListUsers(ctx, e.rm, e.ns, tenant, models.UserFilter{}, "", 10); err != nil || len(p.Items) != 1 {
				t.Fatalf("%s lists users %v %v", tenant, p.Items, err)
			}
		}
		// A purpose is seen by its consumer and its producer only.
		for tenant, visible := range map[string]bool{"cons": true, "prod": true, "third": false} {
			if _, _, ok, err := models.GetPurpose(ctx, e.rm, e.ns, tenant, pid); ok != visible || err != nil {
				t.Fatalf("%s reads the purpose: %v %v", tenant, ok, err)
			}
			p, err := models.ListPurposes(ctx, e.rm, e.ns, tenant, models.PurposeFilter{}, "", 10)
			if err != nil || (len(p.Items) == 1) != visible {
				t.Fatalf("%s lists purposes %v %v", tenant, p.Items, err)
			}
		}
		// The catalogue is public.
		if _, _, ok, err := models.GetEService(ctx, e.rm, e.ns, es); !ok || err != nil {
			t.Fatalf("e-service: %v %v", ok, err)
		}
	})
}

func TestDirectoryDeletesRemoveEverything(t *testing.T) {
	backends(t, func(t *testing.T, newStore func(*testing.T) readmodel.Store) {
		e := newDirEnv(t, newStore(t))
		cons, prod := e.tenant("cons"), e.tenant("prod")
		e.user(cons, "ann", "Ann")
		es := e.must(e.cmd.CreateEService(ctx, prod, "Registry", "https://registry", 600)).ID
		pid := e.must(e.cmd.CreatePurpose(ctx, cons, es, "Check registrations")).ID
		e.must(e.cmd.ActivatePurpose(ctx, prod, pid))
		own := e.must(e.cmd.CreateEService(ctx, cons, "Own service", "https://own", 600)).ID
		before := countKeys(t, e.rm.Store)

		// A client and a keychain with members, keys and links, then deleted, leave the
		// store as it was: records, JWKs and every index membership go.
		cid := e.must(e.cmd.CreateClient(ctx, cons, commands.ClientSpec{Kind: client.KindEService, Name: "Doomed client",
			Members: []string{"ann"}, Keys: []commands.KeyInput{keyInput(t, "a"), keyInput(t, "b")}})).ID
		e.must(e.cmd.AddClientPurpose(ctx, cons, cid, pid))
		kc := e.must(e.cmd.CreateKeychain(ctx, cons, commands.KeychainSpec{Name: "Doomed chain", Members: []string{"ann"},
			Keys: []commands.KeyInput{keyInput(t, "c")}})).ID
		e.must(e.cmd.AddKeychainEService(ctx, cons, kc, own))
		if countKeys(t, e.rm.Store) <= before {
			t.Fatal("nothing written")
		}
		e.must(e.cmd.DeleteOwner(ctx, cons, commands.Clients, cid))
		e.must(e.cmd.DeleteOwner(ctx, cons, commands.Keychains, kc))
		if _, _, ok := e.getClient("cons", cid); ok {
			t.Fatal("deleted client still read")
		}
		if _, _, ok, _ := models.GetKeychain(ctx, e.rm, e.ns, "cons", kc); ok {
			t.Fatal("deleted keychain still read")
		}
		for _, f := range []models.ClientFilter{{}, {Kind: client.KindEService}, {MemberUserID: "ann"}, {PurposeID: pid}, {NamePrefix: "doomed"}} {
			if p, err := models.ListClients(ctx, e.rm, e.ns, "cons", f, "", 10); err != nil || len(p.Items) != 0 {
				t.Fatalf("clients %+v after the deletion: %v %v", f, p.Items, err)
			}
		}
		if p, err := models.ListKeychains(ctx, e.rm, e.ns, "cons", models.KeychainFilter{MemberUserID: "ann"}, "", 10); err != nil || len(p.Items) != 0 {
			t.Fatalf("keychains after the deletion: %v %v", p.Items, err)
		}
		if after := countKeys(t, e.rm.Store); after != before {
			t.Fatalf("%d storage keys after the deletions, %d before the creations", after, before)
		}

		// A deleted user leaves the list and their memberships; a deleted administrator
		// is shown as named at the tenant's creation.
		c2 := e.client(cons, client.KindAPI, "Client of ann", "ann")
		e.must(e.cmd.DeleteUser(ctx, cons, "ann"))
		if _, _, ok, _ := models.GetUser(ctx, e.rm, e.ns, "cons", "ann"); ok {
			t.Fatal("deleted user still read")
		}
		if p, _ := models.ListUsers(ctx, e.rm, e.ns, "cons", models.UserFilter{}, "", 10); len(p.Items) != 1 || p.Items[0].ID != "cons-admin" {
			t.Fatalf("users after the deletion: %v", p.Items)
		}
		if p, _ := models.ListClients(ctx, e.rm, e.ns, "cons", models.ClientFilter{MemberUserID: "ann"}, "", 10); len(p.Items) != 0 {
			t.Fatalf("clients of the deleted user: %v", p.Items)
		}
		if v, _, _ := e.getClient("cons", c2); len(v.Members) != 0 {
			t.Fatalf("client members after the deletion: %v", v.Members)
		}
		tv, _, _, _ := models.GetTenant(ctx, e.rm, e.ns, "cons")
		if tv.Admin.ID != "cons-admin" || len(tv.Admin.Roles) != 1 {
			t.Fatalf("tenant admin %+v", tv.Admin)
		}
		e.must(e.cmd.RegisterUser(ctx, cons, "root", "Root", []string{"admin"}))
		e.must(e.cmd.DeleteUser(ctx, adminOf("cons"), "cons-admin"))
		tv, _, _, _ = models.GetTenant(ctx, e.rm, e.ns, "cons")
		if tv.Admin.ID != "cons-admin" || tv.Admin.Name != "Admin of cons" || len(tv.Admin.Roles) != 0 || !tv.Admin.RegisteredAt.IsZero() {
			t.Fatalf("tenant admin after their deletion %+v", tv.Admin)
		}
	})
}

// Removing a member flags the keys they uploaded, in the client view, its key list and
// the single key.
func TestDirectoryUploaderRemovedFlag(t *testing.T) {
	backends(t, func(t *testing.T, newStore func(*testing.T) readmodel.Store) {
		e := newDirEnv(t, newStore(t))
		cons := e.tenant("cons")
		e.user(cons, "sam", "Sam", "security")
		sam := commands.Meta{Actor: domain.Actor{ID: "sam", Tenant: "cons", Roles: domain.Roles{domain.RoleSecurity}}, CorrelationID: "c-sam"}
		cid := e.client(cons, client.KindAPI, "Client of sam", "sam")
		up, samKid, err := e.cmd.UploadKey(ctx, sam, commands.Clients, cid, keyInput(t, "sam's key"))
		e.must(up, err)
		up, adminKid, err := e.cmd.UploadKey(ctx, cons, commands.Clients, cid, keyInput(t, "admin's key"))
		e.must(up, err)
		if v, _, _ := e.getClient("cons", cid); v.Keys[0].UploaderRemoved || len(v.Recommendations) != 0 {
			t.Fatalf("flag before the removal: %+v", v)
		}
		e.must(e.cmd.RemoveMember(ctx, cons, commands.Clients, cid, "sam"))
		v, _, _ := e.getClient("cons", cid)
		flags := map[string]bool{}
		for _, k := range v.Keys {
			flags[k.KID] = k.UploaderRemoved
			if k.UploaderRemoved != (k.UploaderRemovedAt != nil) {
				t.Fatalf("flag and time disagree: %+v", k)
			}
		}
		if !flags[samKid] || flags[adminKid] || len(v.Recommendations) != 1 || !strings.Contains(v.Recommendations[0], samKid) {
			t.Fatalf("after removing sam: %+v", v)
		}
		kv, _, err := models.GetClientKey(ctx, e.rm, e.ns, "cons", cid, samKid)
		if err != nil || !kv.UploaderRemoved || kv.JWK == nil {
			t.Fatalf("sam's key %+v %v", kv, err)
		}
		if p, _ := models.ListClients(ctx, e.rm, e.ns, "cons", models.ClientFilter{MemberUserID: "sam"}, "", 10); len(p.Items) != 0 {
			t.Fatalf("clients of sam after the removal: %v", p.Items)
		}
	})
}

// A projection restarted with fresh handlers (an empty cache) continues from its
// checkpoint, loads each stream it meets again from the event store up to the event it
// handles, and writes exactly what a projection that never stopped writes: every record
// it writes is the aggregate rendered at the record's version.
func TestDirectoryRestartFromCheckpointLoadsStreams(t *testing.T) {
	backends(t, func(t *testing.T, newStore func(*testing.T) readmodel.Store) {
		e := newDirEnv(t, newStore(t))
		cons := e.tenant("cons")
		for _, u := range []string{"ann", "bob", "cid"} {
			e.user(cons, u, "User "+u)
		}
		var clients []string
		for i := range 3 {
			clients = append(clients, e.client(cons, client.KindAPI, fmt.Sprintf("Client %d", i), "ann"))
		}
		if n := e.es.streamReads.Load(); n != 0 {
			t.Fatalf("%d stream reads while every aggregate was cached", n)
		}
		e.stop()
		cp, _, err := e.rm.Checkpoint(ctx, e.ns)
		if err != nil {
			t.Fatal(err)
		}
		writesBefore := len(e.rm.recorded())

		// While the projection is down, the streams grow: each event must be applied to
		// the stream as it was then, although the log already holds the later events.
		var last commands.Result
		for _, c := range clients {
			for _, step := range []func() (commands.Result, error){
				func() (commands.Result, error) { return e.cmd.AddMember(ctx, cons, commands.Clients, c, "bob") },
				func() (commands.Result, error) { return e.cmd.RemoveMember(ctx, cons, commands.Clients, c, "ann") },
				func() (commands.Result, error) { return e.cmd.AddMember(ctx, cons, commands.Clients, c, "cid") },
				func() (commands.Result, error) { return e.cmd.AddMember(ctx, cons, commands.Clients, c, "ann") },
			} {
				var err error
				if last, err = step(); err != nil {
					t.Fatal(err)
				}
			}
		}
		upd, err := e.cmd.UpdateUser(ctx, cons, "bob", ptr("Robert"), nil)
		if err != nil {
			t.Fatal(err)
		}
		e.start()
		e.waitFor(upd.Position)
		e.waitFor(last.Position)
		if e.es.streamReads.Load() == 0 {
			t.Fatal("the restarted projection read no stream: its cache cannot have been empty")
		}

		// Nothing at or before the checkpoint was applied again.
		writes := e.rm.recorded()
		for _, w := range writes[writesBefore:] {
			if w.pos.Compare(cp) <= 0 {
				t.Fatalf("%s written again at %s after a restart from %s", w.key, w.pos, cp)
			}
		}
		// Every client record written is the client rendered at the record's version.
		checked := 0
		for _, w := range writes {
			if !strings.HasPrefix(w.key, "client:") {
				continue
			}
			var rec struct {
				Version uint64          `json:"version"`
				View    json.RawMessage `json:"view"`
			}
			if err := json.Unmarshal(w.value, &rec); err != nil {
				t.Fatal(err)
			}
			id := strings.TrimPrefix(w.key, "client:")
			want, _ := json.Marshal(models.RenderClient(clientAt(t, e.es, id, rec.Version)))
			if string(want) != string(rec.View) {
				t.Fatalf("record of %s at version %d:\n got %s\nwant %s", id, rec.Version, rec.View, want)
			}
			checked++
		}
		if checked < 15 {
			t.Fatalf("only %d client records checked", checked)
		}
		for _, c := range clients {
			v, _, _ := e.getClient("cons", c)
			var ms []string
			for _, m := range v.Members {
				ms = append(ms, m.UserID)
			}
			if !slices.Equal(ms, []string{"ann", "bob", "cid"}) {
				t.Fatalf("members of %s: %v", c, ms)
			}
		}
		for u, want := range map[string][]string{"ann": clients, "bob": clients, "cid": clients} {
			p, err := models.ListClients(ctx, e.rm, e.ns, "cons", models.ClientFilter{MemberUserID: u}, "", 10)
			if err != nil || !slices.Equal(flat([][]models.ClientView{p.Items}, clientID), want) {
				t.Fatalf("clients of %s: %v %v", u, p.Items, err)
			}
		}
		if p, _ := models.ListUsers(ctx, e.rm, e.ns, "cons", models.UserFilter{NamePrefix: "rob"}, "", 10); len(p.Items) != 1 || p.Items[0].ID != "bob" {
			t.Fatalf("renamed user: %v", p.Items)
		}
		if p, _ := models.ListUsers(ctx, e.rm, e.ns, "cons", models.UserFilter{NamePrefix: "user b"}, "", 10); len(p.Items) != 0 {
			t.Fatalf("old name still indexed: %v", p.Items)
		}
	})
}

func ptr[T any](v T) *T { return &v }

// clientAt loads a client's stream up to version v (inclusive).
func clientAt(t *testing.T, es eventstore.Store, id string, v uint64) *client.Client {
	t.Helper()
	evs, err := es.ReadStream(ctx, client.StreamName(id), eventstore.Forwards, 0, int(v+1))
	if err != nil {
		t.Fatal(err)
	}
	c := client.New(id)
	for _, re := range evs {
		d, err := client.Codec.Decode(re.Type, re.Data)
		if err != nil {
			t.Fatal(err)
		}
		c.Rehydrate([]domain.Event{d})
	}
	return c
}
