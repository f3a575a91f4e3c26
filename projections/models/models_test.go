package models_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/keyledger/keyledger/commands"
	"github.com/keyledger/keyledger/domain/client"
	"github.com/keyledger/keyledger/domain/purpose"
	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/projections/models"
	"github.com/keyledger/keyledger/projections/readmodel"
)

var ctx = context.Background()

// kids returns the kids of a client or keychain's keys, in upload order.
func (e *env) kids(o commands.Owner, tenant, id string) []string {
	e.t.Helper()
	a, _, err := e.cmd.LoadOwner(ctx, o, tenant, id)
	if err != nil {
		e.t.Fatal(err)
	}
	kr := a.Keyring()
	var out []string
	for _, k := range kr.Keys() {
		out = append(out, k.KID)
	}
	return out
}

// producerWorld is a producer with two e-services and a consumer with three active
// purposes: p[0] and p[1] for es[0], p[2] for es[1].
type producerWorld struct {
	consumer, producer commands.Meta
	es                 [2]string
	p                  [3]string
}

func (e *env) world() producerWorld {
	e.t.Helper()
	w := producerWorld{consumer: e.tenant("acme"), producer: e.tenant("prod")}
	for i := range w.es {
		res := e.must(e.cmd.CreateEService(ctx, w.producer, fmt.Sprintf("E-service %d", i), fmt.Sprintf("https://es%d.example", i), 600+i))
		w.es[i] = res.ID
	}
	for i, es := range []string{w.es[0], w.es[0], w.es[1]} {
		res := e.must(e.cmd.CreatePurpose(ctx, w.consumer, es, fmt.Sprintf("Purpose number %d", i)))
		w.p[i] = res.ID
		e.must(e.cmd.ActivatePurpose(ctx, w.producer, res.ID))
	}
	return w
}

func TestAPIClientEntriesAndKeys(t *testing.T) {
	backends(t, func(t *testing.T, newStore func(*testing.T) readmodel.Store) {
		e := newEnv(t, newStore(t))
		admin := e.tenant("acme")
		res := e.mustBoth(e.cmd.CreateClient(ctx, admin, commands.ClientSpec{Kind: client.KindAPI, Name: "API client",
			Keys: []commands.KeyInput{keyInput(t, "first")}}))
		c := res.ID
		k1 := e.kids(commands.Clients, "acme", c)[0]
		v := e.present(c, k1, "")
		if v.ClientID != c || v.ClientKind != client.KindAPI || v.Tenant != "acme" || v.KID != k1 || v.Use != "sig" ||
			v.Alg != "ES256" || v.PEM == "" || v.PurposeID != "" || v.Position != res.Position.String() || v.Refusal() != "" {
			t.Fatalf("entry %+v", v)
		}
		e.absent(c, k1, "some-purpose")

		up, k2, err := e.cmd.UploadKey(ctx, admin, commands.Clients, c, keyInput(t, "second"))
		e.mustBoth(up, err)
		e.present(c, k2, "")
		ke, ok := e.key(k2)
		if !ok || ke.OwnerKind != models.OwnerClient || ke.OwnerID != c || ke.Tenant != "acme" || ke.Name != "second" ||
			ke.UploadedBy != "acme-admin" || ke.Position != up.Position.String() || ke.PEM != v.PEM && ke.PEM == "" {
			t.Fatalf("key entry %+v %v", ke, ok)
		}

		e.mustBoth(e.cmd.DeleteKey(ctx, admin, commands.Clients, c, k1))
		e.absent(c, k1, "")
		if _, ok := e.key(k1); ok {
			t.Fatal("deleted key still found by kid")
		}
		e.present(c, k2, "")
	})
}

