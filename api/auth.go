package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/keyledger/keyledger/api/auth"
	"github.com/keyledger/keyledger/commands"
	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/voucher"
)

// TokenVerifier checks a bearer token and says who carries it. Errors must not contain
// the token.
type TokenVerifier interface {
	Verify(ctx context.Context, token string) (commands.Principal, error)
}

// AuthError is an authentication failure with its stable code (e.g. "token_expired").
// Verifiers may return it (or wrap it) to give callers a precise reason.
type AuthError struct {
	Code   string
	Detail string
}

func (e *AuthError) Error() string { return e.Detail }

// actorFrom returns the authenticated actor of the request.
func actorFrom(c echo.Context) domain.Actor {
	a, _ := c.Get("actor").(domain.Actor)
	return a
}

// authorize authenticates the bearer token, resolves the caller's roles, and enforces
// the route's policy. Everything not explicitly allowed is refused.
func (s *Server) authorize(p Policy) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if s.deps.Verifier == nil || s.deps.Commands == nil {
				return &Problem{Status: http.StatusServiceUnavailable, Code: CodeNotReady, Title: "Not ready",
					Detail: "authentication is not configured"}
			}
			h := c.Request().Header.Get(echo.HeaderAuthorization)
			scheme, token, ok := strings.Cut(h, " ")
			if h == "" || !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
				c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="keyledger"`)
				return &Problem{Status: http.StatusUnauthorized, Code: "token_missing", Title: "Unauthorized",
					Detail: "an Authorization: Bearer <token> header is required"}
			}
			principal, err := s.deps.Verifier.Verify(c.Request().Context(), strings.TrimSpace(token))
			if err != nil {
				c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="keyledger", error="invalid_token"`)
				code, detail := "token_invalid", "the token is not valid"
				var ae *AuthError
				if errors.As(err, &ae) {
					code, detail = ae.Code, ae.Detail
				}
				return &Problem{Status: http.StatusUnauthorized, Code: code, Title: "Unauthorized", Detail: detail}
			}
			actor, err := s.deps.Commands.ResolveActor(c.Request().Context(), principal)
			if err != nil {
				return err
			}
			if !p.allows(actor) {
				return &Problem{Status: http.StatusForbidden, Code: CodeForbidden, Title: "Forbidden",
					Detail: "this operation needs " + policyNeeds(p)}
			}
			c.Set("actor", actor)
			return next(c)
		}
	}
}

func policyNeeds(p Policy) string {
	switch p {
	case Operator:
		return "the platform operator"
	case TenantUser:
		return "a user registered in the tenant"
	case TenantAdmin:
		return "the tenant's admin role"
	case TenantReader:
		return "the tenant's admin or auditor role"
	}
	return "another authorization"
}

// meta builds the command metadata of a request.
func meta(c echo.Context) commands.Meta {
	m := commands.Meta{Actor: actorFrom(c), CorrelationID: CorrelationIDFrom(c.Request().Context())}
	return m
}

// UserTokens adapts the user-token verifier to the API: principals become command
// principals, and each failure keeps its stable code.
func UserTokens(v *auth.Verifier) TokenVerifier { return userTokens{v} }

type userTokens struct{ v *auth.Verifier }

func (u userTokens) Verify(ctx context.Context, token string) (commands.Principal, error) {
	p, err := u.v.Verify(ctx, token)
	if err != nil {
		return commands.Principal{}, &AuthError{Code: auth.Code(err), Detail: err.Error()}
	}
	return commands.Principal{Subject: p.Subject, Tenant: p.Tenant, Operator: p.Operator}, nil
}

// WithAPIVouchers accepts, besides the tokens users carry, the vouchers Keyledger issued
// to its API clients: a token whose iss is Keyledger's own issuer goes to vouchers,
// every other token to users. The client then acts with the roles it holds when it
// calls (commands.Service.ResolveActor), not those frozen in its voucher.
func WithAPIVouchers(users TokenVerifier, vouchers *voucher.APIVoucherVerifier) TokenVerifier {
	if vouchers == nil {
		return users
	}
	return apiVouchers{users: users, vouchers: vouchers}
}

type apiVouchers struct {
	users    TokenVerifier
	vouchers *voucher.APIVoucherVerifier
}

func (t apiVouchers) Verify(ctx context.Context, token string) (commands.Principal, error) {
	if unverifiedIssuer(token) != t.vouchers.Issuer() {
		return t.users.Verify(ctx, token)
	}
	p, err := t.vouchers.Verify(token)
	switch {
	case errors.Is(err, voucher.ErrAPIVoucherExpired):
		return commands.Principal{}, &AuthError{Code: "token_expired", Detail: "the voucher has expired; obtain a new one"}
	case err != nil:
		return commands.Principal{}, &AuthError{Code: "token_invalid", Detail: err.Error()}
	}
	return commands.Principal{Subject: p.ClientID, Tenant: p.Tenant, Client: true}, nil
}

// unverifiedIssuer reads a compact JWS's iss without verifying anything: it only picks
// the verifier, which then checks the token whole.
func unverifiedIssuer(token string) string {
	parts := strings.Split(token, ".")
	if len(parts) != 3 || len(parts[1]) > 8<<10 {
		return ""
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var c struct {
		Iss string `json:"iss"`
	}
	if json.Unmarshal(raw, &c) != nil {
		return ""
	}
	return c.Iss
}
