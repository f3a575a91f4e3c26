package client_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/domain/client"
	"github.com/keyledger/keyledger/domain/domaintest"
	"github.com/keyledger/keyledger/domain/keyring"
)

var t0 = time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)

func at(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }

var (
	admin      = domaintest.Admin("alice", "acme")
	sec        = domaintest.Security("sam", "acme")
	sec2       = domaintest.Security("sue", "acme")
	member     = domaintest.User("mia", "acme", domain.RoleMember)
	otherAdmin = domaintest.Admin("oscar", "globex")
	otherSam   = domaintest.Security("sam", "globex")
	operator   = domaintest.Operator("op")
	system     = domaintest.System("keyledger")
)

const id = "c1"

func created(kind client.Kind) client.Created {
	return client.Created{ID: id, Tenant: "acme", Kind: kind, Name: "Payments client", By: "alice", At: t0}
}

func memberAdded(user string, min int) client.MemberAdded {
	return client.MemberAdded{MemberAdded: keyring.MemberAdded{UserID: user, By: "alice", At: at(min)}}
}

func memberRemoved(user string, min int) client.MemberRemoved {
	return client.MemberRemoved{MemberRemoved: keyring.MemberRemoved{UserID: user, By: "alice", At: at(min)}}
}

func newKey(kid string) keyring.NewKey {
	return keyring.NewKey{KID: kid, Name: "key " + kid, Use: "sig", Alg: "RS256", KeyType: "RSA", PEM: "PEM-" + kid}
}

func keyUploaded(kid, by string, min int) client.KeyUploaded {
	return client.KeyUploaded{KeyUploaded: keyring.KeyUploaded{KID: kid, Name: "key " + kid, Use: "sig", Alg: "RS256",
		KeyType: "RSA", PEM: "PEM-" + kid, UploadedBy: by, At: at(min)}}
}

func keyDeleted(kid, reason, by string, min int) client.KeyDeleted {
	return client.KeyDeleted{KeyDeleted: keyring.KeyDeleted{KID: kid, Reason: reason, By: by, At: at(min)}}
}

func purposeAdded(pid string, min int) client.PurposeAdded {
	return client.PurposeAdded{PurposeID: pid, EServiceID: "es-" + pid, By: "alice", At: at(min)}
}

func purpose(pid string) client.PurposeInfo {
	return client.PurposeInfo{ID: pid, EServiceID: "es-" + pid, ConsumerTenant: "acme", Linkable: true}
}

var (
	events = domaintest.Events
	with   = domaintest.With
)

type tc = domaintest.Case[*client.Client]

// run checks, after each success, that replaying the history gives the decided state.
// Creation may refuse after recording some events, so refusals are not checked for them.
var run = domaintest.Runner[*client.Client]{
	New: func() *client.Client { return client.New(id) },
	SameState: func(c, again *client.Client) bool {
		kr, krAgain := c.Keyring(), again.Keyring()
		return again.Exists() == c.Exists() && reflect.DeepEqual(again.PurposeIDs(), c.PurposeIDs()) &&
			reflect.DeepEqual(krAgain.Keys(), kr.Keys()) && reflect.DeepEqual(krAgain.Members(), kr.Members())
	},
	RefusalMayRecord: true,
}.Run

