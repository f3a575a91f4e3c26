// Package purpose is the consumer's purpose aggregate: a service request by a consumer
// tenant for a producer's e-service. The producer accepts it (first activation); then
// either side may suspend and reactivate it; the consumer archives it for good. Clients
// can be linked only to active or suspended purposes, and vouchers are issued only while
// it is active.
package purpose

import (
	"strings"
	"time"

	"github.com/keyledger/keyledger/domain"
)

// State is where a purpose is in its life.
type State string

// The purpose states.
const (
	StatePending   State = "pending"   // requested by the consumer, not yet accepted by the producer
	StateActive    State = "active"    // vouchers may be issued
	StateSuspended State = "suspended" // linked clients keep the link, no voucher is issued
	StateArchived  State = "archived"  // final: unlinked from every client
)

// Created is a purpose's first event; the purpose starts pending.
type Created struct {
	ID             string    `json:"id"`
	ConsumerTenant string    `json:"consumerTenant"`
	EServiceID     string    `json:"eserviceId"`
	ProducerTenant string    `json:"producerTenant"`
	Title          string    `json:"title"`
	By             string    `json:"by"`
	At             time.Time `json:"at"`
}

// Activated makes the purpose active: the producer's acceptance of a pending purpose, or
// either side lifting a suspension. ByTenant says which side acted.
type Activated struct {
	By       string    `json:"by"`
	ByTenant string    `json:"byTenant"`
	At       time.Time `json:"at"`
}

// Suspended stops vouchers for the purpose; client links are kept.
type Suspended struct {
	By       string    `json:"by"`
	ByTenant string    `json:"byTenant"`
	At       time.Time `json:"at"`
}

// Archived ends the purpose for good; the command layer unlinks it from every client.
type Archived struct {
	By string    `json:"by"`
	At time.Time `json:"at"`
}

// EventType implementations: the stable wire names.
func (Created) EventType() string   { return "purpose.created.v1" }
func (Activated) EventType() string { return "purpose.activated.v1" }
func (Suspended) EventType() string { return "purpose.suspended.v1" }
func (Archived) EventType() string  { return "purpose.archived.v1" }

// Codec decodes the purpose's events.
var Codec = domain.NewCodec(Created{}, Activated{}, Suspended{}, Archived{})

// StreamName is the purpose's stream.
func StreamName(id string) string { return "purpose-" + id }

// Errors of the purpose aggregate.
var (
	ErrAdminRequired            = domain.NewError(domain.KindForbidden, "admin_required", "only administrators of the consumer or producer tenant manage purposes")
	ErrProducerApprovalRequired = domain.NewError(domain.KindForbidden, "producer_approval_required", "a pending purpose is activated only by an administrator of the producer tenant")
	ErrConsumerArchiveOnly      = domain.NewError(domain.KindForbidden, "consumer_archive_only", "only administrators of the consumer tenant archive a purpose")
	ErrEServiceSuspended        = domain.NewError(domain.KindConflict, "eservice_suspended", "the e-service is suspended: no new purpose can be requested for it")
	ErrPending                  = domain.NewError(domain.KindConflict, "purpose_pending", "the purpose is still pending: the producer must activate it first")
	ErrAlreadyActive            = domain.NewError(domain.KindConflict, "purpose_already_active", "the purpose is already active")
	ErrAlreadySuspended         = domain.NewError(domain.KindConflict, "purpose_already_suspended", "the purpose is already suspended")
	ErrArchived                 = domain.NewError(domain.KindConflict, "purpose_archived", "the purpose is archived; it cannot change any more")
)

// Purpose is the aggregate.
type Purpose struct {
	domain.Changes
	id, consumer, producer, eservice, title string
	state                                   State
	created                                 time.Time
}

// New returns the empty aggregate with the given id, to create or rehydrate.
func New(id string) *Purpose { return &Purpose{id: id} }

// Rehydrate applies stored events.
func (p *Purpose) Rehydrate(events []domain.Event) {
	for _, e := range events {
		p.apply(e)
	}
}

func (p *Purpose) record(e domain.Event) { p.apply(e); p.Add(e) }

func (p *Purpose) apply(e domain.Event) {
	switch e := e.(type) {
	case Created:
		p.consumer, p.producer, p.eservice, p.title, p.created = e.ConsumerTenant, e.ProducerTenant, e.EServiceID, e.Title, e.At
		p.state = StatePending
	case Activated:
		p.state = StateActive
	case Suspended:
		p.state = StateSuspended
	case Archived:
		p.state = StateArchived
	}
}