func TestAPIClientRolesReachItsEntries(t *testing.T) {
	backends(t, func(t *testing.T, newStore func(*testing.T) readmodel.Store) {
		e := newEnv(t, newStore(t))
		admin := e.tenant("acme")
		res := e.mustBoth(e.cmd.CreateClient(ctx, admin, commands.ClientSpec{Kind: client.KindAPI, Name: "API client",
			Roles: []string{"security", "auditor"}, Keys: []commands.KeyInput{keyInput(t, "first"), keyInput(t, "second")}}))
		kids := e.kids(commands.Clients, "acme", res.ID)
		for _, kid := range kids {
			if v := e.present(res.ID, kid, ""); !reflect.DeepEqual(v.Roles, []string{"auditor", "security"}) {
				t.Fatalf("entry roles %v at creation", v.Roles)
			}
		}
		set := e.mustBoth(e.cmd.SetClientRoles(ctx, admin, res.ID, []string{"admin"}))
		for _, kid := range kids {
			v := e.present(res.ID, kid, "")
			if !reflect.DeepEqual(v.Roles, []string{"admin"}) || v.Position != set.Position.String() {
				t.Fatalf("entry %v at %s after the roles were set at %s", v.Roles, v.Position, set.Position)
			}
		}
		up, k3, err := e.cmd.UploadKey(ctx, admin, commands.Clients, res.ID, keyInput(t, "third"))
		e.mustBoth(up, err)
		if v := e.present(res.ID, k3, ""); !reflect.DeepEqual(v.Roles, []string{"admin"}) {
			t.Fatalf("a key uploaded after the roles changed has roles %v", v.Roles)
		}
		e.mustBoth(e.cmd.SetClientRoles(ctx, admin, res.ID, nil))
		if v := e.present(res.ID, k3, ""); len(v.Roles) != 0 {
			t.Fatalf("cleared roles still in the entry: %v", v.Roles)
		}
	})
}

func TestProbeKey(t *testing.T) {
	backends(t, func(t *testing.T, newStore func(*testing.T) readmodel.Store) {
		e := newEnv(t, newStore(t))
		admin := e.tenant("acme")
		res := e.mustBoth(e.cmd.CreateClient(ctx, admin, commands.ClientSpec{Kind: client.KindEService, Name: "E-service client",
			Keys: []commands.KeyInput{keyInput(t, "first")}}))
		kid := e.kids(commands.Clients, "acme", res.ID)[0]
		probe := func(clientID, kid string) (client.Kind, bool) {
			kind, ok, err := models.ProbeKey(ctx, e.rm, e.ns.Voucher, clientID, kid)
			if err != nil {
				t.Fatal(err)
			}
			return kind, ok
		}
		if kind, ok := probe(res.ID, kid); !ok || kind != client.KindEService {
			t.Fatalf("probe of a registered key: %q %v", kind, ok)
		}
		if _, ok := probe(res.ID, "unknown-kid"); ok {
			t.Fatal("probe found an unknown kid")
		}
		if _, ok := probe("no-such-client", kid); ok {
			t.Fatal("probe found the kid on another client")
		}
		e.mustBoth(e.cmd.DeleteKey(ctx, admin, commands.Clients, res.ID, kid))
		if _, ok := probe(res.ID, kid); ok {
			t.Fatal("probe found a deleted key")
		}
	})
}

func TestEServiceClientEntriesPerLinkedPurpose(t *testing.T) {
	backends(t, func(t *testing.T, newStore func(*testing.T) readmodel.Store) {
		e := newEnv(t, newStore(t))
		w := e.world()
		c := e.mustBoth(e.cmd.CreateClient(ctx, w.consumer, commands.ClientSpec{Kind: client.KindEService, Name: "Consumer client",
			Keys: []commands.KeyInput{keyInput(t, "a"), keyInput(t, "b")}})).ID
		kids := e.kids(commands.Clients, "acme", c)
		for _, k := range kids { // no purpose linked yet: no entry at all
			e.absent(c, k, "")
			e.absent(c, k, w.p[0])
		}
		e.mustBoth(e.cmd.AddClientPurpose(ctx, w.consumer, c, w.p[0]))
		e.mustBoth(e.cmd.AddClientPurpose(ctx, w.consumer, c, w.p[2]))
		up, k3, err := e.cmd.UploadKey(ctx, w.consumer, commands.Clients, c, keyInput(t, "c"))
		e.mustBoth(up, err)
		kids = append(kids, k3)
		for _, k := range kids {
			for i, p := range []string{w.p[0], w.p[2]} {
				v := e.present(c, k, p)
				es := w.es[i]
				if v.ClientKind != client.KindEService || v.Tenant != "acme" || v.PurposeID != p || v.PurposeState != purpose.StateActive ||
					v.EServiceID != es || v.EServiceState != models.EServiceActive || v.Audience != fmt.Sprintf("https://es%d.example", i) ||
					v.VoucherLifetimeSeconds != 600+i || v.Refusal() != "" {
					t.Fatalf("entry %+v", v)
				}
			}
			e.absent(c, k, w.p[1]) // not linked
			e.absent(c, k, "")     // e-service clients have no purpose-less entry
		}

		e.mustBoth(e.cmd.RemoveClientPurpose(ctx, w.consumer, c, w.p[0]))
		for _, k := range kids {
			e.absent(c, k, w.p[0])
			e.present(c, k, w.p[2])
		}
		e.mustBoth(e.cmd.DeleteKey(ctx, w.consumer, commands.Clients, c, kids[0]))
		e.absent(c, kids[0], w.p[2])
		e.present(c, kids[1], w.p[2])
	})
}