func TestCreate(t *testing.T) {
	create := func(spec client.Spec, maxKeys int) func(*client.Client) error {
		return func(c *client.Client) error { return c.Create(admin, spec, maxKeys, t0) }
	}
	spec := func(mut func(*client.Spec)) client.Spec {
		s := client.Spec{Kind: client.KindEService, Name: "Payments client"}
		if mut != nil {
			mut(&s)
		}
		return s
	}
	run(t, []tc{
		{Name: "e-service client", When: create(spec(nil), 10), Then: events(created(client.KindEService))},
		{Name: "api client", When: create(spec(func(s *client.Spec) { s.Kind = client.KindAPI }), 10),
			Then: events(created(client.KindAPI))},
		{Name: "members sorted then keys in order",
			When: create(spec(func(s *client.Spec) {
				s.Members = map[string]bool{"sue": true, "sam": true}
				s.Keys = []keyring.NewKey{newKey("k2"), newKey("k1")}
			}), 10),
			Then: events(created(client.KindEService), memberAdded("sam", 0), memberAdded("sue", 0),
				keyUploaded("k2", "alice", 0), keyUploaded("k1", "alice", 0))},
		{Name: "name trimmed and description kept",
			When: create(spec(func(s *client.Spec) { s.Name = "  Payments client \t"; s.Description = "for payments" }), 10),
			Then: events(client.Created{ID: id, Tenant: "acme", Kind: client.KindEService, Name: "Payments client",
				Description: "for payments", By: "alice", At: t0})},
		{Name: "name of 5", When: create(spec(func(s *client.Spec) { s.Name = "abcde" }), 10),
			Then: events(client.Created{ID: id, Tenant: "acme", Kind: client.KindEService, Name: "abcde", By: "alice", At: t0})},
		{Name: "name of 60 multibyte characters",
			When: create(spec(func(s *client.Spec) { s.Name = strings.Repeat("è", 60) }), 10),
			Then: events(client.Created{ID: id, Tenant: "acme", Kind: client.KindEService, Name: strings.Repeat("è", 60), By: "alice", At: t0})},
		{Name: "name of 4", When: create(spec(func(s *client.Spec) { s.Name = "abcd" }), 10),
			Err: domain.ErrValidation, Fields: []string{"name"}},
		{Name: "name of 4 after trimming", When: create(spec(func(s *client.Spec) { s.Name = "  abcd  " }), 10),
			Err: domain.ErrValidation, Fields: []string{"name"}},
		{Name: "name of 61", When: create(spec(func(s *client.Spec) { s.Name = strings.Repeat("a", 61) }), 10),
			Err: domain.ErrValidation, Fields: []string{"name"}},
		{Name: "description of 250",
			When: create(spec(func(s *client.Spec) { s.Description = strings.Repeat("d", 250) }), 10),
			Then: events(client.Created{ID: id, Tenant: "acme", Kind: client.KindEService, Name: "Payments client",
				Description: strings.Repeat("d", 250), By: "alice", At: t0})},
		{Name: "description of 251",
			When: create(spec(func(s *client.Spec) { s.Description = strings.Repeat("d", 251) }), 10),
			Err:  domain.ErrValidation, Fields: []string{"description"}},
		{Name: "no kind", When: create(spec(func(s *client.Spec) { s.Kind = "" }), 10),
			Err: domain.ErrValidation, Fields: []string{"kind"}},
		{Name: "unknown kind", When: create(spec(func(s *client.Spec) { s.Kind = "m2m" }), 10),
			Err: domain.ErrValidation, Fields: []string{"kind"}},
		{Name: "every invalid field at once",
			When: create(client.Spec{Kind: "x", Name: "x", Description: strings.Repeat("d", 251)}, 10),
			Err:  domain.ErrValidation, Fields: []string{"kind", "name", "description"}},
		{Name: "unregistered member",
			When: create(spec(func(s *client.Spec) { s.Members = map[string]bool{"sam": true, "ghost": false} }), 10),
			Err:  keyring.ErrUserNotRegistered},
		{Name: "more keys than the limit",
			When: create(spec(func(s *client.Spec) { s.Keys = []keyring.NewKey{newKey("k1"), newKey("k2")} }), 1),
			Err:  keyring.ErrTooManyKeys},
		{Name: "same kid twice",
			When: create(spec(func(s *client.Spec) { s.Keys = []keyring.NewKey{newKey("k1"), newKey("k1")} }), 10),
			Err:  keyring.ErrKeyAlreadyExists},
		{Name: "encryption key",
			When: create(spec(func(s *client.Spec) { k := newKey("k1"); k.Use = "enc"; s.Keys = []keyring.NewKey{k} }), 10),
			Err:  keyring.ErrUnsupportedUse},
		{Name: "security operator", When: func(c *client.Client) error { return c.Create(sec, spec(nil), 10, t0) },
			Err: client.ErrAdminRequired},
		{Name: "platform operator", When: func(c *client.Client) error { return c.Create(operator, spec(nil), 10, t0) },
			Err: client.ErrAdminRequired},
		{Name: "admin without tenant",
			When: func(c *client.Client) error {
				return c.Create(domain.Actor{ID: "x", Roles: domain.Roles{domain.RoleAdmin}}, spec(nil), 10, t0)
			},
			Err: client.ErrAdminRequired},
		{Name: "api client with roles, normalised",
			When: create(spec(func(s *client.Spec) { s.Kind = client.KindAPI; s.Roles = []string{"security", "admin", "admin"} }), 10),
			Then: events(client.Created{ID: id, Tenant: "acme", Kind: client.KindAPI, Name: "Payments client",
				Roles: domain.Roles{domain.RoleAdmin, domain.RoleSecurity}, By: "alice", At: t0})},
		{Name: "unknown role",
			When: create(spec(func(s *client.Spec) { s.Kind = client.KindAPI; s.Roles = []string{"root"} }), 10),
			Err:  domain.ErrValidation, Fields: []string{"roles"}},
		{Name: "roles for an e-service client",
			When: create(spec(func(s *client.Spec) { s.Roles = []string{"admin"} }), 10),
			Err:  domain.ErrValidation, Fields: []string{"roles"}},
		{Name: "already exists", Given: events(created(client.KindAPI)), When: create(spec(nil), 10),
			Err: domain.ErrAlreadyExists},
		{Name: "already existed and was deleted",
			Given: events(created(client.KindAPI), client.Deleted{By: "alice", At: at(1)}), When: create(spec(nil), 10),
			Err: domain.ErrAlreadyExists},
	})
}

