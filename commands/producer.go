package commands

import (
	"context"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/domain/client"
	"github.com/keyledger/keyledger/domain/eservice"
	"github.com/keyledger/keyledger/domain/keychain"
	"github.com/keyledger/keyledger/domain/purpose"
)

// CreateEService creates an e-service produced by the actor's tenant.
func (s *Service) CreateEService(ctx context.Context, meta Meta, name, audience string, lifetimeSeconds int) (Result, error) {
	id := s.newID()
	return update(ctx, s, meta, id, eservice.StreamName(id), eservice.Codec,
		func() *eservice.EService { return eservice.New(id) },
		func(e *eservice.EService) error {
			return e.Create(meta.Actor, name, audience, lifetimeSeconds, s.now())
		})
}

func (s *Service) updateEService(ctx context.Context, meta Meta, id string, decide func(*eservice.EService) error) (Result, error) {
	return update(ctx, s, meta, id, eservice.StreamName(id), eservice.Codec,
		func() *eservice.EService { return eservice.New(id) },
		func(e *eservice.EService) error {
			if !e.Exists() || e.Tenant() != meta.Actor.Tenant {
				return domain.ErrNotFound
			}
			return decide(e)
		})
}

// SuspendEService stops vouchers for the e-service until it is activated again.
func (s *Service) SuspendEService(ctx context.Context, meta Meta, id string) (Result, error) {
	return s.updateEService(ctx, meta, id, func(e *eservice.EService) error { return e.Suspend(meta.Actor, s.now()) })
}

// ActivateEService lets a suspended e-service serve again.
func (s *Service) ActivateEService(ctx context.Context, meta Meta, id string) (Result, error) {
	return s.updateEService(ctx, meta, id, func(e *eservice.EService) error { return e.Activate(meta.Actor, s.now()) })
}

// GetEService loads an e-service. Any tenant may read an e-service (consumers request
// purposes for them).
func (s *Service) GetEService(ctx context.Context, id string) (*eservice.EService, uint64, error) {
	e, v, _, err := get(ctx, s, eservice.StreamName(id), eservice.Codec, eservice.New(id))
	if err != nil {
		return nil, 0, err
	}
	if !e.Exists() {
		return nil, 0, domain.ErrNotFound
	}
	return e, v, nil
}

// byFirst rehydrates an aggregate whose id it learns from its first event.
type byFirst[A interface {
	Rehydrate([]domain.Event)
}] struct {
	domain.Changes
	make func(domain.Event) A
	a    A
	set  bool
}

func (b *byFirst[A]) Rehydrate(evs []domain.Event) {
	if !b.set && len(evs) > 0 {
		b.a, b.set = b.make(evs[0]), true
	}
	if b.set {
		b.a.Rehydrate(evs)
	}
}

// CreatePurpose requests access to an e-service for the actor's tenant (pending until
// the producer activates it).
func (s *Service) CreatePurpose(ctx context.Context, meta Meta, eserviceID, title string) (Result, error) {
	e, _, err := s.GetEService(ctx, eserviceID)
	if err != nil {
		return Result{}, err
	}
	id := s.newID()
	info := purpose.EServiceInfo{ID: e.ID(), ProducerTenant: e.Tenant(), Active: e.Active()}
	return update(ctx, s, meta, id, purpose.StreamName(id), purpose.Codec,
		func() *purpose.Purpose { return purpose.New(id) },
		func(p *purpose.Purpose) error { return p.Create(meta.Actor, info, title, s.now()) })
}

func (s *Service) updatePurpose(ctx context.Context, meta Meta, id string, decide func(*purpose.Purpose) error) (Result, error) {
	return update(ctx, s, meta, id, purpose.StreamName(id), purpose.Codec,
		func() *purpose.Purpose { return purpose.New(id) },
		func(p *purpose.Purpose) error {
			if !p.Exists() {
				return domain.ErrNotFound
			}
			return decide(p)
		})
}

// ActivatePurpose: the producer accepts a pending purpose, or either side reactivates a
// suspended one.
func (s *Service) ActivatePurpose(ctx context.Context, meta Meta, id string) (Result, error) {
	return s.updatePurpose(ctx, meta, id, func(p *purpose.Purpose) error { return p.Activate(meta.Actor, s.now()) })
}

// SuspendPurpose: either side suspends an active purpose.
func (s *Service) SuspendPurpose(ctx context.Context, meta Meta, id string) (Result, error) {
	return s.updatePurpose(ctx, meta, id, func(p *purpose.Purpose) error { return p.Suspend(meta.Actor, s.now()) })
}

