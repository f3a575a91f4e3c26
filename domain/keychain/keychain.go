// Package keychain is the producer's keychain aggregate ("portachiavi"): the public keys
// a producer signs with, kept under the same member and key rules as a client, and linked
// to the producer's own e-services so consumers can fetch those keys by kid.
package keychain

import (
	"sort"
	"strings"
	"time"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/domain/keyring"
)

// Created is a keychain's first event. Members and keys given at creation follow it in
// the same append.
type Created struct {
	ID          string    `json:"id"`
	Tenant      string    `json:"tenant"`
	Name        string    `json:"name"`
	Description string    `json:"description"`
	By          string    `json:"by"`
	At          time.Time `json:"at"`
}

// MemberAdded and the other keyring events wrap the shared payloads under keychain names.
type (
	MemberAdded   struct{ keyring.MemberAdded }
	MemberRemoved struct{ keyring.MemberRemoved }
	KeyUploaded   struct{ keyring.KeyUploaded }
	KeyDeleted    struct{ keyring.KeyDeleted }
)

// EServiceAdded links the keychain to one of its tenant's e-services: consumers of that
// e-service may fetch the keychain's public keys.
type EServiceAdded struct {
	EServiceID string    `json:"eserviceId"`
	By         string    `json:"by"`
	At         time.Time `json:"at"`
}

// EServiceRemoved unlinks an e-service, by a caller or because the keychain is deleted.
type EServiceRemoved struct {
	EServiceID string    `json:"eserviceId"`
	By         string    `json:"by"`
	At         time.Time `json:"at"`
}

// Deleted is a keychain's last event: its keys and e-service links went just before it.
type Deleted struct {
	By string    `json:"by"`
	At time.Time `json:"at"`
}

// EventType implementations: the stable wire names.
func (Created) EventType() string         { return "keychain.created.v1" }
func (MemberAdded) EventType() string     { return "keychain.member_added.v1" }
func (MemberRemoved) EventType() string   { return "keychain.member_removed.v1" }
func (KeyUploaded) EventType() string     { return "keychain.key_uploaded.v1" }
func (KeyDeleted) EventType() string      { return "keychain.key_deleted.v1" }
func (EServiceAdded) EventType() string   { return "keychain.eservice_added.v1" }
func (EServiceRemoved) EventType() string { return "keychain.eservice_removed.v1" }
func (Deleted) EventType() string         { return "keychain.deleted.v1" }

// Codec decodes the keychain's events.
var Codec = domain.NewCodec(Created{}, MemberAdded{}, MemberRemoved{}, KeyUploaded{}, KeyDeleted{},
	EServiceAdded{}, EServiceRemoved{}, Deleted{})

// StreamName is the keychain's stream.
func StreamName(id string) string { return "keychain-" + id }

// Errors of the keychain aggregate.
var (
	ErrAdminRequired        = domain.NewError(domain.KindForbidden, "admin_required", "only tenant administrators create and delete keychains and link e-services")
	ErrEServiceAlreadyAdded = domain.NewError(domain.KindConflict, "eservice_already_added", "the keychain is already linked to this e-service")
	ErrEServiceNotAdded     = domain.NewError(domain.KindNotFound, "eservice_not_added", "the keychain is not linked to this e-service")
)

// Keychain is the aggregate.
type Keychain struct {
	domain.Changes
	id, tenant        string
	name, description string
	created           time.Time
	exists, deleted   bool
	keys              keyring.Owned[MemberAdded, MemberRemoved, KeyUploaded, KeyDeleted]
	eservices         map[string]bool
}

// New returns the empty aggregate with the given id, to create or rehydrate.
func New(id string) *Keychain {
	return &Keychain{id: id, eservices: map[string]bool{}}
}

// Rehydrate applies stored events.
func (k *Keychain) Rehydrate(events []domain.Event) {
	for _, e := range events {
		k.apply(e)
	}
}

func (k *Keychain) record(e domain.Event) { k.apply(e); k.Add(e) }

func (k *Keychain) apply(e domain.Event) {
	switch e := e.(type) {
	case Created:
		k.exists, k.tenant, k.name, k.description, k.created = true, e.Tenant, e.Name, e.Description, e.At
	case EServiceAdded:
		k.eservices[e.EServiceID] = true
	case EServiceRemoved:
		delete(k.eservices, e.EServiceID)
	case Deleted:
		k.deleted = true
	default:
		k.keys.Apply(e)
	}
}

// Spec is what a creation asks for.
type Spec struct {
	Name        string
	Description string
	// Members are user ids with whether each is registered in the tenant now.
	Members map[string]bool
	Keys    []keyring.NewKey
}