func TestPurposeAndEServiceStatesAreReflected(t *testing.T) {
	backends(t, func(t *testing.T, newStore func(*testing.T) readmodel.Store) {
		e := newEnv(t, newStore(t))
		w := e.world()
		clients := make([]string, 2)
		for i := range clients {
			clients[i] = e.mustBoth(e.cmd.CreateClient(ctx, w.consumer, commands.ClientSpec{Kind: client.KindEService, Name: fmt.Sprintf("Client %d", i),
				Keys: []commands.KeyInput{keyInput(t, "k")}})).ID
			for _, p := range w.p {
				e.mustBoth(e.cmd.AddClientPurpose(ctx, w.consumer, clients[i], p))
			}
		}
		kid := map[string]string{}
		for _, c := range clients {
			kid[c] = e.kids(commands.Clients, "acme", c)[0]
		}
		// expect checks every entry's refusal: want maps purpose index → refusal.
		expect := func(step string, want [3]string) {
			t.Helper()
			for _, c := range clients {
				for i, p := range w.p {
					if got := e.present(c, kid[c], p).Refusal(); got != want[i] {
						t.Fatalf("%s: client %s purpose %d refusal %q, want %q", step, c, i, got, want[i])
					}
				}
			}
		}
		expect("all active", [3]string{})

		e.must(e.cmd.SuspendPurpose(ctx, w.consumer, w.p[0]))
		expect("purpose 0 suspended", [3]string{models.RefusePurposeSuspended, "", ""})

		e.must(e.cmd.SuspendEService(ctx, w.producer, w.es[0]))
		expect("e-service 0 suspended", [3]string{models.RefusePurposeSuspended, models.RefuseEServiceSuspended, ""})
		if v := e.present(clients[0], kid[clients[0]], w.p[1]); v.EServiceState != models.EServiceSuspended || v.PurposeState != purpose.StateActive {
			t.Fatalf("entry %+v", v)
		}

		e.must(e.cmd.ActivatePurpose(ctx, w.consumer, w.p[0]))
		expect("purpose 0 reactivated", [3]string{models.RefuseEServiceSuspended, models.RefuseEServiceSuspended, ""})

		e.must(e.cmd.ActivateEService(ctx, w.producer, w.es[0]))
		expect("e-service 0 reactivated", [3]string{})

		// Archival unlinks the purpose from every client: its entries go.
		e.must(e.cmd.ArchivePurpose(ctx, w.consumer, w.p[2]))
		for _, c := range clients {
			e.absent(c, kid[c], w.p[2])
			e.present(c, kid[c], w.p[0])
		}

		// A key uploaded now gets entries with the current states.
		e.must(e.cmd.SuspendPurpose(ctx, w.producer, w.p[1]))
		up, k2, err := e.cmd.UploadKey(ctx, w.consumer, commands.Clients, clients[0], keyInput(t, "late"))
		e.mustBoth(up, err)
		if got := e.present(clients[0], k2, w.p[1]).Refusal(); got != models.RefusePurposeSuspended {
			t.Fatalf("new key under a suspended purpose: refusal %q", got)
		}
		e.absent(clients[0], k2, w.p[2])
	})
}

