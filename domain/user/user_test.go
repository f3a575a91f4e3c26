package user_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/domain/domaintest"
	"github.com/keyledger/keyledger/domain/user"
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
	tenant = "acme"
	id     = "bob@acme"
)

func roles(rs ...domain.Role) domain.Roles { return domain.Roles(rs) }

func registered(name string, rs domain.Roles) user.Registered {
	return user.Registered{Tenant: tenant, ID: id, Name: name, Roles: rs, By: "alice", At: t0}
}

var events = domaintest.Events

func ptr(s string) *string { return &s }

type tc = domaintest.Case[*user.User]

// newUser builds the user to register or rehydrate; cases about the id itself use another.
func newUser(uid string) func() *user.User { return func() *user.User { return user.New(tenant, uid) } }

var run = domaintest.Runner[*user.User]{New: newUser(id)}.Run

func TestRegister(t *testing.T) {
	reg := func(a domain.Actor, name string, rs ...string) func(*user.User) error {
		return func(u *user.User) error { return u.Register(a, name, rs, t0) }
	}
	run(t, []tc{
		{Name: "admin registers with roles", When: reg(admin, "Bob", "security"),
			Then: events(registered("Bob", roles(domain.RoleSecurity)))},
		{Name: "roles sorted and deduplicated", When: reg(admin, "Bob", "security", "admin", "security"),
			Then: events(registered("Bob", roles(domain.RoleAdmin, domain.RoleSecurity)))},
		{Name: "no roles means member", When: reg(admin, "Bob"),
			Then: events(registered("Bob", roles(domain.RoleMember)))},
		{Name: "name trimmed", When: reg(admin, "  Bob  ", "auditor"),
			Then: events(registered("Bob", roles(domain.RoleAuditor)))},
		{Name: "name of 200", When: reg(admin, strings.Repeat("b", 200)),
			Then: events(registered(strings.Repeat("b", 200), roles(domain.RoleMember)))},
		{Name: "platform operator registers",
			When: reg(operator, "Bob", "admin"),
			Then: events(user.Registered{Tenant: tenant, ID: id, Name: "Bob", Roles: roles(domain.RoleAdmin), By: "op", At: t0})},
		{Name: "security operator", When: reg(sec, "Bob"), Err: user.ErrNotAdmin},
		{Name: "another tenant's admin", When: reg(otherAdmin, "Bob"), Err: user.ErrNotAdmin},
		{Name: "empty name", When: reg(admin, "   "), Err: domain.ErrValidation, Fields: []string{"name"}},
		{Name: "name of 201", When: reg(admin, strings.Repeat("b", 201)), Err: domain.ErrValidation, Fields: []string{"name"}},
		{Name: "unknown role", When: reg(admin, "Bob", "admin", "root"), Err: domain.ErrValidation, Fields: []string{"roles"}},
		{Name: "id with a slash", New: newUser("bob/acme"), When: reg(admin, "Bob"), Err: domain.ErrValidation, Fields: []string{"id"}},
		{Name: "every invalid field at once", New: newUser("-bob"), When: reg(admin, "", "root"),
			Err: domain.ErrValidation, Fields: []string{"id", "name", "roles"}},
		{Name: "already registered", Given: events(registered("Bob", roles(domain.RoleMember))),
			When: reg(admin, "Bob"), Err: domain.ErrAlreadyExists},
		{Name: "registered again after deletion",
			Given: events(registered("Bob", roles(domain.RoleMember)), user.Deleted{By: "alice", At: at(1)}),
			When:  func(u *user.User) error { return u.Register(admin, "Robert", nil, at(2)) },
			Then:  events(user.Registered{Tenant: tenant, ID: id, Name: "Robert", Roles: roles(domain.RoleMember), By: "alice", At: at(2)})},
	})
}

