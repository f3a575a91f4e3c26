package commands

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/domain/client"
	"github.com/keyledger/keyledger/domain/keychain"
	"github.com/keyledger/keyledger/domain/keyring"
)

// keyOwner is what clients and keychains share: members and keys under one set of rules.
type keyOwner interface {
	aggregate
	ID() string
	Exists() bool
	Tenant() string
	Keyring() keyring.Keyring
	AddMember(actor domain.Actor, userID string, registered bool, at time.Time) error
	RemoveMember(actor domain.Actor, userID string, at time.Time) error
	UploadKey(actor domain.Actor, key keyring.NewKey, maxKeys int, at time.Time) error
	DeleteKey(actor domain.Actor, kid string, at time.Time) error
	Delete(actor domain.Actor, at time.Time) error
}

// Owner names a kind of key owner: Clients or Keychains.
type Owner struct {
	name   string
	stream func(id string) string
	codec  domain.Codec
	fresh  func(id string) keyOwner
	limit  func(Config) int
}

// The two kinds of key owner.
var (
	Clients = Owner{name: "client", stream: client.StreamName, codec: client.Codec,
		fresh: func(id string) keyOwner { return client.New(id) }, limit: func(c Config) int { return c.MaxClientKeys }}
	Keychains = Owner{name: "keychain", stream: keychain.StreamName, codec: keychain.Codec,
		fresh: func(id string) keyOwner { return keychain.New(id) }, limit: func(c Config) int { return c.MaxKeychainKeys }}
)

// Name is "client" or "keychain".
func (o Owner) Name() string { return o.name }

// reservationOwner names an owner in kid reservations ("client:<id>").
func (o Owner) reservationOwner(id string) string { return o.name + ":" + id }

// updateOwner runs one decision on a client or keychain of the actor's tenant; one of
// another tenant is reported as not found.
func (s *Service) updateOwner(ctx context.Context, meta Meta, o Owner, id string, decide func(keyOwner) error) (Result, error) {
	return update(ctx, s, meta, id, o.stream(id), o.codec,
		func() keyOwner { return o.fresh(id) },
		func(a keyOwner) error {
			if !a.Exists() || a.Tenant() != meta.Actor.Tenant {
				return domain.ErrNotFound
			}
			return decide(a)
		})
}

// KeyOwner is a loaded client or keychain, for queries.
type KeyOwner = keyOwner

// LoadOwner loads a client or keychain of the given tenant for a query.
func (s *Service) LoadOwner(ctx context.Context, o Owner, tenantID, id string) (keyOwner, uint64, error) {
	a, v, _, err := get(ctx, s, o.stream(id), o.codec, o.fresh(id))
	if err != nil {
		return nil, 0, err
	}
	if !a.Exists() || a.Tenant() != tenantID {
		return nil, 0, domain.ErrNotFound
	}
	return a, v, nil
}

// createOwner creates a client or keychain: decide runs the aggregate's Create; the
// initial keys' kids are reserved before the append.
func (s *Service) createOwner(ctx context.Context, meta Meta, o Owner, keys []keyring.NewKey, decide func(keyOwner) error) (Result, error) {
	id := s.newID()
	owner := o.reservationOwner(id)
	var claimed []string
	res, err := update(ctx, s, meta, id, o.stream(id), o.codec,
		func() keyOwner { return o.fresh(id) },
		func(a keyOwner) error {
			if err := decide(a); err != nil {
				return err
			}
			for _, k := range keys {
				if err := s.claimKID(ctx, meta, k.KID, owner); err != nil {
					return err
				}
				claimed = append(claimed, k.KID)
			}
			return nil
		})
	if err != nil {
		s.releaseKIDs(ctx, meta, claimed, owner)
		return Result{}, err
	}
	return res, nil
}

// members resolves which of the given user ids are registered in the tenant now.
func (s *Service) members(ctx context.Context, tenantID string, ids []string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, m := range ids {
		ok, err := s.registered(ctx, tenantID, m)
		if err != nil {
			return nil, err
		}
		out[m] = ok
	}
	return out, nil
}

