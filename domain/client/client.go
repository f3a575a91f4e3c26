// Package client is the consumer's client aggregate: an e-service client (linked to
// purposes, so it can obtain vouchers for their e-services) or an API client (vouchers
// for Keyledger's own API), with its members and public keys.
package client

import (
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/domain/keyring"
)

// Kind of client.
type Kind string

// The client kinds.
const (
	KindEService Kind = "eservice"
	KindAPI      Kind = "api"
)

// Created is a client's first event. Members and keys given at creation follow it in the
// same append.
type Created struct {
	ID          string `json:"id"`
	Tenant      string `json:"tenant"`
	Kind        Kind   `json:"kind"`
	Name        string `json:"name"`
	Description string `json:"description"`
	// Roles are an API client's roles in its tenant: what its vouchers may do on
	// Keyledger's own API. Always empty for e-service clients.
	Roles domain.Roles `json:"roles,omitempty"`
	By    string       `json:"by"`
	At    time.Time    `json:"at"`
}

// RolesSet replaces an API client's roles.
type RolesSet struct {
	Roles domain.Roles `json:"roles"`
	By    string       `json:"by"`
	At    time.Time    `json:"at"`
}

// MemberAdded and the other keyring events wrap the shared payloads under client names.
type (
	MemberAdded   struct{ keyring.MemberAdded }
	MemberRemoved struct{ keyring.MemberRemoved }
	KeyUploaded   struct{ keyring.KeyUploaded }
	KeyDeleted    struct{ keyring.KeyDeleted }
)

// PurposeAdded links the client to a purpose: its keys can then obtain vouchers for the
// purpose's e-service.
type PurposeAdded struct {
	PurposeID  string    `json:"purposeId"`
	EServiceID string    `json:"eserviceId"`
	By         string    `json:"by"`
	At         time.Time `json:"at"`
}

// PurposeRemoved unlinks a purpose. Reason says why: removed by a caller, the purpose was
// archived, or the client was deleted.
type PurposeRemoved struct {
	PurposeID string    `json:"purposeId"`
	Reason    string    `json:"reason"`
	By        string    `json:"by"`
	At        time.Time `json:"at"`
}

// Purpose removal reasons.
const (
	ReasonRemoved         = "removed"
	ReasonPurposeArchived = "purpose_archived"
	ReasonClientDeleted   = "client_deleted"
)

// Deleted is a client's last event: no voucher can be obtained with it any more.
type Deleted struct {
	By string    `json:"by"`
	At time.Time `json:"at"`
}

// EventType implementations: the stable wire names.
func (Created) EventType() string        { return "client.created.v1" }
func (MemberAdded) EventType() string    { return "client.member_added.v1" }
func (MemberRemoved) EventType() string  { return "client.member_removed.v1" }
func (KeyUploaded) EventType() string    { return "client.key_uploaded.v1" }
func (KeyDeleted) EventType() string     { return "client.key_deleted.v1" }
func (PurposeAdded) EventType() string   { return "client.purpose_added.v1" }
func (PurposeRemoved) EventType() string { return "client.purpose_removed.v1" }
func (Deleted) EventType() string        { return "client.deleted.v1" }
func (RolesSet) EventType() string       { return "client.roles_set.v1" }

// Codec decodes the client's events.
var Codec = domain.NewCodec(Created{}, MemberAdded{}, MemberRemoved{}, KeyUploaded{}, KeyDeleted{},
	PurposeAdded{}, PurposeRemoved{}, Deleted{}, RolesSet{})

// StreamName is the client's stream.
func StreamName(id string) string { return "client-" + id }

// Errors of the client aggregate.
var (
	ErrAdminRequired      = domain.NewError(domain.KindForbidden, "admin_required", "only tenant administrators create and delete clients and link purposes")
	ErrNotEServiceClient  = domain.NewError(domain.KindConflict, "not_eservice_client", "only e-service clients can be linked to purposes")
	ErrPurposeAlreadyLink = domain.NewError(domain.KindConflict, "purpose_already_linked", "the client is already linked to this purpose")
	ErrPurposeNotLinked   = domain.NewError(domain.KindNotFound, "purpose_not_linked", "the client is not linked to this purpose")
	ErrNotAPIClient       = domain.NewError(domain.KindConflict, "not_api_client", "only API clients have roles")
)

// Client is the aggregate.
type Client struct {
	domain.Changes
	id, tenant        string
	kind              Kind
	roles             domain.Roles
	name, description string
	created           time.Time
	exists, deleted   bool
	keys              keyring.Owned[MemberAdded, MemberRemoved, KeyUploaded, KeyDeleted]
	purposes          map[string]string // purpose id → e-service id
}

