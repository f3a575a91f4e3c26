package keychain_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/domain/keychain"
	"github.com/keyledger/keyledger/domain/keyring"
)

var t0 = time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)

func at(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }

var (
	admin      = domain.Actor{ID: "alice", Kind: "user", Tenant: "acme", Roles: domain.Roles{domain.RoleAdmin}}
	sec        = domain.Actor{ID: "sam", Kind: "user", Tenant: "acme", Roles: domain.Roles{domain.RoleSecurity}}
	member     = domain.Actor{ID: "mia", Kind: "user", Tenant: "acme", Roles: domain.Roles{domain.RoleMember}}
	otherAdmin = domain.Actor{ID: "oscar", Kind: "user", Tenant: "globex", Roles: domain.Roles{domain.RoleAdmin}}
	operator   = domain.Actor{ID: "op", Kind: "operator", Operator: true}
)

const id = "kc1"

func created() keychain.Created {
	return keychain.Created{ID: id, Tenant: "acme", Name: "Signing keys", By: "alice", At: t0}
}

func memberAdded(user string, min int) keychain.MemberAdded {
	return keychain.MemberAdded{MemberAdded: keyring.MemberAdded{UserID: user, By: "alice", At: at(min)}}
}

func memberRemoved(user string, min int) keychain.MemberRemoved {
	return keychain.MemberRemoved{MemberRemoved: keyring.MemberRemoved{UserID: user, By: "alice", At: at(min)}}
}

func newKey(kid string) keyring.NewKey {
	return keyring.NewKey{KID: kid, Name: "key " + kid, Use: "sig", Alg: "RS256", KeyType: "RSA", PEM: "PEM-" + kid}
}

func keyUploaded(kid, by string, min int) keychain.KeyUploaded {
	return keychain.KeyUploaded{KeyUploaded: keyring.KeyUploaded{KID: kid, Name: "key " + kid, Use: "sig", Alg: "RS256",
		KeyType: "RSA", PEM: "PEM-" + kid, UploadedBy: by, At: at(min)}}
}

func keyDeleted(kid, reason, by string, min int) keychain.KeyDeleted {
	return keychain.KeyDeleted{KeyDeleted: keyring.KeyDeleted{KID: kid, Reason: reason, By: by, At: at(min)}}
}

func esAdded(es string, min int) keychain.EServiceAdded {
	return keychain.EServiceAdded{EServiceID: es, By: "alice", At: at(min)}
}

func esRemoved(es string, min int) keychain.EServiceRemoved {
	return keychain.EServiceRemoved{EServiceID: es, By: "alice", At: at(min)}
}

func own(es string) keychain.EServiceInfo {
	return keychain.EServiceInfo{ID: es, ProducerTenant: "acme"}
}

func events(es ...domain.Event) []domain.Event { return es }

// with returns a new history: base followed by more (never sharing base's array).
func with(base []domain.Event, more ...domain.Event) []domain.Event {
	return append(append([]domain.Event{}, base...), more...)
}

type tc struct {
	name   string
	given  []domain.Event
	when   func(k *keychain.Keychain) error
	then   []domain.Event
	err    error
	fields []string
}

func run(t *testing.T, cases []tc) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k := keychain.New(id)
			k.Rehydrate(tc.given)
			err := tc.when(k)
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
			if got := k.Pending(); len(got) != 0 || len(tc.then) != 0 {
				if !reflect.DeepEqual(got, tc.then) {
					t.Fatalf("events:\n got %#v\nwant %#v", got, tc.then)
				}
			}
			again := keychain.New(id)
			again.Rehydrate(with(tc.given, k.Pending()...))
			kr, krAgain := k.Keyring(), again.Keyring()
			if again.Exists() != k.Exists() || !reflect.DeepEqual(again.EServiceIDs(), k.EServiceIDs()) ||
				!reflect.DeepEqual(krAgain.Keys(), kr.Keys()) || !reflect.DeepEqual(krAgain.Members(), kr.Members()) {
				t.Fatalf("rehydrated state differs from decided state")
			}
		})
	}
}

