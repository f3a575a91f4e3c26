// Package auth verifies the user JWTs that callers of Keyledger's API carry in
// `Authorization: Bearer <JWT>`. Tokens come from an external identity provider whose
// issuer and keys (a JWKS URL or file) are configured; without an issuer, Keyledger runs
// in development mode and trusts only a signing key it keeps in its data directory, with
// which `keyledger token` mints tokens.
//
// Verify never logs and never returns the token: its errors say which check failed and
// all wrap ErrUnauthenticated, so the API answers 401 with a precise code.
package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"
	"unicode"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
)

// DevelopmentIssuer is the issuer of tokens signed with the development key. A verifier
// configured with an identity provider never accepts it.
const DevelopmentIssuer = "keyledger-dev"

// DefaultLeeway is the clock skew tolerated on exp, nbf and iat when Config.Leeway is 0.
const DefaultLeeway = 30 * time.Second

// MaxLeeway bounds Config.Leeway: a larger skew would keep expired tokens alive.
const MaxLeeway = 5 * time.Minute

// maxTokenBytes caps the size of a bearer token; anything larger is not parsed at all.
const maxTokenBytes = 8 << 10

// maxClaimLen caps sub and tenant, which end up in event metadata and logs.
const maxClaimLen = 256

// allowedAlgs is the explicit allow-list of signing algorithms. HMAC and "none" are
// absent on purpose: a verifier holding only public keys must never accept them.
var allowedAlgs = []string{"RS256", "ES256", "EdDSA"}

// ErrUnauthenticated is wrapped by every error Verify returns. Map it to 401; use the
// more precise sentinels below for the problem document's code.
var ErrUnauthenticated = errors.New("unauthenticated")

// The reasons a token is refused. Each wraps ErrUnauthenticated; test with errors.Is.
var (
	// ErrMissingToken: no bearer token was presented (empty, or another scheme).
	ErrMissingToken = fmt.Errorf("%w: no bearer token", ErrUnauthenticated)
	// ErrMalformedToken: the token is not a well-formed JWS compact JWT, is too large, or
	// a claim has the wrong type or shape.
	ErrMalformedToken = fmt.Errorf("%w: malformed token", ErrUnauthenticated)
	// ErrDisallowedAlgorithm: the header's alg is not RS256, ES256 or EdDSA (this
	// includes "none" and every HMAC algorithm).
	ErrDisallowedAlgorithm = fmt.Errorf("%w: signing algorithm not allowed", ErrUnauthenticated)
	// ErrUnknownKey: the header names no kid, or a kid the issuer does not publish (after
	// a rate-limited refresh of a remote JWKS), or the JWKS could not be fetched.
	ErrUnknownKey = fmt.Errorf("%w: unknown signing key", ErrUnauthenticated)
	// ErrInvalidSignature: the signature does not verify with the key named by kid, or
	// that key does not fit the token's alg.
	ErrInvalidSignature = fmt.Errorf("%w: invalid signature", ErrUnauthenticated)
	// ErrExpired: exp is in the past (beyond the leeway).
	ErrExpired = fmt.Errorf("%w: token expired", ErrUnauthenticated)
	// ErrNotYetValid: nbf or iat is in the future (beyond the leeway).
	ErrNotYetValid = fmt.Errorf("%w: token not yet valid", ErrUnauthenticated)
	// ErrWrongIssuer: iss is not the configured issuer.
	ErrWrongIssuer = fmt.Errorf("%w: wrong issuer", ErrUnauthenticated)
	// ErrWrongAudience: an audience is configured and aud does not contain it.
	ErrWrongAudience = fmt.Errorf("%w: wrong audience", ErrUnauthenticated)
	// ErrMissingClaims: a required claim is absent: exp, iss, aud (when an audience is
	// configured), sub, or tenant on a token that is not an operator token.
	ErrMissingClaims = fmt.Errorf("%w: required claims missing", ErrUnauthenticated)
)

// Principal is who a verified token speaks for.
type Principal struct {
	// Subject is the user id (the token's sub). Never empty.
	Subject string
	// Tenant is the tenant id (the token's tenant claim). Never empty unless Operator.
	Tenant string
	// Operator marks the platform operator (claim keyledger_operator), who belongs to no
	// tenant: Tenant is always empty for an operator, whatever the token carried, so a
	// policy must never read an operator's tenant as a grant.
	Operator bool
}