func TestSetRoles(t *testing.T) {
	set := func(a domain.Actor, names ...string) func(*client.Client) error {
		return func(c *client.Client) error { return c.SetRoles(a, names, at(5)) }
	}
	withRoles := created(client.KindAPI)
	withRoles.Roles = domain.Roles{domain.RoleAuditor}
	run(t, []tc{
		{Name: "set", Given: events(created(client.KindAPI)), When: set(admin, "member", "auditor"),
			Then: events(client.RolesSet{Roles: domain.Roles{domain.RoleAuditor, domain.RoleMember}, By: "alice", At: at(5)})},
		{Name: "cleared", Given: events(withRoles), When: set(admin),
			Then: events(client.RolesSet{Roles: domain.Roles{}, By: "alice", At: at(5)})},
		{Name: "unchanged records nothing", Given: events(withRoles), When: set(admin, "auditor"), Then: events()},
		{Name: "unknown role", Given: events(created(client.KindAPI)), When: set(admin, "root"),
			Err: domain.ErrValidation, Fields: []string{"roles"}},
		{Name: "e-service client", Given: events(created(client.KindEService)), When: set(admin, "admin"),
			Err: client.ErrNotAPIClient},
		{Name: "not an admin", Given: events(created(client.KindAPI)), When: set(sec, "admin"),
			Err: client.ErrAdminRequired},
		{Name: "another tenant's admin", Given: events(created(client.KindAPI)), When: set(otherAdmin, "admin"),
			Err: client.ErrAdminRequired},
		{Name: "deleted client", Given: events(created(client.KindAPI), client.Deleted{By: "alice", At: at(1)}),
			When: set(admin, "admin"), Err: domain.ErrNotFound},
	})
	c := client.New(id)
	c.Rehydrate(events(withRoles, client.RolesSet{Roles: domain.Roles{domain.RoleAdmin}, By: "alice", At: at(1)}))
	if got := c.Roles(); !reflect.DeepEqual(got, domain.Roles{domain.RoleAdmin}) {
		t.Fatalf("Roles() = %v after RolesSet", got)
	}
}

func TestCreateStoresMicrosecondUTC(t *testing.T) {
	c := client.New(id)
	local := time.Date(2025, 3, 4, 11, 0, 0, 123456789, time.FixedZone("CET", 3600))
	if err := c.Create(admin, client.Spec{Kind: client.KindAPI, Name: "Payments client"}, 10, local); err != nil {
		t.Fatal(err)
	}
	want := time.Date(2025, 3, 4, 10, 0, 0, 123456000, time.UTC)
	if got := c.Pending()[0].(client.Created).At; !got.Equal(want) || got.Location() != time.UTC {
		t.Fatalf("At = %v, want %v", got, want)
	}
}