func TestCreate(t *testing.T) {
	create := func(spec keychain.Spec, maxKeys int) func(*keychain.Keychain) error {
		return func(k *keychain.Keychain) error { return k.Create(admin, spec, maxKeys, t0) }
	}
	named := func(name, desc string) keychain.Created {
		return keychain.Created{ID: id, Tenant: "acme", Name: name, Description: desc, By: "alice", At: t0}
	}
	run(t, []tc{
		{name: "admin creates", when: create(keychain.Spec{Name: "Signing keys"}, 10), then: events(created())},
		{name: "members sorted then keys in order",
			when: create(keychain.Spec{Name: "Signing keys", Members: map[string]bool{"sue": true, "sam": true},
				Keys: []keyring.NewKey{newKey("k2"), newKey("k1")}}, 10),
			then: events(created(), memberAdded("sam", 0), memberAdded("sue", 0),
				keyUploaded("k2", "alice", 0), keyUploaded("k1", "alice", 0))},
		{name: "name trimmed", when: create(keychain.Spec{Name: " Signing keys ", Description: "prod"}, 10),
			then: events(named("Signing keys", "prod"))},
		{name: "name of 5", when: create(keychain.Spec{Name: "abcde"}, 10), then: events(named("abcde", ""))},
		{name: "name of 60 multibyte", when: create(keychain.Spec{Name: strings.Repeat("è", 60)}, 10),
			then: events(named(strings.Repeat("è", 60), ""))},
		{name: "name of 4", when: create(keychain.Spec{Name: "abcd"}, 10), err: domain.ErrValidation, fields: []string{"name"}},
		{name: "name of 61", when: create(keychain.Spec{Name: strings.Repeat("a", 61)}, 10),
			err: domain.ErrValidation, fields: []string{"name"}},
		{name: "description of 250", when: create(keychain.Spec{Name: "Signing keys", Description: strings.Repeat("d", 250)}, 10),
			then: events(named("Signing keys", strings.Repeat("d", 250)))},
		{name: "description of 251", when: create(keychain.Spec{Name: "Signing keys", Description: strings.Repeat("d", 251)}, 10),
			err: domain.ErrValidation, fields: []string{"description"}},
		{name: "both invalid", when: create(keychain.Spec{Name: "", Description: strings.Repeat("d", 251)}, 10),
			err: domain.ErrValidation, fields: []string{"name", "description"}},
		{name: "unregistered member",
			when: create(keychain.Spec{Name: "Signing keys", Members: map[string]bool{"ghost": false}}, 10),
			err:  keyring.ErrUserNotRegistered},
		{name: "more keys than the limit",
			when: create(keychain.Spec{Name: "Signing keys", Keys: []keyring.NewKey{newKey("k1"), newKey("k2")}}, 1),
			err:  keyring.ErrTooManyKeys},
		{name: "security operator", when: func(k *keychain.Keychain) error {
			return k.Create(sec, keychain.Spec{Name: "Signing keys"}, 10, t0)
		}, err: keychain.ErrAdminRequired},
		{name: "platform operator", when: func(k *keychain.Keychain) error {
			return k.Create(operator, keychain.Spec{Name: "Signing keys"}, 10, t0)
		}, err: keychain.ErrAdminRequired},
		{name: "already exists", given: events(created()), when: create(keychain.Spec{Name: "Signing keys"}, 10),
			err: domain.ErrAlreadyExists},
	})
}