// New returns the empty aggregate with the given id, to create or rehydrate.
func New(id string) *Client {
	return &Client{id: id, purposes: map[string]string{}}
}

// Rehydrate applies stored events.
func (c *Client) Rehydrate(events []domain.Event) {
	for _, e := range events {
		c.apply(e)
	}
}

func (c *Client) record(e domain.Event) { c.apply(e); c.Add(e) }

func (c *Client) apply(e domain.Event) {
	switch e := e.(type) {
	case Created:
		c.exists, c.tenant, c.kind, c.name, c.description, c.created = true, e.Tenant, e.Kind, e.Name, e.Description, e.At
		c.roles = e.Roles
	case RolesSet:
		c.roles = e.Roles
	case PurposeAdded:
		c.purposes[e.PurposeID] = e.EServiceID
	case PurposeRemoved:
		delete(c.purposes, e.PurposeID)
	case Deleted:
		c.deleted = true
	default:
		c.keys.Apply(e)
	}
}

// Spec is what a creation asks for.
type Spec struct {
	Kind        Kind
	Name        string
	Description string
	// Members are user ids with whether each is registered in the tenant now.
	Members map[string]bool
	Keys    []keyring.NewKey
	// Roles are role names for an API client (admin, security, member, auditor); an
	// e-service client has none.
	Roles []string
}

// Create decides a new client in the actor's tenant, with its initial members and keys.
func (c *Client) Create(actor domain.Actor, spec Spec, maxKeys int, at time.Time) error {
	if actor.Tenant == "" || !actor.Roles.Has(domain.RoleAdmin) {
		return ErrAdminRequired
	}
	if c.exists {
		return domain.ErrAlreadyExists
	}
	var v domain.Validator
	v.Check(spec.Kind == KindEService || spec.Kind == KindAPI, "kind", `"eservice" or "api"`)
	name := strings.TrimSpace(spec.Name)
	v.Check(len([]rune(name)) >= 5 && len([]rune(name)) <= 60, "name", "5–60 characters")
	v.Check(len([]rune(spec.Description)) <= 250, "description", "at most 250 characters")
	roles, unknown := domain.NormalizeRoles(spec.Roles)
	v.Check(len(unknown) == 0, "roles", "each of admin, security, member, auditor")
	v.Check(len(roles) == 0 || spec.Kind == KindAPI, "roles", "only for API clients")
	if err := v.Err(); err != nil {
		return err
	}
	if len(roles) == 0 {
		roles = nil
	}
	c.record(Created{ID: c.id, Tenant: actor.Tenant, Kind: spec.Kind, Name: name,
		Description: spec.Description, Roles: roles, By: actor.ID, At: domain.Time(at)})
	return c.keys.Populate(c.owner(), actor, spec.Members, spec.Keys, maxKeys, at)
}

func (c *Client) live() error {
	if !c.exists || c.deleted {
		return domain.ErrNotFound
	}
	return nil
}

// owner is what the client lends its keyring's member and key changes.
func (c *Client) owner() keyring.Owner {
	return keyring.Owner{Tenant: c.tenant, Live: c.live(), Record: c.record}
}

// AddMember makes a registered user of the tenant a member.
func (c *Client) AddMember(actor domain.Actor, userID string, registered bool, at time.Time) error {
	return c.keys.AddMember(c.owner(), actor, userID, registered, at)
}

// RemoveMember ends a membership; the member's keys stay valid but are flagged.
func (c *Client) RemoveMember(actor domain.Actor, userID string, at time.Time) error {
	return c.keys.RemoveMember(c.owner(), actor, userID, at)
}

// UploadKey registers a public key (kid uniqueness across clients and keychains is the
// command layer's reservation; this checks the client's own keys and limit).
func (c *Client) UploadKey(actor domain.Actor, key keyring.NewKey, maxKeys int, at time.Time) error {
	return c.keys.UploadKey(c.owner(), actor, key, maxKeys, at)
}

// DeleteKey removes a key.
func (c *Client) DeleteKey(actor domain.Actor, kid string, at time.Time) error {
	return c.keys.DeleteKey(c.owner(), actor, kid, at)
}

// PurposeInfo is what the command layer knows of a purpose when linking it.
type PurposeInfo struct {
	ID             string
	EServiceID     string
	ConsumerTenant string
	Linkable       bool // active or suspended
}

// ErrPurposeNotLinkable: the purpose is pending or archived.
var ErrPurposeNotLinkable = domain.NewError(domain.KindConflict, "purpose_not_linkable", "only active or suspended purposes can be linked")