// AddMember makes a registered user of the tenant a member of a client or keychain.
func (s *Service) AddMember(ctx context.Context, meta Meta, o Owner, id, userID string) (Result, error) {
	ok, err := s.registered(ctx, meta.Actor.Tenant, userID)
	if err != nil {
		return Result{}, err
	}
	return s.updateOwner(ctx, meta, o, id, func(a keyOwner) error {
		return a.AddMember(meta.Actor, userID, ok, s.now())
	})
}

// RemoveMember ends a membership; the member's keys stay valid, flagged for replacement.
func (s *Service) RemoveMember(ctx context.Context, meta Meta, o Owner, id, userID string) (Result, error) {
	return s.updateOwner(ctx, meta, o, id, func(a keyOwner) error {
		return a.RemoveMember(meta.Actor, userID, s.now())
	})
}

// UploadKey registers a public key. The kid is reserved across all clients and
// keychains before the owner's append; a kid registered anywhere gives
// keyring.ErrKeyAlreadyExists. It answers the kid.
func (s *Service) UploadKey(ctx context.Context, meta Meta, o Owner, id string, in KeyInput) (Result, string, error) {
	nk, err := parseKey(in)
	if err != nil {
		return Result{}, "", err
	}
	owner := o.reservationOwner(id)
	claimed := false
	res, err := s.updateOwner(ctx, meta, o, id, func(a keyOwner) error {
		if err := a.UploadKey(meta.Actor, nk, o.limit(s.cfg), s.now()); err != nil {
			return err
		}
		if err := s.claimKID(ctx, meta, nk.KID, owner); err != nil {
			return err
		}
		claimed = true
		return nil
	})
	if err != nil {
		if claimed {
			s.releaseKIDs(ctx, meta, []string{nk.KID}, owner)
		}
		return Result{}, "", err
	}
	return res, nk.KID, nil
}

// DeleteKey removes a key; from then on no voucher request signed with it is accepted,
// and its kid is free again.
func (s *Service) DeleteKey(ctx context.Context, meta Meta, o Owner, id, kid string) (Result, error) {
	res, err := s.updateOwner(ctx, meta, o, id, func(a keyOwner) error {
		return a.DeleteKey(meta.Actor, kid, s.now())
	})
	if err == nil {
		s.releaseKIDs(ctx, meta, []string{kid}, o.reservationOwner(id))
	}
	return res, err
}

// DeleteOwner deletes a client or keychain with its keys (and a client's purpose links,
// a keychain's e-services), then frees its kids.
func (s *Service) DeleteOwner(ctx context.Context, meta Meta, o Owner, id string) (Result, error) {
	var kids []string
	res, err := s.updateOwner(ctx, meta, o, id, func(a keyOwner) error {
		kr := a.Keyring()
		kids = kids[:0]
		for _, k := range kr.Keys() {
			kids = append(kids, k.KID)
		}
		return a.Delete(meta.Actor, s.now())
	})
	if err == nil {
		s.releaseKIDs(ctx, meta, kids, o.reservationOwner(id))
	}
	return res, err
}

// claimKID reserves a kid for owner across all clients and keychains.
func (s *Service) claimKID(ctx context.Context, meta Meta, kid, owner string) error {
	err := s.claim(ctx, meta, kidStream(kid), kid, owner, func(o string) (bool, error) { return s.ownerHoldsKID(ctx, o, kid) })
	if errors.Is(err, errTaken) {
		return keyring.ErrKeyAlreadyExists
	}
	return err
}

func (s *Service) releaseKIDs(ctx context.Context, meta Meta, kids []string, owner string) {
	for _, kid := range kids {
		_ = s.release(ctx, meta, kidStream(kid), kid, owner)
	}
}

// ownerHoldsKID reports whether the owner named in a reservation has the key now.
func (s *Service) ownerHoldsKID(ctx context.Context, owner, kid string) (bool, error) {
	kind, id, _ := strings.Cut(owner, ":")
	var o Owner
	switch kind {
	case Clients.name:
		o = Clients
	case Keychains.name:
		o = Keychains
	default:
		return false, nil
	}
	a, _, _, err := get(ctx, s, o.stream(id), o.codec, o.fresh(id))
	if err != nil {
		return false, err
	}
	kr := a.Keyring()
	_, ok := kr.Key(kid)
	return ok && a.Exists(), nil
}
