package purpose_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/domain/purpose"
)

var t0 = time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)

func at(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }

// acme consumes prodco's e-service; globex is unrelated.
var (
	consumer    = domain.Actor{ID: "alice", Kind: "user", Tenant: "acme", Roles: domain.Roles{domain.RoleAdmin}}
	consumerSec = domain.Actor{ID: "sam", Kind: "user", Tenant: "acme", Roles: domain.Roles{domain.RoleSecurity}}
	producer    = domain.Actor{ID: "paul", Kind: "user", Tenant: "prodco", Roles: domain.Roles{domain.RoleAdmin}}
	producerSec = domain.Actor{ID: "pia", Kind: "user", Tenant: "prodco", Roles: domain.Roles{domain.RoleSecurity}}
	unrelated   = domain.Actor{ID: "oscar", Kind: "user", Tenant: "globex", Roles: domain.Roles{domain.RoleAdmin}}
	operator    = domain.Actor{ID: "op", Kind: "operator", Operator: true}
)

const id = "p1"

var es = purpose.EServiceInfo{ID: "es1", ProducerTenant: "prodco", Active: true}

func created() purpose.Created {
	return purpose.Created{ID: id, ConsumerTenant: "acme", EServiceID: "es1", ProducerTenant: "prodco",
		Title: "Monthly payment reconciliation", By: "alice", At: t0}
}

func activated(a domain.Actor, min int) purpose.Activated {
	return purpose.Activated{By: a.ID, ByTenant: a.Tenant, At: at(min)}
}

func suspended(a domain.Actor, min int) purpose.Suspended {
	return purpose.Suspended{By: a.ID, ByTenant: a.Tenant, At: at(min)}
}

func archived(min int) purpose.Archived { return purpose.Archived{By: "alice", At: at(min)} }

func events(es ...domain.Event) []domain.Event { return es }

// Histories in each state.
var (
	pending    = events(created())
	active     = events(created(), activated(producer, 1))
	suspendedH = events(created(), activated(producer, 1), suspended(consumer, 2))
	archivedH  = events(created(), activated(producer, 1), archived(2))
)

type tc struct {
	name   string
	given  []domain.Event
	when   func(p *purpose.Purpose) error
	then   []domain.Event
	err    error
	fields []string
}

func run(t *testing.T, cases []tc) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := purpose.New(id)
			p.Rehydrate(tc.given)
			err := tc.when(p)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("error = %v, want %v", err, tc.err)
				}
				if tc.fields != nil {
					var ve *domain.ValidationError
					if !errors.As(err, &ve) {
						t.Fatalf("error %v is not a *domain.ValidationError", err)
					}
					var got []string
					for _, f := range ve.Fields {
						got = append(got, f.Field)
					}
					if !reflect.DeepEqual(got, tc.fields) {
						t.Fatalf("invalid fields = %v, want %v", got, tc.fields)
					}
				}
				if len(p.Pending()) != 0 {
					t.Fatalf("a refused command recorded %v", p.Pending())
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !reflect.DeepEqual(p.Pending(), tc.then) {
				t.Fatalf("events:\n got %#v\nwant %#v", p.Pending(), tc.then)
			}
		})
	}
}

func TestCreate(t *testing.T) {
	create := func(a domain.Actor, e purpose.EServiceInfo, title string) func(*purpose.Purpose) error {
		return func(p *purpose.Purpose) error { return p.Create(a, e, title, t0) }
	}
	titled := func(title string) purpose.Created { c := created(); c.Title = title; return c }
	run(t, []tc{
		{name: "consumer admin requests", when: create(consumer, es, "Monthly payment reconciliation"), then: events(created())},
		{name: "title trimmed", when: create(consumer, es, "  Monthly payment reconciliation \n"), then: events(created())},
		{name: "title of 5", when: create(consumer, es, "abcde"), then: events(titled("abcde"))},
		{name: "title of 250 multibyte", when: create(consumer, es, strings.Repeat("è", 250)),
			then: events(titled(strings.Repeat("è", 250)))},
		{name: "title of 4", when: create(consumer, es, "abcd"), err: domain.ErrValidation, fields: []string{"title"}},
		{name: "title of 251", when: create(consumer, es, strings.Repeat("t", 251)), err: domain.ErrValidation, fields: []string{"title"}},
		{name: "no e-service", when: create(consumer, purpose.EServiceInfo{Active: true}, "Monthly payment reconciliation"),
			err: domain.ErrValidation, fields: []string{"eserviceId"}},
		{name: "suspended e-service",
			when: create(consumer, purpose.EServiceInfo{ID: "es1", ProducerTenant: "prodco"}, "Monthly payment reconciliation"),
			err:  purpose.ErrEServiceSuspended},
		{name: "a tenant consuming its own e-service",
			when: create(producer, es, "Internal reconciliation"),
			then: events(purpose.Created{ID: id, ConsumerTenant: "prodco", EServiceID: "es1", ProducerTenant: "prodco",
				Title: "Internal reconciliation", By: "paul", At: t0})},
		{name: "security operator", when: create(consumerSec, es, "Monthly payment reconciliation"), err: purpose.ErrAdminRequired},
		{name: "platform operator", when: create(operator, es, "Monthly payment reconciliation"), err: purpose.ErrAdminRequired},
		{name: "already exists", given: pending, when: create(consumer, es, "Monthly payment reconciliation"),
			err: domain.ErrAlreadyExists},
		{name: "already exists though archived", given: archivedH, when: create(consumer, es, "Monthly payment reconciliation"),
			err: domain.ErrAlreadyExists},
	})
}