// Config says which tokens a Verifier trusts.
type Config struct {
	// Issuer is the identity provider's issuer (the exact iss of its tokens). Default
	// empty: development mode, which trusts only a key created in DataDir — anyone who
	// can read that file can mint any principal, operator included, so never run a
	// shared deployment in development mode.
	Issuer string
	// JWKSURL is where the issuer publishes its keys. It must be https, or http on a
	// loopback address. The set is refreshed hourly and, rate-limited, when a token
	// names an unknown kid. Exactly one of JWKSURL and JWKSFile is set with Issuer.
	JWKSURL string
	// JWKSFile is a JWKS file (public keys only, each with a kid) holding the issuer's
	// keys. It is read by New and re-read when its modification time or size changes.
	JWKSFile string
	// Audience, when set, must be one of the token's aud values. Default empty: aud is
	// not checked, so a token the issuer minted for another service is accepted too.
	// Not allowed in development mode.
	Audience string
	// DataDir holds the development signing key (dev-signing-key.pem). Used only in
	// development mode, where it must be set.
	DataDir string
	// Leeway is the clock skew tolerated on exp, nbf and iat. Default 30s (when 0); at
	// most 5m.
	Leeway time.Duration
	// HTTPClient fetches JWKSURL. Default: a client with a 10s timeout.
	HTTPClient *http.Client
	// Logger receives failures to refresh the JWKS (never tokens). Default slog.Default().
	Logger *slog.Logger
	// Now is the clock for exp, nbf and iat. Default time.Now; tests inject a fixed one.
	Now func() time.Time
}

// Verifier checks bearer tokens. It is safe for concurrent use.
type Verifier struct {
	issuer      string
	development bool
	keys        keyfunc.Keyfunc
	parser      *jwt.Parser
	file        *fileSource // set in JWKS file mode
}

