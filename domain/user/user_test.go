package user_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/domain/user"
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
	tenant = "acme"
	id     = "bob@acme"
)

func roles(rs ...domain.Role) domain.Roles { return domain.Roles(rs) }

func registered(name string, rs domain.Roles) user.Registered {
	return user.Registered{Tenant: tenant, ID: id, Name: name, Roles: rs, By: "alice", At: t0}
}

func events(es ...domain.Event) []domain.Event { return es }

func ptr(s string) *string { return &s }

type tc struct {
	name   string
	id     string // default id
	given  []domain.Event
	when   func(u *user.User) error
	then   []domain.Event
	err    error
	fields []string
}

func run(t *testing.T, cases []tc) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			uid := tc.id
			if uid == "" {
				uid = id
			}
			u := user.New(tenant, uid)
			u.Rehydrate(tc.given)
			err := tc.when(u)
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
				if len(u.Pending()) != 0 {
					t.Fatalf("a refused command recorded %v", u.Pending())
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if got := u.Pending(); len(got) != 0 || len(tc.then) != 0 {
				if !reflect.DeepEqual(got, tc.then) {
					t.Fatalf("events:\n got %#v\nwant %#v", got, tc.then)
				}
			}
		})
	}
}

func TestRegister(t *testing.T) {
	reg := func(a domain.Actor, name string, rs ...string) func(*user.User) error {
		return func(u *user.User) error { return u.Register(a, name, rs, t0) }
	}
	run(t, []tc{
		{name: "admin registers with roles", when: reg(admin, "Bob", "security"),
			then: events(registered("Bob", roles(domain.RoleSecurity)))},
		{name: "roles sorted and deduplicated", when: reg(admin, "Bob", "security", "admin", "security"),
			then: events(registered("Bob", roles(domain.RoleAdmin, domain.RoleSecurity)))},
		{name: "no roles means member", when: reg(admin, "Bob"),
			then: events(registered("Bob", roles(domain.RoleMember)))},
		{name: "name trimmed", when: reg(admin, "  Bob  ", "auditor"),
			then: events(registered("Bob", roles(domain.RoleAuditor)))},
		{name: "name of 200", when: reg(admin, strings.Repeat("b", 200)),
			then: events(registered(strings.Repeat("b", 200), roles(domain.RoleMember)))},
		{name: "platform operator registers",
			when: reg(operator, "Bob", "admin"),
			then: events(user.Registered{Tenant: tenant, ID: id, Name: "Bob", Roles: roles(domain.RoleAdmin), By: "op", At: t0})},
		{name: "security operator", when: reg(sec, "Bob"), err: user.ErrNotAdmin},
		{name: "another tenant's admin", when: reg(otherAdmin, "Bob"), err: user.ErrNotAdmin},
		{name: "empty name", when: reg(admin, "   "), err: domain.ErrValidation, fields: []string{"name"}},
		{name: "name of 201", when: reg(admin, strings.Repeat("b", 201)), err: domain.ErrValidation, fields: []string{"name"}},
		{name: "unknown role", when: reg(admin, "Bob", "admin", "root"), err: domain.ErrValidation, fields: []string{"roles"}},
		{name: "id with a slash", id: "bob/acme", when: reg(admin, "Bob"), err: domain.ErrValidation, fields: []string{"id"}},
		{name: "every invalid field at once", id: "-bob", when: reg(admin, "", "root"),
			err: domain.ErrValidation, fields: []string{"id", "name", "roles"}},
		{name: "already registered", given: events(registered("Bob", roles(domain.RoleMember))),
			when: reg(admin, "Bob"), err: domain.ErrAlreadyExists},
		{name: "registered again after deletion",
			given: events(registered("Bob", roles(domain.RoleMember)), user.Deleted{By: "alice", At: at(1)}),
			when:  func(u *user.User) error { return u.Register(admin, "Robert", nil, at(2)) },
			then:  events(user.Registered{Tenant: tenant, ID: id, Name: "Robert", Roles: roles(domain.RoleMember), By: "alice", At: at(2)})},
	})
}

