package models

import (
	"encoding/json"
	"time"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/domain/client"
	"github.com/keyledger/keyledger/domain/eservice"
	"github.com/keyledger/keyledger/domain/keychain"
	"github.com/keyledger/keyledger/domain/keyring"
	"github.com/keyledger/keyledger/domain/keys"
	"github.com/keyledger/keyledger/domain/purpose"
	"github.com/keyledger/keyledger/domain/tenant"
	"github.com/keyledger/keyledger/domain/user"
)

// The views below are what the API answers for each resource, byte for byte: the
// directory read model stores them and the API serves them as they are. Render them
// with the Render functions only (a command's answer and a query's answer must never
// differ), and treat a change of a JSON name as a change of the public API.

// UserView is a user registered in a tenant.
type UserView struct {
	ID           string    `json:"id"`
	Name         string    `json:"name"`
	Roles        []string  `json:"roles"`
	RegisteredAt time.Time `json:"registeredAt"`
}

// TenantView is a tenant with its first administrator as registered now (or, once that
// user is gone, as named at the tenant's creation, without roles).
type TenantView struct {
	ID    string   `json:"id"`
	Name  string   `json:"name"`
	Admin UserView `json:"admin"`
}

// MemberView is one member of a client or keychain.
type MemberView struct {
	UserID string    `json:"userId"`
	Since  time.Time `json:"since"`
}

// KeyView is a public key of a client or keychain. JWK is present only where a single
// key is rendered (RenderKey); owner views and key lists leave it out.
type KeyView struct {
	KID               string          `json:"kid"`
	Name              string          `json:"name"`
	Use               string          `json:"use"`
	Alg               string          `json:"alg"`
	KeyType           string          `json:"kty"`
	UploadedBy        string          `json:"uploadedBy"`
	UploadedAt        time.Time       `json:"uploadedAt"`
	UploaderRemoved   bool            `json:"uploaderRemoved"`
	UploaderRemovedAt *time.Time      `json:"uploaderRemovedAt,omitempty"`
	JWK               json.RawMessage `json:"jwk,omitempty"`
}

// ClientView is a consumer's client with its members, keys, linked purposes and the
// keys to replace.
type ClientView struct {
	ID          string       `json:"id"`
	Kind        client.Kind  `json:"kind"`
	Name        string       `json:"name"`
	Description string       `json:"description"`
	CreatedAt   time.Time    `json:"createdAt"`
	Members     []MemberView `json:"members"`
	Keys        []KeyView    `json:"keys"`
	Purposes    []string     `json:"purposes"`
	// Roles are an API client's roles in its tenant (absent for e-service clients).
	Roles           []string `json:"roles,omitempty"`
	Recommendations []string `json:"recommendations"`
}

// KeychainView is a producer's keychain with its members, keys, linked e-services and
// the keys to replace.
type KeychainView struct {
	ID              string       `json:"id"`
	Name            string       `json:"name"`
	Description     string       `json:"description"`
	CreatedAt       time.Time    `json:"createdAt"`
	Members         []MemberView `json:"members"`
	Keys            []KeyView    `json:"keys"`
	EServices       []string     `json:"eservices"`
	Recommendations []string     `json:"recommendations"`
}

// EServiceView is an e-service of the public catalogue.
type EServiceView struct {
	ID                     string    `json:"id"`
	Producer               string    `json:"producer"`
	Name                   string    `json:"name"`
	Audience               string    `json:"audience"`
	VoucherLifetimeSeconds int       `json:"voucherLifetimeSeconds"`
	State                  string    `json:"state"`
	CreatedAt              time.Time `json:"createdAt"`
}

// PurposeView is a purpose, as both its consumer and its producer see it.
type PurposeView struct {
	ID         string        `json:"id"`
	EServiceID string        `json:"eserviceId"`
	Consumer   string        `json:"consumer"`
	Producer   string        `json:"producer"`
	Title      string        `json:"title"`
	State      purpose.State `json:"state"`
	CreatedAt  time.Time     `json:"createdAt"`
}

// RenderUser renders a registered user.
func RenderUser(u *user.User) UserView {
	return UserView{ID: u.ID(), Name: u.Name(), Roles: roleNames(u.Roles()), RegisteredAt: u.RegisteredAt()}
}

