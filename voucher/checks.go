package voucher

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/keyledger/keyledger/domain/client"
	"github.com/keyledger/keyledger/domain/keys"
	"github.com/keyledger/keyledger/projections/models"
)

// Names of the assertion checks, in the order Verify runs them (see Checks). They are
// the Check of an *Error and the Name of a CheckResult: stable, never renamed.
const (
	CheckJWS            = "jws"             // compact JWS; header and payload JSON objects without repeated members; no crit
	CheckAlg            = "alg"             // header alg present and asymmetric: never none, never HMAC
	CheckKID            = "kid"             // header kid: 43 base64url characters (RFC 7638 thumbprint)
	CheckIss            = "iss"             // iss present, a well-formed id
	CheckSub            = "sub"             // sub present, a well-formed id (the client id)
	CheckIssSub         = "iss_sub"         // iss = sub
	CheckClientID       = "client_id"       // sub = client_id, when client_id is sent
	CheckAud            = "aud"             // aud is, or contains, the configured audience
	CheckJTI            = "jti"             // jti present, a well-formed id
	CheckIat            = "iat"             // iat a NumericDate, not after now + skew
	CheckExp            = "exp"             // exp a NumericDate, now before exp + skew
	CheckNbf            = "nbf"             // when present: a NumericDate, not after now + skew
	CheckLifetime       = "lifetime"        // 0 < exp - iat <= the maximum lifetime
	CheckPurposeID      = "purpose_id"      // when present: purposeId a well-formed id
	CheckDigest         = "digest"          // when present: {alg: SHA256, value: 64 hex digits}
	CheckKeyRegistered  = "key_registered"  // the read model holds the key kid on client sub
	CheckPurposeForKind = "purpose_id_kind" // purposeId sent by e-service clients, not by API clients
	CheckPurposeLinked  = "purpose_linked"  // the purpose is linked to the client
	CheckKeyUse         = "key_use"         // the key's use is sig
	CheckKeyAlg         = "key_alg"         // alg suits the key's type and is the alg it was registered for
	CheckSignature      = "signature"       // the signature verifies with the registered key
	CheckPurposeActive  = "purpose_active"  // the purpose is active
	CheckEServiceActive = "eservice_active" // the purpose's e-service is active
	CheckJTIUnused      = "jti_unused"      // jti not used before by the client (recorded by Verify)
)

// check is one named check. needs lists the checks whose results it reads: Report runs
// it only when they passed. Verify runs every check in order and stops at the first
// failure, so the order alone keeps the lookup after the cheap local checks, and the
// purpose state and the jti after the signature.
type check struct {
	name   string
	needs  []int
	passed string // the description of a pass
	run    func(*session, context.Context) error
}