func TestActivate(t *testing.T) {
	activate := func(a domain.Actor) func(*purpose.Purpose) error {
		return func(p *purpose.Purpose) error { return p.Activate(a, at(5)) }
	}
	run(t, []tc{
		{name: "producer accepts a pending purpose", given: pending, when: activate(producer),
			then: events(activated(producer, 5))},
		{name: "consumer cannot accept its own request", given: pending, when: activate(consumer),
			err: purpose.ErrProducerApprovalRequired},
		{name: "producer lifts a suspension", given: suspendedH, when: activate(producer), then: events(activated(producer, 5))},
		{name: "consumer lifts a suspension", given: suspendedH, when: activate(consumer), then: events(activated(consumer, 5))},
		{name: "consumer lifts the producer's suspension",
			given: events(created(), activated(producer, 1), suspended(producer, 2)), when: activate(consumer),
			then: events(activated(consumer, 5))},
		{name: "already active", given: active, when: activate(producer), err: purpose.ErrAlreadyActive},
		{name: "already active, consumer", given: active, when: activate(consumer), err: purpose.ErrAlreadyActive},
		{name: "archived", given: archivedH, when: activate(producer), err: purpose.ErrArchived},
		{name: "producer security operator", given: pending, when: activate(producerSec), err: purpose.ErrAdminRequired},
		{name: "consumer security operator", given: suspendedH, when: activate(consumerSec), err: purpose.ErrAdminRequired},
		{name: "unrelated tenant's admin", given: pending, when: activate(unrelated), err: domain.ErrNotFound},
		{name: "unrelated tenant's admin on an active one", given: suspendedH, when: activate(unrelated), err: domain.ErrNotFound},
		{name: "platform operator", given: pending, when: activate(operator), err: domain.ErrNotFound},
		{name: "no purpose", when: activate(producer), err: domain.ErrNotFound},
	})
}

func TestSuspend(t *testing.T) {
	suspend := func(a domain.Actor) func(*purpose.Purpose) error {
		return func(p *purpose.Purpose) error { return p.Suspend(a, at(5)) }
	}
	run(t, []tc{
		{name: "producer suspends", given: active, when: suspend(producer), then: events(suspended(producer, 5))},
		{name: "consumer suspends", given: active, when: suspend(consumer), then: events(suspended(consumer, 5))},
		{name: "suspended again after reactivation",
			given: events(created(), activated(producer, 1), suspended(consumer, 2), activated(consumer, 3)),
			when:  suspend(producer), then: events(suspended(producer, 5))},
		{name: "pending", given: pending, when: suspend(producer), err: purpose.ErrPending},
		{name: "pending, consumer", given: pending, when: suspend(consumer), err: purpose.ErrPending},
		{name: "already suspended", given: suspendedH, when: suspend(producer), err: purpose.ErrAlreadySuspended},
		{name: "archived", given: archivedH, when: suspend(consumer), err: purpose.ErrArchived},
		{name: "security operator", given: active, when: suspend(consumerSec), err: purpose.ErrAdminRequired},
		{name: "unrelated tenant's admin", given: active, when: suspend(unrelated), err: domain.ErrNotFound},
		{name: "no purpose", when: suspend(consumer), err: domain.ErrNotFound},
	})
}