func TestMembers(t *testing.T) {
	base := events(created(client.KindEService), memberAdded("sam", 1))
	run(t, []tc{
		{Name: "admin adds a registered user", Given: base,
			When: func(c *client.Client) error { return c.AddMember(admin, "sue", true, at(2)) },
			Then: events(memberAdded("sue", 2))},
		{Name: "unregistered user", Given: base,
			When: func(c *client.Client) error { return c.AddMember(admin, "ghost", false, at(2)) },
			Err:  keyring.ErrUserNotRegistered},
		{Name: "already a member", Given: base,
			When: func(c *client.Client) error { return c.AddMember(admin, "sam", true, at(2)) },
			Err:  keyring.ErrAlreadyMember},
		{Name: "security operator who is a member cannot add", Given: base,
			When: func(c *client.Client) error { return c.AddMember(sec, "sue", true, at(2)) },
			Err:  keyring.ErrAdminRequired},
		{Name: "plain member cannot add", Given: base,
			When: func(c *client.Client) error { return c.AddMember(member, "sue", true, at(2)) },
			Err:  keyring.ErrAdminRequired},
		{Name: "another tenant's admin cannot add", Given: base,
			When: func(c *client.Client) error { return c.AddMember(otherAdmin, "sue", true, at(2)) },
			Err:  keyring.ErrAdminRequired},
		{Name: "platform operator cannot add", Given: base,
			When: func(c *client.Client) error { return c.AddMember(operator, "sue", true, at(2)) },
			Err:  keyring.ErrAdminRequired},
		{Name: "admin removes a member", Given: base,
			When: func(c *client.Client) error { return c.RemoveMember(admin, "sam", at(2)) },
			Then: events(memberRemoved("sam", 2))},
		{Name: "removing a non-member", Given: base,
			When: func(c *client.Client) error { return c.RemoveMember(admin, "sue", at(2)) },
			Err:  keyring.ErrNotAMember},
		{Name: "removing a removed member", Given: with(base, memberRemoved("sam", 2)),
			When: func(c *client.Client) error { return c.RemoveMember(admin, "sam", at(3)) },
			Err:  keyring.ErrNotAMember},
		{Name: "re-adding a removed member", Given: with(base, memberRemoved("sam", 2)),
			When: func(c *client.Client) error { return c.AddMember(admin, "sam", true, at(3)) },
			Then: events(memberAdded("sam", 3))},
		{Name: "security operator cannot remove", Given: base,
			When: func(c *client.Client) error { return c.RemoveMember(sec, "sam", at(2)) },
			Err:  keyring.ErrAdminRequired},
		{Name: "another tenant's admin cannot remove", Given: base,
			When: func(c *client.Client) error { return c.RemoveMember(otherAdmin, "sam", at(2)) },
			Err:  keyring.ErrAdminRequired},
		{Name: "no client",
			When: func(c *client.Client) error { return c.AddMember(admin, "sue", true, at(2)) },
			Err:  domain.ErrNotFound},
		{Name: "deleted client", Given: with(base, client.Deleted{By: "alice", At: at(2)}),
			When: func(c *client.Client) error { return c.RemoveMember(admin, "sam", at(3)) },
			Err:  domain.ErrNotFound},
	})
}

