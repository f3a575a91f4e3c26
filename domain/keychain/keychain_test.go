package keychain_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/domain/domaintest"
	"github.com/keyledger/keyledger/domain/keychain"
	"github.com/keyledger/keyledger/domain/keyring"
)

var t0 = time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)

func at(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }

var (
	admin      = domaintest.Admin("alice", "acme")
	sec        = domaintest.Security("sam", "acme")
	member     = domaintest.User("mia", "acme", domain.RoleMember)
	otherAdmin = domaintest.Admin("oscar", "globex")
	operator   = domaintest.Operator("op")
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

var (
	events = domaintest.Events
	with   = domaintest.With
)

type tc = domaintest.Case[*keychain.Keychain]

// run checks, after each success, that replaying the history gives the decided state.
// Creation may refuse after recording some events, so refusals are not checked for them.
var run = domaintest.Runner[*keychain.Keychain]{
	New: func() *keychain.Keychain { return keychain.New(id) },
	SameState: func(k, again *keychain.Keychain) bool {
		kr, krAgain := k.Keyring(), again.Keyring()
		return again.Exists() == k.Exists() && reflect.DeepEqual(again.EServiceIDs(), k.EServiceIDs()) &&
			reflect.DeepEqual(krAgain.Keys(), kr.Keys()) && reflect.DeepEqual(krAgain.Members(), kr.Members())
	},
	RefusalMayRecord: true,
}.Run

func TestCreate(t *testing.T) {
	create := func(spec keychain.Spec, maxKeys int) func(*keychain.Keychain) error {
		return func(k *keychain.Keychain) error { return k.Create(admin, spec, maxKeys, t0) }
	}
	named := func(name, desc string) keychain.Created {
		return keychain.Created{ID: id, Tenant: "acme", Name: name, Description: desc, By: "alice", At: t0}
	}
	run(t, []tc{
		{Name: "admin creates", When: create(keychain.Spec{Name: "Signing keys"}, 10), Then: events(created())},
		{Name: "members sorted then keys in order",
			When: create(keychain.Spec{Name: "Signing keys", Members: map[string]bool{"sue": true, "sam": true},
				Keys: []keyring.NewKey{newKey("k2"), newKey("k1")}}, 10),
			Then: events(created(), memberAdded("sam", 0), memberAdded("sue", 0),
				keyUploaded("k2", "alice", 0), keyUploaded("k1", "alice", 0))},
		{Name: "name trimmed", When: create(keychain.Spec{Name: " Signing keys ", Description: "prod"}, 10),
			Then: events(named("Signing keys", "prod"))},
		{Name: "name of 5", When: create(keychain.Spec{Name: "abcde"}, 10), Then: events(named("abcde", ""))},
		{Name: "name of 60 multibyte", When: create(keychain.Spec{Name: strings.Repeat("è", 60)}, 10),
			Then: events(named(strings.Repeat("è", 60), ""))},
		{Name: "name of 4", When: create(keychain.Spec{Name: "abcd"}, 10), Err: domain.ErrValidation, Fields: []string{"name"}},
		{Name: "name of 61", When: create(keychain.Spec{Name: strings.Repeat("a", 61)}, 10),
			Err: domain.ErrValidation, Fields: []string{"name"}},
		{Name: "description of 250", When: create(keychain.Spec{Name: "Signing keys", Description: strings.Repeat("d", 250)}, 10),
			Then: events(named("Signing keys", strings.Repeat("d", 250)))},
		{Name: "description of 251", When: create(keychain.Spec{Name: "Signing keys", Description: strings.Repeat("d", 251)}, 10),
			Err: domain.ErrValidation, Fields: []string{"description"}},
		{Name: "both invalid", When: create(keychain.Spec{Name: "", Description: strings.Repeat("d", 251)}, 10),
			Err: domain.ErrValidation, Fields: []string{"name", "description"}},
		{Name: "unregistered member",
			When: create(keychain.Spec{Name: "Signing keys", Members: map[string]bool{"ghost": false}}, 10),
			Err:  keyring.ErrUserNotRegistered},
		{Name: "more keys than the limit",
			When: create(keychain.Spec{Name: "Signing keys", Keys: []keyring.NewKey{newKey("k1"), newKey("k2")}}, 1),
			Err:  keyring.ErrTooManyKeys},
		{Name: "security operator", When: func(k *keychain.Keychain) error {
			return k.Create(sec, keychain.Spec{Name: "Signing keys"}, 10, t0)
		}, Err: keychain.ErrAdminRequired},
		{Name: "platform operator", When: func(k *keychain.Keychain) error {
			return k.Create(operator, keychain.Spec{Name: "Signing keys"}, 10, t0)
		}, Err: keychain.ErrAdminRequired},
		{Name: "already exists", Given: events(created()), When: create(keychain.Spec{Name: "Signing keys"}, 10),
			Err: domain.ErrAlreadyExists},
	})
}

func TestMembersAndKeys(t *testing.T) {
	base := events(created(), memberAdded("sam", 1), memberAdded("mia", 1))
	withKeys := with(base, keyUploaded("k-sam", "sam", 2), keyUploaded("k-alice", "alice", 2))
	run(t, []tc{
		{Name: "admin adds a member", Given: base,
			When: func(k *keychain.Keychain) error { return k.AddMember(admin, "sue", true, at(3)) },
			Then: events(memberAdded("sue", 3))},
		{Name: "unregistered member", Given: base,
			When: func(k *keychain.Keychain) error { return k.AddMember(admin, "ghost", false, at(3)) },
			Err:  keyring.ErrUserNotRegistered},
		{Name: "already a member", Given: base,
			When: func(k *keychain.Keychain) error { return k.AddMember(admin, "sam", true, at(3)) },
			Err:  keyring.ErrAlreadyMember},
		{Name: "security operator cannot add", Given: base,
			When: func(k *keychain.Keychain) error { return k.AddMember(sec, "sue", true, at(3)) },
			Err:  keyring.ErrAdminRequired},
		{Name: "admin removes a member", Given: base,
			When: func(k *keychain.Keychain) error { return k.RemoveMember(admin, "sam", at(3)) },
			Then: events(memberRemoved("sam", 3))},
		{Name: "removing a non-member", Given: base,
			When: func(k *keychain.Keychain) error { return k.RemoveMember(admin, "sue", at(3)) },
			Err:  keyring.ErrNotAMember},
		{Name: "another tenant's admin cannot remove", Given: base,
			When: func(k *keychain.Keychain) error { return k.RemoveMember(otherAdmin, "sam", at(3)) },
			Err:  keyring.ErrAdminRequired},
		{Name: "security operator member uploads", Given: base,
			When: func(k *keychain.Keychain) error { return k.UploadKey(sec, newKey("k1"), 10, at(3)) },
			Then: events(keyUploaded("k1", "sam", 3))},
		{Name: "security operator not a member", Given: events(created()),
			When: func(k *keychain.Keychain) error { return k.UploadKey(sec, newKey("k1"), 10, at(3)) },
			Err:  keyring.ErrKeyForbidden},
		{Name: "plain member", Given: base,
			When: func(k *keychain.Keychain) error { return k.UploadKey(member, newKey("k1"), 10, at(3)) },
			Err:  keyring.ErrKeyForbidden},
		{Name: "duplicate kid", Given: withKeys,
			When: func(k *keychain.Keychain) error { return k.UploadKey(admin, newKey("k-sam"), 10, at(3)) },
			Err:  keyring.ErrKeyAlreadyExists},
		{Name: "at the limit", Given: withKeys,
			When: func(k *keychain.Keychain) error { return k.UploadKey(admin, newKey("k3"), 2, at(3)) },
			Err:  keyring.ErrTooManyKeys},
		{Name: "security operator deletes own key", Given: withKeys,
			When: func(k *keychain.Keychain) error { return k.DeleteKey(sec, "k-sam", at(3)) },
			Then: events(keyDeleted("k-sam", keyring.ReasonDeleted, "sam", 3))},
		{Name: "security operator cannot delete another's key", Given: withKeys,
			When: func(k *keychain.Keychain) error { return k.DeleteKey(sec, "k-alice", at(3)) },
			Err:  keyring.ErrNotOwnKey},
		{Name: "admin deletes any key", Given: withKeys,
			When: func(k *keychain.Keychain) error { return k.DeleteKey(admin, "k-sam", at(3)) },
			Then: events(keyDeleted("k-sam", keyring.ReasonDeleted, "alice", 3))},
		{Name: "unknown kid", Given: withKeys,
			When: func(k *keychain.Keychain) error { return k.DeleteKey(admin, "nope", at(3)) },
			Err:  keyring.ErrKeyNotFound},
		{Name: "no keychain",
			When: func(k *keychain.Keychain) error { return k.UploadKey(admin, newKey("k1"), 10, at(3)) },
			Err:  domain.ErrNotFound},
		{Name: "remove member on no keychain",
			When: func(k *keychain.Keychain) error { return k.RemoveMember(admin, "sam", at(3)) },
			Err:  domain.ErrNotFound},
		{Name: "delete key on a deleted keychain", Given: with(withKeys, keychain.Deleted{By: "alice", At: at(2)}),
			When: func(k *keychain.Keychain) error { return k.DeleteKey(admin, "k-sam", at(3)) },
			Err:  domain.ErrNotFound},
		{Name: "deleted keychain", Given: with(base, keychain.Deleted{By: "alice", At: at(2)}),
			When: func(k *keychain.Keychain) error { return k.AddMember(admin, "sue", true, at(3)) },
			Err:  domain.ErrNotFound},
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
		{Name: "admin adds an own e-service", Given: base,
			When: func(k *keychain.Keychain) error { return k.AddEService(admin, own("es1"), at(2)) },
			Then: events(esAdded("es1", 2))},
		{Name: "another e-service", Given: linked,
			When: func(k *keychain.Keychain) error { return k.AddEService(admin, own("es3"), at(2)) },
			Then: events(esAdded("es3", 2))},
		{Name: "another tenant's e-service", Given: base,
			When: func(k *keychain.Keychain) error {
				return k.AddEService(admin, keychain.EServiceInfo{ID: "es9", ProducerTenant: "globex"}, at(2))
			},
			Err: domain.ErrNotFound},
		{Name: "already added", Given: linked,
			When: func(k *keychain.Keychain) error { return k.AddEService(admin, own("es1"), at(2)) },
			Err:  keychain.ErrEServiceAlreadyAdded},
		{Name: "re-adding a removed e-service", Given: with(linked, esRemoved("es1", 2)),
			When: func(k *keychain.Keychain) error { return k.AddEService(admin, own("es1"), at(3)) },
			Then: events(esAdded("es1", 3))},
		{Name: "security operator cannot add", Given: with(base, memberAdded("sam", 1)),
			When: func(k *keychain.Keychain) error { return k.AddEService(sec, own("es1"), at(2)) },
			Err:  keychain.ErrAdminRequired},
		{Name: "another tenant's admin cannot add its own e-service", Given: base,
			When: func(k *keychain.Keychain) error {
				return k.AddEService(otherAdmin, keychain.EServiceInfo{ID: "es9", ProducerTenant: "globex"}, at(2))
			},
			Err: keychain.ErrAdminRequired},
		{Name: "add on no keychain",
			When: func(k *keychain.Keychain) error { return k.AddEService(admin, own("es1"), at(2)) },
			Err:  domain.ErrNotFound},
		{Name: "admin removes", Given: linked,
			When: func(k *keychain.Keychain) error { return k.RemoveEService(admin, "es1", at(2)) },
			Then: events(esRemoved("es1", 2))},
		{Name: "removing one not added", Given: linked,
			When: func(k *keychain.Keychain) error { return k.RemoveEService(admin, "es3", at(2)) },
			Err:  keychain.ErrEServiceNotAdded},
		{Name: "removing twice", Given: with(linked, esRemoved("es1", 2)),
			When: func(k *keychain.Keychain) error { return k.RemoveEService(admin, "es1", at(3)) },
			Err:  keychain.ErrEServiceNotAdded},
		{Name: "security operator cannot remove", Given: linked,
			When: func(k *keychain.Keychain) error { return k.RemoveEService(sec, "es1", at(2)) },
			Err:  keychain.ErrAdminRequired},
		{Name: "remove on a deleted keychain", Given: with(linked, keychain.Deleted{By: "alice", At: at(2)}),
			When: func(k *keychain.Keychain) error { return k.RemoveEService(admin, "es1", at(3)) },
			Err:  domain.ErrNotFound},
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
		{Name: "keys, then e-services, then the keychain", Given: full,
			When: func(k *keychain.Keychain) error { return k.Delete(admin, at(9)) },
			Then: events(keyDeleted("k1", keyring.ReasonOwnerDeleted, "alice", 9),
				keyDeleted("k2", keyring.ReasonOwnerDeleted, "alice", 9),
				esRemoved("es1", 9), esRemoved("es2", 9),
				keychain.Deleted{By: "alice", At: at(9)})},
		{Name: "an empty keychain", Given: events(created()),
			When: func(k *keychain.Keychain) error { return k.Delete(admin, at(9)) },
			Then: events(keychain.Deleted{By: "alice", At: at(9)})},
		{Name: "security operator", Given: full,
			When: func(k *keychain.Keychain) error { return k.Delete(sec, at(9)) }, Err: keychain.ErrAdminRequired},
		{Name: "another tenant's admin", Given: full,
			When: func(k *keychain.Keychain) error { return k.Delete(otherAdmin, at(9)) }, Err: keychain.ErrAdminRequired},
		{Name: "twice", Given: with(full, keychain.Deleted{By: "alice", At: at(8)}),
			When: func(k *keychain.Keychain) error { return k.Delete(admin, at(9)) }, Err: domain.ErrNotFound},
		{Name: "no keychain", When: func(k *keychain.Keychain) error { return k.Delete(admin, at(9)) }, Err: domain.ErrNotFound},
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
	domaintest.WireNames(t, keychain.Codec, all, names)
	domaintest.RoundTrip(t, keychain.Codec, all)
}