// New builds a Verifier from cfg. In development mode (no Issuer) it loads the
// development key from DataDir, creating it on first use. With an Issuer it loads the
// JWKS file, or fetches the JWKS URL; a URL that cannot be fetched yet does not stop
// New (the failure is logged and the fetch retried when a token arrives), so that the
// rest of the API keeps serving while the identity provider is down. ctx bounds the
// background refresh of a JWKS URL: cancel it when the Verifier is no longer used.
func New(ctx context.Context, cfg Config) (*Verifier, error) {
	if cfg.Leeway == 0 {
		cfg.Leeway = DefaultLeeway
	}
	if cfg.Leeway < 0 || cfg.Leeway > MaxLeeway {
		return nil, fmt.Errorf("auth: leeway %s: want 0 to %s", cfg.Leeway, MaxLeeway)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	v := &Verifier{issuer: cfg.Issuer}
	var err error
	switch {
	case cfg.Issuer == "":
		if cfg.JWKSURL != "" || cfg.JWKSFile != "" {
			return nil, errors.New("auth: a JWKS URL or file is given without an issuer; set the issuer, or neither for development mode")
		}
		if cfg.Audience != "" {
			return nil, errors.New("auth: an audience is given without an issuer; development tokens carry no audience")
		}
		v.issuer = DevelopmentIssuer
		v.development = true
		v.keys, err = developmentKeys(cfg.DataDir)
	case cfg.Issuer == DevelopmentIssuer:
		return nil, fmt.Errorf("auth: issuer %q is reserved for development tokens", DevelopmentIssuer)
	case cfg.JWKSURL != "" && cfg.JWKSFile != "":
		return nil, errors.New("auth: both a JWKS URL and a JWKS file are given; set exactly one")
	case cfg.JWKSURL != "":
		v.keys, err = urlKeys(ctx, cfg)
	case cfg.JWKSFile != "":
		v.file, err = openFileSource(cfg.JWKSFile, cfg.Logger)
		if err == nil {
			v.keys, err = keyfunc.New(keyfunc.Options{Ctx: ctx, Storage: v.file.store, UseWhitelist: signingUses})
		}
	default:
		return nil, fmt.Errorf("auth: issuer %q is set without a JWKS URL or file; set exactly one", cfg.Issuer)
	}
	if err != nil {
		return nil, err
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(allowedAlgs),
		jwt.WithIssuer(v.issuer),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithTimeFunc(cfg.Now),
		jwt.WithStrictDecoding(),
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	v.parser = jwt.NewParser(opts...)
	return v, nil
}

// Development reports whether v trusts only the development key. The API should say so
// loudly at start-up.
func (v *Verifier) Development() bool { return v.development }

// Issuer is the iss v accepts (DevelopmentIssuer in development mode).
func (v *Verifier) Issuer() string { return v.issuer }

// claims is the typed form of a user token's payload.
type claims struct {
	Tenant   string `json:"tenant,omitempty"`
	Operator bool   `json:"keyledger_operator,omitempty"`
	jwt.RegisteredClaims
}

// Verify checks bearer — the Authorization header value ("Bearer <JWT>") or the bare
// JWT — and returns the principal it speaks for. Every error wraps ErrUnauthenticated and
// one of the precise sentinels; none contains the token. ctx bounds a JWKS refresh
// triggered by an unknown kid.
func (v *Verifier) Verify(ctx context.Context, bearer string) (Principal, error) {
	raw, err := bearerToken(bearer)
	if err != nil {
		return Principal{}, err
	}
	if v.file != nil {
		v.file.maybeReload()
	}
	var c claims
	tok, err := v.parser.ParseWithClaims(raw, &c, v.keyFor(ctx))
	if err != nil {
		return Principal{}, classify(tok, err)
	}
	if c.Subject == "" {
		return Principal{}, fmt.Errorf("%w: no sub", ErrMissingClaims)
	}
	if err := checkClaimValue("sub", c.Subject); err != nil {
		return Principal{}, fmt.Errorf("%w: %v", ErrMalformedToken, err)
	}
	if c.Operator {
		return Principal{Subject: c.Subject, Operator: true}, nil
	}
	if c.Tenant == "" {
		return Principal{}, fmt.Errorf("%w: no tenant on a token that is not an operator token", ErrMissingClaims)
	}
	if err := checkClaimValue("tenant", c.Tenant); err != nil {
		return Principal{}, fmt.Errorf("%w: %v", ErrMalformedToken, err)
	}
	return Principal{Subject: c.Subject, Tenant: c.Tenant}, nil
}

// bearerToken extracts the JWT from an Authorization header value or a bare token.
func bearerToken(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" || strings.EqualFold(s, "Bearer") {
		return "", ErrMissingToken
	}
	if scheme, rest, ok := strings.Cut(s, " "); ok {
		if !strings.EqualFold(scheme, "Bearer") {
			return "", fmt.Errorf("%w: authorization scheme is not Bearer", ErrMissingToken)
		}
		s = strings.TrimSpace(rest)
		if s == "" {
			return "", ErrMissingToken
		}
	}
	if len(s) > maxTokenBytes {
		return "", fmt.Errorf("%w: longer than %d bytes", ErrMalformedToken, maxTokenBytes)
	}
	if strings.Count(s, ".") != 2 {
		return "", fmt.Errorf("%w: not a compact JWS (header.payload.signature)", ErrMalformedToken)
	}
	return s, nil
}

// checkClaimValue refuses identifiers that could not be ids: too long or holding
// control or space characters (which would also forge log lines).
func checkClaimValue(name, s string) error {
	if len(s) > maxClaimLen {
		return fmt.Errorf("%s longer than %d bytes", name, maxClaimLen)
	}
	if strings.IndexFunc(s, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) }) >= 0 {
		return fmt.Errorf("%s holds control or space characters", name)
	}
	return nil
}

// errNoKID and errKeyLookup mark keyFor's failures so classify can tell them from
// golang-jwt's own.
var (
	errNoKID       = errors.New("token header names no kid")
	errKeyLookup   = errors.New("key lookup failed")
	errKeyMismatch = errors.New("key does not fit the algorithm")
)

// signingUses admits JWKs meant for signatures (or not saying): an "enc" key is never a
// token-signing key.
var signingUses = []jwkset.USE{jwkset.UseSig, ""}

