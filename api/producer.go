package api

import (
	"net/http"
	"net/url"

	"github.com/labstack/echo/v4"

	"github.com/keyledger/keyledger/commands"
	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/domain/eservice"
	"github.com/keyledger/keyledger/domain/keychain"
	"github.com/keyledger/keyledger/domain/keyring"
	"github.com/keyledger/keyledger/domain/purpose"
	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/projections/models"
)

func (s *Server) producerRoutes() {
	s.handle(http.MethodPost, "/v1/eservices", TenantAdmin, s.createEService)
	s.handle(http.MethodGet, "/v1/eservices", TenantUser, s.listEServices)
	s.handle(http.MethodGet, "/v1/eservices/:id", TenantUser, s.getEService)
	s.handle(http.MethodPost, "/v1/eservices/:id/suspend", TenantAdmin, s.eserviceAction(commandsSuspendEService, grantsPurpose...))
	s.handle(http.MethodPost, "/v1/eservices/:id/activate", TenantAdmin, s.eserviceAction(commandsActivateEService))
	s.handle(http.MethodGet, "/v1/eservices/:id/history", TenantReader, s.eserviceHistory)

	s.handle(http.MethodPost, "/v1/purposes", TenantAdmin, s.createPurpose)
	s.handle(http.MethodGet, "/v1/purposes", TenantUser, s.listPurposes)
	s.handle(http.MethodGet, "/v1/purposes/:id", TenantUser, s.getPurpose)
	s.handle(http.MethodPost, "/v1/purposes/:id/activate", TenantAdmin, s.purposeAction((*commands.Service).ActivatePurpose))
	s.handle(http.MethodPost, "/v1/purposes/:id/suspend", TenantAdmin, s.purposeAction((*commands.Service).SuspendPurpose, grantsPurpose...))
	s.handle(http.MethodPost, "/v1/purposes/:id/archive", TenantAdmin, s.purposeAction((*commands.Service).ArchivePurpose, grantsPurpose...))
	s.handle(http.MethodGet, "/v1/purposes/:id/history", TenantReader, s.purposeHistory)

	s.handle(http.MethodPost, "/v1/keychains", TenantAdmin, s.createKeychain)
	s.handle(http.MethodGet, "/v1/keychains", TenantUser, s.listKeychains)
	s.handle(http.MethodGet, "/v1/keychains/:id", TenantUser, s.getKeychain)
	s.handle(http.MethodDelete, "/v1/keychains/:id", TenantAdmin, s.deleteOwner(commands.Keychains))
	s.handle(http.MethodGet, "/v1/keychains/:id/history", TenantReader, s.keychainHistory)
	s.handle(http.MethodPost, "/v1/keychains/:id/members", TenantAdmin, s.addMember(commands.Keychains))
	s.handle(http.MethodDelete, "/v1/keychains/:id/members/:userId", TenantAdmin, s.removeMember(commands.Keychains))
	s.handle(http.MethodPost, "/v1/keychains/:id/keys", TenantUser, s.uploadKey(commands.Keychains))
	s.handle(http.MethodGet, "/v1/keychains/:id/keys", TenantUser, s.listKeys(commands.Keychains))
	s.handle(http.MethodGet, "/v1/keychains/:id/keys/:kid", TenantUser, s.getKey(commands.Keychains))
	s.handle(http.MethodDelete, "/v1/keychains/:id/keys/:kid", TenantUser, s.deleteKey(commands.Keychains))
	s.handle(http.MethodPost, "/v1/keychains/:id/eservices", TenantAdmin, s.addKeychainEService)
	s.handle(http.MethodDelete, "/v1/keychains/:id/eservices/:eserviceId", TenantAdmin, s.removeKeychainEService)
	s.handle(http.MethodGet, "/v1/producer-keys/:kid", Authenticated, s.producerKey)
}

var (
	commandsSuspendEService  = (*commands.Service).SuspendEService
	commandsActivateEService = (*commands.Service).ActivateEService
)

type createEServiceRequest struct {
	Name                   string `json:"name"`
	Audience               string `json:"audience"`
	VoucherLifetimeSeconds int    `json:"voucherLifetimeSeconds"`
}

