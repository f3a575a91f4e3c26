// Package keyring holds what clients and producer keychains share: members (registered
// users of the tenant who may operate on it) and uploaded public keys, with the rules
// about who may change them. It is state plus decisions; the owning aggregate wraps the
// payloads below in its own event types (client.… or keychain.…) and applies them here.
package keyring

import (
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/keyledger/keyledger/domain"
)

// MemberAdded makes a registered user a member.
type MemberAdded struct {
	UserID string    `json:"userId"`
	By     string    `json:"by"`
	At     time.Time `json:"at"`
}

// MemberRemoved ends a membership. The keys the member uploaded stay valid but are
// flagged for replacement.
type MemberRemoved struct {
	UserID string    `json:"userId"`
	By     string    `json:"by"`
	At     time.Time `json:"at"`
}

// KeyUploaded registers a public key. PEM is the public key only; no secret is ever
// stored.
type KeyUploaded struct {
	KID        string    `json:"kid"`
	Name       string    `json:"name"`
	Use        string    `json:"use"`
	Alg        string    `json:"alg"`
	KeyType    string    `json:"kty"`
	PEM        string    `json:"pem"`
	UploadedBy string    `json:"uploadedBy"`
	At         time.Time `json:"at"`
}

// KeyDeleted removes a key: from that moment no voucher request signed with it is
// accepted.
type KeyDeleted struct {
	KID    string    `json:"kid"`
	Reason string    `json:"reason"` // "deleted", or "owner_deleted" when the whole client/keychain went
	By     string    `json:"by"`
	At     time.Time `json:"at"`
}

// Key deletion reasons.
const (
	ReasonDeleted      = "deleted"
	ReasonOwnerDeleted = "owner_deleted"
)

// Errors of members and keys.
var (
	ErrAdminRequired     = domain.NewError(domain.KindForbidden, "admin_required", "only tenant administrators manage members")
	ErrKeyForbidden      = domain.NewError(domain.KindForbidden, "key_forbidden", "keys are managed by administrators and by security operators who are members")
	ErrNotOwnKey         = domain.NewError(domain.KindForbidden, "not_own_key", "security operators may delete only the keys they uploaded")
	ErrUserNotRegistered = domain.NewError(domain.KindConflict, "user_not_registered", "only users registered in the tenant can become members")
	ErrAlreadyMember     = domain.NewError(domain.KindConflict, "already_member", "the user is already a member")
	ErrNotAMember        = domain.NewError(domain.KindNotFound, "not_a_member", "the user is not a member")
	ErrKeyAlreadyExists  = domain.NewError(domain.KindConflict, "key_already_registered", "a key with this kid is already registered")
	ErrKeyNotFound       = domain.NewError(domain.KindNotFound, "key_not_found", "no key with this kid")
	ErrTooManyKeys       = domain.NewError(domain.KindConflict, "too_many_keys", "the maximum number of keys is reached")
	ErrUnsupportedUse    = domain.NewError(domain.KindInvalid, "unsupported_key_use", "key use must be \"sig\"")
)

// Key is a registered key as the keyring sees it.
type Key struct {
	KID, Name, Use, Alg, KeyType, PEM string
	UploadedBy                        string
	UploadedAt                        time.Time
}

// NewKey is a parsed, validated public key to upload (parsing is domain/keys' job).
type NewKey struct {
	KID, Name, Use, Alg, KeyType, PEM string
}

// Keyring is the state.
type Keyring struct {
	members map[string]time.Time // user id → added at
	removed map[string]time.Time // user id → removed at (while not a member again)
	keys    map[string]Key
	order   []string // kids in upload order
}

// New returns an empty keyring.
func New() Keyring {
	return Keyring{members: map[string]time.Time{}, removed: map[string]time.Time{}, keys: map[string]Key{}}
}

// Apply folds one payload into the state. It never fails.
func (k *Keyring) Apply(e any) {
	switch e := e.(type) {
	case MemberAdded:
		k.members[e.UserID] = e.At
		delete(k.removed, e.UserID)
	case MemberRemoved:
		delete(k.members, e.UserID)
		k.removed[e.UserID] = e.At
	case KeyUploaded:
		k.keys[e.KID] = Key{KID: e.KID, Name: e.Name, Use: e.Use, Alg: e.Alg, KeyType: e.KeyType, PEM: e.PEM, UploadedBy: e.UploadedBy, UploadedAt: e.At}
		k.order = append(k.order, e.KID)
	case KeyDeleted:
		delete(k.keys, e.KID)
		for i, kid := range k.order {
			if kid == e.KID {
				k.order = append(k.order[:i], k.order[i+1:]...)
				break
			}
		}
	}
}

func isAdmin(actor domain.Actor, tenant string) bool {
	return actor.Tenant == tenant && actor.Roles.Has(domain.RoleAdmin)
}

// AddMember decides a new membership. registered says whether the user is registered in
// the tenant now (the command layer looks it up).
func (k *Keyring) AddMember(actor domain.Actor, tenant, userID string, registered bool, at time.Time) (MemberAdded, error) {
	if !isAdmin(actor, tenant) {
		return MemberAdded{}, ErrAdminRequired
	}
	if !registered {
		return MemberAdded{}, ErrUserNotRegistered
	}
	if _, ok := k.members[userID]; ok {
		return MemberAdded{}, ErrAlreadyMember
	}
	return MemberAdded{UserID: userID, By: actor.ID, At: domain.Time(at)}, nil
}