// checks is the one implementation of the assertion checks, used by Verify and Report.
var checks = buildChecks([]struct {
	name, passed string
	needs        []string
	run          func(*session, context.Context) error
}{
	{CheckJWS, "the assertion is a signed JWT with a JSON header and payload", nil, (*session).decode},
	{CheckAlg, "header alg is an accepted asymmetric algorithm", []string{CheckJWS}, (*session).checkAlg},
	{CheckKID, "header kid has the form of a key thumbprint", []string{CheckJWS}, (*session).checkKID},
	{CheckIss, "iss is present", []string{CheckJWS}, (*session).checkIss},
	{CheckSub, "sub is present", []string{CheckJWS}, (*session).checkSub},
	{CheckIssSub, "iss equals sub", []string{CheckIss, CheckSub}, (*session).checkIssSub},
	{CheckClientID, "sub equals client_id", []string{CheckSub}, (*session).checkClientID},
	{CheckAud, "aud names the assertion audience", []string{CheckJWS}, (*session).checkAud},
	{CheckJTI, "jti is present", []string{CheckJWS}, (*session).checkJTI},
	{CheckIat, "iat is not in the future", []string{CheckJWS}, (*session).checkIat},
	{CheckExp, "exp has not passed", []string{CheckJWS}, (*session).checkExp},
	{CheckNbf, "nbf has passed", []string{CheckJWS}, (*session).checkNbf},
	{CheckLifetime, "exp - iat is within the maximum assertion lifetime", []string{CheckIat, CheckExp}, (*session).checkLifetime},
	{CheckPurposeID, "purposeId is well-formed", []string{CheckJWS}, (*session).checkPurposeID},
	{CheckDigest, "digest is well-formed", []string{CheckJWS}, (*session).checkDigest},
	{CheckKeyRegistered, "the key is registered on the client", []string{CheckKID, CheckSub, CheckClientID, CheckPurposeID}, (*session).checkKeyRegistered},
	{CheckPurposeForKind, "purposeId is sent exactly when the client's kind requires it", []string{CheckKeyRegistered}, (*session).checkPurposeForKind},
	{CheckPurposeLinked, "the purpose is linked to the client", []string{CheckPurposeForKind}, (*session).checkPurposeLinked},
	{CheckKeyUse, "the key is registered for use sig", []string{CheckPurposeLinked}, (*session).checkKeyUse},
	{CheckKeyAlg, "alg suits the key", []string{CheckAlg, CheckPurposeLinked}, (*session).checkKeyAlg},
	{CheckSignature, "the signature verifies with the registered key", []string{CheckKeyUse, CheckKeyAlg}, (*session).checkSignature},
	{CheckPurposeActive, "the purpose is active", []string{CheckPurposeLinked}, (*session).checkPurposeActive},
	{CheckEServiceActive, "the e-service is active", []string{CheckPurposeLinked}, (*session).checkEServiceActive},
	{CheckJTIUnused, "jti has not been used", []string{CheckSignature, CheckJTI, CheckExp}, (*session).checkJTIUnused},
})

func buildChecks(defs []struct {
	name, passed string
	needs        []string
	run          func(*session, context.Context) error
}) []check {
	index := map[string]int{}
	out := make([]check, len(defs))
	for i, d := range defs {
		c := check{name: d.name, passed: d.passed, run: d.run}
		for _, n := range d.needs {
			j, ok := index[n]
			if !ok {
				panic("voucher: check " + d.name + " needs " + n + ", which does not come before it")
			}
			c.needs = append(c.needs, j)
		}
		index[d.name] = i
		out[i] = c
	}
	return out
}

// Checks returns the names of the assertion checks in the order Verify runs them. The
// slice is the caller's.
func Checks() []string {
	out := make([]string, len(checks))
	for i, c := range checks {
		out[i] = c.name
	}
	return out
}

func (s *session) decode(context.Context) error {
	j, msg := decodeJWS(s.raw)
	if msg != "" {
		return refuse(CodeInvalidRequest, CheckJWS, msg)
	}
	if _, ok := j.header["crit"]; ok {
		return refuse(CodeInvalidRequest, CheckJWS, "the assertion header has crit: no JWS extension is supported")
	}
	s.jws = j
	return nil
}

func (s *session) checkAlg(context.Context) error {
	alg, present, ok := stringMember(s.jws.header, "alg")
	switch {
	case !present:
		return refuse(CodeInvalidRequest, CheckAlg, "the assertion header has no alg")
	case !ok:
		return refuse(CodeInvalidRequest, CheckAlg, "header alg must be a string")
	case strings.EqualFold(alg, "none"):
		return refuse(CodeInvalidClient, CheckAlg, "alg none is not accepted: sign the assertion with the private key whose public key is registered on the client")
	case strings.HasPrefix(strings.ToUpper(alg), "HS"):
		return refuse(CodeInvalidClient, CheckAlg, "alg "+show(alg)+" (HMAC) is not accepted: sign the assertion with the private key whose public key is registered on the client")
	}
	if _, ok := methods[alg]; !ok {
		return refuse(CodeInvalidClient, CheckAlg, "alg "+show(alg)+" is not supported; use RS256 (RSA keys), ES256 (P-256), ES384 (P-384) or EdDSA (Ed25519)")
	}
	s.alg = alg
	return nil
}

func (s *session) checkKID(context.Context) error {
	kid, present, ok := stringMember(s.jws.header, "kid")
	switch {
	case !present:
		return refuse(CodeInvalidRequest, CheckKID, "the assertion header has no kid; set it to the kid shown when the key was registered")
	case !ok || !isKID(kid):
		return refuse(CodeInvalidRequest, CheckKID, "header kid must be the key's kid as shown when it was registered: its RFC 7638 thumbprint, 43 base64url characters")
	}
	s.kid = kid
	return nil
}

