package commands

import (
	"context"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/domain/client"
	"github.com/keyledger/keyledger/domain/purpose"
)

// ClientSpec is a client creation request.
type ClientSpec struct {
	Kind        client.Kind
	Name        string
	Description string
	Members     []string
	Keys        []KeyInput
	// Roles are an API client's roles in its tenant (what its vouchers may do on
	// Keyledger's API).
	Roles []string
}

// CreateClient creates a client in the actor's tenant with its initial members and keys.
func (s *Service) CreateClient(ctx context.Context, meta Meta, spec ClientSpec) (Result, error) {
	members, err := s.members(ctx, meta.Actor.Tenant, spec.Members)
	if err != nil {
		return Result{}, err
	}
	keys, err := parseKeys(spec.Keys)
	if err != nil {
		return Result{}, err
	}
	return s.createOwner(ctx, meta, Clients, keys, func(a keyOwner) error {
		return a.(*client.Client).Create(meta.Actor, client.Spec{Kind: spec.Kind, Name: spec.Name,
			Description: spec.Description, Members: members, Keys: keys, Roles: spec.Roles}, s.cfg.MaxClientKeys, s.now())
	})
}

// GetClient loads a client of the given tenant.
func (s *Service) GetClient(ctx context.Context, tenantID, id string) (*client.Client, uint64, error) {
	a, v, err := s.LoadOwner(ctx, Clients, tenantID, id)
	if err != nil {
		return nil, 0, err
	}
	return a.(*client.Client), v, nil
}

// AddClientPurpose links an e-service client to an active or suspended purpose of its
// tenant.
func (s *Service) AddClientPurpose(ctx context.Context, meta Meta, clientID, purposeID string) (Result, error) {
	p, _, _, err := get(ctx, s, purpose.StreamName(purposeID), purpose.Codec, purpose.New(purposeID))
	if err != nil {
		return Result{}, err
	}
	if !p.Exists() || p.ConsumerTenant() != meta.Actor.Tenant {
		return Result{}, domain.NewError(domain.KindNotFound, "purpose_not_found", "no such purpose in this tenant")
	}
	info := client.PurposeInfo{ID: p.ID(), EServiceID: p.EServiceID(), ConsumerTenant: p.ConsumerTenant(), Linkable: p.Linkable()}
	return s.updateOwner(ctx, meta, Clients, clientID, func(a keyOwner) error {
		return a.(*client.Client).AddPurpose(meta.Actor, info, s.now())
	})
}

// SetClientRoles replaces an API client's roles.
func (s *Service) SetClientRoles(ctx context.Context, meta Meta, clientID string, roles []string) (Result, error) {
	return s.updateOwner(ctx, meta, Clients, clientID, func(a keyOwner) error {
		return a.(*client.Client).SetRoles(meta.Actor, roles, s.now())
	})
}

// RemoveClientPurpose unlinks a purpose; the client keeps working for its other purposes.
func (s *Service) RemoveClientPurpose(ctx context.Context, meta Meta, clientID, purposeID string) (Result, error) {
	return s.updateOwner(ctx, meta, Clients, clientID, func(a keyOwner) error {
		return a.(*client.Client).RemovePurpose(meta.Actor, purposeID, s.now())
	})
}
