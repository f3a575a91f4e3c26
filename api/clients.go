package api

import (
	"encoding/json"
	"net/http"
	"net/url"

	"github.com/labstack/echo/v4"

	"github.com/keyledger/keyledger/commands"
	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/domain/client"
	"github.com/keyledger/keyledger/projections/models"
)

type keyRequest struct {
	Name string          `json:"name"`
	Key  json.RawMessage `json:"key"` // a PEM string (optionally base64) or a JWK object
	Use  string          `json:"use"`
	Alg  string          `json:"alg,omitempty"`
}

// input turns the request into the command's key input: a JSON string is the PEM text,
// an object is a JWK.
func (k keyRequest) input() (commands.KeyInput, error) {
	in := commands.KeyInput{Name: k.Name, Use: k.Use, Alg: k.Alg}
	var pem string
	if err := json.Unmarshal(k.Key, &pem); err == nil {
		in.Key = []byte(pem)
		return in, nil
	}
	if len(k.Key) > 0 && k.Key[0] == '{' {
		in.Key = k.Key
		return in, nil
	}
	return in, &domain.ValidationError{Fields: []domain.FieldError{{Field: "key", Message: "a PEM string or a JWK object"}}}
}

func (s *Server) clientRoutes() {
	s.handle(http.MethodPost, "/v1/clients", TenantAdmin, s.createClient)
	s.handle(http.MethodGet, "/v1/clients", TenantUser, s.listClients)
	s.handle(http.MethodGet, "/v1/clients/:id", TenantUser, s.getOwner(commands.Clients))
	s.handle(http.MethodDelete, "/v1/clients/:id", TenantAdmin, s.deleteOwner(commands.Clients))
	s.handle(http.MethodGet, "/v1/clients/:id/history", TenantReader, s.clientHistory)
	s.handle(http.MethodPost, "/v1/clients/:id/members", TenantAdmin, s.addMember(commands.Clients))
	s.handle(http.MethodDelete, "/v1/clients/:id/members/:userId", TenantAdmin, s.removeMember(commands.Clients))
	s.handle(http.MethodPost, "/v1/clients/:id/keys", TenantUser, s.uploadKey(commands.Clients))
	s.handle(http.MethodGet, "/v1/clients/:id/keys", TenantUser, s.listKeys(commands.Clients))
	s.handle(http.MethodGet, "/v1/clients/:id/keys/:kid", TenantUser, s.getKey(commands.Clients))
	s.handle(http.MethodDelete, "/v1/clients/:id/keys/:kid", TenantUser, s.deleteKey(commands.Clients))
	s.handle(http.MethodPost, "/v1/clients/:id/purposes", TenantAdmin, s.addClientPurpose)
	s.handle(http.MethodDelete, "/v1/clients/:id/purposes/:purposeId", TenantAdmin, s.removeClientPurpose)
	s.handle(http.MethodPut, "/v1/clients/:id/roles", TenantAdmin, s.setClientRoles)
}

type rolesRequest struct {
	Roles *[]string `json:"roles"`
}

// setClientRoles replaces an API client's roles: what its vouchers may do on this API.
func (s *Server) setClientRoles(c echo.Context) error {
	var req rolesRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	if req.Roles == nil {
		return &domain.ValidationError{Fields: []domain.FieldError{{Field: "roles", Message: "required (an empty list removes every role)"}}}
	}
	m, err := commandMeta(c)
	if err != nil {
		return err
	}
	res, err := s.deps.Commands.SetClientRoles(c.Request().Context(), m, c.Param("id"), *req.Roles)
	if err != nil {
		return err
	}
	return s.ownerAnswer(commands.Clients)(c, res, http.StatusOK, "")
}

type createClientRequest struct {
	Kind        client.Kind  `json:"kind"`
	Name        string       `json:"name"`
	Description string       `json:"description"`
	Members     []string     `json:"members"`
	Keys        []keyRequest `json:"keys"`
	Roles       []string     `json:"roles"`
}

func (s *Server) createClient(c echo.Context) error {
	var req createClientRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	spec := commands.ClientSpec{Kind: req.Kind, Name: req.Name, Description: req.Description, Members: req.Members,
		Roles: req.Roles}
	for _, k := range req.Keys {
		in, err := k.input()
		if err != nil {
			return err
		}
		spec.Keys = append(spec.Keys, in)
	}
	m := meta(c)
	res, err := s.deps.Commands.CreateClient(c.Request().Context(), m, spec)
	if err != nil {
		return err
	}
	return s.ownerAnswer(commands.Clients)(c, res, http.StatusCreated, "/v1/clients/"+url.PathEscape(res.ID))
}

func (s *Server) listClients(c echo.Context) error {
	q, err := s.read(c, models.DirectoryModel, listParams("kind", "memberUserId", "purposeId", "namePrefix")...)
	if err != nil {
		return err
	}
	kind := client.Kind(c.QueryParam("kind"))
	if kind != "" && kind != client.KindAPI && kind != client.KindEService {
		return &domain.ValidationError{Fields: []domain.FieldError{{Field: "kind", Message: `"eservice" or "api"`}}}
	}
	f := models.ClientFilter{Kind: kind, MemberUserID: c.QueryParam("memberUserId"), PurposeID: c.QueryParam("purposeId"),
		NamePrefix: c.QueryParam("namePrefix")}
	return listAnswer(q, func(cursor string, limit int) (models.Page[models.ClientView], error) {
		return models.ListClients(q.ctx(), q.store, q.ns, actorFrom(c).Tenant, f, cursor, limit)
	})
}

func (s *Server) clientHistory(c echo.Context) error {
	return s.history(c, client.StreamName(c.Param("id")))
}

type purposeLinkRequest struct {
	PurposeID string `json:"purposeId"`
}

func (s *Server) addClientPurpose(c echo.Context) error {
	var req purposeLinkRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	m, err := commandMeta(c)
	if err != nil {
		return err
	}
	res, err := s.deps.Commands.AddClientPurpose(c.Request().Context(), m, c.Param("id"), req.PurposeID)
	if err != nil {
		return err
	}
	return s.ownerAnswer(commands.Clients)(c, res, http.StatusOK, "")
}

func (s *Server) removeClientPurpose(c echo.Context) error {
	m, err := commandMeta(c)
	if err != nil {
		return err
	}
	res, err := s.deps.Commands.RemoveClientPurpose(c.Request().Context(), m, c.Param("id"), c.Param("purposeId"))
	if err != nil {
		return err
	}
	if done, err := s.awaitRevocation(c, res, grantsPurpose...); done || err != nil {
		return err
	}
	return answer(c, res, http.StatusNoContent, "", nil)
}