// idClaim reads a required identifier claim.
func (s *session) idClaim(check, name, what string) (string, error) {
	v, present, ok := stringMember(s.jws.claims, name)
	switch {
	case !present:
		return "", refuse(CodeInvalidRequest, check, "the assertion has no "+name+"; it must be "+what)
	case !ok:
		return "", refuse(CodeInvalidRequest, check, "assertion "+name+" must be a string: "+what)
	case v == "":
		return "", refuse(CodeInvalidRequest, check, "assertion "+name+" is empty; it must be "+what)
	}
	if msg := checkID(v); msg != "" {
		return "", refuse(CodeInvalidRequest, check, "assertion "+name+" "+msg)
	}
	return v, nil
}

func (s *session) checkIss(context.Context) (err error) {
	s.iss, err = s.idClaim(CheckIss, "iss", "the client id")
	return err
}

func (s *session) checkSub(context.Context) (err error) {
	s.sub, err = s.idClaim(CheckSub, "sub", "the client id")
	return err
}

func (s *session) checkIssSub(context.Context) error {
	if s.iss != s.sub {
		return refuse(CodeInvalidClient, CheckIssSub, "iss does not match sub: both must be the client id")
	}
	return nil
}

func (s *session) checkClientID(context.Context) error {
	switch {
	case s.clientID == "":
		return notApplicable("no client_id sent")
	case s.sub != s.clientID:
		return refuse(CodeInvalidClient, CheckClientID, "sub does not match client_id")
	}
	return nil
}

func (s *session) checkAud(context.Context) error {
	values, present, ok := audience(s.jws.claims)
	switch {
	case !ok:
		return refuse(CodeInvalidRequest, CheckAud, "assertion aud must be a string or an array of strings")
	case !present || len(values) == 0:
		return refuse(CodeInvalidRequest, CheckAud, "the assertion has no aud; it must be "+s.v.audience)
	}
	for _, a := range values {
		if a == s.v.audience {
			return nil
		}
	}
	return refuse(CodeInvalidClient, CheckAud, audHint(s.v.audience, values))
}

// audHint describes a wrong aud, naming the near miss users of the reference platform
// trip over most: a scheme or a trailing slash too many or too few.
func audHint(want string, got []string) string {
	base := "assertion aud must be " + want
	if len(got) > 1 {
		base = "assertion aud must be " + want + " or an array containing it"
	}
	wantScheme, wantRest := splitScheme(want)
	for _, g := range got {
		gotScheme, gotRest := splitScheme(g)
		switch {
		case strings.TrimSuffix(gotRest, "/") != strings.TrimSuffix(wantRest, "/"):
			continue
		case gotScheme != "" && wantScheme == "":
			return base + ", without the " + gotScheme + " prefix"
		case gotScheme == "" && wantScheme != "":
			return base + ", with the " + wantScheme + " prefix"
		case gotScheme != wantScheme:
			return base + ", with " + wantScheme + " rather than " + gotScheme
		case strings.HasSuffix(gotRest, "/") && !strings.HasSuffix(wantRest, "/"):
			return base + ", without the trailing slash"
		case !strings.HasSuffix(gotRest, "/") && strings.HasSuffix(wantRest, "/"):
			return base + ", with the trailing slash"
		}
	}
	return base
}

// splitScheme splits "https://host/path" into "https://" and "host/path".
func splitScheme(s string) (scheme, rest string) {
	for _, p := range []string{"https://", "http://"} {
		if len(s) >= len(p) && strings.EqualFold(s[:len(p)], p) {
			return p, s[len(p):]
		}
	}
	return "", s
}

func (s *session) checkJTI(context.Context) (err error) {
	s.jti, err = s.idClaim(CheckJTI, "jti", "a unique id for this assertion")
	return err
}

