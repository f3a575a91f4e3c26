package voucher

import (
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/keyledger/keyledger/domain/client"
	"github.com/keyledger/keyledger/domain/eservice"
)

// Bounds of IssuerConfig.APILifetime.
const (
	// DefaultAPIVoucherLifetime is the lifetime of an API client's voucher when
	// IssuerConfig.APILifetime is 0.
	DefaultAPIVoucherLifetime = 10 * time.Minute
	// MinAPIVoucherLifetime and MaxAPIVoucherLifetime bound it, as an e-service's
	// voucher lifetime is bounded.
	MinAPIVoucherLifetime = eservice.MinVoucherLifetimeSeconds * time.Second
	MaxAPIVoucherLifetime = eservice.MaxVoucherLifetimeSeconds * time.Second
)

// TokenType is the token_type of every voucher (RFC 6750).
const TokenType = "Bearer"

// IssuerConfig says how an Issuer builds vouchers.
type IssuerConfig struct {
	// Issuer is the iss of every voucher (KEYLEDGER_ISSUER): Keyledger's issuer
	// identifier, an https URL in production. Required.
	Issuer string
	// APIAudience is the aud of vouchers for API clients: the identifier under which
	// the Keyledger API accepts them. Required; it must differ from every e-service's
	// audience, or an e-service could replay its callers' vouchers against the API.
	APIAudience string
	// APILifetime is how long an API client's voucher lives. Default 10m (when 0); 1m
	// to 24h.
	APILifetime time.Duration
	// Signer signs the vouchers. Required.
	Signer *Signer
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// NewID returns a fresh voucher jti. Default uuid.NewString (random UUIDs).
	NewID func() string
}

// Issuer builds and signs vouchers for verified assertions. Safe for concurrent use.
type Issuer struct {
	cfg IssuerConfig
}