func TestKeys(t *testing.T) {
	base := events(created(client.KindEService), memberAdded("sam", 1), memberAdded("sue", 1), memberAdded("mia", 1))
	withKeys := with(base, keyUploaded("k-sam", "sam", 2), keyUploaded("k-sue", "sue", 2))
	upload := func(a domain.Actor, kid string, maxKeys int) func(*client.Client) error {
		return func(c *client.Client) error { return c.UploadKey(a, newKey(kid), maxKeys, at(3)) }
	}
	del := func(a domain.Actor, kid string) func(*client.Client) error {
		return func(c *client.Client) error { return c.DeleteKey(a, kid, at(3)) }
	}
	run(t, []tc{
		{Name: "security operator member uploads", Given: base, When: upload(sec, "k1", 10),
			Then: events(keyUploaded("k1", "sam", 3))},
		{Name: "admin uploads without being a member", Given: base, When: upload(admin, "k1", 10),
			Then: events(keyUploaded("k1", "alice", 3))},
		{Name: "security operator not a member", Given: events(created(client.KindEService)), When: upload(sec, "k1", 10),
			Err: keyring.ErrKeyForbidden},
		{Name: "security operator after removal", Given: with(base, memberRemoved("sam", 2)), When: upload(sec, "k1", 10),
			Err: keyring.ErrKeyForbidden},
		{Name: "plain member who is a member", Given: base, When: upload(member, "k1", 10),
			Err: keyring.ErrKeyForbidden},
		{Name: "same user id in another tenant", Given: base, When: upload(otherSam, "k1", 10),
			Err: keyring.ErrKeyForbidden},
		{Name: "another tenant's admin", Given: base, When: upload(otherAdmin, "k1", 10),
			Err: keyring.ErrKeyForbidden},
		{Name: "key name trimmed", Given: base,
			When: func(c *client.Client) error {
				k := newKey("k1")
				k.Name = "  key k1  "
				return c.UploadKey(sec, k, 10, at(3))
			},
			Then: events(keyUploaded("k1", "sam", 3))},
		{Name: "empty key name", Given: base,
			When: func(c *client.Client) error {
				k := newKey("k1")
				k.Name = "   "
				return c.UploadKey(sec, k, 10, at(3))
			},
			Err: domain.ErrValidation, Fields: []string{"name"}},
		{Name: "key name of 61", Given: base,
			When: func(c *client.Client) error {
				k := newKey("k1")
				k.Name = strings.Repeat("n", 61)
				return c.UploadKey(sec, k, 10, at(3))
			},
			Err: domain.ErrValidation, Fields: []string{"name"}},
		{Name: "encryption key", Given: base,
			When: func(c *client.Client) error {
				k := newKey("k1")
				k.Use = "enc"
				return c.UploadKey(sec, k, 10, at(3))
			},
			Err: keyring.ErrUnsupportedUse},
		{Name: "duplicate kid on the same client", Given: withKeys, When: upload(admin, "k-sue", 10),
			Err: keyring.ErrKeyAlreadyExists},
		{Name: "at the limit", Given: withKeys, When: upload(sec, "k3", 2), Err: keyring.ErrTooManyKeys},
		{Name: "below the limit", Given: withKeys, When: upload(sec, "k3", 3), Then: events(keyUploaded("k3", "sam", 3))},
		{Name: "a deletion frees a place", Given: with(withKeys, keyDeleted("k-sue", keyring.ReasonDeleted, "sue", 2)),
			When: upload(sec, "k3", 2), Then: events(keyUploaded("k3", "sam", 3))},
		{Name: "a deleted kid may come back", Given: with(withKeys, keyDeleted("k-sue", keyring.ReasonDeleted, "sue", 2)),
			When: upload(sec2, "k-sue", 10), Then: events(keyUploaded("k-sue", "sue", 3))},
		{Name: "security operator deletes own key", Given: withKeys, When: del(sec, "k-sam"),
			Then: events(keyDeleted("k-sam", keyring.ReasonDeleted, "sam", 3))},
		{Name: "security operator cannot delete another's key", Given: withKeys, When: del(sec, "k-sue"),
			Err: keyring.ErrNotOwnKey},
		{Name: "admin deletes any key", Given: withKeys, When: del(admin, "k-sue"),
			Then: events(keyDeleted("k-sue", keyring.ReasonDeleted, "alice", 3))},
		{Name: "removed security operator cannot delete own key", Given: with(withKeys, memberRemoved("sam", 2)),
			When: del(sec, "k-sam"), Err: keyring.ErrKeyForbidden},
		{Name: "plain member cannot delete", Given: withKeys, When: del(member, "k-sam"), Err: keyring.ErrKeyForbidden},
		{Name: "another tenant's admin cannot delete", Given: withKeys, When: del(otherAdmin, "k-sam"),
			Err: keyring.ErrKeyForbidden},
		{Name: "unknown kid", Given: withKeys, When: del(admin, "nope"), Err: keyring.ErrKeyNotFound},
		{Name: "already deleted kid", Given: with(withKeys, keyDeleted("k-sam", keyring.ReasonDeleted, "sam", 2)),
			When: del(admin, "k-sam"), Err: keyring.ErrKeyNotFound},
		{Name: "upload to a deleted client", Given: with(withKeys, client.Deleted{By: "alice", At: at(2)}),
			When: upload(admin, "k3", 10), Err: domain.ErrNotFound},
		{Name: "delete on no client", When: del(admin, "k-sam"), Err: domain.ErrNotFound},
	})
}