func TestMembersAndKeys(t *testing.T) {
	base := events(created(), memberAdded("sam", 1), memberAdded("mia", 1))
	withKeys := with(base, keyUploaded("k-sam", "sam", 2), keyUploaded("k-alice", "alice", 2))
	run(t, []tc{
		{name: "admin adds a member", given: base,
			when: func(k *keychain.Keychain) error { return k.AddMember(admin, "sue", true, at(3)) },
			then: events(memberAdded("sue", 3))},
		{name: "unregistered member", given: base,
			when: func(k *keychain.Keychain) error { return k.AddMember(admin, "ghost", false, at(3)) },
			err:  keyring.ErrUserNotRegistered},
		{name: "already a member", given: base,
			when: func(k *keychain.Keychain) error { return k.AddMember(admin, "sam", true, at(3)) },
			err:  keyring.ErrAlreadyMember},
		{name: "security operator cannot add", given: base,
			when: func(k *keychain.Keychain) error { return k.AddMember(sec, "sue", true, at(3)) },
			err:  keyring.ErrAdminRequired},
		{name: "admin removes a member", given: base,
			when: func(k *keychain.Keychain) error { return k.RemoveMember(admin, "sam", at(3)) },
			then: events(memberRemoved("sam", 3))},
		{name: "removing a non-member", given: base,
			when: func(k *keychain.Keychain) error { return k.RemoveMember(admin, "sue", at(3)) },
			err:  keyring.ErrNotAMember},
		{name: "another tenant's admin cannot remove", given: base,
			when: func(k *keychain.Keychain) error { return k.RemoveMember(otherAdmin, "sam", at(3)) },
			err:  keyring.ErrAdminRequired},
		{name: "security operator member uploads", given: base,
			when: func(k *keychain.Keychain) error { return k.UploadKey(sec, newKey("k1"), 10, at(3)) },
			then: events(keyUploaded("k1", "sam", 3))},
		{name: "security operator not a member", given: events(created()),
			when: func(k *keychain.Keychain) error { return k.UploadKey(sec, newKey("k1"), 10, at(3)) },
			err:  keyring.ErrKeyForbidden},
		{name: "plain member", given: base,
			when: func(k *keychain.Keychain) error { return k.UploadKey(member, newKey("k1"), 10, at(3)) },
			err:  keyring.ErrKeyForbidden},
		{name: "duplicate kid", given: withKeys,
			when: func(k *keychain.Keychain) error { return k.UploadKey(admin, newKey("k-sam"), 10, at(3)) },
			err:  keyring.ErrKeyAlreadyExists},
		{name: "at the limit", given: withKeys,
			when: func(k *keychain.Keychain) error { return k.UploadKey(admin, newKey("k3"), 2, at(3)) },
			err:  keyring.ErrTooManyKeys},
		{name: "security operator deletes own key", given: withKeys,
			when: func(k *keychain.Keychain) error { return k.DeleteKey(sec, "k-sam", at(3)) },
			then: events(keyDeleted("k-sam", keyring.ReasonDeleted, "sam", 3))},
		{name: "security operator cannot delete another's key", given: withKeys,
			when: func(k *keychain.Keychain) error { return k.DeleteKey(sec, "k-alice", at(3)) },
			err:  keyring.ErrNotOwnKey},
		{name: "admin deletes any key", given: withKeys,
			when: func(k *keychain.Keychain) error { return k.DeleteKey(admin, "k-sam", at(3)) },
			then: events(keyDeleted("k-sam", keyring.ReasonDeleted, "alice", 3))},
		{name: "unknown kid", given: withKeys,
			when: func(k *keychain.Keychain) error { return k.DeleteKey(admin, "nope", at(3)) },
			err:  keyring.ErrKeyNotFound},
		{name: "no keychain",
			when: func(k *keychain.Keychain) error { return k.UploadKey(admin, newKey("k1"), 10, at(3)) },
			err:  domain.ErrNotFound},
		{name: "remove member on no keychain",
			when: func(k *keychain.Keychain) error { return k.RemoveMember(admin, "sam", at(3)) },
			err:  domain.ErrNotFound},
		{name: "delete key on a deleted keychain", given: with(withKeys, keychain.Deleted{By: "alice", At: at(2)}),
			when: func(k *keychain.Keychain) error { return k.DeleteKey(admin, "k-sam", at(3)) },
			err:  domain.ErrNotFound},
		{name: "deleted keychain", given: with(base, keychain.Deleted{By: "alice", At: at(2)}),
			when: func(k *keychain.Keychain) error { return k.AddMember(admin, "sue", true, at(3)) },
			err:  domain.ErrNotFound},
	})
}

