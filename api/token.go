package api

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/domain/client"
	"github.com/keyledger/keyledger/domain/keyring"
	"github.com/keyledger/keyledger/projections/models"
	"github.com/keyledger/keyledger/projections/readmodel"
	"github.com/keyledger/keyledger/projections/runner"
	"github.com/keyledger/keyledger/voucher"
)

// AuditWriter durably records an issued voucher (voucher.AuditWriter). The token
// endpoint submits a voucher's record before signing the voucher, so that the append
// and the signature run at once, and answers only once the wait returned without error.
type AuditWriter interface {
	Submit(ctx context.Context, rec voucher.AuditRecord, correlationID string) (voucher.AuditWait, error)
}

// auditExpecter is an AuditWriter that batches better when told at the start of a
// request that a record will probably follow (voucher.AuditWriter.Expect).
type auditExpecter interface {
	Expect(ctx context.Context) (context.Context, func())
}

// Vouchers is what the token endpoint and its metadata need. A nil Deps.Vouchers leaves
// those routes out.
type Vouchers struct {
	// Issuer is Keyledger's issuer identifier (KEYLEDGER_ISSUER): the iss of vouchers and
	// the base of the metadata document's URLs.
	Issuer string
	// Verifier checks client assertions; Tokens signs vouchers; Signer publishes the keys.
	Verifier *voucher.Verifier
	Tokens   *voucher.Issuer
	Signer   *voucher.Signer
	// Audit receives one record per voucher before the answer is sent.
	Audit AuditWriter
	// API verifies the vouchers API clients present to Keyledger's own API. Nil: the
	// API accepts user tokens only.
	API *voucher.APIVoucherVerifier
}

// TokenTypeBearer is the token_type of every voucher.
const TokenTypeBearer = "Bearer"

// OAuth 2 error codes the token endpoint adds to the voucher package's refusals.
const (
	oauthServerError          = "server_error"
	oauthTemporarilyAvailable = "temporarily_unavailable"
)

// oauthError is the RFC 6749 §5.2 error body, with the request's correlation id.
type oauthError struct {
	Error         string `json:"error"`
	Description   string `json:"error_description,omitempty"`
	CorrelationID string `json:"correlation_id,omitempty"`
}

// tokenAnswer is the RFC 6749 §5.1 answer.
type tokenAnswer struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
}

func (s *Server) voucherRoutes() {
	if s.deps.Vouchers == nil {
		return
	}
	s.handle(http.MethodPost, "/oauth2/token", Public, s.token)
	s.handle(http.MethodPost, "/token.oauth2", Public, s.token)
	s.handle(http.MethodGet, "/.well-known/jwks.json", Public, s.jwks)
	s.handle(http.MethodGet, "/.well-known/oauth-authorization-server", Public, s.authServerMetadata)
	s.handle(http.MethodPost, "/v1/clients/:id/assertion-check", TenantUser, s.assertionCheck)
}

// noStore marks an answer that must not be cached (RFC 6749 §5.1).
func noStore(c echo.Context) {
	h := c.Response().Header()
	h.Set(echo.HeaderCacheControl, "no-store")
	h.Set("Pragma", "no-cache")
}

