package voucher

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/keyledger/keyledger/domain/client"
	"github.com/keyledger/keyledger/projections/models"
)

// Entries is the voucher read model as the token path reads it: one entry per (client,
// kid, purpose) for e-service clients and per (client, kid) for API clients
// (models.LookupEntry over the read-model store implements it).
type Entries interface {
	// Entry returns the entry of the client's key for the purpose (purposeID "" for an
	// API client's key). found is false when there is none. An error means the answer
	// is unknown — the store is unreachable, or the read model is not ready or is being
	// rebuilt — and must never be read as "no such entry".
	Entry(ctx context.Context, clientID, kid, purposeID string) (entry models.VoucherEntry, found bool, err error)
}

// EntriesFunc adapts a function to Entries: typically models.LookupEntry over the
// store and the active generation of the voucher model that a runner.Reader resolves
// (cached, so that a lookup stays one round trip).
type EntriesFunc func(ctx context.Context, clientID, kid, purposeID string) (models.VoucherEntry, bool, error)

// Entry implements Entries.
func (f EntriesFunc) Entry(ctx context.Context, clientID, kid, purposeID string) (models.VoucherEntry, bool, error) {
	return f(ctx, clientID, kid, purposeID)
}

// KeyProbe is optionally implemented by an Entries. The Verifier calls it only when a
// lookup found nothing, to say precisely why: the key is not registered on the client,
// or it is but the request lacks a purposeId (e-service client) or names a purpose not
// linked to the client. Without it those refusals share one description that names
// both possibilities. It is never called on the path that issues a voucher.
type KeyProbe interface {
	// ProbeKey reports whether kid is registered on clientID and, if so, the client's
	// kind. An error means the answer is unknown.
	ProbeKey(ctx context.Context, clientID, kid string) (kind client.Kind, registered bool, err error)
}

// Defaults and bounds of Config.
const (
	// DefaultMaxLifetime is the longest exp - iat accepted when Config.MaxLifetime is 0.
	DefaultMaxLifetime = time.Hour
	// MaxMaxLifetime bounds Config.MaxLifetime: replay protection holds each jti as long
	// as its assertion lives.
	MaxMaxLifetime = 24 * time.Hour
	// DefaultSkew is the clock skew tolerated on iat, exp and nbf when Config.Skew is 0.
	DefaultSkew = 10 * time.Second
	// MaxSkew bounds Config.Skew.
	MaxSkew = 5 * time.Minute
)

// Config says what assertions a Verifier accepts.
type Config struct {
	// Audience is the assertion audience (KEYLEDGER_ASSERTION_AUDIENCE): aud must equal
	// it or, as an array, contain it. Required. Set it to Keyledger's issuer URL to
	// accept assertions from standard OAuth 2 libraries using private_key_jwt, which put
	// the authorization server's issuer identifier in aud.
	Audience string
	// MaxLifetime is the longest exp - iat accepted. Default 1h (when 0); at most 24h.
	// Longer-lived assertions are longer-lived replay targets and fill the replay cache.
	MaxLifetime time.Duration
	// Skew is the clock skew tolerated on iat (not after now + Skew), exp (now before
	// exp + Skew) and nbf (not after now + Skew). Default 10s (when 0); a negative value
	// means no tolerance at all; at most 5m.
	Skew time.Duration
	// Entries reads the voucher read model. Required.
	Entries Entries
	// Replay remembers used jti values. Required: a MemoryReplayCache for a single
	// process, a RedisReplayCache when several replicas serve the token endpoint (with
	// per-process caches an assertion can be replayed once per replica).
	Replay ReplayCache
	// KeyCacheSize is how many parsed client public keys to keep. Default
	// DefaultKeyCacheSize (when 0).
	KeyCacheSize int
	// Now is the clock. Default time.Now; tests inject a fixed one.
	Now func() time.Time
}

// Verifier runs the checks of a client assertion (see Checks) against the voucher read
// model. It is safe for concurrent use.
type Verifier struct {
	audience    string
	maxLifetime time.Duration
	skew        time.Duration
	entries     Entries
	probe       KeyProbe // nil when Entries does not implement it
	replay      ReplayCache
	keys        *keyCache
	now         func() time.Time
}

