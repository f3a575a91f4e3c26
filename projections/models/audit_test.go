package models_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/eventstore/embedded"
	"github.com/keyledger/keyledger/projections/models"
	"github.com/keyledger/keyledger/projections/readmodel"
	"github.com/keyledger/keyledger/projections/runner"
	"github.com/keyledger/keyledger/projections/source"
)

// auditEnv is an embedded event store with the audit model projected into rm by a
// running router. Audit events are appended directly, as the voucher audit writer
// appends them (voucher's own tests run the writer through this model).
type auditEnv struct {
	t      *testing.T
	es     eventstore.Store
	rm     readmodel.Store
	ns     readmodel.Namespace
	router *source.Router
}

func newAuditEnv(t *testing.T, rm readmodel.Store) *auditEnv {
	t.Helper()
	es, err := embedded.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = es.Close() })
	e := &auditEnv{t: t, es: es, rm: rm, ns: readmodel.Namespace{Model: models.AuditModel, Generation: models.AuditVersion}}
	r, err := source.NewRouter(source.RouterConfig{
		Store: es,
		Checkpoint: func(ctx context.Context, topic string) (eventstore.Position, error) {
			if topic != models.AuditGroup {
				return eventstore.Start, fmt.Errorf("no model for topic %q", topic)
			}
			pos, present, err := rm.Checkpoint(ctx, e.ns)
			if err != nil || present {
				return pos, err
			}
			return eventstore.Start, rm.InitGeneration(ctx, e.ns)
		},
		Retry: source.RetryConfig{MaxRetries: 3, InitialInterval: time.Millisecond, MaxInterval: 5 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := models.Audit.Register(r, models.Deps{Store: rm, Events: es}, e.ns); err != nil {
		t.Fatal(err)
	}
	runRouter(t, r)
	e.router = r
	return e
}

// issued is an audit event as the test appended it.
type issued struct {
	jti, tenant, clientID, kid, stream string
	pos                                eventstore.Position
}

// issue appends the audit event of one voucher of clientID (tenant), key kid, to the
// day's stream, and waits until the model has applied it.
func (e *auditEnv) issue(tenant, clientID, kid, day string) issued {
	e.t.Helper()
	jti := uuid.NewString()
	data, err := json.Marshal(map[string]any{"voucherJti": jti, "clientId": clientID, "clientKind": "eservice",
		"tenant": tenant, "kid": kid, "callerAddress": "192.0.2.7"})
	if err != nil {
		e.t.Fatal(err)
	}
	stream := models.AuditStreamPrefix + day
	res, err := e.es.Append(context.Background(), stream, eventstore.Any, eventstore.EventData{Type: models.AuditEventType, Data: data,
		Meta: eventstore.Metadata{Tenant: tenant, ActorID: clientID, ActorKind: eventstore.ActorClient, AggregateID: clientID}})
	if err != nil {
		e.t.Fatal(err)
	}
	e.waitFor(res.Position)
	return issued{jti: jti, tenant: tenant, clientID: clientID, kid: kid, stream: stream, pos: res.Position}
}

func (e *auditEnv) waitFor(pos eventstore.Position) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), safety)
	defer cancel()
	if err := models.WaitFor(ctx, e.rm, e.ns, pos); err != nil {
		e.t.Fatalf("%v (router health: %v)", err, e.router.Healthy())
	}
}