// token issues a voucher for a client assertion.
func (s *Server) token(c echo.Context) error {
	ctx := c.Request().Context()
	noStore(c)
	body, err := io.ReadAll(c.Request().Body)
	if err != nil {
		return err // the body limit's 413, or a broken connection
	}
	v := s.deps.Vouchers
	if ex, ok := v.Audit.(auditExpecter); ok {
		var release func()
		ctx, release = ex.Expect(ctx)
		defer release()
	}
	req, err := voucher.ParseTokenRequest(c.Request().Header.Get(echo.HeaderContentType), body)
	if err != nil {
		return s.oauthFail(c, err)
	}
	a, err := v.Verifier.Verify(ctx, req)
	if err != nil {
		return s.oauthFail(c, err)
	}
	draft, err := v.Tokens.Prepare(a)
	if err != nil {
		return s.oauthFail(c, err)
	}
	draft.Audit.CallerAddress = c.RealIP()
	wait, err := v.Audit.Submit(ctx, draft.Audit, CorrelationIDFrom(ctx))
	if err != nil {
		return s.auditFail(c, draft, err)
	}
	vch, err := draft.Sign() // while the record is appended
	if err != nil {
		// The record may be written all the same: the audit lists a voucher never sent.
		return s.oauthFail(c, err)
	}
	if _, err := wait(ctx); err != nil {
		return s.auditFail(c, draft, err)
	}
	return c.JSON(http.StatusOK, tokenAnswer{AccessToken: vch.Token, TokenType: TokenTypeBearer, ExpiresIn: vch.ExpiresIn})
}

// auditFail withholds a voucher whose audit record could not be written: 503.
func (s *Server) auditFail(c echo.Context, d *voucher.Draft, err error) error {
	ctx := c.Request().Context()
	s.deps.Logger.ErrorContext(ctx, "voucher withheld: its audit record could not be written",
		"client", d.Audit.ClientID, "voucher_jti", d.JTI, "error", err.Error())
	c.Response().Header().Set("Retry-After", "1")
	return s.oauthStatus(c, http.StatusServiceUnavailable, oauthTemporarilyAvailable,
		"the voucher could not be recorded; try again")
}

// oauthFail answers a token-path error: a refusal as 400 with its code and safe
// description, an unavailable read model or replay cache as 503, anything else 500.
func (s *Server) oauthFail(c echo.Context, err error) error {
	var ve *voucher.Error
	switch {
	case errors.As(err, &ve):
		return s.oauthStatus(c, ve.Status(), ve.Code, ve.SafeDescription())
	case errors.Is(err, voucher.ErrUnavailable):
		c.Response().Header().Set("Retry-After", "1")
		return s.oauthStatus(c, http.StatusServiceUnavailable, oauthTemporarilyAvailable,
			"the key registry is not available (starting, rebuilding or unreachable); try again")
	}
	ctx := c.Request().Context()
	s.deps.Logger.ErrorContext(ctx, "token request failed", "error", err.Error())
	return s.oauthStatus(c, http.StatusInternalServerError, oauthServerError, "internal error")
}

func (s *Server) oauthStatus(c echo.Context, status int, code, description string) error {
	return c.JSON(status, oauthError{Error: code, Description: description,
		CorrelationID: CorrelationIDFrom(c.Request().Context())})
}

// jwks publishes every signing key (current first).
func (s *Server) jwks(c echo.Context) error {
	c.Response().Header().Set(echo.HeaderCacheControl, "public, max-age=300")
	return c.Blob(http.StatusOK, "application/jwk-set+json", s.deps.Vouchers.Signer.JWKS())
}

// authServerMetadata is the RFC 8414 document.
func (s *Server) authServerMetadata(c echo.Context) error {
	v := s.deps.Vouchers
	base := strings.TrimSuffix(v.Issuer, "/")
	algs := []string{voucher.AlgRS256, voucher.AlgES256, "ES384", voucher.AlgEdDSA}
	seen := map[string]bool{}
	var signing []string
	for _, k := range v.Signer.Keys() {
		if !seen[k.Alg] {
			seen[k.Alg] = true
			signing = append(signing, k.Alg)
		}
	}
	c.Response().Header().Set(echo.HeaderCacheControl, "public, max-age=300")
	return c.JSON(http.StatusOK, map[string]any{
		"issuer":                                v.Issuer,
		"token_endpoint":                        base + "/oauth2/token",
		"jwks_uri":                              base + "/.well-known/jwks.json",
		"grant_types_supported":                 []string{"client_credentials"},
		"token_endpoint_auth_methods_supported": []string{"private_key_jwt"},
		"token_endpoint_auth_signing_alg_values_supported": algs,
		"response_types_supported":                         []string{"token"},
		"access_token_signing_alg_values_supported":        signing,
		"service_documentation":                            base + "/openapi.yaml",
	})
}

