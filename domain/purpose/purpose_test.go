package purpose_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/domain/domaintest"
	"github.com/keyledger/keyledger/domain/purpose"
)

var t0 = time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)

func at(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }

// acme consumes prodco's e-service; globex is unrelated.
var (
	consumer    = domaintest.Admin("alice", "acme")
	consumerSec = domaintest.Security("sam", "acme")
	producer    = domaintest.Admin("paul", "prodco")
	producerSec = domaintest.Security("pia", "prodco")
	unrelated   = domaintest.Admin("oscar", "globex")
	operator    = domaintest.Operator("op")
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

var events = domaintest.Events

// Histories in each state.
var (
	pending    = events(created())
	active     = events(created(), activated(producer, 1))
	suspendedH = events(created(), activated(producer, 1), suspended(consumer, 2))
	archivedH  = events(created(), activated(producer, 1), archived(2))
)

type tc = domaintest.Case[*purpose.Purpose]

var run = domaintest.Runner[*purpose.Purpose]{New: func() *purpose.Purpose { return purpose.New(id) }}.Run

func TestCreate(t *testing.T) {
	create := func(a domain.Actor, e purpose.EServiceInfo, title string) func(*purpose.Purpose) error {
		return func(p *purpose.Purpose) error { return p.Create(a, e, title, t0) }
	}
	titled := func(title string) purpose.Created { c := created(); c.Title = title; return c }
	run(t, []tc{
		{Name: "consumer admin requests", When: create(consumer, es, "Monthly payment reconciliation"), Then: events(created())},
		{Name: "title trimmed", When: create(consumer, es, "  Monthly payment reconciliation \n"), Then: events(created())},
		{Name: "title of 5", When: create(consumer, es, "abcde"), Then: events(titled("abcde"))},
		{Name: "title of 250 multibyte", When: create(consumer, es, strings.Repeat("è", 250)),
			Then: events(titled(strings.Repeat("è", 250)))},
		{Name: "title of 4", When: create(consumer, es, "abcd"), Err: domain.ErrValidation, Fields: []string{"title"}},
		{Name: "title of 251", When: create(consumer, es, strings.Repeat("t", 251)), Err: domain.ErrValidation, Fields: []string{"title"}},
		{Name: "no e-service", When: create(consumer, purpose.EServiceInfo{Active: true}, "Monthly payment reconciliation"),
			Err: domain.ErrValidation, Fields: []string{"eserviceId"}},
		{Name: "suspended e-service",
			When: create(consumer, purpose.EServiceInfo{ID: "es1", ProducerTenant: "prodco"}, "Monthly payment reconciliation"),
			Err:  purpose.ErrEServiceSuspended},
		{Name: "a tenant consuming its own e-service",
			When: create(producer, es, "Internal reconciliation"),
			Then: events(purpose.Created{ID: id, ConsumerTenant: "prodco", EServiceID: "es1", ProducerTenant: "prodco",
				Title: "Internal reconciliation", By: "paul", At: t0})},
		{Name: "security operator", When: create(consumerSec, es, "Monthly payment reconciliation"), Err: purpose.ErrAdminRequired},
		{Name: "platform operator", When: create(operator, es, "Monthly payment reconciliation"), Err: purpose.ErrAdminRequired},
		{Name: "already exists", Given: pending, When: create(consumer, es, "Monthly payment reconciliation"),
			Err: domain.ErrAlreadyExists},
		{Name: "already exists though archived", Given: archivedH, When: create(consumer, es, "Monthly payment reconciliation"),
			Err: domain.ErrAlreadyExists},
	})
}

func TestActivate(t *testing.T) {
	activate := func(a domain.Actor) func(*purpose.Purpose) error {
		return func(p *purpose.Purpose) error { return p.Activate(a, at(5)) }
	}
	run(t, []tc{
		{Name: "producer accepts a pending purpose", Given: pending, When: activate(producer),
			Then: events(activated(producer, 5))},
		{Name: "consumer cannot accept its own request", Given: pending, When: activate(consumer),
			Err: purpose.ErrProducerApprovalRequired},
		{Name: "producer lifts a suspension", Given: suspendedH, When: activate(producer), Then: events(activated(producer, 5))},
		{Name: "consumer lifts a suspension", Given: suspendedH, When: activate(consumer), Then: events(activated(consumer, 5))},
		{Name: "consumer lifts the producer's suspension",
			Given: events(created(), activated(producer, 1), suspended(producer, 2)), When: activate(consumer),
			Then: events(activated(consumer, 5))},
		{Name: "already active", Given: active, When: activate(producer), Err: purpose.ErrAlreadyActive},
		{Name: "already active, consumer", Given: active, When: activate(consumer), Err: purpose.ErrAlreadyActive},
		{Name: "archived", Given: archivedH, When: activate(producer), Err: purpose.ErrArchived},
		{Name: "producer security operator", Given: pending, When: activate(producerSec), Err: purpose.ErrAdminRequired},
		{Name: "consumer security operator", Given: suspendedH, When: activate(consumerSec), Err: purpose.ErrAdminRequired},
		{Name: "unrelated tenant's admin", Given: pending, When: activate(unrelated), Err: domain.ErrNotFound},
		{Name: "unrelated tenant's admin on an active one", Given: suspendedH, When: activate(unrelated), Err: domain.ErrNotFound},
		{Name: "platform operator", Given: pending, When: activate(operator), Err: domain.ErrNotFound},
		{Name: "no purpose", When: activate(producer), Err: domain.ErrNotFound},
	})
}

func TestSuspend(t *testing.T) {
	suspend := func(a domain.Actor) func(*purpose.Purpose) error {
		return func(p *purpose.Purpose) error { return p.Suspend(a, at(5)) }
	}
	run(t, []tc{
		{Name: "producer suspends", Given: active, When: suspend(producer), Then: events(suspended(producer, 5))},
		{Name: "consumer suspends", Given: active, When: suspend(consumer), Then: events(suspended(consumer, 5))},
		{Name: "suspended again after reactivation",
			Given: events(created(), activated(producer, 1), suspended(consumer, 2), activated(consumer, 3)),
			When:  suspend(producer), Then: events(suspended(producer, 5))},
		{Name: "pending", Given: pending, When: suspend(producer), Err: purpose.ErrPending},
		{Name: "pending, consumer", Given: pending, When: suspend(consumer), Err: purpose.ErrPending},
		{Name: "already suspended", Given: suspendedH, When: suspend(producer), Err: purpose.ErrAlreadySuspended},
		{Name: "archived", Given: archivedH, When: suspend(consumer), Err: purpose.ErrArchived},
		{Name: "security operator", Given: active, When: suspend(consumerSec), Err: purpose.ErrAdminRequired},
		{Name: "unrelated tenant's admin", Given: active, When: suspend(unrelated), Err: domain.ErrNotFound},
		{Name: "no purpose", When: suspend(consumer), Err: domain.ErrNotFound},
	})
}

func TestArchive(t *testing.T) {
	archive := func(a domain.Actor) func(*purpose.Purpose) error {
		return func(p *purpose.Purpose) error { return p.Archive(a, at(5)) }
	}
	run(t, []tc{
		{Name: "consumer archives a pending one", Given: pending, When: archive(consumer), Then: events(archived(5))},
		{Name: "consumer archives an active one", Given: active, When: archive(consumer), Then: events(archived(5))},
		{Name: "consumer archives a suspended one", Given: suspendedH, When: archive(consumer), Then: events(archived(5))},
		{Name: "producer cannot archive", Given: active, When: archive(producer), Err: purpose.ErrConsumerArchiveOnly},
		{Name: "twice", Given: archivedH, When: archive(consumer), Err: purpose.ErrArchived},
		{Name: "consumer security operator", Given: active, When: archive(consumerSec), Err: purpose.ErrAdminRequired},
		{Name: "unrelated tenant's admin", Given: active, When: archive(unrelated), Err: domain.ErrNotFound},
		{Name: "no purpose", When: archive(consumer), Err: domain.ErrNotFound},
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
	domaintest.WireNames(t, purpose.Codec, all, names)
	domaintest.RoundTrip(t, purpose.Codec, all)
}
