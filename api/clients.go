package api

import (
	"encoding/json"
	"net/http"
	"net/url"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/keyledger/keyledger/commands"
	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/domain/client"
	"github.com/keyledger/keyledger/domain/keyring"
	"github.com/keyledger/keyledger/domain/keys"
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

type memberResponse struct {
	UserID string    `json:"userId"`
	Since  time.Time `json:"since"`
}

type keyResponse struct {
	KID               string          `json:"kid"`
	Name              string          `json:"name"`
	Use               string          `json:"use"`
	Alg               string          `json:"alg"`
	KeyType           string          `json:"kty"`
	UploadedBy        string          `json:"uploadedBy"`
	UploadedAt        time.Time       `json:"uploadedAt"`
	UploaderRemoved   bool            `json:"uploaderRemoved"`
	UploaderRemovedAt *time.Time      `json:"uploaderRemovedAt,omitempty"`
	JWK               json.RawMessage `json:"jwk,omitempty"`
}

type clientResponse struct {
	ID              string           `json:"id"`
	Kind            client.Kind      `json:"kind"`
	Name            string           `json:"name"`
	Description     string           `json:"description"`
	CreatedAt       time.Time        `json:"createdAt"`
	Members         []memberResponse `json:"members"`
	Keys            []keyResponse    `json:"keys"`
	Purposes        []string         `json:"purposes"`
	Recommendations []string         `json:"recommendations"`
}

func keyView(kr keyring.Keyring, k keyring.Key) keyResponse {
	r := keyResponse{KID: k.KID, Name: k.Name, Use: k.Use, Alg: k.Alg, KeyType: k.KeyType, UploadedBy: k.UploadedBy, UploadedAt: k.UploadedAt}
	if removed, at := kr.UploaderRemoved(k); removed {
		r.UploaderRemoved = true
		r.UploaderRemovedAt = &at
	}
	return r
}

// keyringView renders members, keys and the replacement recommendations.
func keyringView(kr keyring.Keyring) ([]memberResponse, []keyResponse, []string) {
	members := []memberResponse{}
	for _, id := range kr.Members() {
		members = append(members, memberResponse{UserID: id, Since: kr.MemberSince(id)})
	}
	keys := []keyResponse{}
	recs := []string{}
	for _, k := range kr.Keys() {
		kv := keyView(kr, k)
		keys = append(keys, kv)
		if kv.UploaderRemoved {
			recs = append(recs, "replace key "+k.KID+" ("+k.Name+"): it was uploaded by "+k.UploadedBy+
				", who is no longer a member; upload a new key, move callers to it, then delete this one")
		}
	}
	return members, keys, recs
}

func clientView(c *client.Client) clientResponse {
	members, keys, recs := keyringView(c.Keyring())
	return clientResponse{ID: c.ID(), Kind: c.Kind(), Name: c.Name(), Description: c.Description(), CreatedAt: c.CreatedAt(),
		Members: members, Keys: keys, Purposes: c.PurposeIDs(), Recommendations: recs}
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
}

type createClientRequest struct {
	Kind        client.Kind  `json:"kind"`
	Name        string       `json:"name"`
	Description string       `json:"description"`
	Members     []string     `json:"members"`
	Keys        []keyRequest `json:"keys"`
}

func (s *Server) createClient(c echo.Context) error {
	var req createClientRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	spec := commands.ClientSpec{Kind: req.Kind, Name: req.Name, Description: req.Description, Members: req.Members}
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
	kind := client.Kind(c.QueryParam("kind"))
	if kind != "" && kind != client.KindAPI && kind != client.KindEService {
		return &domain.ValidationError{Fields: []domain.FieldError{{Field: "kind", Message: `"eservice" or "api"`}}}
	}
	cs, err := s.deps.Commands.ListClients(c.Request().Context(), actorFrom(c).Tenant, kind)
	if err != nil {
		return err
	}
	out := listResponse[clientResponse]{Items: make([]clientResponse, 0, len(cs))}
	for _, cl := range cs {
		out.Items = append(out.Items, clientView(cl))
	}
	return c.JSON(http.StatusOK, out)
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
	return answer(c, res, http.StatusNoContent, "", nil)
}

// withJWK renders a key with its public JWK.
func withJWK(kr keyring.Keyring, k keyring.Key) (keyResponse, error) {
	kv := keyView(kr, k)
	parsed, err := keys.Parse([]byte(k.PEM))
	if err != nil {
		return kv, err
	}
	jwk, err := parsed.JWK(k.Use, k.Alg)
	if err != nil {
		return kv, err
	}
	kv.JWK = jwk
	return kv, nil
}
