package api

import (
	"context"
	"net/http"
	"net/url"

	"github.com/labstack/echo/v4"

	"github.com/keyledger/keyledger/commands"
	"github.com/keyledger/keyledger/domain/client"
	"github.com/keyledger/keyledger/domain/keychain"
	"github.com/keyledger/keyledger/domain/keyring"
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
		return clientView(a)
	case *keychain.Keychain:
		return keychainView(a)
	}
	return nil
}

// ownerAnswer reloads the owner a command changed and answers with it.
func (s *Server) ownerAnswer(o commands.Owner) func(c echo.Context, res commands.Result, status int, location string) error {
	return func(c echo.Context, res commands.Result, status int, location string) error {
		a, _, err := s.deps.Commands.LoadOwner(c.Request().Context(), o, actorFrom(c).Tenant, res.ID)
		if err != nil {
			return err
		}
		return answer(c, res, status, location, ownerView(a))
	}
}

func (s *Server) getOwner(o commands.Owner) echo.HandlerFunc {
	return func(c echo.Context) error {
		a, v, err := s.deps.Commands.LoadOwner(c.Request().Context(), o, actorFrom(c).Tenant, c.Param("id"))
		if err != nil {
			return err
		}
		c.Response().Header().Set("ETag", etag(v))
		return c.JSON(http.StatusOK, ownerView(a))
	}
}

func (s *Server) listOwners(o commands.Owner) echo.HandlerFunc {
	return func(c echo.Context) error {
		as, err := s.deps.Commands.ListOwners(c.Request().Context(), o, actorFrom(c).Tenant)
		if err != nil {
			return err
		}
		out := listResponse[any]{Items: make([]any, 0, len(as))}
		for _, a := range as {
			out.Items = append(out.Items, ownerView(a))
		}
		return c.JSON(http.StatusOK, out)
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
		a, _, err := s.deps.Commands.LoadOwner(c.Request().Context(), o, m.Actor.Tenant, res.ID)
		if err != nil {
			return err
		}
		kr := a.Keyring()
		k, _ := kr.Key(kid)
		kv, err := withJWK(kr, k)
		if err != nil {
			return err
		}
		return answer(c, res, http.StatusCreated, ownerPath(o)+url.PathEscape(res.ID)+"/keys/"+url.PathEscape(kid), kv)
	}
}

func (s *Server) listKeys(o commands.Owner) echo.HandlerFunc {
	return func(c echo.Context) error {
		a, v, err := s.deps.Commands.LoadOwner(c.Request().Context(), o, actorFrom(c).Tenant, c.Param("id"))
		if err != nil {
			return err
		}
		_, keys, _ := keyringView(a.Keyring())
		c.Response().Header().Set("ETag", etag(v))
		return c.JSON(http.StatusOK, listResponse[keyResponse]{Items: keys})
	}
}

func (s *Server) getKey(o commands.Owner) echo.HandlerFunc {
	return func(c echo.Context) error {
		a, v, err := s.deps.Commands.LoadOwner(c.Request().Context(), o, actorFrom(c).Tenant, c.Param("id"))
		if err != nil {
			return err
		}
		c.Response().Header().Set("ETag", etag(v))
		kr := a.Keyring()
		k, ok := kr.Key(c.Param("kid"))
		if !ok {
			return keyring.ErrKeyNotFound
		}
		kv, err := withJWK(kr, k)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, kv)
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
		return answer(c, res, http.StatusNoContent, "", nil)
	}
}
