package api

import "github.com/labstack/echo/v4"

// Policy names who may call a route. Every route is registered with one (deny by
// default: a route without a policy is a bug that TestEveryRouteHasAPolicy catches).
type Policy string

const (
	// Public routes need no authentication: probes, metrics, the token endpoint and its
	// metadata. Never use it for anything that reads or changes tenant data.
	Public Policy = "public"
)

// handle registers a route together with its policy. It is the only way routes are
// added, so the policy sits next to the registration.
func (s *Server) handle(method, path string, p Policy, h echo.HandlerFunc, mw ...echo.MiddlewareFunc) {
	if p == "" {
		panic("api: route " + method + " " + path + " registered without a policy")
	}
	s.policies[method+" "+path] = p
	s.echo.Add(method, path, h, mw...)
}

// PolicyOf returns the policy a route was registered with, and false for a route that
// was added some other way.
func (s *Server) PolicyOf(method, path string) (Policy, bool) {
	p, ok := s.policies[method+" "+path]
	return p, ok
}