// RenderTenant renders a tenant with its first administrator: admin is that user as
// loaded now, or nil (or not registered any more) to show the administrator as named at
// the tenant's creation, without roles.
func RenderTenant(t *tenant.Tenant, admin *user.User) TenantView {
	out := TenantView{ID: t.ID(), Name: t.Name(), Admin: UserView{ID: t.AdminID(), Name: t.AdminName(), Roles: []string{}}}
	if admin != nil && admin.Exists() && admin.ID() == t.AdminID() {
		out.Admin = RenderUser(admin)
	}
	return out
}

// RenderClient renders a client. It leaves the keys' JWKs out (see RenderKey).
func RenderClient(c *client.Client) ClientView {
	members, keys, recs := renderKeyring(c.Keyring())
	v := ClientView{ID: c.ID(), Kind: c.Kind(), Name: c.Name(), Description: c.Description(), CreatedAt: c.CreatedAt(),
		Members: members, Keys: keys, Purposes: c.PurposeIDs(), Recommendations: recs}
	if c.Kind() == client.KindAPI {
		v.Roles = roleNames(c.Roles())
	}
	return v
}

// RenderKeychain renders a keychain. It leaves the keys' JWKs out (see RenderKey).
func RenderKeychain(k *keychain.Keychain) KeychainView {
	members, keys, recs := renderKeyring(k.Keyring())
	return KeychainView{ID: k.ID(), Name: k.Name(), Description: k.Description(), CreatedAt: k.CreatedAt(),
		Members: members, Keys: keys, EServices: k.EServiceIDs(), Recommendations: recs}
}

// RenderEService renders an e-service.
func RenderEService(e *eservice.EService) EServiceView {
	state := string(EServiceActive)
	if !e.Active() {
		state = string(EServiceSuspended)
	}
	return EServiceView{ID: e.ID(), Producer: e.Tenant(), Name: e.Name(), Audience: e.Audience(),
		VoucherLifetimeSeconds: int(e.VoucherLifetime() / time.Second), State: state, CreatedAt: e.CreatedAt()}
}

// RenderPurpose renders a purpose.
func RenderPurpose(p *purpose.Purpose) PurposeView {
	return PurposeView{ID: p.ID(), EServiceID: p.EServiceID(), Consumer: p.ConsumerTenant(), Producer: p.ProducerTenant(),
		Title: p.Title(), State: p.State(), CreatedAt: p.CreatedAt()}
}

// RenderKey renders one key of a keyring with its public JWK. It fails only for a key
// whose stored PEM no longer parses (the upload validated it).
func RenderKey(kr keyring.Keyring, k keyring.Key) (KeyView, error) {
	kv := renderKey(kr, k)
	jwk, err := KeyJWK(k.PEM, k.Use, k.Alg)
	if err != nil {
		return kv, err
	}
	kv.JWK = jwk
	return kv, nil
}

// KeyJWK returns the public JWK of a PEM public key with its use and algorithm.
func KeyJWK(pem, use, alg string) (json.RawMessage, error) {
	parsed, err := keys.Parse([]byte(pem))
	if err != nil {
		return nil, err
	}
	return parsed.JWK(use, alg)
}

func renderKey(kr keyring.Keyring, k keyring.Key) KeyView {
	v := KeyView{KID: k.KID, Name: k.Name, Use: k.Use, Alg: k.Alg, KeyType: k.KeyType, UploadedBy: k.UploadedBy, UploadedAt: k.UploadedAt}
	if removed, at := kr.UploaderRemoved(k); removed {
		v.UploaderRemoved = true
		v.UploaderRemovedAt = &at
	}
	return v
}

// renderKeyring renders members, keys (without JWKs) and the replacement
// recommendations.
func renderKeyring(kr keyring.Keyring) ([]MemberView, []KeyView, []string) {
	members := []MemberView{}
	for _, id := range kr.Members() {
		members = append(members, MemberView{UserID: id, Since: kr.MemberSince(id)})
	}
	keys := []KeyView{}
	recs := []string{}
	for _, k := range kr.Keys() {
		kv := renderKey(kr, k)
		keys = append(keys, kv)
		if kv.UploaderRemoved {
			recs = append(recs, "replace key "+k.KID+" ("+k.Name+"): it was uploaded by "+k.UploadedBy+
				", who is no longer a member; upload a new key, move callers to it, then delete this one")
		}
	}
	return members, keys, recs
}

// roleNames renders roles as their names, never nil.
func roleNames(rs domain.Roles) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = string(r)
	}
	return out
}
