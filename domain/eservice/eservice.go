// Package eservice is the producer's e-service aggregate: the audience vouchers for it
// carry, how long they live, and whether it is active. Consumers reach it through
// purposes; a suspended e-service keeps its purposes and client links, but no voucher is
// issued for it until it is active again.
package eservice

import (
	"strings"
	"time"
	"unicode"

	"github.com/keyledger/keyledger/domain"
)

// Created is an e-service's first event. It starts active.
type Created struct {
	ID                     string    `json:"id"`
	Tenant                 string    `json:"tenant"` // the producer
	Name                   string    `json:"name"`
	Audience               string    `json:"audience"`
	VoucherLifetimeSeconds int       `json:"voucherLifetimeSeconds"`
	By                     string    `json:"by"`
	At                     time.Time `json:"at"`
}

// Suspended stops vouchers for the e-service; links to it are kept.
type Suspended struct {
	By string    `json:"by"`
	At time.Time `json:"at"`
}

// Activated lifts a suspension.
type Activated struct {
	By string    `json:"by"`
	At time.Time `json:"at"`
}

// EventType implementations: the stable wire names.
func (Created) EventType() string   { return "eservice.created.v1" }
func (Suspended) EventType() string { return "eservice.suspended.v1" }
func (Activated) EventType() string { return "eservice.activated.v1" }

// Codec decodes the e-service's events.
var Codec = domain.NewCodec(Created{}, Suspended{}, Activated{})

// StreamName is the e-service's stream.
func StreamName(id string) string { return "eservice-" + id }

// Limits of an e-service's voucher lifetime, in seconds.
const (
	MinVoucherLifetimeSeconds = 60
	MaxVoucherLifetimeSeconds = 86400
)

// Errors of the e-service aggregate.
var (
	ErrAdminRequired    = domain.NewError(domain.KindForbidden, "admin_required", "only administrators of the producer tenant manage its e-services")
	ErrAlreadySuspended = domain.NewError(domain.KindConflict, "eservice_already_suspended", "the e-service is already suspended")
	ErrAlreadyActive    = domain.NewError(domain.KindConflict, "eservice_already_active", "the e-service is already active")
)

// EService is the aggregate.
type EService struct {
	domain.Changes
	id, tenant, name, audience string
	lifetime                   int // seconds
	suspended, exists          bool
	created                    time.Time
}

// New returns the empty aggregate with the given id, to create or rehydrate.
func New(id string) *EService { return &EService{id: id} }

// Rehydrate applies stored events.
func (s *EService) Rehydrate(events []domain.Event) {
	for _, e := range events {
		s.apply(e)
	}
}

func (s *EService) record(e domain.Event) { s.apply(e); s.Add(e) }

func (s *EService) apply(e domain.Event) {
	switch e := e.(type) {
	case Created:
		s.exists, s.tenant, s.name, s.audience, s.lifetime, s.created = true, e.Tenant, e.Name, e.Audience, e.VoucherLifetimeSeconds, e.At
		s.suspended = false
	case Suspended:
		s.suspended = true
	case Activated:
		s.suspended = false
	}
}

// validAudience: 1–256 printable characters, none of them whitespace (it is copied into
// the aud claim of every voucher, and consumers compare it byte for byte).
func validAudience(a string) bool {
	n := 0
	for _, r := range a {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return false
		}
		n++
	}
	return n >= 1 && n <= 256
}

// Create decides a new e-service produced by the actor's tenant.
func (s *EService) Create(actor domain.Actor, name, audience string, voucherLifetimeSeconds int, at time.Time) error {
	if actor.Tenant == "" || !actor.Roles.Has(domain.RoleAdmin) {
		return ErrAdminRequired
	}
	if s.exists {
		return domain.ErrAlreadyExists
	}
	var v domain.Validator
	name = strings.TrimSpace(name)
	v.Check(len([]rune(name)) >= 5 && len([]rune(name)) <= 60, "name", "5–60 characters")
	v.Check(validAudience(audience), "audience", "1–256 printable characters without whitespace")
	v.Check(voucherLifetimeSeconds >= MinVoucherLifetimeSeconds && voucherLifetimeSeconds <= MaxVoucherLifetimeSeconds,
		"voucherLifetimeSeconds", "60–86400 seconds")
	if err := v.Err(); err != nil {
		return err
	}
	s.record(Created{ID: s.id, Tenant: actor.Tenant, Name: name, Audience: audience,
		VoucherLifetimeSeconds: voucherLifetimeSeconds, By: actor.ID, At: domain.Time(at)})
	return nil
}

// mayManage checks existence, then that the actor administers the producer tenant.
// E-services are public in the catalogue, so another tenant is refused, not told "not
// found".
func (s *EService) mayManage(actor domain.Actor) error {
	if !s.exists {
		return domain.ErrNotFound
	}
	if actor.Tenant != s.tenant || !actor.Roles.Has(domain.RoleAdmin) {
		return ErrAdminRequired
	}
	return nil
}

// Suspend stops vouchers for the e-service.
func (s *EService) Suspend(actor domain.Actor, at time.Time) error {
	if err := s.mayManage(actor); err != nil {
		return err
	}
	if s.suspended {
		return ErrAlreadySuspended
	}
	s.record(Suspended{By: actor.ID, At: domain.Time(at)})
	return nil
}

// Activate lifts a suspension.
func (s *EService) Activate(actor domain.Actor, at time.Time) error {
	if err := s.mayManage(actor); err != nil {
		return err
	}
	if !s.suspended {
		return ErrAlreadyActive
	}
	s.record(Activated{By: actor.ID, At: domain.Time(at)})
	return nil
}

// Exists reports whether the e-service was created.
func (s *EService) Exists() bool { return s.exists }

// ID and the other readers expose the state for queries.
func (s *EService) ID() string           { return s.id }
func (s *EService) Tenant() string       { return s.tenant }
func (s *EService) Name() string         { return s.name }
func (s *EService) Audience() string     { return s.audience }
func (s *EService) CreatedAt() time.Time { return s.created }

// VoucherLifetime is how long a voucher for the e-service is valid (exp − iat).
func (s *EService) VoucherLifetime() time.Duration {
	return time.Duration(s.lifetime) * time.Second
}

// Active reports whether vouchers may be issued for the e-service: it exists and is not
// suspended.
func (s *EService) Active() bool { return s.exists && !s.suspended }