func TestUploaderRemoved(t *testing.T) {
	k := keychain.New(id)
	k.Rehydrate(events(created(), memberAdded("sam", 1), keyUploaded("k-sam", "sam", 2)))
	if err := k.RemoveMember(admin, "sam", at(5)); err != nil {
		t.Fatal(err)
	}
	kr := k.Keyring()
	key, ok := kr.Key("k-sam")
	if !ok {
		t.Fatal("removing a member removed their key")
	}
	if removed, since := kr.UploaderRemoved(key); !removed || !since.Equal(at(5)) {
		t.Fatalf("UploaderRemoved = %v, %v; want true, %v", removed, since, at(5))
	}
	if err := k.AddMember(admin, "sam", true, at(6)); err != nil {
		t.Fatal(err)
	}
	kr = k.Keyring()
	if removed, _ := kr.UploaderRemoved(key); removed {
		t.Fatal("re-adding the member did not clear the flag")
	}
}

func TestEServices(t *testing.T) {
	base := events(created())
	linked := events(created(), esAdded("es1", 1), esAdded("es2", 1))
	run(t, []tc{
		{name: "admin adds an own e-service", given: base,
			when: func(k *keychain.Keychain) error { return k.AddEService(admin, own("es1"), at(2)) },
			then: events(esAdded("es1", 2))},
		{name: "another e-service", given: linked,
			when: func(k *keychain.Keychain) error { return k.AddEService(admin, own("es3"), at(2)) },
			then: events(esAdded("es3", 2))},
		{name: "another tenant's e-service", given: base,
			when: func(k *keychain.Keychain) error {
				return k.AddEService(admin, keychain.EServiceInfo{ID: "es9", ProducerTenant: "globex"}, at(2))
			},
			err: domain.ErrNotFound},
		{name: "already added", given: linked,
			when: func(k *keychain.Keychain) error { return k.AddEService(admin, own("es1"), at(2)) },
			err:  keychain.ErrEServiceAlreadyAdded},
		{name: "re-adding a removed e-service", given: with(linked, esRemoved("es1", 2)),
			when: func(k *keychain.Keychain) error { return k.AddEService(admin, own("es1"), at(3)) },
			then: events(esAdded("es1", 3))},
		{name: "security operator cannot add", given: with(base, memberAdded("sam", 1)),
			when: func(k *keychain.Keychain) error { return k.AddEService(sec, own("es1"), at(2)) },
			err:  keychain.ErrAdminRequired},
		{name: "another tenant's admin cannot add its own e-service", given: base,
			when: func(k *keychain.Keychain) error {
				return k.AddEService(otherAdmin, keychain.EServiceInfo{ID: "es9", ProducerTenant: "globex"}, at(2))
			},
			err: keychain.ErrAdminRequired},
		{name: "add on no keychain",
			when: func(k *keychain.Keychain) error { return k.AddEService(admin, own("es1"), at(2)) },
			err:  domain.ErrNotFound},
		{name: "admin removes", given: linked,
			when: func(k *keychain.Keychain) error { return k.RemoveEService(admin, "es1", at(2)) },
			then: events(esRemoved("es1", 2))},
		{name: "removing one not added", given: linked,
			when: func(k *keychain.Keychain) error { return k.RemoveEService(admin, "es3", at(2)) },
			err:  keychain.ErrEServiceNotAdded},
		{name: "removing twice", given: with(linked, esRemoved("es1", 2)),
			when: func(k *keychain.Keychain) error { return k.RemoveEService(admin, "es1", at(3)) },
			err:  keychain.ErrEServiceNotAdded},
		{name: "security operator cannot remove", given: linked,
			when: func(k *keychain.Keychain) error { return k.RemoveEService(sec, "es1", at(2)) },
			err:  keychain.ErrAdminRequired},
		{name: "remove on a deleted keychain", given: with(linked, keychain.Deleted{By: "alice", At: at(2)}),
			when: func(k *keychain.Keychain) error { return k.RemoveEService(admin, "es1", at(3)) },
			err:  domain.ErrNotFound},
	})
}

