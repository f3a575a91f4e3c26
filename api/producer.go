package api

import (
	"net/http"
	"net/url"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/keyledger/keyledger/commands"
	"github.com/keyledger/keyledger/domain/eservice"
	"github.com/keyledger/keyledger/domain/keychain"
	"github.com/keyledger/keyledger/domain/purpose"
	"github.com/keyledger/keyledger/eventstore"
)

func (s *Server) producerRoutes() {
	s.handle(http.MethodPost, "/v1/eservices", TenantAdmin, s.createEService)
	s.handle(http.MethodGet, "/v1/eservices", TenantUser, s.listEServices)
	s.handle(http.MethodGet, "/v1/eservices/:id", TenantUser, s.getEService)
	s.handle(http.MethodPost, "/v1/eservices/:id/suspend", TenantAdmin, s.eserviceAction(commandsSuspendEService))
	s.handle(http.MethodPost, "/v1/eservices/:id/activate", TenantAdmin, s.eserviceAction(commandsActivateEService))
	s.handle(http.MethodGet, "/v1/eservices/:id/history", TenantReader, s.eserviceHistory)

	s.handle(http.MethodPost, "/v1/purposes", TenantAdmin, s.createPurpose)
	s.handle(http.MethodGet, "/v1/purposes", TenantUser, s.listPurposes)
	s.handle(http.MethodGet, "/v1/purposes/:id", TenantUser, s.getPurpose)
	s.handle(http.MethodPost, "/v1/purposes/:id/activate", TenantAdmin, s.purposeAction((*commands.Service).ActivatePurpose))
	s.handle(http.MethodPost, "/v1/purposes/:id/suspend", TenantAdmin, s.purposeAction((*commands.Service).SuspendPurpose))
	s.handle(http.MethodPost, "/v1/purposes/:id/archive", TenantAdmin, s.purposeAction((*commands.Service).ArchivePurpose))
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

type eserviceResponse struct {
	ID                     string    `json:"id"`
	Producer               string    `json:"producer"`
	Name                   string    `json:"name"`
	Audience               string    `json:"audience"`
	VoucherLifetimeSeconds int       `json:"voucherLifetimeSeconds"`
	State                  string    `json:"state"`
	CreatedAt              time.Time `json:"createdAt"`
}

func eserviceView(e *eservice.EService) eserviceResponse {
	state := "active"
	if !e.Active() {
		state = "suspended"
	}
	return eserviceResponse{ID: e.ID(), Producer: e.Tenant(), Name: e.Name(), Audience: e.Audience(),
		VoucherLifetimeSeconds: int(e.VoucherLifetime() / time.Second), State: state, CreatedAt: e.CreatedAt()}
}

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
	return answer(c, res, status, location, eserviceView(e))
}

func (s *Server) listEServices(c echo.Context) error {
	es, err := s.deps.Commands.ListEServices(c.Request().Context(), c.QueryParam("producer"))
	if err != nil {
		return err
	}
	out := listResponse[eserviceResponse]{Items: make([]eserviceResponse, 0, len(es))}
	for _, e := range es {
		out.Items = append(out.Items, eserviceView(e))
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) getEService(c echo.Context) error {
	e, v, err := s.deps.Commands.GetEService(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	c.Response().Header().Set("ETag", etag(v))
	return c.JSON(http.StatusOK, eserviceView(e))
}

// stateAction serves a bodiless state change (suspend, activate, archive) on the
// resource named by :id, answering with the resource as reloaded by reply.
func (s *Server) stateAction(do func(*commands.Service, echoCtx, commands.Meta, string) (commands.Result, error),
	reply func(echo.Context, commands.Result, int, string) error) echo.HandlerFunc {
	return func(c echo.Context) error {
		m, err := commandMeta(c)
		if err != nil {
			return err
		}
		res, err := do(s.deps.Commands, c.Request().Context(), m, c.Param("id"))
		if err != nil {
			return err
		}
		return reply(c, res, http.StatusOK, "")
	}
}

func (s *Server) eserviceAction(do func(*commands.Service, echoCtx, commands.Meta, string) (commands.Result, error)) echo.HandlerFunc {
	return s.stateAction(do, s.eserviceAnswer)
}

func (s *Server) eserviceHistory(c echo.Context) error {
	return s.history(c, eservice.StreamName(c.Param("id")))
}

type purposeResponse struct {
	ID         string        `json:"id"`
	EServiceID string        `json:"eserviceId"`
	Consumer   string        `json:"consumer"`
	Producer   string        `json:"producer"`
	Title      string        `json:"title"`
	State      purpose.State `json:"state"`
	CreatedAt  time.Time     `json:"createdAt"`
}

func purposeView(p *purpose.Purpose) purposeResponse {
	return purposeResponse{ID: p.ID(), EServiceID: p.EServiceID(), Consumer: p.ConsumerTenant(), Producer: p.ProducerTenant(),
		Title: p.Title(), State: p.State(), CreatedAt: p.CreatedAt()}
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
	return answer(c, res, status, location, purposeView(p))
}

func (s *Server) listPurposes(c echo.Context) error {
	ps, err := s.deps.Commands.ListPurposes(c.Request().Context(), actorFrom(c).Tenant)
	if err != nil {
		return err
	}
	out := listResponse[purposeResponse]{Items: make([]purposeResponse, 0, len(ps))}
	for _, p := range ps {
		out.Items = append(out.Items, purposeView(p))
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) getPurpose(c echo.Context) error {
	p, v, err := s.deps.Commands.GetPurpose(c.Request().Context(), actorFrom(c).Tenant, c.Param("id"))
	if err != nil {
		return err
	}
	c.Response().Header().Set("ETag", etag(v))
	return c.JSON(http.StatusOK, purposeView(p))
}

func (s *Server) purposeAction(do func(*commands.Service, echoCtx, commands.Meta, string) (commands.Result, error)) echo.HandlerFunc {
	return s.stateAction(do, s.purposeAnswer)
}

func (s *Server) purposeHistory(c echo.Context) error {
	p, _, err := s.deps.Commands.GetPurpose(c.Request().Context(), actorFrom(c).Tenant, c.Param("id"))
	if err != nil {
		return err
	}
	return s.history(c, purpose.StreamName(p.ID()), func([]eventstore.RecordedEvent) bool { return true })
}

type keychainResponse struct {
	ID              string           `json:"id"`
	Name            string           `json:"name"`
	Description     string           `json:"description"`
	CreatedAt       time.Time        `json:"createdAt"`
	Members         []memberResponse `json:"members"`
	Keys            []keyResponse    `json:"keys"`
	EServices       []string         `json:"eservices"`
	Recommendations []string         `json:"recommendations"`
}

func keychainView(k *keychain.Keychain) keychainResponse {
	members, keys, recs := keyringView(k.Keyring())
	return keychainResponse{ID: k.ID(), Name: k.Name(), Description: k.Description(), CreatedAt: k.CreatedAt(),
		Members: members, Keys: keys, EServices: k.EServiceIDs(), Recommendations: recs}
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
	return s.listOwners(commands.Keychains)(c)
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

func (s *Server) producerKey(c echo.Context) error {
	kr, k, err := s.deps.Commands.ProducerKey(c.Request().Context(), c.Param("kid"))
	if err != nil {
		return err
	}
	kv, err := withJWK(kr, k)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, kv.JWK)
}