func (s *Server) createEService(c echo.Context) error {
	var req createEServiceRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	res, err := s.deps.Commands.CreateEService(c.Request().Context(), meta(c), req.Name, req.Audience, req.VoucherLifetimeSeconds)
	if err != nil {
		return err
	}
	return s.eserviceAnswer(c, res, http.StatusCreated, "/v1/eservices/"+url.PathEscape(res.ID))
}

func (s *Server) eserviceAnswer(c echo.Context, res commands.Result, status int, location string) error {
	e, _, err := s.deps.Commands.GetEService(c.Request().Context(), res.ID)
	if err != nil {
		return err
	}
	return answer(c, res, status, location, models.RenderEService(e))
}

// listEServices: the catalogue is public to every registered user of any tenant.
func (s *Server) listEServices(c echo.Context) error {
	q, err := s.read(c, models.DirectoryModel, listParams("producer", "namePrefix")...)
	if err != nil {
		return err
	}
	f := models.EServiceFilter{Producer: c.QueryParam("producer"), NamePrefix: c.QueryParam("namePrefix")}
	return listAnswer(q, func(cursor string, limit int) (models.Page[models.EServiceView], error) {
		return models.ListEServices(q.ctx(), q.store, q.ns, f, cursor, limit)
	})
}

func (s *Server) getEService(c echo.Context) error {
	q, err := s.read(c, models.DirectoryModel)
	if err != nil {
		return err
	}
	return detailAnswer(q, func() (models.EServiceView, models.RecordMeta, bool, error) {
		return models.GetEService(q.ctx(), q.store, q.ns, c.Param("id"))
	})
}

// stateAction serves a bodiless state change (suspend, activate, archive) on the
// resource named by :id, answering with the resource as reloaded by reply.
// stateAction runs a bodiless state change; one that revokes access names the read
// models that grant it (see awaitRevocation).
func (s *Server) stateAction(do func(*commands.Service, echoCtx, commands.Meta, string) (commands.Result, error),
	reply func(echo.Context, commands.Result, int, string) error, grants []string) echo.HandlerFunc {
	return func(c echo.Context) error {
		m, err := commandMeta(c)
		if err != nil {
			return err
		}
		res, err := do(s.deps.Commands, c.Request().Context(), m, c.Param("id"))
		if err != nil {
			return err
		}
		if len(grants) == 0 {
			s.awaitGrant(c, res, models.VoucherModel) // an activation
		} else if done, err := s.awaitRevocation(c, res, grants...); done || err != nil {
			return err
		}
		return reply(c, res, http.StatusOK, "")
	}
}

func (s *Server) eserviceAction(do func(*commands.Service, echoCtx, commands.Meta, string) (commands.Result, error), grants ...string) echo.HandlerFunc {
	return s.stateAction(do, s.eserviceAnswer, grants)
}

func (s *Server) eserviceHistory(c echo.Context) error {
	return s.history(c, eservice.StreamName(c.Param("id")))
}

type createPurposeRequest struct {
	EServiceID string `json:"eserviceId"`
	Title      string `json:"title"`
}

func (s *Server) createPurpose(c echo.Context) error {
	var req createPurposeRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	res, err := s.deps.Commands.CreatePurpose(c.Request().Context(), meta(c), req.EServiceID, req.Title)
	if err != nil {
		return err
	}
	return s.purposeAnswer(c, res, http.StatusCreated, "/v1/purposes/"+url.PathEscape(res.ID))
}

func (s *Server) purposeAnswer(c echo.Context, res commands.Result, status int, location string) error {
	p, _, err := s.deps.Commands.GetPurpose(c.Request().Context(), actorFrom(c).Tenant, res.ID)
	if err != nil {
		return err
	}
	return answer(c, res, status, location, models.RenderPurpose(p))
}

func (s *Server) listPurposes(c echo.Context) error {
	q, err := s.read(c, models.DirectoryModel, listParams("role", "titlePrefix")...)
	if err != nil {
		return err
	}
	role := models.PurposeRole(c.QueryParam("role"))
	if role != "" && role != models.PurposeConsumer && role != models.PurposeProducer {
		return &domain.ValidationError{Fields: []domain.FieldError{{Field: "role", Message: `"consumer" or "producer"`}}}
	}
	f := models.PurposeFilter{Role: role, TitlePrefix: c.QueryParam("titlePrefix")}
	return listAnswer(q, func(cursor string, limit int) (models.Page[models.PurposeView], error) {
		return models.ListPurposes(q.ctx(), q.store, q.ns, actorFrom(c).Tenant, f, cursor, limit)
	})
}

