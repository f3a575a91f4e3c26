// Package user is the tenant's user aggregate (the "members area"): people registered in
// a tenant, with the roles Keyledger grants them. Only registered users can become
// members of clients and keychains.
package user

import (
	"strings"
	"time"
	"unicode/utf8"

	"github.com/keyledger/keyledger/domain"
)

// Registered is a user's first event (and the first after a deletion, when the same id is
// registered again).
type Registered struct {
	Tenant string       `json:"tenant"`
	ID     string       `json:"id"`
	Name   string       `json:"name"`
	Roles  domain.Roles `json:"roles"`
	By     string       `json:"by"`
	At     time.Time    `json:"at"`
}

// Updated changes a user's name and roles (both always carried, the new full state).
type Updated struct {
	Name  string       `json:"name"`
	Roles domain.Roles `json:"roles"`
	By    string       `json:"by"`
	At    time.Time    `json:"at"`
}

// Deleted removes a user from the tenant.
type Deleted struct {
	By string    `json:"by"`
	At time.Time `json:"at"`
}

// EventType implements domain.Event.
func (Registered) EventType() string { return "user.registered.v1" }

// EventType implements domain.Event.
func (Updated) EventType() string { return "user.updated.v1" }

// EventType implements domain.Event.
func (Deleted) EventType() string { return "user.deleted.v1" }

// Codec decodes the user's events.
var Codec = domain.NewCodec(Registered{}, Updated{}, Deleted{})

// StreamName is the stream of user id in tenant.
func StreamName(tenant, id string) string { return "user-" + tenant + "/" + id }

// Errors of the user aggregate.
var (
	ErrNotAdmin = domain.NewError(domain.KindForbidden, "admin_required", "only tenant administrators manage users")
)

// User is the aggregate.
type User struct {
	domain.Changes
	tenant, id, name string
	roles            domain.Roles
	exists           bool
	registered       time.Time
}

// New returns the empty aggregate for (tenant, id), to register or rehydrate.
func New(tenant, id string) *User { return &User{tenant: tenant, id: id} }

// Rehydrate applies stored events.
func (u *User) Rehydrate(events []domain.Event) {
	for _, e := range events {
		u.apply(e)
	}
}

func (u *User) record(e domain.Event) { u.apply(e); u.Add(e) }

func (u *User) apply(e domain.Event) {
	switch e := e.(type) {
	case Registered:
		u.exists, u.name, u.roles, u.registered = true, e.Name, e.Roles, e.At
	case Updated:
		u.name, u.roles = e.Name, e.Roles
	case Deleted:
		u.exists, u.roles = false, nil
	}
}

func mayManage(actor domain.Actor, tenant string) bool {
	return actor.Operator || (actor.Tenant == tenant && actor.Roles.Has(domain.RoleAdmin))
}

func validate(id, name string, roleNames []string) (string, domain.Roles, error) {
	var v domain.Validator
	v.Check(domain.ValidID(id), "id", "1–128 letters, digits and . _ @ : -")
	name = strings.TrimSpace(name)
	v.Check(utf8.RuneCountInString(name) >= 1 && utf8.RuneCountInString(name) <= 200, "name", "1–200 characters")
	roles, bad := domain.NormalizeRoles(roleNames)
	v.Check(len(bad) == 0, "roles", "unknown role(s) "+strings.Join(bad, ", ")+"; known: admin, security, member, auditor")
	return name, roles, v.Err()
}

// Register adds the user to the tenant with the given roles (none means member).
func (u *User) Register(actor domain.Actor, name string, roleNames []string, at time.Time) error {
	if !mayManage(actor, u.tenant) {
		return ErrNotAdmin
	}
	name, roles, err := validate(u.id, name, roleNames)
	if err != nil {
		return err
	}
	if u.exists {
		return domain.ErrAlreadyExists
	}
	if len(roles) == 0 {
		roles = domain.Roles{domain.RoleMember}
	}
	u.record(Registered{Tenant: u.tenant, ID: u.id, Name: name, Roles: roles, By: actor.ID, At: domain.Time(at)})
	return nil
}

// Update changes the name and/or the roles; nil leaves a field as it is. A change to
// nothing records nothing.
func (u *User) Update(actor domain.Actor, name *string, roleNames []string, at time.Time) error {
	if !mayManage(actor, u.tenant) {
		return ErrNotAdmin
	}
	if !u.exists {
		return domain.ErrNotFound
	}
	newName := u.name
	if name != nil {
		newName = *name
	}
	newName, roles, err := validate(u.id, newName, roleNames)
	if err != nil {
		return err
	}
	if roleNames == nil {
		roles = u.roles
	}
	if len(roles) == 0 {
		roles = domain.Roles{domain.RoleMember}
	}
	if newName == u.name && equalRoles(roles, u.roles) {
		return nil
	}
	u.record(Updated{Name: newName, Roles: roles, By: actor.ID, At: domain.Time(at)})
	return nil
}

// Delete removes the user from the tenant. Their memberships end with them: the command
// layer treats a deleted user as no longer registered.
func (u *User) Delete(actor domain.Actor, at time.Time) error {
	if !mayManage(actor, u.tenant) {
		return ErrNotAdmin
	}
	if !u.exists {
		return domain.ErrNotFound
	}
	u.record(Deleted{By: actor.ID, At: domain.Time(at)})
	return nil
}

func equalRoles(a, b domain.Roles) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Exists reports whether the user is registered now.
func (u *User) Exists() bool { return u.exists }

// Tenant, ID, Name, Roles and RegisteredAt read the user's state.
func (u *User) Tenant() string          { return u.tenant }
func (u *User) ID() string              { return u.id }
func (u *User) Name() string            { return u.name }
func (u *User) Roles() domain.Roles     { return u.roles }
func (u *User) RegisteredAt() time.Time { return u.registered }
