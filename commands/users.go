package commands

import (
	"context"
	"errors"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/domain/client"
	"github.com/keyledger/keyledger/domain/keyring"
	"github.com/keyledger/keyledger/domain/tenant"
	"github.com/keyledger/keyledger/domain/user"
	"github.com/keyledger/keyledger/eventstore"
)

// Principal is an authenticated caller as the API knows it.
type Principal struct {
	Subject  string
	Tenant   string
	Operator bool
	// Client marks an API client calling with a voucher: Subject is the client id.
	Client bool
}

// ResolveActor turns a principal into a domain actor with the roles Keyledger holds for
// it. A user who is not registered in the tenant gets no roles: they can do nothing but
// is still identified in the audit trail.
func (s *Service) ResolveActor(ctx context.Context, p Principal) (domain.Actor, error) {
	if p.Operator {
		return domain.Actor{ID: p.Subject, Kind: eventstore.ActorOperator, Tenant: p.Tenant, Operator: true}, nil
	}
	a := domain.Actor{ID: p.Subject, Kind: eventstore.ActorUser, Tenant: p.Tenant}
	if p.Client {
		a.Kind = eventstore.ActorClient
	}
	if !domain.ValidID(p.Tenant) || !domain.ValidID(p.Subject) {
		// Never build a stream name from ids that could not have been registered ('/'
		// would let "a"+"b/c" and "a/b"+"c" name the same stream).
		return a, nil
	}
	if p.Client {
		// An API client acts with the roles it has now, not those its voucher carried: a
		// role taken away or a client deleted takes effect at the next call.
		c, _, _, err := get(ctx, s, client.StreamName(p.Subject), client.Codec, client.New(p.Subject))
		if err != nil {
			return domain.Actor{}, err
		}
		if c.Exists() && c.Tenant() == p.Tenant && c.Kind() == client.KindAPI {
			a.Roles = c.Roles()
		}
		return a, nil
	}
	u, _, _, err := get(ctx, s, user.StreamName(p.Tenant, p.Subject), user.Codec, user.New(p.Tenant, p.Subject))
	if err != nil {
		return domain.Actor{}, err
	}
	if u.Exists() {
		a.Roles = u.Roles()
	}
	return a, nil
}

// CreateTenant creates a tenant and registers its first administrator. Repeating the
// same creation (same id, name and admin) completes a creation that was interrupted
// between its two appends and answers as the first did.
func (s *Service) CreateTenant(ctx context.Context, meta Meta, id, name, adminID, adminName string) (Result, error) {
	if id == "" {
		id = s.newID()
	}
	now := s.now()
	// The events belong to the new tenant: the operator acts on its behalf.
	meta.Actor.Tenant = id
	created, err := tenant.Create(meta.Actor, id, name, adminID, adminName, now)
	if err != nil {
		return Result{}, err
	}
	res, err := s.appendEvents(ctx, meta, id, tenant.StreamName(id), eventstore.NoStream, "", created.Pending())
	switch {
	case errors.Is(err, eventstore.ErrConcurrency):
		existing, v, _, lerr := get(ctx, s, tenant.StreamName(id), tenant.Codec, &tenantAgg{})
		if lerr != nil {
			return Result{}, lerr
		}
		t := existing.t
		if t.Name() != created.Name() || t.AdminID() != created.AdminID() || t.AdminName() != created.AdminName() {
			return Result{}, domain.ErrAlreadyExists
		}
		res = eventstore.AppendResult{Version: v}
	case err != nil:
		return Result{}, err
	}
	// The first administrator, registered on the operator's behalf.
	adminMeta := meta
	adminMeta.CausationID = meta.CorrelationID
	ures, err := update(ctx, s, adminMeta, adminID, user.StreamName(id, adminID), user.Codec,
		func() *user.User { return user.New(id, adminID) },
		func(u *user.User) error {
			if u.Exists() {
				return nil
			}
			return u.Register(meta.Actor, adminName, []string{string(domain.RoleAdmin)}, now)
		})
	if err != nil {
		return Result{}, err
	}
	pos := res.Position
	if pos.Less(ures.Position) {
		pos = ures.Position
	}
	return Result{ID: id, Version: res.Version, Position: pos, Changed: true}, nil
}