// A removed member's keys stay valid but are flagged with the removal time; re-adding
// the member clears the flag.
func TestUploaderRemoved(t *testing.T) {
	base := events(created(client.KindEService), memberAdded("sam", 1), keyUploaded("k-sam", "sam", 2),
		keyUploaded("k-admin", "alice", 2))
	cases := []struct {
		name        string
		given       []domain.Event
		when        func(c *client.Client) error
		kid         string
		wantRemoved bool
		wantAt      time.Time
	}{
		{name: "member's key", given: base, kid: "k-sam"},
		{name: "removal flags the member's key", given: base, kid: "k-sam", wantRemoved: true, wantAt: at(5),
			when: func(c *client.Client) error { return c.RemoveMember(admin, "sam", at(5)) }},
		{name: "re-adding clears the flag", given: with(base, memberRemoved("sam", 5)), kid: "k-sam",
			when: func(c *client.Client) error { return c.AddMember(admin, "sam", true, at(6)) }},
		{name: "removed again: the latest removal time", given: with(base, memberRemoved("sam", 5), memberAdded("sam", 6)),
			kid: "k-sam", wantRemoved: true, wantAt: at(7),
			when: func(c *client.Client) error { return c.RemoveMember(admin, "sam", at(7)) }},
		{name: "others' keys are not flagged", given: base, kid: "k-admin",
			when: func(c *client.Client) error { return c.RemoveMember(admin, "sam", at(5)) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := client.New(id)
			c.Rehydrate(tc.given)
			if tc.when != nil {
				if err := tc.when(c); err != nil {
					t.Fatal(err)
				}
			}
			kr := c.Keyring()
			key, ok := kr.Key(tc.kid)
			if !ok {
				t.Fatalf("key %s is gone; a member's removal must keep their keys", tc.kid)
			}
			removed, since := kr.UploaderRemoved(key)
			if removed != tc.wantRemoved || !since.Equal(tc.wantAt) {
				t.Fatalf("UploaderRemoved = %v, %v; want %v, %v", removed, since, tc.wantRemoved, tc.wantAt)
			}
		})
	}
}

func TestPurposes(t *testing.T) {
	esClient := events(created(client.KindEService))
	linked := events(created(client.KindEService), purposeAdded("p1", 1), purposeAdded("p2", 1))
	run(t, []tc{
		{Name: "admin links an active purpose", Given: esClient,
			When: func(c *client.Client) error { return c.AddPurpose(admin, purpose("p1"), at(2)) },
			Then: events(purposeAdded("p1", 2))},
		{Name: "a second purpose", Given: linked,
			When: func(c *client.Client) error { return c.AddPurpose(admin, purpose("p3"), at(2)) },
			Then: events(purposeAdded("p3", 2))},
		{Name: "api client", Given: events(created(client.KindAPI)),
			When: func(c *client.Client) error { return c.AddPurpose(admin, purpose("p1"), at(2)) },
			Err:  client.ErrNotEServiceClient},
		{Name: "pending or archived purpose", Given: esClient,
			When: func(c *client.Client) error {
				p := purpose("p1")
				p.Linkable = false
				return c.AddPurpose(admin, p, at(2))
			},
			Err: client.ErrPurposeNotLinkable},
		{Name: "another tenant's purpose", Given: esClient,
			When: func(c *client.Client) error {
				p := purpose("p1")
				p.ConsumerTenant = "globex"
				return c.AddPurpose(admin, p, at(2))
			},
			Err: domain.ErrNotFound},
		{Name: "already linked", Given: linked,
			When: func(c *client.Client) error { return c.AddPurpose(admin, purpose("p1"), at(2)) },
			Err:  client.ErrPurposeAlreadyLink},
		{Name: "security operator cannot link", Given: esClient,
			When: func(c *client.Client) error { return c.AddPurpose(sec, purpose("p1"), at(2)) },
			Err:  client.ErrAdminRequired},
		{Name: "another tenant's admin cannot link", Given: esClient,
			When: func(c *client.Client) error { return c.AddPurpose(otherAdmin, purpose("p1"), at(2)) },
			Err:  client.ErrAdminRequired},
		{Name: "link on a deleted client", Given: with(esClient, client.Deleted{By: "alice", At: at(1)}),
			When: func(c *client.Client) error { return c.AddPurpose(admin, purpose("p1"), at(2)) },
			Err:  domain.ErrNotFound},
		{Name: "admin unlinks", Given: linked,
			When: func(c *client.Client) error { return c.RemovePurpose(admin, "p1", at(2)) },
			Then: events(client.PurposeRemoved{PurposeID: "p1", Reason: client.ReasonRemoved, By: "alice", At: at(2)})},
		{Name: "unlinking a purpose not linked", Given: linked,
			When: func(c *client.Client) error { return c.RemovePurpose(admin, "p3", at(2)) },
			Err:  client.ErrPurposeNotLinked},
		{Name: "unlink on a deleted client", Given: with(linked, client.Deleted{By: "alice", At: at(1)}),
			When: func(c *client.Client) error { return c.RemovePurpose(admin, "p1", at(2)) },
			Err:  domain.ErrNotFound},
		{Name: "security operator cannot unlink", Given: linked,
			When: func(c *client.Client) error { return c.RemovePurpose(sec, "p1", at(2)) },
			Err:  client.ErrAdminRequired},
		{Name: "archived purpose is unlinked", Given: linked,
			When: func(c *client.Client) error { c.PurposeArchived(system, "p2", at(2)); return nil },
			Then: events(client.PurposeRemoved{PurposeID: "p2", Reason: client.ReasonPurposeArchived, By: "keyledger", At: at(2)})},
		{Name: "archived purpose not linked: nothing", Given: linked,
			When: func(c *client.Client) error { c.PurposeArchived(system, "p3", at(2)); return nil }},
		{Name: "archived purpose on a deleted client: nothing",
			Given: with(linked, client.Deleted{By: "alice", At: at(1)}),
			When:  func(c *client.Client) error { c.PurposeArchived(system, "p1", at(2)); return nil }},
		{Name: "archived purpose on no client: nothing",
			When: func(c *client.Client) error { c.PurposeArchived(system, "p1", at(2)); return nil }},
	})
}

