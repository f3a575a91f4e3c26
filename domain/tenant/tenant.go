// Package tenant is the tenant aggregate: an organisation using Keyledger, created by the
// platform operator together with its first administrator.
package tenant

import (
	"strings"
	"time"
	"unicode/utf8"

	"github.com/keyledger/keyledger/domain"
)

// Created is the tenant's first event.
type Created struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	AdminID   string    `json:"adminId"`
	AdminName string    `json:"adminName"`
	By        string    `json:"by"`
	At        time.Time `json:"at"`
}

// EventType implements domain.Event.
func (Created) EventType() string { return "tenant.created.v1" }

// Codec decodes the tenant's events.
var Codec = domain.NewCodec(Created{})

// StreamName is the tenant's stream.
func StreamName(id string) string { return "tenant-" + id }

// Tenant is the aggregate.
type Tenant struct {
	domain.Changes
	id, name, adminID, adminName string
	created                      time.Time
}

// Create decides a new tenant. Only the platform operator may create tenants.
func Create(actor domain.Actor, id, name, adminID, adminName string, at time.Time) (*Tenant, error) {
	if !actor.Operator {
		return nil, domain.ErrForbidden
	}
	var v domain.Validator
	v.Check(domain.ValidID(id) && !strings.ContainsAny(id, "@:"), "id", "1–128 letters, digits, '.', '_', '-'")
	name = strings.TrimSpace(name)
	v.Check(utf8.RuneCountInString(name) >= 1 && utf8.RuneCountInString(name) <= 200, "name", "1–200 characters")
	v.Check(domain.ValidID(adminID), "admin.id", "1–128 letters, digits and . _ @ : -")
	adminName = strings.TrimSpace(adminName)
	v.Check(utf8.RuneCountInString(adminName) >= 1 && utf8.RuneCountInString(adminName) <= 200, "admin.name", "1–200 characters")
	if err := v.Err(); err != nil {
		return nil, err
	}
	t := &Tenant{}
	t.record(Created{ID: id, Name: name, AdminID: adminID, AdminName: adminName, By: actor.ID, At: domain.Time(at)})
	return t, nil
}

// Rehydrate rebuilds a tenant from its events.
func Rehydrate(events []domain.Event) *Tenant {
	t := &Tenant{}
	for _, e := range events {
		t.apply(e)
	}
	return t
}

func (t *Tenant) record(e domain.Event) { t.apply(e); t.Add(e) }

func (t *Tenant) apply(e domain.Event) {
	if c, ok := e.(Created); ok {
		t.id, t.name, t.adminID, t.adminName, t.created = c.ID, c.Name, c.AdminID, c.AdminName, c.At
	}
}

// ID, Name, AdminID, AdminName and CreatedAt read the tenant's state.
func (t *Tenant) ID() string           { return t.id }
func (t *Tenant) Name() string         { return t.name }
func (t *Tenant) AdminID() string      { return t.adminID }
func (t *Tenant) AdminName() string    { return t.adminName }
func (t *Tenant) CreatedAt() time.Time { return t.created }