func TestRemoveEServiceKeepsOthers(t *testing.T) {
	k := keychain.New(id)
	k.Rehydrate(events(created(), esAdded("es1", 1), esAdded("es2", 1)))
	if err := k.RemoveEService(admin, "es1", at(2)); err != nil {
		t.Fatal(err)
	}
	if got := k.EServiceIDs(); !reflect.DeepEqual(got, []string{"es2"}) || k.HasEService("es1") || !k.HasEService("es2") {
		t.Fatalf("EServiceIDs = %v", got)
	}
}

func TestDelete(t *testing.T) {
	full := events(created(), memberAdded("sam", 1), keyUploaded("k1", "sam", 2), keyUploaded("k2", "alice", 2),
		esAdded("es2", 3), esAdded("es1", 3))
	run(t, []tc{
		{name: "keys, then e-services, then the keychain", given: full,
			when: func(k *keychain.Keychain) error { return k.Delete(admin, at(9)) },
			then: events(keyDeleted("k1", keyring.ReasonOwnerDeleted, "alice", 9),
				keyDeleted("k2", keyring.ReasonOwnerDeleted, "alice", 9),
				esRemoved("es1", 9), esRemoved("es2", 9),
				keychain.Deleted{By: "alice", At: at(9)})},
		{name: "an empty keychain", given: events(created()),
			when: func(k *keychain.Keychain) error { return k.Delete(admin, at(9)) },
			then: events(keychain.Deleted{By: "alice", At: at(9)})},
		{name: "security operator", given: full,
			when: func(k *keychain.Keychain) error { return k.Delete(sec, at(9)) }, err: keychain.ErrAdminRequired},
		{name: "another tenant's admin", given: full,
			when: func(k *keychain.Keychain) error { return k.Delete(otherAdmin, at(9)) }, err: keychain.ErrAdminRequired},
		{name: "twice", given: with(full, keychain.Deleted{By: "alice", At: at(8)}),
			when: func(k *keychain.Keychain) error { return k.Delete(admin, at(9)) }, err: domain.ErrNotFound},
		{name: "no keychain", when: func(k *keychain.Keychain) error { return k.Delete(admin, at(9)) }, err: domain.ErrNotFound},
	})
}

func TestReaders(t *testing.T) {
	k := keychain.New(id)
	k.Rehydrate(events(keychain.Created{ID: id, Tenant: "acme", Name: "Signing keys", Description: "d", By: "alice", At: t0}))
	if k.ID() != id || k.Tenant() != "acme" || k.Name() != "Signing keys" || k.Description() != "d" ||
		!k.CreatedAt().Equal(t0) || !k.Exists() || keychain.StreamName("x") != "keychain-x" {
		t.Fatal("readers disagree with the events")
	}
}

func TestCodecRoundTrip(t *testing.T) {
	all := events(
		keychain.Created{ID: id, Tenant: "acme", Name: "Signing keys", Description: "d", By: "alice", At: t0},
		memberAdded("sam", 1), memberRemoved("sam", 2), keyUploaded("k1", "sam", 3),
		keyDeleted("k1", keyring.ReasonOwnerDeleted, "alice", 4), esAdded("es1", 5), esRemoved("es1", 6),
		keychain.Deleted{By: "alice", At: at(7)},
	)
	names := []string{"keychain.created.v1", "keychain.member_added.v1", "keychain.member_removed.v1",
		"keychain.key_uploaded.v1", "keychain.key_deleted.v1", "keychain.eservice_added.v1",
		"keychain.eservice_removed.v1", "keychain.deleted.v1"}
	for i, e := range all {
		if e.EventType() != names[i] {
			t.Errorf("%T.EventType() = %q, want %q", e, e.EventType(), names[i])
		}
		data, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		got, err := keychain.Codec.Decode(e.EventType(), data)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, e) {
			t.Errorf("%s round trip:\n got %#v\nwant %#v", e.EventType(), got, e)
		}
	}
}