// EServiceInfo is what the command layer knows of the e-service when a purpose is
// requested.
type EServiceInfo struct {
	ID             string
	ProducerTenant string
	Active         bool
}

// Create decides a new purpose requested by the actor's tenant (the consumer) for an
// e-service. A suspended e-service accepts no new request.
func (p *Purpose) Create(actor domain.Actor, es EServiceInfo, title string, at time.Time) error {
	if actor.Tenant == "" || !actor.Roles.Has(domain.RoleAdmin) {
		return ErrAdminRequired
	}
	if p.state != "" {
		return domain.ErrAlreadyExists
	}
	var v domain.Validator
	v.Check(es.ID != "" && es.ProducerTenant != "", "eserviceId", "an existing e-service is required")
	title = strings.TrimSpace(title)
	v.Check(len([]rune(title)) >= 5 && len([]rune(title)) <= 250, "title", "5–250 characters")
	if err := v.Err(); err != nil {
		return err
	}
	if !es.Active {
		return ErrEServiceSuspended
	}
	p.record(Created{ID: p.id, ConsumerTenant: actor.Tenant, EServiceID: es.ID, ProducerTenant: es.ProducerTenant,
		Title: title, By: actor.ID, At: domain.Time(at)})
	return nil
}

// authorize is the check every change shares: the purpose exists for the actor (an
// unrelated tenant is told it does not, so it cannot learn of it), the actor administers
// one of the two sides, and the purpose is not archived.
func (p *Purpose) authorize(actor domain.Actor) error {
	if p.state == "" || actor.Tenant == "" || (actor.Tenant != p.consumer && actor.Tenant != p.producer) {
		return domain.ErrNotFound
	}
	if !actor.Roles.Has(domain.RoleAdmin) {
		return ErrAdminRequired
	}
	if p.state == StateArchived {
		return ErrArchived
	}
	return nil
}

// Activate accepts a pending purpose (producer administrators only) or lifts a
// suspension (either side's administrators).
func (p *Purpose) Activate(actor domain.Actor, at time.Time) error {
	if err := p.authorize(actor); err != nil {
		return err
	}
	switch p.state {
	case StateActive:
		return ErrAlreadyActive
	case StatePending:
		if actor.Tenant != p.producer {
			return ErrProducerApprovalRequired
		}
	}
	p.record(Activated{By: actor.ID, ByTenant: actor.Tenant, At: domain.Time(at)})
	return nil
}

// Suspend stops vouchers for an active purpose; either side's administrators may.
func (p *Purpose) Suspend(actor domain.Actor, at time.Time) error {
	if err := p.authorize(actor); err != nil {
		return err
	}
	switch p.state {
	case StatePending:
		return ErrPending
	case StateSuspended:
		return ErrAlreadySuspended
	}
	p.record(Suspended{By: actor.ID, ByTenant: actor.Tenant, At: domain.Time(at)})
	return nil
}

// Archive ends the purpose for good; only the consumer's administrators may. The command
// layer must then unlink it from every client (client.PurposeArchived).
func (p *Purpose) Archive(actor domain.Actor, at time.Time) error {
	if err := p.authorize(actor); err != nil {
		return err
	}
	if actor.Tenant != p.consumer {
		return ErrConsumerArchiveOnly
	}
	p.record(Archived{By: actor.ID, At: domain.Time(at)})
	return nil
}

// Exists reports whether the purpose was created (archived purposes exist).
func (p *Purpose) Exists() bool { return p.state != "" }

// ID and the other readers expose the state for queries.
func (p *Purpose) ID() string             { return p.id }
func (p *Purpose) ConsumerTenant() string { return p.consumer }
func (p *Purpose) ProducerTenant() string { return p.producer }
func (p *Purpose) EServiceID() string     { return p.eservice }
func (p *Purpose) Title() string          { return p.title }
func (p *Purpose) State() State           { return p.state }
func (p *Purpose) CreatedAt() time.Time   { return p.created }

// Linkable reports whether clients may be linked to the purpose: active or suspended.
func (p *Purpose) Linkable() bool { return p.state == StateActive || p.state == StateSuspended }