func (e *auditEnv) list(ns readmodel.Namespace, q models.AuditQuery) models.Page[models.AuditEntry] {
	e.t.Helper()
	p, err := models.ListVoucherAudit(context.Background(), e.rm, ns, e.es, q)
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

// listAll reads every page of q (with limit) and checks that each page but the last is
// full.
func (e *auditEnv) listAll(ns readmodel.Namespace, q models.AuditQuery) []models.AuditEntry {
	e.t.Helper()
	var out []models.AuditEntry
	for {
		p := e.list(ns, q)
		out = append(out, p.Items...)
		if p.NextCursor == "" {
			return out
		}
		if q.Limit > 0 && len(p.Items) != q.Limit {
			e.t.Fatalf("a page of %d items with a next cursor, limit %d", len(p.Items), q.Limit)
		}
		q.Cursor = p.NextCursor
	}
}

// jtis are the voucher jtis of entries, checking each entry against what was issued.
func jtis(t *testing.T, entries []models.AuditEntry, byJTI map[string]issued) []string {
	t.Helper()
	var out []string
	for _, e := range entries {
		var rec models.VoucherIssued
		if err := json.Unmarshal(e.Record, &rec); err != nil {
			t.Fatal(err)
		}
		is, ok := byJTI[rec.VoucherJTI]
		if !ok || e.Position != is.pos || e.Stream != is.stream || e.RecordedAt.IsZero() ||
			rec.ClientID != is.clientID || rec.KID != is.kid || rec.Tenant != is.tenant {
			t.Fatalf("entry %s@%d at %s (record %s) does not match what was issued: %+v", e.Stream, e.Version, e.Position, e.Record, is)
		}
		out = append(out, rec.VoucherJTI)
	}
	return out
}

// newestFirst returns the jtis of the issued events that keep accepts, newest first.
func newestFirst(all []issued, keep func(issued) bool) []string {
	var out []string
	for i := len(all) - 1; i >= 0; i-- {
		if keep(all[i]) {
			out = append(out, all[i].jti)
		}
	}
	return out
}

func byJTI(all []issued) map[string]issued {
	m := map[string]issued{}
	for _, is := range all {
		m[is.jti] = is
	}
	return m
}

// issueMix issues vouchers to acme's clients c1 (keys k1, k2) and c2 (key k1) and to
// globex's client g1, over two days.
func (e *auditEnv) issueMix() []issued {
	var all []issued
	for i := range 6 {
		day := "20261124"
		if i >= 3 {
			day = "20261125"
		}
		all = append(all,
			e.issue("acme", "c1", "k1", day),
			e.issue("acme", "c1", "k2", day),
			e.issue("acme", "c2", "k1", day),
			e.issue("globex", "g1", "k1", day))
	}
	return all
}

func TestAuditIndexByClientAndKey(t *testing.T) {
	backends(t, func(t *testing.T, newStore func(*testing.T) readmodel.Store) {
		e := newAuditEnv(t, newStore(t))
		all := e.issueMix()
		m := byJTI(all)
		for _, q := range []models.AuditQuery{
			{Tenant: "acme", ClientID: "c1"},
			{Tenant: "acme", ClientID: "c1", KID: "k1"},
			{Tenant: "acme", ClientID: "c1", KID: "k2"},
			{Tenant: "acme", ClientID: "c2"},
			{Tenant: "acme", ClientID: "c2", KID: "k2"},
			{Tenant: "globex", ClientID: "g1", KID: "k1"},
		} {
			want := newestFirst(all, func(is issued) bool {
				return is.tenant == q.Tenant && is.clientID == q.ClientID && (q.KID == "" || is.kid == q.KID)
			})
			p := e.list(e.ns, q)
			if got := jtis(t, p.Items, m); !reflect.DeepEqual(got, want) || p.NextCursor != "" {
				t.Fatalf("%+v: listed %v (next %q), want %v", q, got, p.NextCursor, want)
			}
		}
	})
}

func TestAuditPagination(t *testing.T) {
	backends(t, func(t *testing.T, newStore func(*testing.T) readmodel.Store) {
		e := newAuditEnv(t, newStore(t))
		all := e.issueMix()
		q := models.AuditQuery{Tenant: "acme", ClientID: "c1", Limit: 5} // 12 events: 5, 5, 2
		want := newestFirst(all, func(is issued) bool { return is.clientID == "c1" })
		if got := jtis(t, e.listAll(e.ns, q), byJTI(all)); !reflect.DeepEqual(got, want) {
			t.Fatalf("pages gave %v, want %v", got, want)
		}
		q.Limit = 6 // exactly two pages: the second has no cursor
		if got := jtis(t, e.listAll(e.ns, q), byJTI(all)); !reflect.DeepEqual(got, want) {
			t.Fatalf("pages of 6 gave %v, want %v", got, want)
		}

		// A voucher issued between two pages sorts before the first: the next page
		// goes on where the first ended.
		q.Limit = 5
		first := e.list(e.ns, q)
		later := e.issue("acme", "c1", "k1", "20261125")
		q.Cursor = first.NextCursor
		rest := e.listAll(e.ns, q)
		if got := jtis(t, append(first.Items, rest...), byJTI(all)); !reflect.DeepEqual(got, want) {
			t.Fatalf("paging across a new voucher gave %v, want %v", got, want)
		}
		q.Cursor = ""
		if p := e.list(e.ns, q); len(p.Items) == 0 || jtis(t, p.Items[:1], byJTI(append(all, later)))[0] != later.jti {
			t.Fatal("the new voucher is not listed first")
		}

		cursor := first.NextCursor
		for name, c := range map[string]struct {
			q    models.AuditQuery
			code string
		}{
			"limit too large":    {models.AuditQuery{Tenant: "acme", ClientID: "c1", Limit: models.MaxLimit + 1}, models.CodeInvalidLimit},
			"negative limit":     {models.AuditQuery{Tenant: "acme", ClientID: "c1", Limit: -1}, models.CodeInvalidLimit},
			"garbage cursor":     {models.AuditQuery{Tenant: "acme", ClientID: "c1", Cursor: "not-a-cursor"}, models.CodeInvalidCursor},
			"cursor of the list": {models.AuditQuery{Tenant: "acme", ClientID: "c1", KID: "k1", Cursor: cursor}, models.CodeInvalidCursor},
			"another client":     {models.AuditQuery{Tenant: "acme", ClientID: "c2", Cursor: cursor}, models.CodeInvalidCursor},
			"no client":          {models.AuditQuery{Tenant: "acme"}, models.CodeInvalidFilter},
			"no tenant":          {models.AuditQuery{ClientID: "c1"}, models.CodeInvalidFilter},
			"malformed kid":      {models.AuditQuery{Tenant: "acme", ClientID: "c1", KID: "a/b"}, models.CodeInvalidFilter},
		} {
			_, err := models.ListVoucherAudit(context.Background(), e.rm, e.ns, e.es, c.q)
			var qe *models.QueryError
			if !errors.As(err, &qe) || qe.Code != c.code || !errors.Is(err, models.ErrInvalidQuery) {
				t.Errorf("%s: %v, want code %s", name, err, c.code)
			}
		}
	})
}

func TestAuditTenantIsolation(t *testing.T) {
	backends(t, func(t *testing.T, newStore func(*testing.T) readmodel.Store) {
		e := newAuditEnv(t, newStore(t))
		e.issueMix()
		for _, q := range []models.AuditQuery{
			{Tenant: "globex", ClientID: "c1"},
			{Tenant: "globex", ClientID: "c1", KID: "k1"},
			{Tenant: "acme", ClientID: "g1"},
		} {
			if p := e.list(e.ns, q); len(p.Items) != 0 || p.NextCursor != "" {
				t.Fatalf("%+v: another tenant's client listed %d entries", q, len(p.Items))
			}
		}
		p := e.list(e.ns, models.AuditQuery{Tenant: "acme", ClientID: "c1", Limit: 1})
		_, err := models.ListVoucherAudit(context.Background(), e.rm, e.ns, e.es, models.AuditQuery{Tenant: "globex", ClientID: "c1", Limit: 1, Cursor: p.NextCursor})
		if !errors.Is(err, models.ErrInvalidQuery) {
			t.Fatalf("acme's cursor under globex: %v", err)
		}
	})
}

func TestAuditRebuildGivesTheSameAnswer(t *testing.T) {
	backends(t, func(t *testing.T, newStore func(*testing.T) readmodel.Store) {
		e := newAuditEnv(t, newStore(t))
		e.issueMix()
		for _, direct := range []bool{true, false} {
			ns := readmodel.Namespace{Model: models.AuditModel, Generation: runner.NewGeneration(models.Audit, time.Now())}
			res, err := runner.Rebuild(context.Background(), e.es, e.rm, models.Audit, ns, runner.RebuildConfig{Direct: direct})
			if err != nil {
				t.Fatal(err)
			}
			if res.Events != 24 {
				t.Fatalf("rebuild applied %d events, want 24", res.Events)
			}
			for _, q := range []models.AuditQuery{
				{Tenant: "acme", ClientID: "c1", Limit: 5},
				{Tenant: "acme", ClientID: "c1", KID: "k2"},
				{Tenant: "acme", ClientID: "c2"},
				{Tenant: "globex", ClientID: "g1"},
			} {
				live, rebuilt := e.listAll(e.ns, q), e.listAll(ns, q)
				if len(live) == 0 || !reflect.DeepEqual(live, rebuilt) {
					t.Fatalf("direct %v, %+v: projected %d entries, rebuilt %d, or they differ", direct, q, len(live), len(rebuilt))
				}
			}
		}
	})
}

// An index member whose event the log does not hold fails the query instead of being
// dropped.
func TestAuditMissingEventIsCorruption(t *testing.T) {
	e := newAuditEnv(t, readmodel.NewMemory())
	e.issue("acme", "c1", "k1", "20261124")
	ns := readmodel.Namespace{Model: models.AuditModel, Generation: "audit.v1-corrupt"}
	if err := e.rm.InitGeneration(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	var b readmodel.Batch
	// The layout of the index, as audit.go builds it: version 7 of the day's stream.
	b.IndexAdd("audit-client/acme/c1", fmt.Sprintf("%016x%016x:20261124:7", ^uint64(1), ^uint64(1)))
	if _, err := e.rm.Apply(context.Background(), ns, eventstore.Position{Commit: 1, Prepare: 1}, b); err != nil {
		t.Fatal(err)
	}
	_, err := models.ListVoucherAudit(context.Background(), e.rm, ns, e.es, models.AuditQuery{Tenant: "acme", ClientID: "c1"})
	if !errors.Is(err, readmodel.ErrCorrupt) {
		t.Fatalf("a reference to a missing event: %v, want readmodel.ErrCorrupt", err)
	}
}

// An audit event the index cannot file halts the model: it is never skipped.
func TestAuditMalformedEventHaltsTheModel(t *testing.T) {
	e := newAuditEnv(t, readmodel.NewMemory())
	e.issue("acme", "c1", "k1", "20261124")
	data := []byte(`{"voucherJti":"j","clientId":"c1","tenant":"acme"}`) // no kid
	if _, err := e.es.Append(context.Background(), models.AuditStreamPrefix+"20261124", eventstore.Any,
		eventstore.EventData{Type: models.AuditEventType, Data: data}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(safety)
	for e.router.Healthy() == nil {
		if time.Now().After(deadline) {
			t.Fatal("the model did not halt on an audit event without a kid")
		}
		time.Sleep(time.Millisecond)
	}
}