// ArchivePurpose: the consumer archives the purpose for good; every client linked to it
// is unlinked, each as an event on that client (reason purpose_archived).
func (s *Service) ArchivePurpose(ctx context.Context, meta Meta, id string) (Result, error) {
	res, err := s.updatePurpose(ctx, meta, id, func(p *purpose.Purpose) error { return p.Archive(meta.Actor, s.now()) })
	if err != nil {
		return Result{}, err
	}
	clients, err := s.ListClients(ctx, meta.Actor.Tenant, client.KindEService)
	if err != nil {
		return res, err
	}
	sys := meta
	sys.IfMatch = nil
	sys.CausationID = meta.CorrelationID
	for _, c := range clients {
		if !c.HasPurpose(id) {
			continue
		}
		r, err := s.updateOwner(ctx, sys, Clients, c.ID(), func(a keyOwner) error {
			a.(*client.Client).PurposeArchived(meta.Actor, id, s.now())
			return nil
		})
		if err != nil {
			return res, err
		}
		if res.Position.Less(r.Position) {
			res.Position = r.Position
		}
	}
	return res, nil
}

// GetPurpose loads a purpose visible to the tenant (its consumer or its producer).
func (s *Service) GetPurpose(ctx context.Context, tenantID, id string) (*purpose.Purpose, uint64, error) {
	p, v, _, err := get(ctx, s, purpose.StreamName(id), purpose.Codec, purpose.New(id))
	if err != nil {
		return nil, 0, err
	}
	if !p.Exists() || (p.ConsumerTenant() != tenantID && p.ProducerTenant() != tenantID) {
		return nil, 0, domain.ErrNotFound
	}
	return p, v, nil
}

// KeychainSpec is a keychain creation request.
type KeychainSpec struct {
	Name        string
	Description string
	Members     []string
	Keys        []KeyInput
}

// CreateKeychain creates a producer keychain with its initial members and keys.
func (s *Service) CreateKeychain(ctx context.Context, meta Meta, spec KeychainSpec) (Result, error) {
	members, err := s.members(ctx, meta.Actor.Tenant, spec.Members)
	if err != nil {
		return Result{}, err
	}
	keys, err := parseKeys(spec.Keys)
	if err != nil {
		return Result{}, err
	}
	return s.createOwner(ctx, meta, Keychains, keys, func(a keyOwner) error {
		return a.(*keychain.Keychain).Create(meta.Actor, keychain.Spec{Name: spec.Name, Description: spec.Description,
			Members: members, Keys: keys}, s.cfg.MaxKeychainKeys, s.now())
	})
}

// GetKeychain loads a keychain of the given tenant.
func (s *Service) GetKeychain(ctx context.Context, tenantID, id string) (*keychain.Keychain, uint64, error) {
	a, v, err := s.LoadOwner(ctx, Keychains, tenantID, id)
	if err != nil {
		return nil, 0, err
	}
	return a.(*keychain.Keychain), v, nil
}

// AddKeychainEService links one of the tenant's own e-services to a keychain.
func (s *Service) AddKeychainEService(ctx context.Context, meta Meta, id, eserviceID string) (Result, error) {
	e, _, err := s.GetEService(ctx, eserviceID)
	if err != nil {
		return Result{}, err
	}
	info := keychain.EServiceInfo{ID: e.ID(), ProducerTenant: e.Tenant()}
	return s.updateOwner(ctx, meta, Keychains, id, func(a keyOwner) error {
		return a.(*keychain.Keychain).AddEService(meta.Actor, info, s.now())
	})
}

// RemoveKeychainEService unlinks an e-service from a keychain.
func (s *Service) RemoveKeychainEService(ctx context.Context, meta Meta, id, eserviceID string) (Result, error) {
	return s.updateOwner(ctx, meta, Keychains, id, func(a keyOwner) error {
		return a.(*keychain.Keychain).RemoveEService(meta.Actor, eserviceID, s.now())
	})
}

// ListOwners returns the tenant's clients or keychains.
func (s *Service) ListOwners(ctx context.Context, o Owner, tenantID string) ([]keyOwner, error) {
	streams, err := s.streamsWithPrefix(ctx, o.stream(""))
	if err != nil {
		return nil, err
	}
	var out []keyOwner
	for _, st := range streams {
		b := &byFirst[keyOwner]{make: func(ev domain.Event) keyOwner {
			switch c := ev.(type) {
			case client.Created:
				return client.New(c.ID)
			case keychain.Created:
				return keychain.New(c.ID)
			}
			return nil
		}}
		if _, err := s.load(ctx, st, o.codec, b); err != nil {
			return nil, err
		}
		if b.a != nil && b.a.Exists() && b.a.Tenant() == tenantID {
			out = append(out, b.a)
		}
	}
	return out, nil
}