func TestArchive(t *testing.T) {
	archive := func(a domain.Actor) func(*purpose.Purpose) error {
		return func(p *purpose.Purpose) error { return p.Archive(a, at(5)) }
	}
	run(t, []tc{
		{name: "consumer archives a pending one", given: pending, when: archive(consumer), then: events(archived(5))},
		{name: "consumer archives an active one", given: active, when: archive(consumer), then: events(archived(5))},
		{name: "consumer archives a suspended one", given: suspendedH, when: archive(consumer), then: events(archived(5))},
		{name: "producer cannot archive", given: active, when: archive(producer), err: purpose.ErrConsumerArchiveOnly},
		{name: "twice", given: archivedH, when: archive(consumer), err: purpose.ErrArchived},
		{name: "consumer security operator", given: active, when: archive(consumerSec), err: purpose.ErrAdminRequired},
		{name: "unrelated tenant's admin", given: active, when: archive(unrelated), err: domain.ErrNotFound},
		{name: "no purpose", when: archive(consumer), err: domain.ErrNotFound},
	})
}

// Archived is final: every change, by anyone who may see the purpose, is refused.
func TestArchivedIsFinal(t *testing.T) {
	for _, a := range []domain.Actor{consumer, producer} {
		for name, do := range map[string]func(*purpose.Purpose) error{
			"activate": func(p *purpose.Purpose) error { return p.Activate(a, at(9)) },
			"suspend":  func(p *purpose.Purpose) error { return p.Suspend(a, at(9)) },
			"archive":  func(p *purpose.Purpose) error { return p.Archive(a, at(9)) },
		} {
			p := purpose.New(id)
			p.Rehydrate(archivedH)
			if err := do(p); !errors.Is(err, purpose.ErrArchived) {
				t.Errorf("%s by %s: %v, want %v", name, a.Tenant, err, purpose.ErrArchived)
			}
		}
	}
}

func TestState(t *testing.T) {
	for _, tc := range []struct {
		name     string
		given    []domain.Event
		state    purpose.State
		linkable bool
	}{
		{"never created", nil, "", false},
		{"pending", pending, purpose.StatePending, false},
		{"active", active, purpose.StateActive, true},
		{"suspended", suspendedH, purpose.StateSuspended, true},
		{"archived", archivedH, purpose.StateArchived, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := purpose.New(id)
			p.Rehydrate(tc.given)
			if p.State() != tc.state || p.Linkable() != tc.linkable || p.Exists() != (tc.state != "") {
				t.Fatalf("state %q linkable %v exists %v", p.State(), p.Linkable(), p.Exists())
			}
		})
	}
	p := purpose.New(id)
	p.Rehydrate(active)
	if p.ID() != id || p.ConsumerTenant() != "acme" || p.ProducerTenant() != "prodco" || p.EServiceID() != "es1" ||
		p.Title() != "Monthly payment reconciliation" || !p.CreatedAt().Equal(t0) || purpose.StreamName("x") != "purpose-x" {
		t.Fatal("readers disagree with the events")
	}
}

func TestErrorCodes(t *testing.T) {
	errs := []*domain.Error{purpose.ErrAdminRequired, purpose.ErrProducerApprovalRequired, purpose.ErrConsumerArchiveOnly,
		purpose.ErrEServiceSuspended, purpose.ErrPending, purpose.ErrAlreadyActive, purpose.ErrAlreadySuspended, purpose.ErrArchived}
	seen := map[string]bool{}
	for _, e := range errs {
		if seen[e.Code] {
			t.Errorf("code %q used twice", e.Code)
		}
		seen[e.Code] = true
	}
	for _, e := range []*domain.Error{purpose.ErrEServiceSuspended, purpose.ErrPending, purpose.ErrAlreadyActive,
		purpose.ErrAlreadySuspended, purpose.ErrArchived} {
		if e.Kind != domain.KindConflict {
			t.Errorf("%s: a wrong transition must be a conflict", e.Code)
		}
	}
	if purpose.ErrArchived.Code != "purpose_archived" || purpose.ErrEServiceSuspended.Code != "eservice_suspended" {
		t.Error("stable codes changed")
	}
}

func TestCodecRoundTrip(t *testing.T) {
	all := events(created(), activated(producer, 1), suspended(consumer, 2), archived(3))
	names := []string{"purpose.created.v1", "purpose.activated.v1", "purpose.suspended.v1", "purpose.archived.v1"}
	for i, e := range all {
		if e.EventType() != names[i] {
			t.Errorf("%T.EventType() = %q, want %q", e, e.EventType(), names[i])
		}
		data, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		got, err := purpose.Codec.Decode(e.EventType(), data)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, e) {
			t.Errorf("%s round trip:\n got %#v\nwant %#v", e.EventType(), got, e)
		}
	}
}
