package models

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"

	"github.com/keyledger/keyledger/domain/client"
	"github.com/keyledger/keyledger/domain/keychain"
	"github.com/keyledger/keyledger/domain/keyring"
	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/projections/readmodel"
	"github.com/keyledger/keyledger/projections/source"
)

// Names of the keys read model (see the voucher model's names for their roles).
const (
	KeysModel   = "keys"
	KeysVersion = "keys.v1"
	KeysGroup   = "projection.keys.v1"
)

// OwnerKind says whether a key belongs to a consumer's client or a producer's keychain.
type OwnerKind string

// Owner kinds.
const (
	OwnerClient   OwnerKind = "client"
	OwnerKeychain OwnerKind = "keychain"
)

// KeyEntry is a registered public key found by its kid (kids are unique across all
// clients and keychains), under "kid:<kid>". It exists exactly while the key is
// registered: a deleted key, or a key of a deleted owner, has no entry.
type KeyEntry struct {
	KID       string    `json:"kid"`
	OwnerKind OwnerKind `json:"ownerKind"`
	OwnerID   string    `json:"ownerId"`
	// Tenant is the owner's tenant.
	Tenant     string    `json:"tenant"`
	Name       string    `json:"name"`
	Use        string    `json:"use"`
	Alg        string    `json:"alg"`
	KeyType    string    `json:"kty"`
	PEM        string    `json:"pem"`
	UploadedBy string    `json:"uploadedBy"`
	UploadedAt time.Time `json:"uploadedAt"`
	// Position is the log position of the upload.
	Position string `json:"position"`
}

func kidKey(kid string) string { return "kid:" + kid }

// Auxiliary records: "owner:<kind>:<id>" holds the owner's tenant; the index
// "owner-keys:<kind>:<id>" its kids.
type ownerRec struct {
	Tenant string `json:"tenant"`
}

func ownerKey(kind OwnerKind, id string) string  { return "owner:" + string(kind) + ":" + id }
func ownerKeys(kind OwnerKind, id string) string { return "owner-keys:" + string(kind) + ":" + id }

// LookupKey reads the key registered under kid, in one Get. found is false when no
// client or keychain holds it now.
func LookupKey(ctx context.Context, store readmodel.Store, ns readmodel.Namespace, kid string) (KeyEntry, bool, error) {
	if kid == "" {
		return KeyEntry{}, false, nil
	}
	data, ok, err := store.Get(ctx, ns, kidKey(kid))
	if err != nil || !ok {
		return KeyEntry{}, false, err
	}
	var e KeyEntry
	if err := json.Unmarshal(data, &e); err != nil {
		return KeyEntry{}, false, fmt.Errorf("%w: key %s: %v", readmodel.ErrCorrupt, kid, err)
	}
	return e, true, nil
}

// Keys is the keys-by-kid read model: the group KeysGroup reads the client and keychain
// streams.
var Keys = Definition{
	Model:    KeysModel,
	Version:  KeysVersion,
	Group:    KeysGroup,
	Filter:   eventstore.Filter{StreamPrefixes: []string{client.StreamName(""), keychain.StreamName("")}},
	Handlers: keysHandlers,
}