// Unlinking one purpose leaves the client working for the others.
func TestRemovePurposeKeepsOthers(t *testing.T) {
	c := client.New(id)
	c.Rehydrate(events(created(client.KindEService), purposeAdded("p1", 1), purposeAdded("p2", 1), purposeAdded("p3", 1)))
	if err := c.RemovePurpose(admin, "p2", at(2)); err != nil {
		t.Fatal(err)
	}
	c.PurposeArchived(system, "p3", at(3))
	if got, want := c.PurposeIDs(), []string{"p1"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("PurposeIDs = %v, want %v", got, want)
	}
	if !c.HasPurpose("p1") || c.HasPurpose("p2") || c.HasPurpose("p3") {
		t.Fatal("HasPurpose disagrees with PurposeIDs")
	}
	if err := c.AddPurpose(admin, purpose("p2"), at(4)); err != nil {
		t.Fatalf("relinking an unlinked purpose: %v", err)
	}
}

func TestDelete(t *testing.T) {
	full := events(created(client.KindEService), memberAdded("sam", 1), keyUploaded("k1", "sam", 2),
		keyUploaded("k2", "alice", 2), keyUploaded("k3", "sam", 2), keyDeleted("k2", keyring.ReasonDeleted, "alice", 3),
		purposeAdded("p2", 3), purposeAdded("p1", 3))
	run(t, []tc{
		{Name: "keys, then purposes, then the client", Given: full,
			When: func(c *client.Client) error { return c.Delete(admin, at(9)) },
			Then: events(
				keyDeleted("k1", keyring.ReasonOwnerDeleted, "alice", 9),
				keyDeleted("k3", keyring.ReasonOwnerDeleted, "alice", 9),
				client.PurposeRemoved{PurposeID: "p1", Reason: client.ReasonClientDeleted, By: "alice", At: at(9)},
				client.PurposeRemoved{PurposeID: "p2", Reason: client.ReasonClientDeleted, By: "alice", At: at(9)},
				client.Deleted{By: "alice", At: at(9)})},
		{Name: "an empty client", Given: events(created(client.KindAPI)),
			When: func(c *client.Client) error { return c.Delete(admin, at(9)) },
			Then: events(client.Deleted{By: "alice", At: at(9)})},
		{Name: "security operator", Given: full,
			When: func(c *client.Client) error { return c.Delete(sec, at(9)) }, Err: client.ErrAdminRequired},
		{Name: "another tenant's admin", Given: full,
			When: func(c *client.Client) error { return c.Delete(otherAdmin, at(9)) }, Err: client.ErrAdminRequired},
		{Name: "twice", Given: with(full, client.Deleted{By: "alice", At: at(8)}),
			When: func(c *client.Client) error { return c.Delete(admin, at(9)) }, Err: domain.ErrNotFound},
		{Name: "no client", When: func(c *client.Client) error { return c.Delete(admin, at(9)) }, Err: domain.ErrNotFound},
	})
}

func TestDeleteLeavesNothing(t *testing.T) {
	c := client.New(id)
	c.Rehydrate(events(created(client.KindEService), keyUploaded("k1", "alice", 1), purposeAdded("p1", 1)))
	if err := c.Delete(admin, at(2)); err != nil {
		t.Fatal(err)
	}
	kr := c.Keyring()
	if c.Exists() || len(kr.Keys()) != 0 || len(c.PurposeIDs()) != 0 {
		t.Fatalf("after Delete: exists %v, keys %v, purposes %v", c.Exists(), kr.Keys(), c.PurposeIDs())
	}
}