func TestClientDeletionRemovesEverything(t *testing.T) {
	backends(t, func(t *testing.T, newStore func(*testing.T) readmodel.Store) {
		e := newEnv(t, newStore(t))
		w := e.world()
		// A client that is created and deleted leaves the store exactly as it was (the
		// checkpoints have a fixed key each).
		before := countKeys(t, e.rm)
		c := e.mustBoth(e.cmd.CreateClient(ctx, w.consumer, commands.ClientSpec{Kind: client.KindEService, Name: "Doomed client",
			Keys: []commands.KeyInput{keyInput(t, "a"), keyInput(t, "b")}})).ID
		for _, p := range w.p[:2] {
			e.mustBoth(e.cmd.AddClientPurpose(ctx, w.consumer, c, p))
		}
		kids := e.kids(commands.Clients, "acme", c)
		api := e.mustBoth(e.cmd.CreateClient(ctx, w.consumer, commands.ClientSpec{Kind: client.KindAPI, Name: "Doomed API client",
			Keys: []commands.KeyInput{keyInput(t, "x")}})).ID
		apiKid := e.kids(commands.Clients, "acme", api)[0]
		for _, k := range kids {
			e.present(c, k, w.p[0])
		}
		if countKeys(t, e.rm) <= before {
			t.Fatal("no keys written")
		}

		e.mustBoth(e.cmd.DeleteOwner(ctx, w.consumer, commands.Clients, c))
		e.mustBoth(e.cmd.DeleteOwner(ctx, w.consumer, commands.Clients, api))
		for _, k := range kids {
			for _, p := range w.p {
				e.absent(c, k, p)
			}
			if _, ok := e.key(k); ok {
				t.Fatalf("key %s of a deleted client still found", k)
			}
		}
		e.absent(api, apiKid, "")
		if _, ok := e.key(apiKid); ok {
			t.Fatal("key of a deleted API client still found")
		}
		if after := countKeys(t, e.rm); after != before {
			t.Fatalf("%d storage keys after the clients went, %d before they came", after, before)
		}
		// The purposes' later changes do not bring anything back.
		e.must(e.cmd.SuspendPurpose(ctx, w.consumer, w.p[0]))
		e.must(e.cmd.SuspendEService(ctx, w.producer, w.es[0]))
		for _, k := range kids {
			e.absent(c, k, w.p[0])
		}
	})
}

func TestKeychainKeys(t *testing.T) {
	backends(t, func(t *testing.T, newStore func(*testing.T) readmodel.Store) {
		e := newEnv(t, newStore(t))
		prod := e.tenant("prod")
		kc := e.mustKeys(e.cmd.CreateKeychain(ctx, prod, commands.KeychainSpec{Name: "Producer keys",
			Keys: []commands.KeyInput{keyInput(t, "signing 1")}})).ID
		k1 := e.kids(commands.Keychains, "prod", kc)[0]
		up, k2, err := e.cmd.UploadKey(ctx, prod, commands.Keychains, kc, keyInput(t, "signing 2"))
		e.mustKeys(up, err)
		for _, k := range []string{k1, k2} {
			v, ok := e.key(k)
			if !ok || v.OwnerKind != models.OwnerKeychain || v.OwnerID != kc || v.Tenant != "prod" || v.KID != k ||
				v.Use != "sig" || v.Alg != "ES256" || v.KeyType != "EC" || v.PEM == "" || v.UploadedAt.IsZero() {
				t.Fatalf("keychain key %s: %+v %v", k, v, ok)
			}
		}
		if _, ok := e.entry(kc, k1, ""); ok {
			t.Fatal("a keychain key has a voucher entry")
		}
		e.mustKeys(e.cmd.DeleteKey(ctx, prod, commands.Keychains, kc, k1))
		if _, ok := e.key(k1); ok {
			t.Fatal("deleted keychain key still found")
		}
		e.mustKeys(e.cmd.DeleteOwner(ctx, prod, commands.Keychains, kc))
		if _, ok := e.key(k2); ok {
			t.Fatal("key of a deleted keychain still found")
		}
	})
}

