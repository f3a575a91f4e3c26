package api

import (
	"context"
	"net/http"
	"net/url"

	"github.com/labstack/echo/v4"

	"github.com/keyledger/keyledger/commands"
	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/domain/client"
	"github.com/keyledger/keyledger/domain/keychain"
	"github.com/keyledger/keyledger/domain/keyring"
	"github.com/keyledger/keyledger/projections/models"
	"github.com/keyledger/keyledger/projections/readmodel"
)

// Clients and keychains share members and keys; these handlers serve both.

type echoCtx = context.Context

// ownerPath is the collection path of an owner kind.
func ownerPath(o commands.Owner) string {
	if o.Name() == commands.Keychains.Name() {
		return "/v1/keychains/"
	}
	return "/v1/clients/"
}

// ownerView renders a client or keychain.
func ownerView(a any) any {
	switch a := a.(type) {
	case *client.Client:
		return models.RenderClient(a)
	case *keychain.Keychain:
		return models.RenderKeychain(a)
	}
	return nil
}

// ownerReads are the directory queries of one kind of key owner.
type ownerReads struct {
	// get reads an owner of the tenant: its view and its keys.
	get func(q query, tenantID, id string) (any, []models.KeyView, models.RecordMeta, bool, error)
	// key reads one key with its JWK.
	key func(ctx echoCtx, store readmodel.Store, ns readmodel.Namespace, tenantID, id, kid string) (models.KeyView, models.RecordMeta, error)
}

func ownerReadsOf(o commands.Owner) ownerReads {
	if o.Name() == commands.Keychains.Name() {
		return ownerReads{
			get: func(q query, tenantID, id string) (any, []models.KeyView, models.RecordMeta, bool, error) {
				v, meta, ok, err := models.GetKeychain(q.ctx(), q.store, q.ns, tenantID, id)
				return v, v.Keys, meta, ok, err
			},
			key: models.GetKeychainKey,
		}
	}
	return ownerReads{
		get: func(q query, tenantID, id string) (any, []models.KeyView, models.RecordMeta, bool, error) {
			v, meta, ok, err := models.GetClient(q.ctx(), q.store, q.ns, tenantID, id)
			return v, v.Keys, meta, ok, err
		},
		key: models.GetClientKey,
	}
}

// readOwner reads the owner named by :id in the caller's tenant.
func (s *Server) readOwner(c echo.Context, o commands.Owner) (query, any, []models.KeyView, models.RecordMeta, error) {
	q, err := s.read(c, models.DirectoryModel)
	if err != nil {
		return q, nil, nil, models.RecordMeta{}, err
	}
	v, keys, meta, ok, err := ownerReadsOf(o).get(q, actorFrom(c).Tenant, c.Param("id"))
	if err == nil && !ok {
		err = domain.ErrNotFound
	}
	return q, v, keys, meta, err
}

// ownerAnswer reloads the owner a command changed and answers with it.
func (s *Server) ownerAnswer(o commands.Owner) func(c echo.Context, res commands.Result, status int, location string) error {
	return func(c echo.Context, res commands.Result, status int, location string) error {
		s.awaitGrant(c, res, grantsOf(o)...)
		a, _, err := s.deps.Commands.LoadOwner(c.Request().Context(), o, actorFrom(c).Tenant, res.ID)
		if err != nil {
			return err
		}
		return answer(c, res, status, location, ownerView(a))
	}
}

func (s *Server) getOwner(o commands.Owner) echo.HandlerFunc {
	return func(c echo.Context) error {
		q, v, _, meta, err := s.readOwner(c, o)
		if err != nil {
			return err
		}
		return q.detail(meta.Version, v)
	}
}