// keyFor looks the token's kid up in the trusted key set and checks that the key fits
// the algorithm, so that an RSA key is never handed to an ECDSA check or a weak RSA key
// accepted.
func (v *Verifier) keyFor(ctx context.Context) jwt.Keyfunc {
	lookup := v.keys.KeyfuncCtx(ctx)
	return func(t *jwt.Token) (any, error) {
		kid, ok := t.Header["kid"].(string)
		if !ok || kid == "" {
			return nil, errNoKID
		}
		key, err := lookup(t)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errKeyLookup, err)
		}
		if err := keyFits(t.Method.Alg(), key); err != nil {
			return nil, fmt.Errorf("%w: kid %q: %w", errKeyMismatch, kid, err)
		}
		return key, nil
	}
}

// keyFits reports whether key may verify alg.
func keyFits(alg string, key any) error {
	switch alg {
	case "RS256":
		k, ok := key.(*rsa.PublicKey)
		if !ok {
			return errors.New("RS256 needs an RSA key")
		}
		if k.N.BitLen() < 2048 {
			return fmt.Errorf("RSA key of %d bits is too short (want at least 2048)", k.N.BitLen())
		}
	case "ES256":
		k, ok := key.(*ecdsa.PublicKey)
		if !ok || k.Curve != elliptic.P256() {
			return errors.New("ES256 needs a P-256 key")
		}
	case "EdDSA":
		if _, ok := key.(ed25519.PublicKey); !ok {
			return errors.New("EdDSA needs an Ed25519 key")
		}
	default:
		return fmt.Errorf("algorithm %q is not allowed", alg)
	}
	return nil
}

// classify turns golang-jwt's error into one of the package's sentinels. When several
// claim checks failed at once, the most telling one wins: a token from the wrong issuer
// is reported as such even when it has also expired.
func classify(tok *jwt.Token, err error) error {
	if errors.Is(err, jwt.ErrTokenMalformed) {
		return fmt.Errorf("%w: %v", ErrMalformedToken, err)
	}
	if tok != nil && tok.Header != nil {
		alg, ok := tok.Header["alg"].(string)
		if !ok || alg == "" {
			return fmt.Errorf("%w: no alg in header", ErrMalformedToken)
		}
		allowed := false
		for _, a := range allowedAlgs {
			allowed = allowed || a == alg
		}
		if !allowed {
			return fmt.Errorf("%w: %q", ErrDisallowedAlgorithm, alg)
		}
	}
	switch {
	case errors.Is(err, errNoKID):
		return fmt.Errorf("%w: %v", ErrUnknownKey, errNoKID)
	case errors.Is(err, errKeyLookup):
		if errors.Is(err, jwkset.ErrKeyNotFound) {
			return fmt.Errorf("%w: the issuer publishes no key with the token's kid", ErrUnknownKey)
		}
		return fmt.Errorf("%w: %v", ErrUnknownKey, err)
	case errors.Is(err, errKeyMismatch):
		return fmt.Errorf("%w: %v", ErrInvalidSignature, err)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return ErrInvalidSignature
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return ErrWrongIssuer
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return ErrWrongAudience
	case errors.Is(err, jwt.ErrTokenExpired):
		return ErrExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return ErrNotYetValid
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return fmt.Errorf("%w: %v", ErrMissingClaims, err)
	default:
		// Unverifiable for another reason (e.g. a claim of the wrong type).
		return fmt.Errorf("%w: %v", ErrMalformedToken, err)
	}
}

// codes are the stable machine codes of the sentinels, for problem documents.
var codes = []struct {
	err  error
	code string
}{
	{ErrMissingToken, "token_missing"},
	{ErrMalformedToken, "token_malformed"},
	{ErrDisallowedAlgorithm, "token_algorithm_not_allowed"},
	{ErrUnknownKey, "token_unknown_key"},
	{ErrInvalidSignature, "token_signature_invalid"},
	{ErrExpired, "token_expired"},
	{ErrNotYetValid, "token_not_yet_valid"},
	{ErrWrongIssuer, "token_wrong_issuer"},
	{ErrWrongAudience, "token_wrong_audience"},
	{ErrMissingClaims, "token_claims_missing"},
}

// Code is the stable machine code for an error from Verify ("token_expired", …), or
// "token_invalid" for another error wrapping ErrUnauthenticated, or "" for an error that
// is not an authentication failure. Clients switch on these codes: never rename one.
func Code(err error) string {
	for _, c := range codes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	if errors.Is(err, ErrUnauthenticated) {
		return "token_invalid"
	}
	return ""
}