func TestReaders(t *testing.T) {
	c := client.New(id)
	c.Rehydrate(events(client.Created{ID: id, Tenant: "acme", Kind: client.KindAPI, Name: "Payments client",
		Description: "d", By: "alice", At: t0}, memberAdded("sue", 1), memberAdded("sam", 2)))
	kr := c.Keyring()
	if c.ID() != id || c.Tenant() != "acme" || c.Kind() != client.KindAPI || c.Name() != "Payments client" ||
		c.Description() != "d" || !c.CreatedAt().Equal(t0) || !c.Exists() ||
		!reflect.DeepEqual(kr.Members(), []string{"sam", "sue"}) || !kr.MemberSince("sam").Equal(at(2)) {
		t.Fatal("readers disagree with the events")
	}
}

func TestWireNames(t *testing.T) {
	domaintest.WireNames(t, client.Codec,
		events(client.Created{}, client.MemberAdded{}, client.MemberRemoved{}, client.KeyUploaded{},
			client.KeyDeleted{}, client.PurposeAdded{}, client.PurposeRemoved{}, client.Deleted{}),
		[]string{"client.created.v1", "client.member_added.v1", "client.member_removed.v1", "client.key_uploaded.v1",
			"client.key_deleted.v1", "client.purpose_added.v1", "client.purpose_removed.v1", "client.deleted.v1"})
	if client.StreamName("c1") != "client-c1" {
		t.Errorf("StreamName = %q", client.StreamName("c1"))
	}
}

// Every event round-trips through JSON and the Codec, and the keyring events keep their
// flat wire shape.
func TestCodecRoundTrip(t *testing.T) {
	all := events(
		client.Created{ID: id, Tenant: "acme", Kind: client.KindEService, Name: "Payments client", Description: "d", By: "alice", At: t0},
		memberAdded("sam", 1), memberRemoved("sam", 2), keyUploaded("k1", "sam", 3),
		keyDeleted("k1", keyring.ReasonOwnerDeleted, "alice", 4), purposeAdded("p1", 5),
		client.PurposeRemoved{PurposeID: "p1", Reason: client.ReasonPurposeArchived, By: "keyledger", At: at(6)},
		client.Deleted{By: "alice", At: at(7)},
	)
	domaintest.RoundTrip(t, client.Codec, all)
	data, _ := json.Marshal(memberAdded("sam", 1))
	var flat map[string]any
	if err := json.Unmarshal(data, &flat); err != nil || flat["userId"] != "sam" || len(flat) != 3 {
		t.Errorf("member_added wire shape = %s, want {userId, by, at}", data)
	}
	if _, err := client.Codec.Decode("client.unknown.v1", []byte(`{}`)); !errors.Is(err, domain.ErrUnknownEvent) {
		t.Errorf("unknown type: %v", err)
	}
}

// The events a whole life decides round-trip too (times normalised by the aggregate).
func TestDecidedEventsRoundTrip(t *testing.T) {
	c := client.New(id)
	local := time.FixedZone("CET", 3600)
	when := time.Date(2025, 3, 4, 11, 0, 0, 987654321, local)
	steps := []error{
		c.Create(admin, client.Spec{Kind: client.KindEService, Name: "Payments client",
			Members: map[string]bool{"sam": true}, Keys: []keyring.NewKey{newKey("k1")}}, 10, when),
		c.UploadKey(sec, newKey("k2"), 10, when),
		c.AddPurpose(admin, purpose("p1"), when),
		c.RemoveMember(admin, "sam", when),
		c.Delete(admin, when),
	}
	for i, err := range steps {
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	domaintest.RoundTrip(t, client.Codec, c.Pending())
}

func TestErrorKinds(t *testing.T) {
	for _, tc := range []struct {
		err  *domain.Error
		kind domain.Kind
	}{
		{client.ErrAdminRequired, domain.KindForbidden},
		{client.ErrNotEServiceClient, domain.KindConflict},
		{client.ErrPurposeAlreadyLink, domain.KindConflict},
		{client.ErrPurposeNotLinked, domain.KindNotFound},
		{client.ErrPurposeNotLinkable, domain.KindConflict},
	} {
		if tc.err.Kind != tc.kind {
			t.Errorf("%s: kind %d, want %d", tc.err.Code, tc.err.Kind, tc.kind)
		}
	}
}