// Create decides a new keychain in the actor's tenant, with its initial members and keys.
// maxKeys is the configured per-keychain limit.
func (k *Keychain) Create(actor domain.Actor, spec Spec, maxKeys int, at time.Time) error {
	if actor.Tenant == "" || !actor.Roles.Has(domain.RoleAdmin) {
		return ErrAdminRequired
	}
	if k.exists {
		return domain.ErrAlreadyExists
	}
	var v domain.Validator
	name := strings.TrimSpace(spec.Name)
	v.Check(len([]rune(name)) >= 5 && len([]rune(name)) <= 60, "name", "5–60 characters")
	v.Check(len([]rune(spec.Description)) <= 250, "description", "at most 250 characters")
	if err := v.Err(); err != nil {
		return err
	}
	k.record(Created{ID: k.id, Tenant: actor.Tenant, Name: name, Description: spec.Description,
		By: actor.ID, At: domain.Time(at)})
	return k.keys.Populate(k.owner(), actor, spec.Members, spec.Keys, maxKeys, at)
}

func (k *Keychain) live() error {
	if !k.exists || k.deleted {
		return domain.ErrNotFound
	}
	return nil
}

func (k *Keychain) isAdmin(actor domain.Actor) bool {
	return actor.Tenant == k.tenant && actor.Roles.Has(domain.RoleAdmin)
}

// owner is what the keychain lends its keyring's member and key changes.
func (k *Keychain) owner() keyring.Owner {
	return keyring.Owner{Tenant: k.tenant, Live: k.live(), Record: k.record}
}

// AddMember makes a registered user of the tenant a member.
func (k *Keychain) AddMember(actor domain.Actor, userID string, registered bool, at time.Time) error {
	return k.keys.AddMember(k.owner(), actor, userID, registered, at)
}

// RemoveMember ends a membership; the member's keys stay valid but are flagged.
func (k *Keychain) RemoveMember(actor domain.Actor, userID string, at time.Time) error {
	return k.keys.RemoveMember(k.owner(), actor, userID, at)
}

// UploadKey registers a public key (kid uniqueness across clients and keychains is the
// command layer's reservation; this checks the keychain's own keys and limit).
func (k *Keychain) UploadKey(actor domain.Actor, key keyring.NewKey, maxKeys int, at time.Time) error {
	return k.keys.UploadKey(k.owner(), actor, key, maxKeys, at)
}

// DeleteKey removes a key.
func (k *Keychain) DeleteKey(actor domain.Actor, kid string, at time.Time) error {
	return k.keys.DeleteKey(k.owner(), actor, kid, at)
}

// EServiceInfo is what the command layer knows of an e-service when linking it.
type EServiceInfo struct {
	ID             string
	ProducerTenant string
}

// AddEService links the keychain to an e-service of its own tenant. Another tenant's
// e-service answers domain.ErrNotFound, so a caller cannot probe foreign e-services.
func (k *Keychain) AddEService(actor domain.Actor, es EServiceInfo, at time.Time) error {
	if err := k.live(); err != nil {
		return err
	}
	if !k.isAdmin(actor) {
		return ErrAdminRequired
	}
	if es.ProducerTenant != k.tenant {
		return domain.ErrNotFound
	}
	if k.eservices[es.ID] {
		return ErrEServiceAlreadyAdded
	}
	k.record(EServiceAdded{EServiceID: es.ID, By: actor.ID, At: domain.Time(at)})
	return nil
}

// RemoveEService unlinks an e-service; the keychain stays linked to the others.
func (k *Keychain) RemoveEService(actor domain.Actor, eserviceID string, at time.Time) error {
	if err := k.live(); err != nil {
		return err
	}
	if !k.isAdmin(actor) {
		return ErrAdminRequired
	}
	if !k.eservices[eserviceID] {
		return ErrEServiceNotAdded
	}
	k.record(EServiceRemoved{EServiceID: eserviceID, By: actor.ID, At: domain.Time(at)})
	return nil
}

// Delete removes the keychain: every key is deleted and every e-service unlinked, as
// events, so the history shows exactly what stopped working.
func (k *Keychain) Delete(actor domain.Actor, at time.Time) error {
	if err := k.live(); err != nil {
		return err
	}
	if !k.isAdmin(actor) {
		return ErrAdminRequired
	}
	k.keys.DeleteAll(k.owner(), actor, at)
	for _, id := range k.EServiceIDs() {
		k.record(EServiceRemoved{EServiceID: id, By: actor.ID, At: domain.Time(at)})
	}
	k.record(Deleted{By: actor.ID, At: domain.Time(at)})
	return nil
}

// Exists reports whether the keychain exists and is not deleted.
func (k *Keychain) Exists() bool { return k.exists && !k.deleted }

// ID and the other readers expose the state for queries. Keyring returns a copy.
func (k *Keychain) ID() string               { return k.id }
func (k *Keychain) Tenant() string           { return k.tenant }
func (k *Keychain) Name() string             { return k.name }
func (k *Keychain) Description() string      { return k.description }
func (k *Keychain) CreatedAt() time.Time     { return k.created }
func (k *Keychain) Keyring() keyring.Keyring { return k.keys.Keyring() }

// EServiceIDs returns the linked e-services, sorted.
func (k *Keychain) EServiceIDs() []string {
	out := make([]string, 0, len(k.eservices))
	for id := range k.eservices {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// HasEService reports whether the keychain is linked to the e-service.
func (k *Keychain) HasEService(id string) bool { return k.eservices[id] }