func (s *Server) getPurpose(c echo.Context) error {
	q, err := s.read(c, models.DirectoryModel)
	if err != nil {
		return err
	}
	return detailAnswer(q, func() (models.PurposeView, models.RecordMeta, bool, error) {
		return models.GetPurpose(q.ctx(), q.store, q.ns, actorFrom(c).Tenant, c.Param("id"))
	})
}

func (s *Server) purposeAction(do func(*commands.Service, echoCtx, commands.Meta, string) (commands.Result, error), grants ...string) echo.HandlerFunc {
	return s.stateAction(do, s.purposeAnswer, grants)
}

func (s *Server) purposeHistory(c echo.Context) error {
	p, _, err := s.deps.Commands.GetPurpose(c.Request().Context(), actorFrom(c).Tenant, c.Param("id"))
	if err != nil {
		return err
	}
	return s.history(c, purpose.StreamName(p.ID()), func([]eventstore.RecordedEvent) bool { return true })
}

type createKeychainRequest struct {
	Name        string       `json:"name"`
	Description string       `json:"description"`
	Members     []string     `json:"members"`
	Keys        []keyRequest `json:"keys"`
}

func (s *Server) createKeychain(c echo.Context) error {
	var req createKeychainRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	spec := commands.KeychainSpec{Name: req.Name, Description: req.Description, Members: req.Members}
	for _, k := range req.Keys {
		in, err := k.input()
		if err != nil {
			return err
		}
		spec.Keys = append(spec.Keys, in)
	}
	res, err := s.deps.Commands.CreateKeychain(c.Request().Context(), meta(c), spec)
	if err != nil {
		return err
	}
	return s.ownerAnswer(commands.Keychains)(c, res, http.StatusCreated, "/v1/keychains/"+url.PathEscape(res.ID))
}

func (s *Server) listKeychains(c echo.Context) error {
	q, err := s.read(c, models.DirectoryModel, listParams("memberUserId", "namePrefix")...)
	if err != nil {
		return err
	}
	f := models.KeychainFilter{MemberUserID: c.QueryParam("memberUserId"), NamePrefix: c.QueryParam("namePrefix")}
	return listAnswer(q, func(cursor string, limit int) (models.Page[models.KeychainView], error) {
		return models.ListKeychains(q.ctx(), q.store, q.ns, actorFrom(c).Tenant, f, cursor, limit)
	})
}

func (s *Server) getKeychain(c echo.Context) error { return s.getOwner(commands.Keychains)(c) }

func (s *Server) keychainHistory(c echo.Context) error {
	return s.history(c, keychain.StreamName(c.Param("id")))
}

type eserviceLinkRequest struct {
	EServiceID string `json:"eserviceId"`
}

func (s *Server) addKeychainEService(c echo.Context) error {
	var req eserviceLinkRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	m, err := commandMeta(c)
	if err != nil {
		return err
	}
	res, err := s.deps.Commands.AddKeychainEService(c.Request().Context(), m, c.Param("id"), req.EServiceID)
	if err != nil {
		return err
	}
	return s.ownerAnswer(commands.Keychains)(c, res, http.StatusOK, "")
}

func (s *Server) removeKeychainEService(c echo.Context) error {
	m, err := commandMeta(c)
	if err != nil {
		return err
	}
	res, err := s.deps.Commands.RemoveKeychainEService(c.Request().Context(), m, c.Param("id"), c.Param("eserviceId"))
	if err != nil {
		return err
	}
	return answer(c, res, http.StatusNoContent, "", nil)
}

// producerKey answers a keychain's key as a JWK, to any authenticated caller, from the
// keys read model. A kid held by a client is not a producer key.
func (s *Server) producerKey(c echo.Context) error {
	q, err := s.read(c, models.KeysModel)
	if err != nil {
		return err
	}
	k, ok, err := models.LookupKey(q.ctx(), q.store, q.ns, c.Param("kid"))
	if err != nil {
		return err
	}
	if !ok || k.OwnerKind != models.OwnerKeychain {
		return keyring.ErrKeyNotFound
	}
	jwk, err := models.KeyJWK(k.PEM, k.Use, k.Alg)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, jwk)
}