func TestUpdate(t *testing.T) {
	base := events(registered("Bob", roles(domain.RoleSecurity)))
	upd := func(a domain.Actor, name *string, rs []string) func(*user.User) error {
		return func(u *user.User) error { return u.Update(a, name, rs, at(1)) }
	}
	run(t, []tc{
		{name: "new name keeps the roles", given: base, when: upd(admin, ptr("Robert"), nil),
			then: events(user.Updated{Name: "Robert", Roles: roles(domain.RoleSecurity), By: "alice", At: at(1)})},
		{name: "new roles keep the name", given: base, when: upd(admin, nil, []string{"member", "admin"}),
			then: events(user.Updated{Name: "Bob", Roles: roles(domain.RoleAdmin, domain.RoleMember), By: "alice", At: at(1)})},
		{name: "empty roles mean member", given: base, when: upd(admin, nil, []string{}),
			then: events(user.Updated{Name: "Bob", Roles: roles(domain.RoleMember), By: "alice", At: at(1)})},
		{name: "operator updates", given: base, when: upd(operator, ptr("Robert"), nil),
			then: events(user.Updated{Name: "Robert", Roles: roles(domain.RoleSecurity), By: "op", At: at(1)})},
		{name: "nothing asked: nothing recorded", given: base, when: upd(admin, nil, nil)},
		{name: "same values: nothing recorded", given: base, when: upd(admin, ptr(" Bob "), []string{"security", "security"})},
		{name: "empty name", given: base, when: upd(admin, ptr(" "), nil), err: domain.ErrValidation, fields: []string{"name"}},
		{name: "unknown role", given: base, when: upd(admin, nil, []string{"root"}), err: domain.ErrValidation, fields: []string{"roles"}},
		{name: "security operator", given: base, when: upd(sec, ptr("Robert"), nil), err: user.ErrNotAdmin},
		{name: "another tenant's admin", given: base, when: upd(otherAdmin, ptr("Robert"), nil), err: user.ErrNotAdmin},
		{name: "not registered", when: upd(admin, ptr("Robert"), nil), err: domain.ErrNotFound},
		{name: "deleted", given: events(registered("Bob", roles(domain.RoleSecurity)), user.Deleted{By: "alice", At: at(1)}),
			when: upd(admin, ptr("Robert"), nil), err: domain.ErrNotFound},
	})
}

func TestDelete(t *testing.T) {
	base := events(registered("Bob", roles(domain.RoleSecurity)))
	del := func(a domain.Actor) func(*user.User) error {
		return func(u *user.User) error { return u.Delete(a, at(1)) }
	}
	run(t, []tc{
		{name: "admin deletes", given: base, when: del(admin), then: events(user.Deleted{By: "alice", At: at(1)})},
		{name: "operator deletes", given: base, when: del(operator), then: events(user.Deleted{By: "op", At: at(1)})},
		{name: "security operator", given: base, when: del(sec), err: user.ErrNotAdmin},
		{name: "another tenant's admin", given: base, when: del(otherAdmin), err: user.ErrNotAdmin},
		{name: "not registered", when: del(admin), err: domain.ErrNotFound},
		{name: "twice", given: events(registered("Bob", roles(domain.RoleSecurity)), user.Deleted{By: "alice", At: at(1)}),
			when: del(admin), err: domain.ErrNotFound},
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
	for i, e := range all {
		if e.EventType() != names[i] {
			t.Errorf("%T.EventType() = %q, want %q", e, e.EventType(), names[i])
		}
		data, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		got, err := user.Codec.Decode(e.EventType(), data)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, e) {
			t.Errorf("%s round trip:\n got %#v\nwant %#v", e.EventType(), got, e)
		}
	}
}