func TestUpdate(t *testing.T) {
	base := events(registered("Bob", roles(domain.RoleSecurity)))
	upd := func(a domain.Actor, name *string, rs []string) func(*user.User) error {
		return func(u *user.User) error { return u.Update(a, name, rs, at(1)) }
	}
	run(t, []tc{
		{Name: "new name keeps the roles", Given: base, When: upd(admin, ptr("Robert"), nil),
			Then: events(user.Updated{Name: "Robert", Roles: roles(domain.RoleSecurity), By: "alice", At: at(1)})},
		{Name: "new roles keep the name", Given: base, When: upd(admin, nil, []string{"member", "admin"}),
			Then: events(user.Updated{Name: "Bob", Roles: roles(domain.RoleAdmin, domain.RoleMember), By: "alice", At: at(1)})},
		{Name: "empty roles mean member", Given: base, When: upd(admin, nil, []string{}),
			Then: events(user.Updated{Name: "Bob", Roles: roles(domain.RoleMember), By: "alice", At: at(1)})},
		{Name: "operator updates", Given: base, When: upd(operator, ptr("Robert"), nil),
			Then: events(user.Updated{Name: "Robert", Roles: roles(domain.RoleSecurity), By: "op", At: at(1)})},
		{Name: "nothing asked: nothing recorded", Given: base, When: upd(admin, nil, nil)},
		{Name: "same values: nothing recorded", Given: base, When: upd(admin, ptr(" Bob "), []string{"security", "security"})},
		{Name: "empty name", Given: base, When: upd(admin, ptr(" "), nil), Err: domain.ErrValidation, Fields: []string{"name"}},
		{Name: "unknown role", Given: base, When: upd(admin, nil, []string{"root"}), Err: domain.ErrValidation, Fields: []string{"roles"}},
		{Name: "security operator", Given: base, When: upd(sec, ptr("Robert"), nil), Err: user.ErrNotAdmin},
		{Name: "another tenant's admin", Given: base, When: upd(otherAdmin, ptr("Robert"), nil), Err: user.ErrNotAdmin},
		{Name: "not registered", When: upd(admin, ptr("Robert"), nil), Err: domain.ErrNotFound},
		{Name: "deleted", Given: events(registered("Bob", roles(domain.RoleSecurity)), user.Deleted{By: "alice", At: at(1)}),
			When: upd(admin, ptr("Robert"), nil), Err: domain.ErrNotFound},
	})
}

func TestDelete(t *testing.T) {
	base := events(registered("Bob", roles(domain.RoleSecurity)))
	del := func(a domain.Actor) func(*user.User) error {
		return func(u *user.User) error { return u.Delete(a, at(1)) }
	}
	run(t, []tc{
		{Name: "admin deletes", Given: base, When: del(admin), Then: events(user.Deleted{By: "alice", At: at(1)})},
		{Name: "operator deletes", Given: base, When: del(operator), Then: events(user.Deleted{By: "op", At: at(1)})},
		{Name: "security operator", Given: base, When: del(sec), Err: user.ErrNotAdmin},
		{Name: "another tenant's admin", Given: base, When: del(otherAdmin), Err: user.ErrNotAdmin},
		{Name: "not registered", When: del(admin), Err: domain.ErrNotFound},
		{Name: "twice", Given: events(registered("Bob", roles(domain.RoleSecurity)), user.Deleted{By: "alice", At: at(1)}),
			When: del(admin), Err: domain.ErrNotFound},
	})
}

func TestState(t *testing.T) {
	u := user.New(tenant, id)
	u.Rehydrate(events(registered("Bob", roles(domain.RoleSecurity)),
		user.Updated{Name: "Robert", Roles: roles(domain.RoleAdmin), By: "alice", At: at(1)}))
	if !u.Exists() || u.Tenant() != tenant || u.ID() != id || u.Name() != "Robert" ||
		!reflect.DeepEqual(u.Roles(), roles(domain.RoleAdmin)) || !u.RegisteredAt().Equal(t0) {
		t.Fatalf("state: exists %v name %q roles %v registered %v", u.Exists(), u.Name(), u.Roles(), u.RegisteredAt())
	}
	if err := u.Delete(admin, at(2)); err != nil {
		t.Fatal(err)
	}
	if u.Exists() || len(u.Roles()) != 0 {
		t.Fatalf("after deletion: exists %v roles %v", u.Exists(), u.Roles())
	}
	if user.StreamName("acme", "bob") != "user-acme/bob" {
		t.Fatalf("StreamName = %q", user.StreamName("acme", "bob"))
	}
}

func TestCodecRoundTrip(t *testing.T) {
	all := events(
		registered("Bob", roles(domain.RoleAdmin, domain.RoleSecurity)),
		user.Updated{Name: "Robert", Roles: roles(domain.RoleMember), By: "alice", At: at(1)},
		user.Deleted{By: "op", At: at(2)},
	)
	names := []string{"user.registered.v1", "user.updated.v1", "user.deleted.v1"}
	domaintest.WireNames(t, user.Codec, all, names)
	domaintest.RoundTrip(t, user.Codec, all)
}