func (s *Server) deleteOwner(o commands.Owner) echo.HandlerFunc {
	return func(c echo.Context) error {
		m, err := commandMeta(c)
		if err != nil {
			return err
		}
		res, err := s.deps.Commands.DeleteOwner(c.Request().Context(), m, o, c.Param("id"))
		if err != nil {
			return err
		}
		if done, err := s.awaitRevocation(c, res, grantsOf(o)...); done || err != nil {
			return err
		}
		return answer(c, res, http.StatusNoContent, "", nil)
	}
}

type memberRequest struct {
	UserID string `json:"userId"`
}

func (s *Server) addMember(o commands.Owner) echo.HandlerFunc {
	return func(c echo.Context) error {
		var req memberRequest
		if err := decode(c, &req); err != nil {
			return err
		}
		m, err := commandMeta(c)
		if err != nil {
			return err
		}
		res, err := s.deps.Commands.AddMember(c.Request().Context(), m, o, c.Param("id"), req.UserID)
		if err != nil {
			return err
		}
		return s.ownerAnswer(o)(c, res, http.StatusOK, "")
	}
}

func (s *Server) removeMember(o commands.Owner) echo.HandlerFunc {
	return func(c echo.Context) error {
		m, err := commandMeta(c)
		if err != nil {
			return err
		}
		res, err := s.deps.Commands.RemoveMember(c.Request().Context(), m, o, c.Param("id"), c.Param("userId"))
		if err != nil {
			return err
		}
		return answer(c, res, http.StatusNoContent, "", nil)
	}
}

func (s *Server) uploadKey(o commands.Owner) echo.HandlerFunc {
	return func(c echo.Context) error {
		var req keyRequest
		if err := decode(c, &req); err != nil {
			return err
		}
		in, err := req.input()
		if err != nil {
			return err
		}
		m, err := commandMeta(c)
		if err != nil {
			return err
		}
		res, kid, err := s.deps.Commands.UploadKey(c.Request().Context(), m, o, c.Param("id"), in)
		if err != nil {
			return err
		}
		s.awaitGrant(c, res, grantsOf(o)...)
		a, _, err := s.deps.Commands.LoadOwner(c.Request().Context(), o, m.Actor.Tenant, res.ID)
		if err != nil {
			return err
		}
		kr := a.Keyring()
		k, ok := kr.Key(kid)
		if !ok { // deleted again since the upload
			return keyring.ErrKeyNotFound
		}
		kv, err := models.RenderKey(kr, k)
		if err != nil {
			return err
		}
		return answer(c, res, http.StatusCreated, ownerPath(o)+url.PathEscape(res.ID)+"/keys/"+url.PathEscape(kid), kv)
	}
}

// listKeys answers an owner's keys in upload order, in one page: an owner holds at most
// the configured maximum of keys (100 for a client by default).
func (s *Server) listKeys(o commands.Owner) echo.HandlerFunc {
	return func(c echo.Context) error {
		q, _, keys, meta, err := s.readOwner(c, o)
		if err != nil {
			return err
		}
		return q.detail(meta.Version, listResponse[models.KeyView]{Items: keys})
	}
}

func (s *Server) getKey(o commands.Owner) echo.HandlerFunc {
	return func(c echo.Context) error {
		q, err := s.read(c, models.DirectoryModel)
		if err != nil {
			return err
		}
		kv, meta, err := ownerReadsOf(o).key(q.ctx(), q.store, q.ns, actorFrom(c).Tenant, c.Param("id"), c.Param("kid"))
		if err != nil {
			return err
		}
		return q.detail(meta.Version, kv)
	}
}

func (s *Server) deleteKey(o commands.Owner) echo.HandlerFunc {
	return func(c echo.Context) error {
		m, err := commandMeta(c)
		if err != nil {
			return err
		}
		res, err := s.deps.Commands.DeleteKey(c.Request().Context(), m, o, c.Param("id"), c.Param("kid"))
		if err != nil {
			return err
		}
		if done, err := s.awaitRevocation(c, res, grantsOf(o)...); done || err != nil {
			return err
		}
		return answer(c, res, http.StatusNoContent, "", nil)
	}
}