// NewIssuer checks cfg and builds an Issuer.
func NewIssuer(cfg IssuerConfig) (*Issuer, error) {
	switch {
	case cfg.Issuer == "":
		return nil, errors.New("voucher: the voucher issuer is not configured")
	case cfg.APIAudience == "":
		return nil, errors.New("voucher: the audience of API-client vouchers is not configured")
	case cfg.Signer == nil:
		return nil, errors.New("voucher: no signer")
	}
	switch {
	case cfg.APILifetime == 0:
		cfg.APILifetime = DefaultAPIVoucherLifetime
	case cfg.APILifetime < MinAPIVoucherLifetime || cfg.APILifetime > MaxAPIVoucherLifetime:
		return nil, fmt.Errorf("voucher: API voucher lifetime %s: want %s to %s", cfg.APILifetime, MinAPIVoucherLifetime, MaxAPIVoucherLifetime)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.NewID == nil {
		cfg.NewID = uuid.NewString
	}
	return &Issuer{cfg: cfg}, nil
}

// Voucher is a signed voucher and what its audit record needs.
type Voucher struct {
	// Token is the access_token: a JWS compact JWT. Never log it.
	Token string
	// JTI is the voucher's jti.
	JTI string
	// IssuedAt and ExpiresAt are its iat (= nbf) and exp.
	IssuedAt  time.Time
	ExpiresAt time.Time
	// ExpiresIn is expires_in: exp - iat in seconds.
	ExpiresIn int64
	// Audit is the voucher's audit record, but for the caller's address, which the
	// HTTP layer adds. Write it durably before answering.
	Audit AuditRecord
}

// AuditRecord is what the audit event of one issued voucher holds (the HTTP layer adds
// the caller's address). It holds no token and no key material.
type AuditRecord struct {
	VoucherJTI string      `json:"voucherJti"`
	ClientID   string      `json:"clientId"`
	ClientKind client.Kind `json:"clientKind"`
	Tenant     string      `json:"tenant"`
	// KID is the client key that signed the assertion; AssertionAlg its algorithm.
	KID          string `json:"kid"`
	AssertionAlg string `json:"assertionAlg"`
	// PurposeID and EServiceID are empty for API clients.
	PurposeID  string `json:"purposeId,omitempty"`
	EServiceID string `json:"eserviceId,omitempty"`
	// Audience is the voucher's aud.
	Audience           string    `json:"audience"`
	AssertionJTI       string    `json:"assertionJti"`
	AssertionIssuedAt  time.Time `json:"assertionIat"`
	AssertionExpiresAt time.Time `json:"assertionExp"`
	VoucherIssuedAt    time.Time `json:"voucherIat"`
	VoucherExpiresAt   time.Time `json:"voucherExp"`
	// SigningKID is the Keyledger key that signed the voucher.
	SigningKID string  `json:"signingKid"`
	Digest     *Digest `json:"digest,omitempty"`
	// EntryPosition is the log position the read-model entry reflected: the decision
	// was taken on the log up to there.
	EntryPosition string `json:"entryPosition"`
	// CallerAddress is the address the token request came from (set by the HTTP layer).
	CallerAddress string `json:"callerAddress,omitempty"`
}

// voucherClaims are a voucher's claims (RFC 9068 names, PDND's purposeId and digest).
type voucherClaims struct {
	Iss       string   `json:"iss"`
	Sub       string   `json:"sub"`
	Aud       string   `json:"aud"`
	ClientID  string   `json:"client_id"`
	PurposeID string   `json:"purposeId,omitempty"`
	Tenant    string   `json:"tenant,omitempty"`
	Roles     []string `json:"roles,omitempty"`
	JTI       string   `json:"jti"`
	Iat       int64    `json:"iat"`
	Nbf       int64    `json:"nbf"`
	Exp       int64    `json:"exp"`
	Digest    *Digest  `json:"digest,omitempty"`
}

// Issue builds and signs the voucher for a (verified) assertion: Prepare, then Sign.
func (i *Issuer) Issue(a Assertion) (Voucher, error) {
	d, err := i.Prepare(a)
	if err != nil {
		return Voucher{}, err
	}
	return d.Sign()
}

// Draft is a voucher built but not yet signed: its claims, the key that will sign it,
// and its audit record (which names that key). The token endpoint queues the record
// (AuditWriter.Submit) before Sign, so that the durable append and the signature run
// at once.
type Draft struct {
	// Voucher is the voucher but for its Token; Audit is complete but for the caller's
	// address.
	Voucher
	claims voucherClaims
	key    *signingKey
}

// Sign signs the draft with the key its audit record names and returns the voucher.
// A failure is server-side.
func (d *Draft) Sign() (Voucher, error) {
	token, err := d.key.sign(d.claims)
	if err != nil {
		return Voucher{}, err
	}
	v := d.Voucher
	v.Token = token
	return v, nil
}

// Prepare builds the voucher for a (verified) assertion: iss, sub = client_id = the
// client, aud (the e-service's audience, or APIAudience for an API client), purposeId
// (e-service clients), tenant (API clients: the tenant whose API they may call), a
// fresh jti, iat = nbf = now (whole seconds), exp = iat + the e-service's voucher
// lifetime (APILifetime for API clients), and digest when the assertion had one; the
// signing key is the Signer's current one. Its errors are server-side:
// ErrCorruptEntry for an entry without audience or lifetime.
func (i *Issuer) Prepare(a Assertion) (*Draft, error) {
	e := a.Entry
	c := voucherClaims{Iss: i.cfg.Issuer, Sub: a.ClientID, ClientID: a.ClientID, Digest: a.Digest}
	var life time.Duration
	switch e.ClientKind {
	case client.KindEService:
		if e.Audience == "" {
			return nil, fmt.Errorf("%w: e-service %s of purpose %s has no audience", ErrCorruptEntry, e.EServiceID, e.PurposeID)
		}
		if e.VoucherLifetimeSeconds < eservice.MinVoucherLifetimeSeconds || e.VoucherLifetimeSeconds > eservice.MaxVoucherLifetimeSeconds {
			return nil, fmt.Errorf("%w: e-service %s has voucher lifetime %d s", ErrCorruptEntry, e.EServiceID, e.VoucherLifetimeSeconds)
		}
		c.Aud, c.PurposeID = e.Audience, a.PurposeID
		life = time.Duration(e.VoucherLifetimeSeconds) * time.Second
	case client.KindAPI:
		if e.Tenant == "" {
			return nil, fmt.Errorf("%w: API client %s has no tenant", ErrCorruptEntry, a.ClientID)
		}
		c.Aud, c.Tenant, c.Roles = i.cfg.APIAudience, e.Tenant, e.Roles
		life = i.cfg.APILifetime
	default:
		return nil, fmt.Errorf("%w: client %s has kind %q", ErrCorruptEntry, a.ClientID, e.ClientKind)
	}
	iat := i.cfg.Now().Truncate(time.Second).UTC()
	exp := iat.Add(life)
	c.JTI, c.Iat, c.Nbf, c.Exp = i.cfg.NewID(), iat.Unix(), iat.Unix(), exp.Unix()
	key := i.cfg.Signer.current()
	return &Draft{claims: c, key: key,
		Voucher: Voucher{JTI: c.JTI, IssuedAt: iat, ExpiresAt: exp, ExpiresIn: int64(life / time.Second),
			Audit: AuditRecord{VoucherJTI: c.JTI, ClientID: a.ClientID, ClientKind: e.ClientKind, Tenant: e.Tenant,
				KID: a.KID, AssertionAlg: a.Alg, PurposeID: a.PurposeID, EServiceID: e.EServiceID, Audience: c.Aud,
				AssertionJTI: a.JTI, AssertionIssuedAt: a.IssuedAt, AssertionExpiresAt: a.ExpiresAt,
				VoucherIssuedAt: iat, VoucherExpiresAt: exp, SigningKID: key.kid, Digest: a.Digest,
				EntryPosition: e.Position}}}, nil
}