// tenantAgg adapts the tenant (created by a constructor) to the load helper.
type tenantAgg struct {
	domain.Changes
	t *tenant.Tenant
}

func (a *tenantAgg) Rehydrate(evs []domain.Event) { a.t = tenant.Rehydrate(evs) }

// GetTenant loads a tenant and its version.
func (s *Service) GetTenant(ctx context.Context, id string) (*tenant.Tenant, uint64, error) {
	if !domain.ValidID(id) {
		return nil, 0, domain.ErrNotFound
	}
	a, v, ok, err := get(ctx, s, tenant.StreamName(id), tenant.Codec, &tenantAgg{})
	if err != nil {
		return nil, 0, err
	}
	if !ok {
		return nil, 0, domain.ErrNotFound
	}
	return a.t, v, nil
}

// RegisterUser registers a user in the actor's tenant.
func (s *Service) RegisterUser(ctx context.Context, meta Meta, id, name string, roles []string) (Result, error) {
	t := meta.Actor.Tenant
	if !domain.ValidID(id) {
		// Never build a stream name from an invalid id; the empty aggregate reports every
		// invalid field at once.
		return Result{}, user.New(t, id).Register(meta.Actor, name, roles, s.now())
	}
	return update(ctx, s, meta, id, user.StreamName(t, id), user.Codec,
		func() *user.User { return user.New(t, id) },
		func(u *user.User) error { return u.Register(meta.Actor, name, roles, s.now()) })
}

// UpdateUser changes a user's name and/or roles.
func (s *Service) UpdateUser(ctx context.Context, meta Meta, id string, name *string, roles []string) (Result, error) {
	t := meta.Actor.Tenant
	return update(ctx, s, meta, id, user.StreamName(t, id), user.Codec,
		func() *user.User { return user.New(t, id) },
		func(u *user.User) error { return u.Update(meta.Actor, name, roles, s.now()) })
}

// DeleteUser removes a user from the tenant, then ends each of their memberships of the
// tenant's clients and keychains (as member removals on each, so the keys they uploaded
// are flagged for replacement there).
func (s *Service) DeleteUser(ctx context.Context, meta Meta, id string) (Result, error) {
	t := meta.Actor.Tenant
	res, err := update(ctx, s, meta, id, user.StreamName(t, id), user.Codec,
		func() *user.User { return user.New(t, id) },
		func(u *user.User) error { return u.Delete(meta.Actor, s.now()) })
	if err != nil {
		return Result{}, err
	}
	follow := meta
	follow.IfMatch = nil
	follow.CausationID = meta.CorrelationID
	for _, o := range []Owner{Clients, Keychains} {
		owners, err := s.ListOwners(ctx, o, t)
		if err != nil {
			return res, err
		}
		for _, a := range owners {
			kr := a.Keyring()
			if !kr.IsMember(id) {
				continue
			}
			r, err := s.RemoveMember(ctx, follow, o, a.ID(), id)
			if err != nil && !errors.Is(err, keyring.ErrNotAMember) {
				return res, err
			}
			if res.Position.Less(r.Position) {
				res.Position = r.Position
			}
		}
	}
	return res, nil
}

// GetUser loads a registered user of a tenant.
func (s *Service) GetUser(ctx context.Context, tenantID, id string) (*user.User, uint64, error) {
	u, v, _, err := get(ctx, s, user.StreamName(tenantID, id), user.Codec, user.New(tenantID, id))
	if err != nil {
		return nil, 0, err
	}
	if !u.Exists() {
		return nil, 0, domain.ErrNotFound
	}
	return u, v, nil
}

// registered reports whether a user is registered in a tenant now.
func (s *Service) registered(ctx context.Context, tenantID, id string) (bool, error) {
	if !domain.ValidID(id) {
		return false, nil
	}
	u, _, _, err := get(ctx, s, user.StreamName(tenantID, id), user.Codec, user.New(tenantID, id))
	if err != nil {
		return false, err
	}
	return u.Exists(), nil
}