// dateClaim reads a NumericDate claim; present is false when absent (or null).
func (s *session) dateClaim(check, name string) (t time.Time, present bool, err error) {
	raw, found := s.jws.claims[name]
	if !found || isNull(raw) {
		return time.Time{}, false, nil
	}
	t, ok := numericDate(raw)
	if !ok {
		return time.Time{}, true, refuse(CodeInvalidRequest, check, "assertion "+name+" must be a NumericDate: a number of seconds since 1970-01-01T00:00:00Z")
	}
	return t, true, nil
}

func (s *session) checkIat(context.Context) error {
	t, present, err := s.dateClaim(CheckIat, "iat")
	switch {
	case err != nil:
		return err
	case !present:
		return refuse(CodeInvalidRequest, CheckIat, "the assertion has no iat; set it to the time the assertion is created")
	}
	s.iat = t
	if t.After(s.now.Add(s.v.skew)) {
		return outOfTime(CheckIat, "assertion iat is "+seconds(t.Sub(s.now))+" in the future"+s.skewNote()+"; check the client's clock")
	}
	return nil
}

func (s *session) checkExp(context.Context) error {
	t, present, err := s.dateClaim(CheckExp, "exp")
	switch {
	case err != nil:
		return err
	case !present:
		return refuse(CodeInvalidRequest, CheckExp, "the assertion has no exp")
	}
	s.exp = t
	if !s.now.Before(t.Add(s.v.skew)) {
		return outOfTime(CheckExp, "the assertion expired "+seconds(s.now.Sub(t))+" ago (exp)"+s.skewNote())
	}
	return nil
}

func (s *session) checkNbf(context.Context) error {
	t, present, err := s.dateClaim(CheckNbf, "nbf")
	switch {
	case err != nil:
		return err
	case !present:
		return notApplicable("no nbf claim")
	}
	s.nbf = t
	if t.After(s.now.Add(s.v.skew)) {
		return outOfTime(CheckNbf, "the assertion is not valid yet: nbf is "+seconds(t.Sub(s.now))+" in the future"+s.skewNote())
	}
	return nil
}

// outOfTime refuses a well-formed time claim that is out of its window: a report
// still checks the lifetime it gives.
func outOfTime(check, description string) *Error {
	e := refuse(CodeInvalidClient, check, description)
	e.wellFormed = true
	return e
}

func (s *session) skewNote() string {
	if s.v.skew == 0 {
		return " (no clock skew is tolerated)"
	}
	return " (" + seconds(s.v.skew) + " of clock skew are tolerated)"
}

// seconds formats d in whole seconds, rounded up: "1 s", "3600 s".
func seconds(d time.Duration) string {
	return strconv.FormatInt(int64(math.Ceil(d.Seconds())), 10) + " s"
}

func (s *session) checkLifetime(context.Context) error {
	life := s.exp.Sub(s.iat)
	switch {
	case life <= 0:
		return refuse(CodeInvalidClient, CheckLifetime, "assertion exp must be after iat")
	case life > s.v.maxLifetime:
		return refuse(CodeInvalidClient, CheckLifetime, "the assertion lives "+seconds(life)+" (exp - iat); at most "+seconds(s.v.maxLifetime)+" are accepted")
	}
	return nil
}

func (s *session) checkPurposeID(context.Context) error {
	v, present, ok := stringMember(s.jws.claims, "purposeId")
	switch {
	case !present:
		return notApplicable("no purposeId claim")
	case !ok:
		return refuse(CodeInvalidRequest, CheckPurposeID, "purposeId must be a string")
	case v == "":
		return refuse(CodeInvalidRequest, CheckPurposeID, "purposeId is empty; leave it out for an API client")
	}
	if msg := checkID(v); msg != "" {
		return refuse(CodeInvalidRequest, CheckPurposeID, "purposeId "+msg)
	}
	s.purposeID = v
	return nil
}

func (s *session) checkDigest(context.Context) error {
	raw, found := s.jws.claims["digest"]
	if !found || isNull(raw) {
		return notApplicable("no digest claim")
	}
	d, msg := parseDigest(raw)
	if msg != "" {
		return refuse(CodeInvalidRequest, CheckDigest, msg)
	}
	s.digest = d
	return nil
}

