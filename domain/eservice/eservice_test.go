package eservice_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/domain/eservice"
)

var t0 = time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)

func at(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }

var (
	admin      = domain.Actor{ID: "alice", Kind: "user", Tenant: "acme", Roles: domain.Roles{domain.RoleAdmin}}
	sec        = domain.Actor{ID: "sam", Kind: "user", Tenant: "acme", Roles: domain.Roles{domain.RoleSecurity}}
	otherAdmin = domain.Actor{ID: "oscar", Kind: "user", Tenant: "globex", Roles: domain.Roles{domain.RoleAdmin}}
	operator   = domain.Actor{ID: "op", Kind: "operator", Operator: true}
)

const (
	id  = "es1"
	aud = "https://api.acme.example/payments"
)

func created(name, audience string, lifetime int) eservice.Created {
	return eservice.Created{ID: id, Tenant: "acme", Name: name, Audience: audience, VoucherLifetimeSeconds: lifetime,
		By: "alice", At: t0}
}

func events(es ...domain.Event) []domain.Event { return es }

type tc struct {
	name   string
	given  []domain.Event
	when   func(s *eservice.EService) error
	then   []domain.Event
	err    error
	fields []string
}

func run(t *testing.T, cases []tc) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := eservice.New(id)
			s.Rehydrate(tc.given)
			err := tc.when(s)
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
				if len(s.Pending()) != 0 {
					t.Fatalf("a refused command recorded %v", s.Pending())
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !reflect.DeepEqual(s.Pending(), tc.then) {
				t.Fatalf("events:\n got %#v\nwant %#v", s.Pending(), tc.then)
			}
		})
	}
}

func TestCreate(t *testing.T) {
	create := func(a domain.Actor, name, audience string, lifetime int) func(*eservice.EService) error {
		return func(s *eservice.EService) error { return s.Create(a, name, audience, lifetime, t0) }
	}
	run(t, []tc{
		{name: "admin creates", when: create(admin, "Payments API", aud, 600),
			then: events(created("Payments API", aud, 600))},
		{name: "name trimmed", when: create(admin, "  Payments API ", aud, 600),
			then: events(created("Payments API", aud, 600))},
		{name: "name of 5", when: create(admin, "abcde", aud, 600), then: events(created("abcde", aud, 600))},
		{name: "name of 60 multibyte", when: create(admin, strings.Repeat("è", 60), aud, 600),
			then: events(created(strings.Repeat("è", 60), aud, 600))},
		{name: "name of 4", when: create(admin, "abcd", aud, 600), err: domain.ErrValidation, fields: []string{"name"}},
		{name: "name of 61", when: create(admin, strings.Repeat("a", 61), aud, 600), err: domain.ErrValidation, fields: []string{"name"}},
		{name: "identifier audience", when: create(admin, "Payments API", "payments", 600),
			then: events(created("Payments API", "payments", 600))},
		{name: "audience of 1", when: create(admin, "Payments API", "p", 600), then: events(created("Payments API", "p", 600))},
		{name: "audience of 256", when: create(admin, "Payments API", strings.Repeat("a", 256), 600),
			then: events(created("Payments API", strings.Repeat("a", 256), 600))},
		{name: "empty audience", when: create(admin, "Payments API", "", 600), err: domain.ErrValidation, fields: []string{"audience"}},
		{name: "audience of 257", when: create(admin, "Payments API", strings.Repeat("a", 257), 600),
			err: domain.ErrValidation, fields: []string{"audience"}},
		{name: "audience with a space", when: create(admin, "Payments API", "payments api", 600),
			err: domain.ErrValidation, fields: []string{"audience"}},
		{name: "audience with a trailing newline", when: create(admin, "Payments API", aud+"\n", 600),
			err: domain.ErrValidation, fields: []string{"audience"}},
		{name: "audience with a non-breaking space", when: create(admin, "Payments API", "pay\u00a0ments", 600),
			err: domain.ErrValidation, fields: []string{"audience"}},
		{name: "audience with a control character", when: create(admin, "Payments API", "pay\x00ments", 600),
			err: domain.ErrValidation, fields: []string{"audience"}},
		{name: "lifetime of 60", when: create(admin, "Payments API", aud, 60), then: events(created("Payments API", aud, 60))},
		{name: "lifetime of 86400", when: create(admin, "Payments API", aud, 86400),
			then: events(created("Payments API", aud, 86400))},
		{name: "lifetime of 59", when: create(admin, "Payments API", aud, 59),
			err: domain.ErrValidation, fields: []string{"voucherLifetimeSeconds"}},
		{name: "lifetime of 86401", when: create(admin, "Payments API", aud, 86401),
			err: domain.ErrValidation, fields: []string{"voucherLifetimeSeconds"}},
		{name: "every invalid field at once", when: create(admin, "", "", 0),
			err: domain.ErrValidation, fields: []string{"name", "audience", "voucherLifetimeSeconds"}},
		{name: "security operator", when: create(sec, "Payments API", aud, 600), err: eservice.ErrAdminRequired},
		{name: "platform operator", when: create(operator, "Payments API", aud, 600), err: eservice.ErrAdminRequired},
		{name: "already exists", given: events(created("Payments API", aud, 600)),
			when: create(admin, "Payments API", aud, 600), err: domain.ErrAlreadyExists},
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
		{name: "admin suspends", given: active, when: suspend(admin), then: events(eservice.Suspended{By: "alice", At: at(2)})},
		{name: "suspending a suspended one", given: suspended, when: suspend(admin), err: eservice.ErrAlreadySuspended},
		{name: "admin activates", given: suspended, when: activate(admin), then: events(eservice.Activated{By: "alice", At: at(2)})},
		{name: "activating an active one", given: active, when: activate(admin), err: eservice.ErrAlreadyActive},
		{name: "suspended again after activation",
			given: events(created("Payments API", aud, 600), eservice.Suspended{By: "alice", At: at(1)}, eservice.Activated{By: "alice", At: at(1)}),
			when:  suspend(admin), then: events(eservice.Suspended{By: "alice", At: at(2)})},
		{name: "security operator cannot suspend", given: active, when: suspend(sec), err: eservice.ErrAdminRequired},
		{name: "security operator cannot activate", given: suspended, when: activate(sec), err: eservice.ErrAdminRequired},
		{name: "another tenant's admin cannot suspend", given: active, when: suspend(otherAdmin), err: eservice.ErrAdminRequired},
		{name: "another tenant's admin cannot activate", given: suspended, when: activate(otherAdmin), err: eservice.ErrAdminRequired},
		{name: "platform operator cannot suspend", given: active, when: suspend(operator), err: eservice.ErrAdminRequired},
		{name: "suspend no e-service", when: suspend(admin), err: domain.ErrNotFound},
		{name: "activate no e-service", when: activate(admin), err: domain.ErrNotFound},
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
	for i, e := range all {
		if e.EventType() != names[i] {
			t.Errorf("%T.EventType() = %q, want %q", e, e.EventType(), names[i])
		}
		data, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		got, err := eservice.Codec.Decode(e.EventType(), data)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, e) {
			t.Errorf("%s round trip:\n got %#v\nwant %#v", e.EventType(), got, e)
		}
	}
}