// NewVerifier checks cfg and builds a Verifier.
func NewVerifier(cfg Config) (*Verifier, error) {
	if cfg.Audience == "" {
		return nil, errors.New("voucher: the assertion audience is not configured")
	}
	if cfg.Entries == nil {
		return nil, errors.New("voucher: no voucher read model (Entries)")
	}
	if cfg.Replay == nil {
		return nil, errors.New("voucher: no replay cache")
	}
	switch {
	case cfg.MaxLifetime == 0:
		cfg.MaxLifetime = DefaultMaxLifetime
	case cfg.MaxLifetime < time.Second || cfg.MaxLifetime > MaxMaxLifetime:
		return nil, fmt.Errorf("voucher: maximum assertion lifetime %s: want 1s to %s", cfg.MaxLifetime, MaxMaxLifetime)
	}
	switch {
	case cfg.Skew == 0:
		cfg.Skew = DefaultSkew
	case cfg.Skew < 0:
		cfg.Skew = 0
	case cfg.Skew > MaxSkew:
		return nil, fmt.Errorf("voucher: clock skew %s: want at most %s", cfg.Skew, MaxSkew)
	}
	if cfg.KeyCacheSize <= 0 {
		cfg.KeyCacheSize = DefaultKeyCacheSize
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	v := &Verifier{audience: cfg.Audience, maxLifetime: cfg.MaxLifetime, skew: cfg.Skew,
		entries: cfg.Entries, replay: cfg.Replay, keys: newKeyCache(cfg.KeyCacheSize), now: cfg.Now}
	v.probe, _ = cfg.Entries.(KeyProbe)
	return v, nil
}

// Audience is the assertion audience v accepts.
func (v *Verifier) Audience() string { return v.audience }

// Assertion is a client assertion that passed every check, with the read-model entry
// it was checked against. Only Verify makes one; build vouchers from nothing else.
type Assertion struct {
	// ClientID is the authenticated client (sub = iss = client_id).
	ClientID string
	// KID is the client key that signed the assertion; Alg its algorithm.
	KID string
	Alg string
	// PurposeID is the purpose the voucher is for; "" for an API client.
	PurposeID string
	// JTI, IssuedAt and ExpiresAt are the assertion's jti, iat and exp; NotBefore its
	// nbf, zero when absent.
	JTI       string
	IssuedAt  time.Time
	ExpiresAt time.Time
	NotBefore time.Time
	// Digest is the assertion's digest claim, nil when absent.
	Digest *Digest
	// Entry is the voucher read-model entry the assertion was checked against.
	Entry models.VoucherEntry
}

// Verify runs every check on req's client assertion, in the order of Checks, and stops
// at the first that fails. It returns the verified assertion, or:
//   - an *Error (errors.As) naming the failed check: answer it as RFC 6749 §5.2 JSON;
//   - an error wrapping ErrUnavailable: the read model or the replay cache could not
//     answer; answer 503, never a voucher;
//   - an error wrapping ErrCorruptEntry: answer 500.
//
// On success the assertion's jti is recorded in the replay cache (the last check, run
// only once the signature verified, so that nobody can burn another client's jti): a
// caller that then fails to issue the voucher leaves the client to send a new
// assertion.
func (v *Verifier) Verify(ctx context.Context, req TokenRequest) (Assertion, error) {
	s := v.session(req.ClientAssertion, req.ClientID, false)
	for i := range checks {
		if err := checks[i].run(s, ctx); err != nil {
			var na notApplicable
			if errors.As(err, &na) {
				continue
			}
			return Assertion{}, err
		}
	}
	if r := s.entry.Refusal(); r != "" { // unreachable: purpose_active and eservice_active refused it
		return Assertion{}, refuse(CodeInvalidGrant, CheckPurposeActive, "the purpose or its e-service is not active")
	}
	return Assertion{ClientID: s.sub, KID: s.kid, Alg: s.alg, PurposeID: s.purposeID, JTI: s.jti,
		IssuedAt: s.iat, ExpiresAt: s.exp, NotBefore: s.nbf, Digest: s.digest, Entry: s.entry}, nil
}

// Outcome is the result of one check in a Report.
type Outcome string

// Outcomes.
const (
	Passed  Outcome = "passed"
	Failed  Outcome = "failed"
	Skipped Outcome = "skipped"
)

// CheckResult is one check's line in a Report.
type CheckResult struct {
	// Name is the check's name (one of Checks).
	Name string `json:"name"`
	// Outcome says whether it passed, failed, or was skipped: not applicable (an
	// optional claim absent) or not run (a check it depends on did not pass).
	Outcome Outcome `json:"outcome"`
	// Error is the RFC 6749 error code the token endpoint would answer; "" unless
	// Failed.
	Error string `json:"error,omitempty"`
	// Description says what was checked, what was wrong, or why it was skipped.
	Description string `json:"description"`
}

// Report is the outcome of every check on one assertion.
type Report struct {
	// Checks holds one result per check, in the order of Checks.
	Checks []CheckResult `json:"checks"`
	// Valid is true when no check failed: the token endpoint would issue a voucher for
	// this assertion now (unless its jti is used meanwhile).
	Valid bool `json:"valid"`
}

// Report runs every check on assertion as if clientID had sent it with client_id =
// clientID, without issuing anything and without recording its jti (the jti is looked
// up when the replay cache implements ReplayPeeker). Unlike Verify it does not stop at
// the first failure: each check runs when the checks it depends on passed, were
// skipped as not applicable (an absent optional claim), or failed on a well-formed
// time (an expired exp still gives a lifetime to check). It is the same code as
// Verify's. The read model is consulted only for clientID (the lookup depends on sub
// matching it), so a caller allowed to see clientID learns nothing about other
// clients. Errors are those of Verify other than *Error.
func (v *Verifier) Report(ctx context.Context, clientID, assertion string) (Report, error) {
	if clientID == "" {
		return Report{}, errors.New("voucher: a report needs the client id")
	}
	s := v.session(assertion, clientID, true)
	rep := Report{Checks: make([]CheckResult, len(checks)), Valid: true}
	done := make([]bool, len(checks)) // passed, or skipped as not applicable
	for i := range checks {
		c := &checks[i]
		res := CheckResult{Name: c.name}
		blocked := ""
		for _, n := range c.needs {
			if !done[n] {
				blocked = checks[n].name
				break
			}
		}
		if blocked != "" {
			res.Outcome, res.Description = Skipped, "not run: check "+blocked+" did not pass"
			rep.Checks[i] = res
			continue
		}
		err := c.run(s, ctx)
		var (
			na notApplicable
			oe *Error
		)
		switch {
		case err == nil:
			res.Outcome, res.Description = Passed, c.passed
			done[i] = true
		case errors.As(err, &na):
			res.Outcome, res.Description = Skipped, string(na)
			done[i] = true
		case errors.As(err, &oe):
			res.Outcome, res.Error, res.Description = Failed, oe.Code, oe.Description
			rep.Valid = false
			done[i] = oe.wellFormed
		default:
			return Report{}, err
		}
		rep.Checks[i] = res
	}
	return rep, nil
}

// session is one assertion going through the checks; each check reads what earlier
// ones extracted.
type session struct {
	v        *Verifier
	now      time.Time
	raw      string
	clientID string // client_id sent (or the client a report is for); "" if none
	report   bool

	jws                      *jws
	alg, kid                 string
	iss, sub, jti, purposeID string
	iat, exp, nbf            time.Time
	digest                   *Digest

	lookup lookupResult
	entry  models.VoucherEntry
	key    *clientKey
}

func (v *Verifier) session(raw, clientID string, report bool) *session {
	return &session{v: v, now: v.now(), raw: raw, clientID: clientID, report: report}
}

// lookupResult is what the read-model lookup found.
type lookupResult int

const (
	lookupFound           lookupResult = iota + 1 // the entry for the request
	lookupNoKey                                   // kid not registered on the client
	lookupNoKeyOrPurpose                          // no entry, and no KeyProbe to say why
	lookupPurposeRequired                         // e-service client, no purposeId
	lookupPurposeRefused                          // API client, purposeId sent
	lookupNotLinked                               // e-service client, purpose not linked
)

// notApplicable is a check's skip: the claim it checks is optional and absent, or the
// client's kind makes it moot. Its text is the reason.
type notApplicable string

func (n notApplicable) Error() string { return string(n) }

// methods maps each accepted JWS algorithm to its golang-jwt implementation. HMAC and
// "none" are absent on purpose: an assertion must be signed with a private key.
var methods = map[string]jwt.SigningMethod{
	"RS256": jwt.SigningMethodRS256, "RS384": jwt.SigningMethodRS384, "RS512": jwt.SigningMethodRS512,
	"PS256": jwt.SigningMethodPS256, "PS384": jwt.SigningMethodPS384, "PS512": jwt.SigningMethodPS512,
	"ES256": jwt.SigningMethodES256, "ES384": jwt.SigningMethodES384,
	"EdDSA": jwt.SigningMethodEdDSA,
}