// AddPurpose links the client to a purpose of its own tenant.
func (c *Client) AddPurpose(actor domain.Actor, p PurposeInfo, at time.Time) error {
	if err := c.live(); err != nil {
		return err
	}
	if actor.Tenant != c.tenant || !actor.Roles.Has(domain.RoleAdmin) {
		return ErrAdminRequired
	}
	if c.kind != KindEService {
		return ErrNotEServiceClient
	}
	if p.ConsumerTenant != c.tenant {
		return domain.ErrNotFound // another tenant's purpose does not exist for this caller
	}
	if _, ok := c.purposes[p.ID]; ok {
		return ErrPurposeAlreadyLink
	}
	if !p.Linkable {
		return ErrPurposeNotLinkable
	}
	c.record(PurposeAdded{PurposeID: p.ID, EServiceID: p.EServiceID, By: actor.ID, At: domain.Time(at)})
	return nil
}

// RemovePurpose unlinks a purpose; the client keeps working for its other purposes.
func (c *Client) RemovePurpose(actor domain.Actor, purposeID string, at time.Time) error {
	if err := c.live(); err != nil {
		return err
	}
	if actor.Tenant != c.tenant || !actor.Roles.Has(domain.RoleAdmin) {
		return ErrAdminRequired
	}
	if _, ok := c.purposes[purposeID]; !ok {
		return ErrPurposeNotLinked
	}
	c.record(PurposeRemoved{PurposeID: purposeID, Reason: ReasonRemoved, By: actor.ID, At: domain.Time(at)})
	return nil
}

// PurposeArchived unlinks an archived purpose on the system's behalf. A client that is
// not linked (or gone) records nothing.
func (c *Client) PurposeArchived(actor domain.Actor, purposeID string, at time.Time) {
	if c.live() != nil {
		return
	}
	if _, ok := c.purposes[purposeID]; !ok {
		return
	}
	c.record(PurposeRemoved{PurposeID: purposeID, Reason: ReasonPurposeArchived, By: actor.ID, At: domain.Time(at)})
}

// SetRoles replaces an API client's roles. Setting the roles it already has records
// nothing.
func (c *Client) SetRoles(actor domain.Actor, names []string, at time.Time) error {
	if err := c.live(); err != nil {
		return err
	}
	if actor.Tenant != c.tenant || !actor.Roles.Has(domain.RoleAdmin) {
		return ErrAdminRequired
	}
	if c.kind != KindAPI {
		return ErrNotAPIClient
	}
	roles, unknown := domain.NormalizeRoles(names)
	var v domain.Validator
	v.Check(len(unknown) == 0, "roles", "each of admin, security, member, auditor")
	if err := v.Err(); err != nil {
		return err
	}
	if slices.Equal(roles, c.roles) {
		return nil
	}
	c.record(RolesSet{Roles: roles, By: actor.ID, At: domain.Time(at)})
	return nil
}

// Delete removes the client: every key is deleted and every purpose unlinked, as events,
// so the history shows exactly what stopped working.
func (c *Client) Delete(actor domain.Actor, at time.Time) error {
	if err := c.live(); err != nil {
		return err
	}
	if actor.Tenant != c.tenant || !actor.Roles.Has(domain.RoleAdmin) {
		return ErrAdminRequired
	}
	c.keys.DeleteAll(c.owner(), actor, at)
	for _, pid := range c.PurposeIDs() {
		c.record(PurposeRemoved{PurposeID: pid, Reason: ReasonClientDeleted, By: actor.ID, At: domain.Time(at)})
	}
	c.record(Deleted{By: actor.ID, At: domain.Time(at)})
	return nil
}

// Exists reports whether the client exists and is not deleted.
func (c *Client) Exists() bool { return c.exists && !c.deleted }

// ID and the other readers expose the state for queries.
func (c *Client) ID() string               { return c.id }
func (c *Client) Tenant() string           { return c.tenant }
func (c *Client) Kind() Kind               { return c.kind }
func (c *Client) Roles() domain.Roles      { return slices.Clone(c.roles) }
func (c *Client) Name() string             { return c.name }
func (c *Client) Description() string      { return c.description }
func (c *Client) CreatedAt() time.Time     { return c.created }
func (c *Client) Keyring() keyring.Keyring { return c.keys.Keyring() }

// PurposeIDs returns the linked purposes, sorted.
func (c *Client) PurposeIDs() []string {
	out := make([]string, 0, len(c.purposes))
	for id := range c.purposes {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// HasPurpose reports whether the client is linked to the purpose.
func (c *Client) HasPurpose(id string) bool { _, ok := c.purposes[id]; return ok }
