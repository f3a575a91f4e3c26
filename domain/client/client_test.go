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
	"github.com/keyledger/keyledger/domain/keyring"
)

var t0 = time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)

func at(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }

var (
	admin      = domain.Actor{ID: "alice", Kind: "user", Tenant: "acme", Roles: domain.Roles{domain.RoleAdmin}}
	sec        = domain.Actor{ID: "sam", Kind: "user", Tenant: "acme", Roles: domain.Roles{domain.RoleSecurity}}
	sec2       = domain.Actor{ID: "sue", Kind: "user", Tenant: "acme", Roles: domain.Roles{domain.RoleSecurity}}
	member     = domain.Actor{ID: "mia", Kind: "user", Tenant: "acme", Roles: domain.Roles{domain.RoleMember}}
	otherAdmin = domain.Actor{ID: "oscar", Kind: "user", Tenant: "globex", Roles: domain.Roles{domain.RoleAdmin}}
	otherSam   = domain.Actor{ID: "sam", Kind: "user", Tenant: "globex", Roles: domain.Roles{domain.RoleSecurity}}
	operator   = domain.Actor{ID: "op", Kind: "operator", Operator: true}
	system     = domain.Actor{ID: "keyledger", Kind: "system"}
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

func events(es ...domain.Event) []domain.Event { return es }

// with returns a new history: base followed by more (never sharing base's array).
func with(base []domain.Event, more ...domain.Event) []domain.Event {
	return append(append([]domain.Event{}, base...), more...)
}

// tc is one given / when / then case. Exactly one of then and err is meaningful: a nil
// err means the command must succeed and emit exactly then (nil: nothing).
type tc struct {
	name   string
	given  []domain.Event
	when   func(c *client.Client) error
	then   []domain.Event
	err    error    // matched with errors.Is
	fields []string // for validation errors: the fields reported, in order
}

func run(t *testing.T, cases []tc) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := client.New(id)
			c.Rehydrate(tc.given)
			err := tc.when(c)
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
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if got := c.Pending(); len(got) != 0 || len(tc.then) != 0 {
				if !reflect.DeepEqual(got, tc.then) {
					t.Fatalf("events:\n got %#v\nwant %#v", got, tc.then)
				}
			}
			// Applying what was recorded to a fresh aggregate must give the same state.
			again := client.New(id)
			again.Rehydrate(append(append([]domain.Event{}, tc.given...), c.Pending()...))
			kr, krAgain := c.Keyring(), again.Keyring()
			if again.Exists() != c.Exists() || !reflect.DeepEqual(again.PurposeIDs(), c.PurposeIDs()) ||
				!reflect.DeepEqual(krAgain.Keys(), kr.Keys()) || !reflect.DeepEqual(krAgain.Members(), kr.Members()) {
				t.Fatalf("rehydrated state differs from decided state")
			}
		})
	}
}

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
		{name: "e-service client", when: create(spec(nil), 10), then: events(created(client.KindEService))},
		{name: "api client", when: create(spec(func(s *client.Spec) { s.Kind = client.KindAPI }), 10),
			then: events(created(client.KindAPI))},
		{name: "members sorted then keys in order",
			when: create(spec(func(s *client.Spec) {
				s.Members = map[string]bool{"sue": true, "sam": true}
				s.Keys = []keyring.NewKey{newKey("k2"), newKey("k1")}
			}), 10),
			then: events(created(client.KindEService), memberAdded("sam", 0), memberAdded("sue", 0),
				keyUploaded("k2", "alice", 0), keyUploaded("k1", "alice", 0))},
		{name: "name trimmed and description kept",
			when: create(spec(func(s *client.Spec) { s.Name = "  Payments client \t"; s.Description = "for payments" }), 10),
			then: events(client.Created{ID: id, Tenant: "acme", Kind: client.KindEService, Name: "Payments client",
				Description: "for payments", By: "alice", At: t0})},
		{name: "name of 5", when: create(spec(func(s *client.Spec) { s.Name = "abcde" }), 10),
			then: events(client.Created{ID: id, Tenant: "acme", Kind: client.KindEService, Name: "abcde", By: "alice", At: t0})},
		{name: "name of 60 multibyte characters",
			when: create(spec(func(s *client.Spec) { s.Name = strings.Repeat("è", 60) }), 10),
			then: events(client.Created{ID: id, Tenant: "acme", Kind: client.KindEService, Name: strings.Repeat("è", 60), By: "alice", At: t0})},
		{name: "name of 4", when: create(spec(func(s *client.Spec) { s.Name = "abcd" }), 10),
			err: domain.ErrValidation, fields: []string{"name"}},
		{name: "name of 4 after trimming", when: create(spec(func(s *client.Spec) { s.Name = "  abcd  " }), 10),
			err: domain.ErrValidation, fields: []string{"name"}},
		{name: "name of 61", when: create(spec(func(s *client.Spec) { s.Name = strings.Repeat("a", 61) }), 10),
			err: domain.ErrValidation, fields: []string{"name"}},
		{name: "description of 250",
			when: create(spec(func(s *client.Spec) { s.Description = strings.Repeat("d", 250) }), 10),
			then: events(client.Created{ID: id, Tenant: "acme", Kind: client.KindEService, Name: "Payments client",
				Description: strings.Repeat("d", 250), By: "alice", At: t0})},
		{name: "description of 251",
			when: create(spec(func(s *client.Spec) { s.Description = strings.Repeat("d", 251) }), 10),
			err:  domain.ErrValidation, fields: []string{"description"}},
		{name: "no kind", when: create(spec(func(s *client.Spec) { s.Kind = "" }), 10),
			err: domain.ErrValidation, fields: []string{"kind"}},
		{name: "unknown kind", when: create(spec(func(s *client.Spec) { s.Kind = "m2m" }), 10),
			err: domain.ErrValidation, fields: []string{"kind"}},
		{name: "every invalid field at once",
			when: create(client.Spec{Kind: "x", Name: "x", Description: strings.Repeat("d", 251)}, 10),
			err:  domain.ErrValidation, fields: []string{"kind", "name", "description"}},
		{name: "unregistered member",
			when: create(spec(func(s *client.Spec) { s.Members = map[string]bool{"sam": true, "ghost": false} }), 10),
			err:  keyring.ErrUserNotRegistered},
		{name: "more keys than the limit",
			when: create(spec(func(s *client.Spec) { s.Keys = []keyring.NewKey{newKey("k1"), newKey("k2")} }), 1),
			err:  keyring.ErrTooManyKeys},
		{name: "same kid twice",
			when: create(spec(func(s *client.Spec) { s.Keys = []keyring.NewKey{newKey("k1"), newKey("k1")} }), 10),
			err:  keyring.ErrKeyAlreadyExists},
		{name: "encryption key",
			when: create(spec(func(s *client.Spec) { k := newKey("k1"); k.Use = "enc"; s.Keys = []keyring.NewKey{k} }), 10),
			err:  keyring.ErrUnsupportedUse},
		{name: "security operator", when: func(c *client.Client) error { return c.Create(sec, spec(nil), 10, t0) },
			err: client.ErrAdminRequired},
		{name: "platform operator", when: func(c *client.Client) error { return c.Create(operator, spec(nil), 10, t0) },
			err: client.ErrAdminRequired},
		{name: "admin without tenant",
			when: func(c *client.Client) error {
				return c.Create(domain.Actor{ID: "x", Roles: domain.Roles{domain.RoleAdmin}}, spec(nil), 10, t0)
			},
			err: client.ErrAdminRequired},
		{name: "already exists", given: events(created(client.KindAPI)), when: create(spec(nil), 10),
			err: domain.ErrAlreadyExists},
		{name: "already existed and was deleted",
			given: events(created(client.KindAPI), client.Deleted{By: "alice", At: at(1)}), when: create(spec(nil), 10),
			err: domain.ErrAlreadyExists},
	})
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
		{name: "admin adds a registered user", given: base,
			when: func(c *client.Client) error { return c.AddMember(admin, "sue", true, at(2)) },
			then: events(memberAdded("sue", 2))},
		{name: "unregistered user", given: base,
			when: func(c *client.Client) error { return c.AddMember(admin, "ghost", false, at(2)) },
			err:  keyring.ErrUserNotRegistered},
		{name: "already a member", given: base,
			when: func(c *client.Client) error { return c.AddMember(admin, "sam", true, at(2)) },
			err:  keyring.ErrAlreadyMember},
		{name: "security operator who is a member cannot add", given: base,
			when: func(c *client.Client) error { return c.AddMember(sec, "sue", true, at(2)) },
			err:  keyring.ErrAdminRequired},
		{name: "plain member cannot add", given: base,
			when: func(c *client.Client) error { return c.AddMember(member, "sue", true, at(2)) },
			err:  keyring.ErrAdminRequired},
		{name: "another tenant's admin cannot add", given: base,
			when: func(c *client.Client) error { return c.AddMember(otherAdmin, "sue", true, at(2)) },
			err:  keyring.ErrAdminRequired},
		{name: "platform operator cannot add", given: base,
			when: func(c *client.Client) error { return c.AddMember(operator, "sue", true, at(2)) },
			err:  keyring.ErrAdminRequired},
		{name: "admin removes a member", given: base,
			when: func(c *client.Client) error { return c.RemoveMember(admin, "sam", at(2)) },
			then: events(memberRemoved("sam", 2))},
		{name: "removing a non-member", given: base,
			when: func(c *client.Client) error { return c.RemoveMember(admin, "sue", at(2)) },
			err:  keyring.ErrNotAMember},
		{name: "removing a removed member", given: with(base, memberRemoved("sam", 2)),
			when: func(c *client.Client) error { return c.RemoveMember(admin, "sam", at(3)) },
			err:  keyring.ErrNotAMember},
		{name: "re-adding a removed member", given: with(base, memberRemoved("sam", 2)),
			when: func(c *client.Client) error { return c.AddMember(admin, "sam", true, at(3)) },
			then: events(memberAdded("sam", 3))},
		{name: "security operator cannot remove", given: base,
			when: func(c *client.Client) error { return c.RemoveMember(sec, "sam", at(2)) },
			err:  keyring.ErrAdminRequired},
		{name: "another tenant's admin cannot remove", given: base,
			when: func(c *client.Client) error { return c.RemoveMember(otherAdmin, "sam", at(2)) },
			err:  keyring.ErrAdminRequired},
		{name: "no client",
			when: func(c *client.Client) error { return c.AddMember(admin, "sue", true, at(2)) },
			err:  domain.ErrNotFound},
		{name: "deleted client", given: with(base, client.Deleted{By: "alice", At: at(2)}),
			when: func(c *client.Client) error { return c.RemoveMember(admin, "sam", at(3)) },
			err:  domain.ErrNotFound},
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
		{name: "security operator member uploads", given: base, when: upload(sec, "k1", 10),
			then: events(keyUploaded("k1", "sam", 3))},
		{name: "admin uploads without being a member", given: base, when: upload(admin, "k1", 10),
			then: events(keyUploaded("k1", "alice", 3))},
		{name: "security operator not a member", given: events(created(client.KindEService)), when: upload(sec, "k1", 10),
			err: keyring.ErrKeyForbidden},
		{name: "security operator after removal", given: with(base, memberRemoved("sam", 2)), when: upload(sec, "k1", 10),
			err: keyring.ErrKeyForbidden},
		{name: "plain member who is a member", given: base, when: upload(member, "k1", 10),
			err: keyring.ErrKeyForbidden},
		{name: "same user id in another tenant", given: base, when: upload(otherSam, "k1", 10),
			err: keyring.ErrKeyForbidden},
		{name: "another tenant's admin", given: base, when: upload(otherAdmin, "k1", 10),
			err: keyring.ErrKeyForbidden},
		{name: "key name trimmed", given: base,
			when: func(c *client.Client) error {
				k := newKey("k1")
				k.Name = "  key k1  "
				return c.UploadKey(sec, k, 10, at(3))
			},
			then: events(keyUploaded("k1", "sam", 3))},
		{name: "empty key name", given: base,
			when: func(c *client.Client) error {
				k := newKey("k1")
				k.Name = "   "
				return c.UploadKey(sec, k, 10, at(3))
			},
			err: domain.ErrValidation, fields: []string{"name"}},
		{name: "key name of 61", given: base,
			when: func(c *client.Client) error {
				k := newKey("k1")
				k.Name = strings.Repeat("n", 61)
				return c.UploadKey(sec, k, 10, at(3))
			},
			err: domain.ErrValidation, fields: []string{"name"}},
		{name: "encryption key", given: base,
			when: func(c *client.Client) error {
				k := newKey("k1")
				k.Use = "enc"
				return c.UploadKey(sec, k, 10, at(3))
			},
			err: keyring.ErrUnsupportedUse},
		{name: "duplicate kid on the same client", given: withKeys, when: upload(admin, "k-sue", 10),
			err: keyring.ErrKeyAlreadyExists},
		{name: "at the limit", given: withKeys, when: upload(sec, "k3", 2), err: keyring.ErrTooManyKeys},
		{name: "below the limit", given: withKeys, when: upload(sec, "k3", 3), then: events(keyUploaded("k3", "sam", 3))},
		{name: "a deletion frees a place", given: with(withKeys, keyDeleted("k-sue", keyring.ReasonDeleted, "sue", 2)),
			when: upload(sec, "k3", 2), then: events(keyUploaded("k3", "sam", 3))},
		{name: "a deleted kid may come back", given: with(withKeys, keyDeleted("k-sue", keyring.ReasonDeleted, "sue", 2)),
			when: upload(sec2, "k-sue", 10), then: events(keyUploaded("k-sue", "sue", 3))},
		{name: "security operator deletes own key", given: withKeys, when: del(sec, "k-sam"),
			then: events(keyDeleted("k-sam", keyring.ReasonDeleted, "sam", 3))},
		{name: "security operator cannot delete another's key", given: withKeys, when: del(sec, "k-sue"),
			err: keyring.ErrNotOwnKey},
		{name: "admin deletes any key", given: withKeys, when: del(admin, "k-sue"),
			then: events(keyDeleted("k-sue", keyring.ReasonDeleted, "alice", 3))},
		{name: "removed security operator cannot delete own key", given: with(withKeys, memberRemoved("sam", 2)),
			when: del(sec, "k-sam"), err: keyring.ErrKeyForbidden},
		{name: "plain member cannot delete", given: withKeys, when: del(member, "k-sam"), err: keyring.ErrKeyForbidden},
		{name: "another tenant's admin cannot delete", given: withKeys, when: del(otherAdmin, "k-sam"),
			err: keyring.ErrKeyForbidden},
		{name: "unknown kid", given: withKeys, when: del(admin, "nope"), err: keyring.ErrKeyNotFound},
		{name: "already deleted kid", given: with(withKeys, keyDeleted("k-sam", keyring.ReasonDeleted, "sam", 2)),
			when: del(admin, "k-sam"), err: keyring.ErrKeyNotFound},
		{name: "upload to a deleted client", given: with(withKeys, client.Deleted{By: "alice", At: at(2)}),
			when: upload(admin, "k3", 10), err: domain.ErrNotFound},
		{name: "delete on no client", when: del(admin, "k-sam"), err: domain.ErrNotFound},
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
		{name: "admin links an active purpose", given: esClient,
			when: func(c *client.Client) error { return c.AddPurpose(admin, purpose("p1"), at(2)) },
			then: events(purposeAdded("p1", 2))},
		{name: "a second purpose", given: linked,
			when: func(c *client.Client) error { return c.AddPurpose(admin, purpose("p3"), at(2)) },
			then: events(purposeAdded("p3", 2))},
		{name: "api client", given: events(created(client.KindAPI)),
			when: func(c *client.Client) error { return c.AddPurpose(admin, purpose("p1"), at(2)) },
			err:  client.ErrNotEServiceClient},
		{name: "pending or archived purpose", given: esClient,
			when: func(c *client.Client) error {
				p := purpose("p1")
				p.Linkable = false
				return c.AddPurpose(admin, p, at(2))
			},
			err: client.ErrPurposeNotLinkable},
		{name: "another tenant's purpose", given: esClient,
			when: func(c *client.Client) error {
				p := purpose("p1")
				p.ConsumerTenant = "globex"
				return c.AddPurpose(admin, p, at(2))
			},
			err: domain.ErrNotFound},
		{name: "already linked", given: linked,
			when: func(c *client.Client) error { return c.AddPurpose(admin, purpose("p1"), at(2)) },
			err:  client.ErrPurposeAlreadyLink},
		{name: "security operator cannot link", given: esClient,
			when: func(c *client.Client) error { return c.AddPurpose(sec, purpose("p1"), at(2)) },
			err:  client.ErrAdminRequired},
		{name: "another tenant's admin cannot link", given: esClient,
			when: func(c *client.Client) error { return c.AddPurpose(otherAdmin, purpose("p1"), at(2)) },
			err:  client.ErrAdminRequired},
		{name: "link on a deleted client", given: with(esClient, client.Deleted{By: "alice", At: at(1)}),
			when: func(c *client.Client) error { return c.AddPurpose(admin, purpose("p1"), at(2)) },
			err:  domain.ErrNotFound},
		{name: "admin unlinks", given: linked,
			when: func(c *client.Client) error { return c.RemovePurpose(admin, "p1", at(2)) },
			then: events(client.PurposeRemoved{PurposeID: "p1", Reason: client.ReasonRemoved, By: "alice", At: at(2)})},
		{name: "unlinking a purpose not linked", given: linked,
			when: func(c *client.Client) error { return c.RemovePurpose(admin, "p3", at(2)) },
			err:  client.ErrPurposeNotLinked},
		{name: "unlink on a deleted client", given: with(linked, client.Deleted{By: "alice", At: at(1)}),
			when: func(c *client.Client) error { return c.RemovePurpose(admin, "p1", at(2)) },
			err:  domain.ErrNotFound},
		{name: "security operator cannot unlink", given: linked,
			when: func(c *client.Client) error { return c.RemovePurpose(sec, "p1", at(2)) },
			err:  client.ErrAdminRequired},
		{name: "archived purpose is unlinked", given: linked,
			when: func(c *client.Client) error { c.PurposeArchived(system, "p2", at(2)); return nil },
			then: events(client.PurposeRemoved{PurposeID: "p2", Reason: client.ReasonPurposeArchived, By: "keyledger", At: at(2)})},
		{name: "archived purpose not linked: nothing", given: linked,
			when: func(c *client.Client) error { c.PurposeArchived(system, "p3", at(2)); return nil }},
		{name: "archived purpose on a deleted client: nothing",
			given: with(linked, client.Deleted{By: "alice", At: at(1)}),
			when:  func(c *client.Client) error { c.PurposeArchived(system, "p1", at(2)); return nil }},
		{name: "archived purpose on no client: nothing",
			when: func(c *client.Client) error { c.PurposeArchived(system, "p1", at(2)); return nil }},
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
		{name: "keys, then purposes, then the client", given: full,
			when: func(c *client.Client) error { return c.Delete(admin, at(9)) },
			then: events(
				keyDeleted("k1", keyring.ReasonOwnerDeleted, "alice", 9),
				keyDeleted("k3", keyring.ReasonOwnerDeleted, "alice", 9),
				client.PurposeRemoved{PurposeID: "p1", Reason: client.ReasonClientDeleted, By: "alice", At: at(9)},
				client.PurposeRemoved{PurposeID: "p2", Reason: client.ReasonClientDeleted, By: "alice", At: at(9)},
				client.Deleted{By: "alice", At: at(9)})},
		{name: "an empty client", given: events(created(client.KindAPI)),
			when: func(c *client.Client) error { return c.Delete(admin, at(9)) },
			then: events(client.Deleted{By: "alice", At: at(9)})},
		{name: "security operator", given: full,
			when: func(c *client.Client) error { return c.Delete(sec, at(9)) }, err: client.ErrAdminRequired},
		{name: "another tenant's admin", given: full,
			when: func(c *client.Client) error { return c.Delete(otherAdmin, at(9)) }, err: client.ErrAdminRequired},
		{name: "twice", given: with(full, client.Deleted{By: "alice", At: at(8)}),
			when: func(c *client.Client) error { return c.Delete(admin, at(9)) }, err: domain.ErrNotFound},
		{name: "no client", when: func(c *client.Client) error { return c.Delete(admin, at(9)) }, err: domain.ErrNotFound},
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
	want := map[domain.Event]string{
		client.Created{}:        "client.created.v1",
		client.MemberAdded{}:    "client.member_added.v1",
		client.MemberRemoved{}:  "client.member_removed.v1",
		client.KeyUploaded{}:    "client.key_uploaded.v1",
		client.KeyDeleted{}:     "client.key_deleted.v1",
		client.PurposeAdded{}:   "client.purpose_added.v1",
		client.PurposeRemoved{}: "client.purpose_removed.v1",
		client.Deleted{}:        "client.deleted.v1",
	}
	for e, name := range want {
		if e.EventType() != name {
			t.Errorf("%T.EventType() = %q, want %q", e, e.EventType(), name)
		}
		if !client.Codec.Knows(name) {
			t.Errorf("Codec does not know %q", name)
		}
	}
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
	for _, e := range all {
		data, err := json.Marshal(e)
		if err != nil {
			t.Fatalf("marshal %T: %v", e, err)
		}
		got, err := client.Codec.Decode(e.EventType(), data)
		if err != nil {
			t.Fatalf("decode %s: %v", e.EventType(), err)
		}
		if !reflect.DeepEqual(got, e) {
			t.Errorf("%s round trip:\n got %#v\nwant %#v", e.EventType(), got, e)
		}
	}
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
	for _, e := range c.Pending() {
		data, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		got, err := client.Codec.Decode(e.EventType(), data)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, e) {
			t.Errorf("%s round trip:\n got %#v\nwant %#v", e.EventType(), got, e)
		}
	}
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
