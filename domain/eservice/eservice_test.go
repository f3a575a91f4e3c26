package eservice_test

import (
	"strings"
	"testing"
	"time"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/domain/domaintest"
	"github.com/keyledger/keyledger/domain/eservice"
)

var t0 = time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)

func at(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }

var (
	admin      = domaintest.Admin("alice", "acme")
	sec        = domaintest.Security("sam", "acme")
	otherAdmin = domaintest.Admin("oscar", "globex")
	operator   = domaintest.Operator("op")
)

const (
	id  = "es1"
	aud = "https://api.acme.example/payments"
)

func created(name, audience string, lifetime int) eservice.Created {
	return eservice.Created{ID: id, Tenant: "acme", Name: name, Audience: audience, VoucherLifetimeSeconds: lifetime,
		By: "alice", At: t0}
}

var events = domaintest.Events

type tc = domaintest.Case[*eservice.EService]

var run = domaintest.Runner[*eservice.EService]{New: func() *eservice.EService { return eservice.New(id) }}.Run

func TestCreate(t *testing.T) {
	create := func(a domain.Actor, name, audience string, lifetime int) func(*eservice.EService) error {
		return func(s *eservice.EService) error { return s.Create(a, name, audience, lifetime, t0) }
	}
	run(t, []tc{
		{Name: "admin creates", When: create(admin, "Payments API", aud, 600),
			Then: events(created("Payments API", aud, 600))},
		{Name: "name trimmed", When: create(admin, "  Payments API ", aud, 600),
			Then: events(created("Payments API", aud, 600))},
		{Name: "name of 5", When: create(admin, "abcde", aud, 600), Then: events(created("abcde", aud, 600))},
		{Name: "name of 60 multibyte", When: create(admin, strings.Repeat("è", 60), aud, 600),
			Then: events(created(strings.Repeat("è", 60), aud, 600))},
		{Name: "name of 4", When: create(admin, "abcd", aud, 600), Err: domain.ErrValidation, Fields: []string{"name"}},
		{Name: "name of 61", When: create(admin, strings.Repeat("a", 61), aud, 600), Err: domain.ErrValidation, Fields: []string{"name"}},
		{Name: "identifier audience", When: create(admin, "Payments API", "payments", 600),
			Then: events(created("Payments API", "payments", 600))},
		{Name: "audience of 1", When: create(admin, "Payments API", "p", 600), Then: events(created("Payments API", "p", 600))},
		{Name: "audience of 256", When: create(admin, "Payments API", strings.Repeat("a", 256), 600),
			Then: events(created("Payments API", strings.Repeat("a", 256), 600))},
		{Name: "empty audience", When: create(admin, "Payments API", "", 600), Err: domain.ErrValidation, Fields: []string{"audience"}},
		{Name: "audience of 257", When: create(admin, "Payments API", strings.Repeat("a", 257), 600),
			Err: domain.ErrValidation, Fields: []string{"audience"}},
		{Name: "audience with a space", When: create(admin, "Payments API", "payments api", 600),
			Err: domain.ErrValidation, Fields: []string{"audience"}},
		{Name: "audience with a trailing newline", When: create(admin, "Payments API", aud+"\n", 600),
			Err: domain.ErrValidation, Fields: []string{"audience"}},
		{Name: "audience with a non-breaking space", When: create(admin, "Payments API", "pay\u00a0ments", 600),
			Err: domain.ErrValidation, Fields: []string{"audience"}},
		{Name: "audience with a control character", When: create(admin, "Payments API", "pay\x00ments", 600),
			Err: domain.ErrValidation, Fields: []string{"audience"}},
		{Name: "lifetime of 60", When: create(admin, "Payments API", aud, 60), Then: events(created("Payments API", aud, 60))},
		{Name: "lifetime of 86400", When: create(admin, "Payments API", aud, 86400),
			Then: events(created("Payments API", aud, 86400))},
		{Name: "lifetime of 59", When: create(admin, "Payments API", aud, 59),
			Err: domain.ErrValidation, Fields: []string{"voucherLifetimeSeconds"}},
		{Name: "lifetime of 86401", When: create(admin, "Payments API", aud, 86401),
			Err: domain.ErrValidation, Fields: []string{"voucherLifetimeSeconds"}},
		{Name: "every invalid field at once", When: create(admin, "", "", 0),
			Err: domain.ErrValidation, Fields: []string{"name", "audience", "voucherLifetimeSeconds"}},
		{Name: "security operator", When: create(sec, "Payments API", aud, 600), Err: eservice.ErrAdminRequired},
		{Name: "platform operator", When: create(operator, "Payments API", aud, 600), Err: eservice.ErrAdminRequired},
		{Name: "already exists", Given: events(created("Payments API", aud, 600)),
			When: create(admin, "Payments API", aud, 600), Err: domain.ErrAlreadyExists},
	})
}