// A key deleted through the command layer is refused by the read model at the very next
// lookup once the checkpoint has reached the deletion, 200 times in a row on each store
// (api.TestDeletedKeyIsRefusedByTheNextRequest runs the 1,000 rounds through the API).
func TestDeletedKeyRefusedAtNextLookup(t *testing.T) {
	backends(t, func(t *testing.T, newStore func(*testing.T) readmodel.Store) {
		e := newEnv(t, newStore(t))
		w := e.world()
		// Several clients take turns, so that no stream grows long enough for the command
		// layer's full reloads to dominate the run; even turns are API clients.
		type target struct{ client, purpose string }
		var targets []target
		for i := range 10 {
			api := e.mustBoth(e.cmd.CreateClient(ctx, w.consumer, commands.ClientSpec{Kind: client.KindAPI, Name: fmt.Sprintf("Rotating API %d", i)})).ID
			svc := e.mustBoth(e.cmd.CreateClient(ctx, w.consumer, commands.ClientSpec{Kind: client.KindEService, Name: fmt.Sprintf("Rotating client %d", i)})).ID
			e.mustBoth(e.cmd.AddClientPurpose(ctx, w.consumer, svc, w.p[0]))
			targets = append(targets, target{api, ""}, target{svc, w.p[0]})
		}
		for i := range 200 {
			c, p := targets[i%len(targets)].client, targets[i%len(targets)].purpose
			up, kid, err := e.cmd.UploadKey(ctx, w.consumer, commands.Clients, c, keyInput(t, fmt.Sprintf("rotating %d", i)))
			e.mustBoth(up, err)
			if v := e.present(c, kid, p); v.Refusal() != "" {
				t.Fatalf("iteration %d: fresh key refused: %s", i, v.Refusal())
			}
			if _, ok := e.key(kid); !ok {
				t.Fatalf("iteration %d: fresh key not found by kid", i)
			}
			e.mustBoth(e.cmd.DeleteKey(ctx, w.consumer, commands.Clients, c, kid))
			if v, ok := e.entry(c, kid, p); ok {
				t.Fatalf("iteration %d: deleted key %s still grants: %+v", i, kid, v)
			}
			if _, ok := e.key(kid); ok {
				t.Fatalf("iteration %d: deleted key %s still found by kid", i, kid)
			}
		}
	})
}

// storeWithoutCheckpoint reports every generation as having lost its checkpoint.
type storeWithoutCheckpoint struct{ readmodel.Store }

func (s storeWithoutCheckpoint) Checkpoint(context.Context, readmodel.Namespace) (eventstore.Position, bool, error) {
	return eventstore.Start, false, nil
}

func TestCheckpointInitialisesOnFirstStartAndRefusesLostData(t *testing.T) {
	rm := readmodel.NewMemory()
	ns := models.DefaultNamespaces()
	cp := models.Checkpoint(rm, ns)
	pos, err := cp(ctx, models.VoucherGroup)
	if err != nil || pos != eventstore.Start {
		t.Fatalf("first start: %v %v", pos, err)
	}
	if _, present, err := rm.Checkpoint(ctx, ns.Voucher); err != nil || !present {
		t.Fatalf("first start did not create the generation: %v %v", present, err)
	}
	at := eventstore.Position{Commit: 7, Prepare: 7}
	if _, err := rm.Apply(ctx, ns.Voucher, at, readmodel.Batch{}); err != nil {
		t.Fatal(err)
	}
	if pos, err := cp(ctx, models.VoucherGroup); err != nil || pos != at {
		t.Fatalf("restart: %v %v", pos, err)
	}
	if _, err := cp(ctx, "unknown"); err == nil {
		t.Fatal("unknown topic accepted")
	}
	if err := rm.SetActive(ctx, ns.Voucher); err != nil {
		t.Fatal(err)
	}
	lost := models.Checkpoint(storeWithoutCheckpoint{rm}, ns)
	if _, err := lost(ctx, models.VoucherGroup); !errors.Is(err, models.ErrCheckpointLost) {
		t.Fatalf("active generation without checkpoint: %v", err)
	}
	// The keys model has no active generation: a missing checkpoint is a first start.
	if _, err := lost(ctx, models.KeysGroup); err != nil {
		t.Fatalf("inactive generation without checkpoint: %v", err)
	}
}
