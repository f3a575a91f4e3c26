package voucher

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// APIPrincipal is the API client a voucher for Keyledger's own API speaks for.
type APIPrincipal struct {
	ClientID string
	Tenant   string
	// Roles are the roles the voucher carried when it was issued. The API resolves the
	// client's roles again on every call (a role taken away, a client deleted, takes
	// effect at once); these are informative.
	Roles []string
	// JTI identifies the voucher (its audit record).
	JTI string
}

// API-voucher refusals. Every one wraps ErrAPIVoucher.
var (
	ErrAPIVoucher = errors.New("voucher: not a valid Keyledger API voucher")
	// ErrAPIVoucherExpired: exp is in the past beyond the skew.
	ErrAPIVoucherExpired = fmt.Errorf("%w: expired", ErrAPIVoucher)
)

// APIVoucherVerifier checks the vouchers Keyledger issued to API clients when they call
// Keyledger's API: signed by one of the Signer's published keys (header typ at+jwt, RFC
// 9068), iss the issuer, aud the API audience, unexpired, with sub = client_id and a
// tenant. An e-service voucher (another aud) is refused.
type APIVoucherVerifier struct {
	signer *Signer
	issuer string
	parser *jwt.Parser
}

// NewAPIVoucherVerifier builds the verifier of API vouchers signed by signer for issuer
// and audience. skew is tolerated on exp, nbf and iat (DefaultSkew when 0).
func NewAPIVoucherVerifier(signer *Signer, issuer, audience string, skew time.Duration, now func() time.Time) (*APIVoucherVerifier, error) {
	if signer == nil || issuer == "" || audience == "" {
		return nil, errors.New("voucher: an API voucher verifier needs the signer, the issuer and the API audience")
	}
	if skew == 0 {
		skew = DefaultSkew
	}
	if now == nil {
		now = time.Now
	}
	p := jwt.NewParser(
		jwt.WithValidMethods([]string{AlgRS256, AlgES256, AlgEdDSA}),
		jwt.WithIssuer(issuer),
		jwt.WithAudience(audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(skew),
		jwt.WithTimeFunc(now),
	)
	return &APIVoucherVerifier{signer: signer, issuer: issuer, parser: p}, nil
}

// Issuer is the iss of the vouchers v accepts.
func (v *APIVoucherVerifier) Issuer() string { return v.issuer }

type apiVoucherClaims struct {
	ClientID string   `json:"client_id"`
	Tenant   string   `json:"tenant"`
	Roles    []string `json:"roles"`
	jwt.RegisteredClaims
}

// Verify checks raw, a compact JWS. Its errors wrap ErrAPIVoucher and never hold the
// token.
func (v *APIVoucherVerifier) Verify(raw string) (APIPrincipal, error) {
	var c apiVoucherClaims
	_, err := v.parser.ParseWithClaims(raw, &c, func(t *jwt.Token) (any, error) {
		if typ, _ := t.Header["typ"].(string); !strings.EqualFold(typ, "at+jwt") {
			return nil, errors.New("header typ is not at+jwt")
		}
		kid, _ := t.Header["kid"].(string)
		k := v.signer.key(kid)
		if k == nil {
			return nil, errors.New("signed by no key of this issuer")
		}
		if k.method.Alg() != t.Method.Alg() {
			return nil, fmt.Errorf("alg %s is not the alg of key %s", t.Method.Alg(), kid)
		}
		return k.private.Public(), nil
	})
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return APIPrincipal{}, ErrAPIVoucherExpired
	case err != nil:
		return APIPrincipal{}, fmt.Errorf("%w: %s", ErrAPIVoucher, apiVoucherReason(err))
	case c.Subject == "" || c.Subject != c.ClientID:
		return APIPrincipal{}, fmt.Errorf("%w: sub must be the client_id", ErrAPIVoucher)
	case c.Tenant == "":
		return APIPrincipal{}, fmt.Errorf("%w: no tenant", ErrAPIVoucher)
	}
	return APIPrincipal{ClientID: c.Subject, Tenant: c.Tenant, Roles: c.Roles, JTI: c.ID}, nil
}

// apiVoucherReason names the failed check without echoing the token.
func apiVoucherReason(err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "malformed"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "signature does not verify"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return "wrong issuer"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return "not a voucher for Keyledger's API (wrong aud)"
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return "not yet valid"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return "required claim missing"
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return "unverifiable: " + innerReason(err)
	}
	return "invalid"
}

// innerReason returns the keyfunc's own message (it never holds token material).
func innerReason(err error) string {
	for {
		u, ok := err.(interface{ Unwrap() []error })
		if !ok {
			break
		}
		errs := u.Unwrap()
		if len(errs) == 0 {
			break
		}
		err = errs[len(errs)-1]
	}
	return err.Error()
}

// key returns the published key named kid, or nil.
func (s *Signer) key(kid string) *signingKey {
	if kid == "" {
		return nil
	}
	for _, k := range s.set.Load().all {
		if k.kid == kid {
			return k
		}
	}
	return nil
}