// RemoveMember decides the end of a membership.
func (k *Keyring) RemoveMember(actor domain.Actor, tenant, userID string, at time.Time) (MemberRemoved, error) {
	if !isAdmin(actor, tenant) {
		return MemberRemoved{}, ErrAdminRequired
	}
	if _, ok := k.members[userID]; !ok {
		return MemberRemoved{}, ErrNotAMember
	}
	return MemberRemoved{UserID: userID, By: actor.ID, At: domain.Time(at)}, nil
}

// mayManageKeys: admins, and security operators who are members.
func (k *Keyring) mayManageKeys(actor domain.Actor, tenant string) bool {
	if isAdmin(actor, tenant) {
		return true
	}
	_, member := k.members[actor.ID]
	return actor.Tenant == tenant && actor.Roles.Has(domain.RoleSecurity) && member
}

// UploadKey decides a key upload. maxKeys is the configured limit.
func (k *Keyring) UploadKey(actor domain.Actor, tenant string, key NewKey, maxKeys int, at time.Time) (KeyUploaded, error) {
	if !k.mayManageKeys(actor, tenant) {
		return KeyUploaded{}, ErrKeyForbidden
	}
	var v domain.Validator
	name := strings.TrimSpace(key.Name)
	v.Check(utf8.RuneCountInString(name) >= 1 && utf8.RuneCountInString(name) <= 60, "name", "1–60 characters")
	if err := v.Err(); err != nil {
		return KeyUploaded{}, err
	}
	if key.Use != "sig" {
		return KeyUploaded{}, ErrUnsupportedUse
	}
	if _, dup := k.keys[key.KID]; dup {
		return KeyUploaded{}, ErrKeyAlreadyExists
	}
	if len(k.keys) >= maxKeys {
		return KeyUploaded{}, ErrTooManyKeys
	}
	return KeyUploaded{KID: key.KID, Name: name, Use: key.Use, Alg: key.Alg, KeyType: key.KeyType, PEM: key.PEM,
		UploadedBy: actor.ID, At: domain.Time(at)}, nil
}

// DeleteKey decides a key deletion: admins any key, security operators (members) only
// their own.
func (k *Keyring) DeleteKey(actor domain.Actor, tenant, kid string, at time.Time) (KeyDeleted, error) {
	if !k.mayManageKeys(actor, tenant) {
		return KeyDeleted{}, ErrKeyForbidden
	}
	key, ok := k.keys[kid]
	if !ok {
		return KeyDeleted{}, ErrKeyNotFound
	}
	if !isAdmin(actor, tenant) && key.UploadedBy != actor.ID {
		return KeyDeleted{}, ErrNotOwnKey
	}
	return KeyDeleted{KID: kid, Reason: ReasonDeleted, By: actor.ID, At: domain.Time(at)}, nil
}

// DeleteAll decides the removal of every key because the owner is deleted.
func (k *Keyring) DeleteAll(actor domain.Actor, at time.Time) []KeyDeleted {
	out := make([]KeyDeleted, 0, len(k.order))
	for _, kid := range k.order {
		out = append(out, KeyDeleted{KID: kid, Reason: ReasonOwnerDeleted, By: actor.ID, At: domain.Time(at)})
	}
	return out
}

// Members returns the member ids, sorted.
func (k *Keyring) Members() []string {
	out := make([]string, 0, len(k.members))
	for id := range k.members {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// IsMember reports whether userID is a member now.
func (k *Keyring) IsMember(userID string) bool { _, ok := k.members[userID]; return ok }

// MemberSince returns when userID became a member.
func (k *Keyring) MemberSince(userID string) time.Time { return k.members[userID] }

// Keys returns the keys in upload order.
func (k *Keyring) Keys() []Key {
	out := make([]Key, 0, len(k.order))
	for _, kid := range k.order {
		out = append(out, k.keys[kid])
	}
	return out
}

// Key returns one key.
func (k *Keyring) Key(kid string) (Key, bool) { key, ok := k.keys[kid]; return key, ok }

// UploaderRemoved reports whether the key's uploader was removed as a member after
// uploading it, and when: such keys stay valid but should be replaced. A key uploaded by
// an administrator who was not a member at the time is not flagged.
func (k *Keyring) UploaderRemoved(key Key) (bool, time.Time) {
	if _, member := k.members[key.UploadedBy]; member {
		return false, time.Time{}
	}
	at, removed := k.removed[key.UploadedBy]
	if !removed || at.Before(key.UploadedAt) {
		return false, time.Time{}
	}
	return true, at
}

// Clone returns a copy that shares nothing with k, for callers outside the aggregate.
func (k *Keyring) Clone() Keyring {
	c := Keyring{members: make(map[string]time.Time, len(k.members)), removed: make(map[string]time.Time, len(k.removed)),
		keys: make(map[string]Key, len(k.keys)), order: append([]string(nil), k.order...)}
	for id, at := range k.members {
		c.members[id] = at
	}
	for id, at := range k.removed {
		c.removed[id] = at
	}
	for kid, key := range k.keys {
		c.keys[kid] = key
	}
	return c
}
