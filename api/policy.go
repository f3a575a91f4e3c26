package api

import (
	"github.com/labstack/echo/v4"

	"github.com/keyledger/keyledger/domain"
)

// Policy names who may call a route. Every route is registered with one (deny by
// default: a route without a policy is a bug that TestEveryRouteHasAPolicy catches).
type Policy string

const (
	// Public routes need no authentication: probes, metrics, the token endpoint and its
	// metadata. Never use it for anything that reads or changes tenant data.
	Public Policy = "public"
	// Authenticated routes need any valid token (operator or tenant user).
	Authenticated Policy = "authenticated"
	// Operator routes are for the platform operator only.
	Operator Policy = "operator"
	// TenantUser routes need a user registered in the token's tenant (any role); the
	// domain decides finer rules (a security operator must be a member, …).
	TenantUser Policy = "tenant-user"
	// TenantAdmin routes need the tenant's admin role.
	TenantAdmin Policy = "tenant-admin"
	// TenantReader routes need the admin or auditor role (history).
	TenantReader Policy = "tenant-reader"
)

// allows reports whether an authenticated actor satisfies the policy.
func (p Policy) allows(a domain.Actor) bool {
	switch p {
	case Public, Authenticated:
		return true
	case Operator:
		return a.Operator
	case TenantUser:
		return !a.Operator && a.Tenant != "" && len(a.Roles) > 0
	case TenantAdmin:
		return !a.Operator && a.Tenant != "" && a.Roles.Has(domain.RoleAdmin)
	case TenantReader:
		return !a.Operator && a.Tenant != "" && (a.Roles.Has(domain.RoleAdmin) || a.Roles.Has(domain.RoleAuditor))
	}
	return false // unknown policy: deny
}

// handle registers a route together with its policy. It is the only way routes are
// added, so the policy sits next to the registration.
func (s *Server) handle(method, path string, p Policy, h echo.HandlerFunc, mw ...echo.MiddlewareFunc) {
	if p == "" {
		panic("api: route " + method + " " + path + " registered without a policy")
	}
	s.policies[method+" "+path] = p
	if p != Public {
		mw = append([]echo.MiddlewareFunc{s.authorize(p)}, mw...)
	}
	s.echo.Add(method, path, h, mw...)
}

// PolicyOf returns the policy a route was registered with, and false for a route that
// was added some other way.
func (s *Server) PolicyOf(method, path string) (Policy, bool) {
	p, ok := s.policies[method+" "+path]
	return p, ok
}