// assertionCheckRequest is the body of an assertion check.
type assertionCheckRequest struct {
	ClientAssertion string `json:"client_assertion"`
}

// assertionCheck runs every check on an assertion for one of the caller's clients and
// lists each outcome, issuing nothing and recording no jti.
func (s *Server) assertionCheck(c echo.Context) error {
	ctx := c.Request().Context()
	actor := actorFrom(c)
	cl, _, err := s.deps.Commands.GetClient(ctx, actor.Tenant, c.Param("id"))
	if err != nil {
		return err
	}
	if !actor.Roles.Has(domain.RoleAdmin) && !isMember(cl.Keyring(), actor.ID) {
		return &Problem{Status: http.StatusForbidden, Code: CodeForbidden, Title: "Forbidden",
			Detail: "only the client's members and the tenant's admins check its assertions"}
	}
	var body assertionCheckRequest
	if err := decode(c, &body); err != nil {
		return err
	}
	if strings.TrimSpace(body.ClientAssertion) == "" {
		return &Problem{Status: http.StatusBadRequest, Code: CodeValidation, Title: "Invalid request",
			Detail: "client_assertion is required",
			Errors: []domain.FieldError{{Field: "client_assertion", Message: "required"}}}
	}
	rep, err := s.deps.Vouchers.Verifier.Report(ctx, cl.ID(), body.ClientAssertion)
	if err != nil {
		if errors.Is(err, voucher.ErrUnavailable) {
			return &Problem{Status: http.StatusServiceUnavailable, Code: CodeNotReady, Title: "Not ready",
				Detail: "the key registry is not available; try again", retryAfter: 1}
		}
		return err
	}
	return c.JSON(http.StatusOK, rep)
}

// VoucherEntries reads voucher entries from the active generation of the voucher read
// model, with one Get; after a miss it also probes the key (voucher.KeyProbe) so that the
// refusal names its cause. A model that has no active generation (building, rebuilding,
// data lost) or a store that cannot answer is voucher.ErrUnavailable: never a voucher
// from partial data.
func VoucherEntries(rd *runner.Reader) voucher.Entries {
	return voucherEntries{rd: rd, entries: models.NewEntryReader(0)}
}

type voucherEntries struct {
	rd      *runner.Reader
	entries *models.EntryReader
}

var _ voucher.KeyProbe = voucherEntries{}

// Entry implements voucher.Entries.
func (v voucherEntries) Entry(ctx context.Context, clientID, kid, purposeID string) (models.VoucherEntry, bool, error) {
	ns, err := v.rd.Namespace(ctx, models.VoucherModel)
	if err != nil {
		return models.VoucherEntry{}, false, errors.Join(voucher.ErrUnavailable, err)
	}
	e, ok, err := v.entries.Lookup(ctx, v.rd.Store(), ns, clientID, kid, purposeID)
	if err != nil {
		return models.VoucherEntry{}, false, entryError(err)
	}
	return e, ok, nil
}

// ProbeKey implements voucher.KeyProbe.
func (v voucherEntries) ProbeKey(ctx context.Context, clientID, kid string) (client.Kind, bool, error) {
	ns, err := v.rd.Namespace(ctx, models.VoucherModel)
	if err != nil {
		return "", false, errors.Join(voucher.ErrUnavailable, err)
	}
	kind, ok, err := models.ProbeKey(ctx, v.rd.Store(), ns, clientID, kid)
	if err != nil {
		return "", false, entryError(err)
	}
	return kind, ok, nil
}

func entryError(err error) error {
	if errors.Is(err, readmodel.ErrCorrupt) {
		return errors.Join(voucher.ErrCorruptEntry, err)
	}
	return errors.Join(voucher.ErrUnavailable, err)
}

func isMember(k keyring.Keyring, userID string) bool { return k.IsMember(userID) }