// checkKeyRegistered is the read-model lookup: one Get on the path that issues a
// voucher — (client, kid, purpose) when a purposeId is sent, (client, kid) otherwise.
// Only a miss costs more: one more Get, to tell an API client that sent a purposeId,
// and a KeyProbe (when Entries has one) to tell an unregistered key from a missing or
// unlinked purpose.
func (s *session) checkKeyRegistered(ctx context.Context) error {
	e, found, err := s.get(ctx, s.purposeID)
	if err != nil {
		return err
	}
	if found {
		if s.purposeID == "" && e.ClientKind == client.KindEService {
			return fmt.Errorf("%w: the entry of client %s, kid %s without a purpose is an e-service client's", ErrCorruptEntry, s.sub, s.kid)
		}
		if s.purposeID != "" && e.ClientKind != client.KindEService {
			return fmt.Errorf("%w: the entry of client %s, kid %s, purpose %s is not an e-service client's", ErrCorruptEntry, s.sub, s.kid, s.purposeID)
		}
		s.entry, s.lookup = e, lookupFound
		return nil
	}
	if s.purposeID != "" {
		e, found, err := s.get(ctx, "")
		if err != nil {
			return err
		}
		if found && e.ClientKind == client.KindAPI {
			s.entry, s.lookup = e, lookupPurposeRefused
			return nil
		}
	}
	s.lookup = lookupNoKeyOrPurpose
	if s.v.probe != nil {
		kind, registered, err := s.v.probe.ProbeKey(ctx, s.sub, s.kid)
		if err != nil {
			return fmt.Errorf("%w: probe key %s of client %s: %w", ErrUnavailable, s.kid, s.sub, err)
		}
		switch {
		case !registered:
			s.lookup = lookupNoKey
		case kind == client.KindEService && s.purposeID == "":
			s.lookup = lookupPurposeRequired
			return nil
		case kind == client.KindEService:
			s.lookup = lookupNotLinked
			return nil
		}
	}
	what := "no key with kid " + s.kid + " is registered on client " + s.sub
	switch {
	case s.lookup == lookupNoKey:
	case s.purposeID != "":
		what += " for purpose " + s.purposeID + " (either the key is not registered on the client or the purpose is not linked to it)"
	default:
		what += " for use without a purpose (an e-service client must send purposeId)"
	}
	return refuse(CodeInvalidClient, CheckKeyRegistered, what)
}

// get reads one entry and checks that it is the one asked for.
func (s *session) get(ctx context.Context, purposeID string) (models.VoucherEntry, bool, error) {
	e, found, err := s.v.entries.Entry(ctx, s.sub, s.kid, purposeID)
	if err != nil {
		return models.VoucherEntry{}, false, fmt.Errorf("%w: voucher entry of client %s, kid %s: %w", ErrUnavailable, s.sub, s.kid, err)
	}
	if found && (e.ClientID != s.sub || e.KID != s.kid || e.PurposeID != purposeID) {
		return models.VoucherEntry{}, false, fmt.Errorf("%w: asked for client %s, kid %s, purpose %q; got client %s, kid %s, purpose %q",
			ErrCorruptEntry, s.sub, s.kid, purposeID, e.ClientID, e.KID, e.PurposeID)
	}
	return e, found, nil
}

func (s *session) checkPurposeForKind(context.Context) error {
	switch s.lookup {
	case lookupPurposeRefused:
		return refuse(CodeInvalidRequest, CheckPurposeForKind, "purposeId must not be sent: client "+s.sub+" is an API client, whose vouchers are for the Keyledger API, not for a purpose")
	case lookupPurposeRequired:
		return refuse(CodeInvalidRequest, CheckPurposeForKind, "purposeId is required: client "+s.sub+" is an e-service client")
	}
	return nil
}

func (s *session) checkPurposeLinked(context.Context) error {
	switch {
	case s.lookup == lookupNotLinked:
		return refuse(CodeUnauthorizedClient, CheckPurposeLinked, "purpose "+s.purposeID+" is not linked to client "+s.sub)
	case s.entry.ClientKind == client.KindAPI:
		return notApplicable("an API client has no purpose")
	}
	return nil
}

func (s *session) checkKeyUse(context.Context) error {
	if s.entry.Use != "sig" {
		return refuse(CodeInvalidClient, CheckKeyUse, "key "+s.kid+" is registered for use "+show(s.entry.Use)+"; only keys for use sig may sign assertions")
	}
	return nil
}

