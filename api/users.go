package api

import (
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/domain/user"
)

type createTenantRequest struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Admin struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"admin"`
}

type tenantResponse struct {
	ID    string       `json:"id"`
	Name  string       `json:"name"`
	Admin userResponse `json:"admin"`
}

type userResponse struct {
	ID           string    `json:"id"`
	Name         string    `json:"name"`
	Roles        []string  `json:"roles"`
	RegisteredAt time.Time `json:"registeredAt"`
}

func userView(u *user.User) userResponse {
	roles := make([]string, len(u.Roles()))
	for i, r := range u.Roles() {
		roles[i] = string(r)
	}
	return userResponse{ID: u.ID(), Name: u.Name(), Roles: roles, RegisteredAt: u.RegisteredAt()}
}

func (s *Server) userRoutes() {
	s.handle(http.MethodPost, "/v1/tenants", Operator, s.createTenant)
	s.handle(http.MethodGet, "/v1/tenants/:id", Authenticated, s.getTenant)
	s.handle(http.MethodPost, "/v1/users", TenantAdmin, s.createUser)
	s.handle(http.MethodGet, "/v1/users", TenantAdmin, s.listUsers)
	s.handle(http.MethodGet, "/v1/users/:id", TenantAdmin, s.getUser)
	s.handle(http.MethodPatch, "/v1/users/:id", TenantAdmin, s.patchUser)
	s.handle(http.MethodDelete, "/v1/users/:id", TenantAdmin, s.deleteUser)
	s.handle(http.MethodGet, "/v1/users/:id/history", TenantReader, s.userHistory)
}

func (s *Server) createTenant(c echo.Context) error {
	var req createTenantRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	m := meta(c)
	res, err := s.deps.Commands.CreateTenant(c.Request().Context(), m, req.ID, req.Name, req.Admin.ID, req.Admin.Name)
	if err != nil {
		return err
	}
	view, _, err := s.tenantView(c, res.ID)
	if err != nil {
		return err
	}
	return answer(c, res, http.StatusCreated, "/v1/tenants/"+url.PathEscape(view.ID), view)
}

// tenantView loads a tenant with its first administrator as registered now.
func (s *Server) tenantView(c echo.Context, id string) (tenantResponse, uint64, error) {
	t, v, err := s.deps.Commands.GetTenant(c.Request().Context(), id)
	if err != nil {
		return tenantResponse{}, 0, err
	}
	out := tenantResponse{ID: t.ID(), Name: t.Name(), Admin: userResponse{ID: t.AdminID(), Name: t.AdminName(), Roles: []string{}}}
	if admin, _, err := s.deps.Commands.GetUser(c.Request().Context(), t.ID(), t.AdminID()); err == nil {
		out.Admin = userView(admin)
	} else if !errors.Is(err, domain.ErrNotFound) {
		return tenantResponse{}, 0, err
	}
	return out, v, nil
}

// getTenant: the operator reads any tenant, a user only their own.
func (s *Server) getTenant(c echo.Context) error {
	a := actorFrom(c)
	if !a.Operator && a.Tenant != c.Param("id") {
		return domain.ErrNotFound
	}
	view, v, err := s.tenantView(c, c.Param("id"))
	if err != nil {
		return err
	}
	c.Response().Header().Set("ETag", etag(v))
	return c.JSON(http.StatusOK, view)
}

type createUserRequest struct {
	ID    string   `json:"id"`
	Name  string   `json:"name"`
	Roles []string `json:"roles"`
}

func (s *Server) createUser(c echo.Context) error {
	var req createUserRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	m := meta(c)
	res, err := s.deps.Commands.RegisterUser(c.Request().Context(), m, req.ID, req.Name, req.Roles)
	if err != nil {
		return err
	}
	u, _, err := s.deps.Commands.GetUser(c.Request().Context(), m.Actor.Tenant, req.ID)
	if err != nil {
		return err
	}
	return answer(c, res, http.StatusCreated, "/v1/users/"+url.PathEscape(u.ID()), userView(u))
}

type listResponse[T any] struct {
	Items []T `json:"items"`
}

func (s *Server) listUsers(c echo.Context) error {
	us, err := s.deps.Commands.ListUsers(c.Request().Context(), actorFrom(c).Tenant)
	if err != nil {
		return err
	}
	out := listResponse[userResponse]{Items: make([]userResponse, 0, len(us))}
	for _, u := range us {
		out.Items = append(out.Items, userView(u))
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) getUser(c echo.Context) error {
	u, v, err := s.deps.Commands.GetUser(c.Request().Context(), actorFrom(c).Tenant, c.Param("id"))
	if err != nil {
		return err
	}
	c.Response().Header().Set("ETag", etag(v))
	return c.JSON(http.StatusOK, userView(u))
}

type patchUserRequest struct {
	Name  *string   `json:"name"`
	Roles *[]string `json:"roles"`
}

func (s *Server) patchUser(c echo.Context) error {
	var req patchUserRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	m, err := commandMeta(c)
	if err != nil {
		return err
	}
	var roles []string
	if req.Roles != nil {
		roles = *req.Roles
		if roles == nil {
			roles = []string{}
		}
	}
	res, err := s.deps.Commands.UpdateUser(c.Request().Context(), m, c.Param("id"), req.Name, roles)
	if err != nil {
		return err
	}
	u, _, err := s.deps.Commands.GetUser(c.Request().Context(), m.Actor.Tenant, c.Param("id"))
	if err != nil {
		return err
	}
	return answer(c, res, http.StatusOK, "", userView(u))
}

func (s *Server) deleteUser(c echo.Context) error {
	m, err := commandMeta(c)
	if err != nil {
		return err
	}
	res, err := s.deps.Commands.DeleteUser(c.Request().Context(), m, c.Param("id"))
	if err != nil {
		return err
	}
	return answer(c, res, http.StatusNoContent, "", nil)
}

func (s *Server) userHistory(c echo.Context) error {
	return s.history(c, user.StreamName(actorFrom(c).Tenant, c.Param("id")))
}
