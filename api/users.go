package api

import (
	"errors"
	"net/http"
	"net/url"

	"github.com/labstack/echo/v4"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/domain/user"
	"github.com/keyledger/keyledger/projections/models"
)

type createTenantRequest struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Admin struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"admin"`
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
	ctx := c.Request().Context()
	t, _, err := s.deps.Commands.GetTenant(ctx, res.ID)
	if err != nil {
		return err
	}
	admin, _, err := s.deps.Commands.GetUser(ctx, t.ID(), t.AdminID())
	if err != nil && !errors.Is(err, domain.ErrNotFound) {
		return err
	}
	return answer(c, res, http.StatusCreated, "/v1/tenants/"+url.PathEscape(t.ID()), models.RenderTenant(t, admin))
}

// getTenant: the operator reads any tenant, a user only their own.
func (s *Server) getTenant(c echo.Context) error {
	q, err := s.read(c, models.DirectoryModel)
	if err != nil {
		return err
	}
	a := actorFrom(c)
	if !a.Operator && a.Tenant != c.Param("id") {
		return domain.ErrNotFound
	}
	return detailAnswer(q, func() (models.TenantView, models.RecordMeta, bool, error) {
		return models.GetTenant(q.ctx(), q.store, q.ns, c.Param("id"))
	})
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
	return answer(c, res, http.StatusCreated, "/v1/users/"+url.PathEscape(u.ID()), models.RenderUser(u))
}

// listResponse is a list that is not paginated (a resource's keys, its history).
type listResponse[T any] struct {
	Items []T `json:"items"`
}

func (s *Server) listUsers(c echo.Context) error {
	q, err := s.read(c, models.DirectoryModel, listParams("namePrefix")...)
	if err != nil {
		return err
	}
	f := models.UserFilter{NamePrefix: c.QueryParam("namePrefix")}
	return listAnswer(q, func(cursor string, limit int) (models.Page[models.UserView], error) {
		return models.ListUsers(q.ctx(), q.store, q.ns, actorFrom(c).Tenant, f, cursor, limit)
	})
}

func (s *Server) getUser(c echo.Context) error {
	q, err := s.read(c, models.DirectoryModel)
	if err != nil {
		return err
	}
	return detailAnswer(q, func() (models.UserView, models.RecordMeta, bool, error) {
		return models.GetUser(q.ctx(), q.store, q.ns, actorFrom(c).Tenant, c.Param("id"))
	})
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
	return answer(c, res, http.StatusOK, "", models.RenderUser(u))
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