func keysHandlers(deps Deps, ns readmodel.Namespace) []cqrs.GroupEventHandler {
	m := keysModel{projector{store: deps.Store, ns: ns}}
	p := m.p
	return []cqrs.GroupEventHandler{
		on(p, func(_ context.Context, _ source.Event, e *client.Created, b *readmodel.Batch) error {
			return put(b, ownerKey(OwnerClient, e.ID), ownerRec{Tenant: e.Tenant})
		}),
		on(p, func(_ context.Context, _ source.Event, e *keychain.Created, b *readmodel.Batch) error {
			return put(b, ownerKey(OwnerKeychain, e.ID), ownerRec{Tenant: e.Tenant})
		}),
		on(p, func(ctx context.Context, ev source.Event, e *client.KeyUploaded, b *readmodel.Batch) error {
			return m.uploaded(ctx, ev, OwnerClient, e.KeyUploaded, b)
		}),
		on(p, func(ctx context.Context, ev source.Event, e *keychain.KeyUploaded, b *readmodel.Batch) error {
			return m.uploaded(ctx, ev, OwnerKeychain, e.KeyUploaded, b)
		}),
		on(p, func(ctx context.Context, ev source.Event, e *client.KeyDeleted, b *readmodel.Batch) error {
			return m.deleted(ctx, ev, OwnerClient, e.KID, b)
		}),
		on(p, func(ctx context.Context, ev source.Event, e *keychain.KeyDeleted, b *readmodel.Batch) error {
			return m.deleted(ctx, ev, OwnerKeychain, e.KID, b)
		}),
		on(p, func(ctx context.Context, ev source.Event, _ *client.Deleted, b *readmodel.Batch) error {
			return m.ownerDeleted(ctx, ev, OwnerClient, b)
		}),
		on(p, func(ctx context.Context, ev source.Event, _ *keychain.Deleted, b *readmodel.Batch) error {
			return m.ownerDeleted(ctx, ev, OwnerKeychain, b)
		}),
		skip[client.MemberAdded](p),
		skip[client.MemberRemoved](p),
		skip[client.PurposeAdded](p),
		skip[client.PurposeRemoved](p),
		skip[client.RolesSet](p),
		skip[keychain.MemberAdded](p),
		skip[keychain.MemberRemoved](p),
		skip[keychain.EServiceAdded](p),
		skip[keychain.EServiceRemoved](p),
	}
}

type keysModel struct{ p projector }

func (m keysModel) owner(ctx context.Context, ev source.Event, kind OwnerKind) (string, ownerRec, error) {
	id, err := aggregateID(ev)
	if err != nil {
		return "", ownerRec{}, err
	}
	data, ok, err := m.p.store.Get(ctx, m.p.ns, ownerKey(kind, id))
	if err != nil {
		return "", ownerRec{}, err
	}
	if !ok {
		return "", ownerRec{}, inconsistent("%s %s is unknown", kind, id)
	}
	var o ownerRec
	if err := json.Unmarshal(data, &o); err != nil {
		return "", ownerRec{}, source.Permanent(fmt.Errorf("%w: %s: %v", readmodel.ErrCorrupt, ownerKey(kind, id), err))
	}
	return id, o, nil
}

func (m keysModel) uploaded(ctx context.Context, ev source.Event, kind OwnerKind, e keyring.KeyUploaded, b *readmodel.Batch) error {
	id, o, err := m.owner(ctx, ev, kind)
	if err != nil {
		return err
	}
	b.IndexAdd(ownerKeys(kind, id), e.KID)
	return put(b, kidKey(e.KID), KeyEntry{KID: e.KID, OwnerKind: kind, OwnerID: id, Tenant: o.Tenant,
		Name: e.Name, Use: e.Use, Alg: e.Alg, KeyType: e.KeyType, PEM: e.PEM,
		UploadedBy: e.UploadedBy, UploadedAt: e.At, Position: ev.Position.String()})
}

// deleted removes the kid's entry if it is this owner's. In log order it always is (a kid
// is free again only after its deletion); the check keeps a stray event from removing
// another owner's key.
func (m keysModel) deleted(ctx context.Context, ev source.Event, kind OwnerKind, kid string, b *readmodel.Batch) error {
	id, err := aggregateID(ev)
	if err != nil {
		return err
	}
	b.IndexRemove(ownerKeys(kind, id), kid)
	cur, ok, err := LookupKey(ctx, m.p.store, m.p.ns, kid)
	if err != nil {
		return err
	}
	if ok && cur.OwnerKind == kind && cur.OwnerID == id {
		b.Delete(kidKey(kid))
	}
	return nil
}

// ownerDeleted removes the owner and any key still listed under it.
func (m keysModel) ownerDeleted(ctx context.Context, ev source.Event, kind OwnerKind, b *readmodel.Batch) error {
	id, err := aggregateID(ev)
	if err != nil {
		return err
	}
	kids, err := rangeAll(ctx, m.p.store, m.p.ns, ownerKeys(kind, id))
	if err != nil {
		return err
	}
	for _, kid := range kids {
		b.Delete(kidKey(kid))
	}
	b.DeleteIndex(ownerKeys(kind, id))
	b.Delete(ownerKey(kind, id))
	return nil
}