// checkKeyAlg takes the algorithm from the registered key, never from the header alone:
// the header's alg must be the one the key was registered for, which suits its type
// (RS256… for RSA, ES256 for P-256, ES384 for P-384, EdDSA for Ed25519), so no header
// can make an RSA key verify an HMAC or an ECDSA signature.
func (s *session) checkKeyAlg(context.Context) error {
	k, err := s.v.keys.get(s.kid, s.entry.PEM)
	if err != nil {
		return err
	}
	registered := s.entry.Alg
	if registered != "" {
		if k.key.CheckAlg(registered) != nil {
			return fmt.Errorf("%w: key %s of client %s is registered for %s, which does not suit %s", ErrCorruptEntry, s.kid, s.sub, show(registered), describeKey(k.key))
		}
		if s.alg != registered {
			return refuse(CodeInvalidClient, CheckKeyAlg, "alg "+s.alg+" does not match key "+s.kid+", "+describeKey(k.key)+" registered for "+registered)
		}
	} else if k.key.CheckAlg(s.alg) != nil {
		return refuse(CodeInvalidClient, CheckKeyAlg, "alg "+s.alg+" does not suit key "+s.kid+", "+describeKey(k.key)+"; use "+strings.Join(k.key.Algorithms(), " or "))
	}
	s.key = k
	return nil
}

// describeKey names a key's type for a description: "an RSA 2048-bit key".
func describeKey(k keys.Key) string {
	switch k.Type() {
	case keys.TypeRSA:
		return "an RSA " + strconv.Itoa(k.Bits()) + "-bit key"
	case keys.TypeEC:
		return "an EC " + k.Curve() + " key"
	}
	return "an " + k.Curve() + " key"
}

func (s *session) checkSignature(context.Context) error {
	if err := methods[s.alg].Verify(s.jws.signingInput, s.jws.signature, s.key.pub); err != nil {
		return refuse(CodeInvalidClient, CheckSignature, "the signature does not verify with key "+s.kid+" registered on client "+s.sub)
	}
	return nil
}

func (s *session) checkPurposeActive(context.Context) error {
	if s.entry.ClientKind != client.KindEService {
		return notApplicable("an API client has no purpose")
	}
	p := "purpose " + s.entry.PurposeID
	switch s.entry.Refusal() {
	case models.RefusePurposePending:
		return refuse(CodeInvalidGrant, CheckPurposeActive, p+" is pending: the producer has not activated it yet")
	case models.RefusePurposeSuspended:
		return refuse(CodeInvalidGrant, CheckPurposeActive, p+" is suspended")
	case models.RefusePurposeArchived:
		return refuse(CodeInvalidGrant, CheckPurposeActive, p+" is archived")
	case models.RefusePurposeNotActive:
		return refuse(CodeInvalidGrant, CheckPurposeActive, p+" is not active")
	}
	return nil
}

func (s *session) checkEServiceActive(context.Context) error {
	if s.entry.ClientKind != client.KindEService {
		return notApplicable("an API client has no e-service")
	}
	if s.entry.EServiceState != models.EServiceActive {
		return refuse(CodeInvalidGrant, CheckEServiceActive, "the e-service of purpose "+s.entry.PurposeID+" is suspended")
	}
	return nil
}

// checkJTIUnused records the jti until the assertion can no longer be accepted (exp +
// skew). A report only looks it up, when the cache can.
func (s *session) checkJTIUnused(ctx context.Context) error {
	const used = "jti already used: send a new assertion, with a fresh jti, for every token request"
	if s.report {
		p, ok := s.v.replay.(ReplayPeeker)
		if !ok {
			return notApplicable("not checked: the replay cache cannot be read without recording the jti")
		}
		seen, err := p.Used(ctx, s.sub, s.jti)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		if seen {
			return refuse(CodeInvalidClient, CheckJTIUnused, used)
		}
		return nil
	}
	fresh, err := s.v.replay.Use(ctx, s.sub, s.jti, s.exp.Add(s.v.skew))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if !fresh {
		return refuse(CodeInvalidClient, CheckJTIUnused, used)
	}
	return nil
}