func TestSuspendActivate(t *testing.T) {
	active := events(created("Payments API", aud, 600))
	suspended := events(created("Payments API", aud, 600), eservice.Suspended{By: "alice", At: at(1)})
	suspend := func(a domain.Actor) func(*eservice.EService) error {
		return func(s *eservice.EService) error { return s.Suspend(a, at(2)) }
	}
	activate := func(a domain.Actor) func(*eservice.EService) error {
		return func(s *eservice.EService) error { return s.Activate(a, at(2)) }
	}
	run(t, []tc{
		{Name: "admin suspends", Given: active, When: suspend(admin), Then: events(eservice.Suspended{By: "alice", At: at(2)})},
		{Name: "suspending a suspended one", Given: suspended, When: suspend(admin), Err: eservice.ErrAlreadySuspended},
		{Name: "admin activates", Given: suspended, When: activate(admin), Then: events(eservice.Activated{By: "alice", At: at(2)})},
		{Name: "activating an active one", Given: active, When: activate(admin), Err: eservice.ErrAlreadyActive},
		{Name: "suspended again after activation",
			Given: events(created("Payments API", aud, 600), eservice.Suspended{By: "alice", At: at(1)}, eservice.Activated{By: "alice", At: at(1)}),
			When:  suspend(admin), Then: events(eservice.Suspended{By: "alice", At: at(2)})},
		{Name: "security operator cannot suspend", Given: active, When: suspend(sec), Err: eservice.ErrAdminRequired},
		{Name: "security operator cannot activate", Given: suspended, When: activate(sec), Err: eservice.ErrAdminRequired},
		{Name: "another tenant's admin cannot suspend", Given: active, When: suspend(otherAdmin), Err: eservice.ErrAdminRequired},
		{Name: "another tenant's admin cannot activate", Given: suspended, When: activate(otherAdmin), Err: eservice.ErrAdminRequired},
		{Name: "platform operator cannot suspend", Given: active, When: suspend(operator), Err: eservice.ErrAdminRequired},
		{Name: "suspend no e-service", When: suspend(admin), Err: domain.ErrNotFound},
		{Name: "activate no e-service", When: activate(admin), Err: domain.ErrNotFound},
	})
}

func TestState(t *testing.T) {
	s := eservice.New(id)
	if s.Exists() || s.Active() {
		t.Fatal("an e-service that was never created is neither existing nor active")
	}
	if err := s.Create(admin, "Payments API", aud, 600, t0); err != nil {
		t.Fatal(err)
	}
	if !s.Exists() || !s.Active() || s.ID() != id || s.Tenant() != "acme" || s.Name() != "Payments API" ||
		s.Audience() != aud || s.VoucherLifetime() != 10*time.Minute || !s.CreatedAt().Equal(t0) {
		t.Fatal("readers disagree with the creation")
	}
	if err := s.Suspend(admin, at(1)); err != nil || s.Active() {
		t.Fatalf("after Suspend: err %v, active %v", err, s.Active())
	}
	again := eservice.New(id)
	again.Rehydrate(s.Pending())
	if again.Active() || again.VoucherLifetime() != 10*time.Minute {
		t.Fatal("rehydrated state differs from decided state")
	}
	if err := s.Activate(admin, at(2)); err != nil || !s.Active() {
		t.Fatalf("after Activate: err %v, active %v", err, s.Active())
	}
	if eservice.StreamName("x") != "eservice-x" {
		t.Fatalf("StreamName = %q", eservice.StreamName("x"))
	}
}

func TestErrorCodesAreDistinct(t *testing.T) {
	errs := []*domain.Error{eservice.ErrAdminRequired, eservice.ErrAlreadySuspended, eservice.ErrAlreadyActive}
	seen := map[string]bool{}
	for _, e := range errs {
		if seen[e.Code] {
			t.Errorf("code %q used twice", e.Code)
		}
		seen[e.Code] = true
	}
	if eservice.ErrAlreadySuspended.Kind != domain.KindConflict || eservice.ErrAlreadyActive.Kind != domain.KindConflict {
		t.Error("wrong transitions must be conflicts")
	}
}

func TestCodecRoundTrip(t *testing.T) {
	all := events(created("Payments API", aud, 600), eservice.Suspended{By: "alice", At: at(1)},
		eservice.Activated{By: "alice", At: at(2)})
	names := []string{"eservice.created.v1", "eservice.suspended.v1", "eservice.activated.v1"}
	domaintest.WireNames(t, eservice.Codec, all, names)
	domaintest.RoundTrip(t, eservice.Codec, all)
}
