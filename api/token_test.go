package api_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/keyledger/keyledger/api"
	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/projections/readmodel"
	"github.com/keyledger/keyledger/projections/runner"
	"github.com/keyledger/keyledger/voucher"
)

const (
	testIssuer      = "https://keyledger.test"
	testAPIAudience = testIssuer + "/api"
)

// failingAudit refuses every record while failSubmit is set, fails every record's
// append (its wait) while failAppend is set, else writes through.
type failingAudit struct {
	w                      api.AuditWriter
	failSubmit, failAppend atomic.Bool
}

func (f *failingAudit) Submit(ctx context.Context, rec voucher.AuditRecord, corr string) (voucher.AuditWait, error) {
	if f.failSubmit.Load() {
		return nil, errors.New("audit writer closed")
	}
	if f.failAppend.Load() {
		return func(context.Context) (eventstore.Position, error) {
			return eventstore.Position{}, errors.New("event store unavailable")
		}, nil
	}
	return f.w.Submit(ctx, rec, corr)
}

// Expect passes the announcement on to the real writer.
func (f *failingAudit) Expect(ctx context.Context) (context.Context, func()) {
	if ex, ok := f.w.(interface {
		Expect(context.Context) (context.Context, func())
	}); ok {
		return ex.Expect(ctx)
	}
	return ctx, func() {}
}

// voucherEnv is env with the token endpoint: ES256 voucher signing key, assertions for
// testIssuer, the memory replay cache, the real batching audit writer on the store.
type voucherEnv struct {
	*env
	vs     *api.Vouchers
	audit  *failingAudit
	signer *voucher.Signer
}

func newVoucherEnv(t *testing.T, entries func(e *env) voucher.Entries) *voucherEnv {
	t.Helper()
	signer, err := voucher.OpenSigner(voucher.SignerConfig{Dir: t.TempDir(), Algorithm: voucher.AlgES256})
	if err != nil {
		t.Fatal(err)
	}
	apiv, err := voucher.NewAPIVoucherVerifier(signer, testIssuer, testAPIAudience, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	vs := &api.Vouchers{}
	e := newEnv(t, func(d *api.Deps) {
		d.Vouchers = vs
		d.Verifier = api.WithAPIVouchers(d.Verifier, apiv)
	})
	if entries == nil {
		entries = func(e *env) voucher.Entries { return api.VoucherEntries(e.rd) }
	}
	verifier, err := voucher.NewVerifier(voucher.Config{Audience: testIssuer, Entries: entries(e),
		Replay: voucher.NewMemoryReplayCache(0, nil)})
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := voucher.NewIssuer(voucher.IssuerConfig{Issuer: testIssuer, APIAudience: testAPIAudience, Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	w, err := voucher.NewAuditWriter(voucher.AuditConfig{Store: e.store})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() }) // before the store closes
	audit := &failingAudit{w: w}
	*vs = api.Vouchers{Issuer: testIssuer, Verifier: verifier, Tokens: tokens, Signer: signer, Audit: audit, API: apiv}
	return &voucherEnv{env: e, vs: vs, audit: audit, signer: signer}
}

// form posts a form to path and validates the exchange against the OpenAPI document.
func (e *env) form(path string, values url.Values) resp {
	e.t.Helper()
	raw := values.Encode()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+path, strings.NewReader(raw))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return e.send(req, []byte(raw))
}

func (e *env) send(req *http.Request, raw []byte) resp {
	e.t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	validateExchange(e.t, req, raw, res.StatusCode, res.Header, b)
	return resp{status: res.StatusCode, header: res.Header, body: b}
}

// clientKey is a client's private key with the kid Keyledger registered for it.
type clientKey struct {
	priv crypto.Signer
	alg  string
	kid  string
}

func publicPEM(t *testing.T, priv crypto.Signer) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func newPrivate(t *testing.T, alg string) crypto.Signer {
	t.Helper()
	var (
		k   crypto.Signer
		err error
	)
	switch alg {
	case "RS256":
		_, k = rsaPEM(t, 2048)
	case "ES256":
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "EdDSA":
		_, k, err = ed25519.GenerateKey(rand.Reader)
	}
	if err != nil || k == nil {
		t.Fatalf("key for %s: %v", alg, err)
	}
	return k
}

// upload registers a new key of alg on the client.
func (e *env) upload(token, clientID, alg string) clientKey {
	e.t.Helper()
	priv := newPrivate(e.t, alg)
	r := e.must(201, "POST", "/v1/clients/"+clientID+"/keys", token, keyBody("key "+alg, publicPEM(e.t, priv)))
	return clientKey{priv: priv, alg: alg, kid: r.json(e.t)["kid"].(string)}
}

// assertion signs claims (defaults for client with purposeID; a nil value in set
// removes a claim) with k.
func assertion(t *testing.T, k clientKey, clientID, purposeID string, set map[string]any) string {
	t.Helper()
	now := time.Now()
	claims := jwt.MapClaims{"iss": clientID, "sub": clientID, "aud": testIssuer, "jti": uuid.NewString(),
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix()}
	if purposeID != "" {
		claims["purposeId"] = purposeID
	}
	for name, v := range set {
		if v == nil {
			delete(claims, name)
		} else {
			claims[name] = v
		}
	}
	var m jwt.SigningMethod
	switch k.alg {
	case "RS256":
		m = jwt.SigningMethodRS256
	case "ES256":
		m = jwt.SigningMethodES256
	case "EdDSA":
		m = jwt.SigningMethodEdDSA
	}
	tok := jwt.NewWithClaims(m, claims)
	tok.Header["kid"] = k.kid
	s, err := tok.SignedString(k.priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func tokenForm(assertion, clientID string) url.Values {
	v := url.Values{"grant_type": {"client_credentials"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion":      {assertion}}
	if clientID != "" {
		v.Set("client_id", clientID)
	}
	return v
}

// oauthErr decodes an RFC 6749 error answer.
func oauthErr(t *testing.T, r resp) (code, description string) {
	t.Helper()
	var b struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
		Correlation string `json:"correlation_id"`
	}
	if err := json.Unmarshal(r.body, &b); err != nil || b.Error == "" {
		t.Fatalf("not an OAuth error (%d): %s", r.status, r.body)
	}
	if b.Correlation == "" || b.Correlation != r.header.Get(api.HeaderCorrelationID) {
		t.Fatalf("correlation_id %q, header %q", b.Correlation, r.header.Get(api.HeaderCorrelationID))
	}
	return b.Error, b.Description
}

// refused asserts a 400 with the code, and a description containing want.
func refused(t *testing.T, r resp, code, want string) {
	t.Helper()
	if r.status != 400 {
		t.Fatalf("status %d, want 400: %s", r.status, r.body)
	}
	got, desc := oauthErr(t, r)
	if got != code || !strings.Contains(desc, want) {
		t.Fatalf("error %q %q, want %q containing %q", got, desc, code, want)
	}
}

// issued decodes a voucher answer and verifies the voucher against the published JWKS.
func (e *voucherEnv) issued(r resp) jwt.MapClaims {
	t := e.t
	t.Helper()
	if r.status != 200 {
		t.Fatalf("token: %d %s", r.status, r.body)
	}
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		t.Fatalf("Cache-Control %q", cc)
	}
	var ans struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int64  `json:"expires_in"`
	}
	if err := json.Unmarshal(r.body, &ans); err != nil || ans.TokenType != "Bearer" || ans.AccessToken == "" {
		t.Fatalf("answer %s: %v", r.body, err)
	}
	jw := e.must(200, "GET", "/.well-known/jwks.json", "", nil)
	set, err := keyfunc.NewJWKSetJSON(jw.body)
	if err != nil {
		t.Fatal(err)
	}
	var claims jwt.MapClaims
	tok, err := jwt.ParseWithClaims(ans.AccessToken, &claims, set.Keyfunc, jwt.WithValidMethods([]string{"ES256"}), jwt.WithIssuer(testIssuer), jwt.WithExpirationRequired())
	if err != nil || !tok.Valid {
		t.Fatalf("voucher does not verify with the JWKS: %v", err)
	}
	if tok.Header["typ"] != "at+jwt" {
		t.Fatalf("voucher typ %v", tok.Header["typ"])
	}
	exp, _ := claims.GetExpirationTime()
	iat, _ := claims.GetIssuedAt()
	if int64(exp.Sub(iat.Time)/time.Second) != ans.ExpiresIn {
		t.Fatalf("expires_in %d, exp - iat %s", ans.ExpiresIn, exp.Sub(iat.Time))
	}
	claims["raw"] = ans.AccessToken
	return claims
}

// auditRecord finds the audit record of the voucher jti.
func (e *voucherEnv) auditRecord(jti string) (voucher.AuditRecord, bool) {
	e.t.Helper()
	evs, err := e.store.ReadStream(context.Background(), voucher.AuditStreamName(time.Now()), eventstore.Forwards, 0, 10000)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, ev := range evs {
		var rec voucher.AuditRecord
		if err := json.Unmarshal(ev.Data, &rec); err != nil {
			e.t.Fatal(err)
		}
		if rec.VoucherJTI == jti {
			return rec, true
		}
	}
	return voucher.AuditRecord{}, false
}

func TestVoucherForEachKeyType(t *testing.T) {
	e := newVoucherEnv(t, nil)
	prod, cons, esID, pid := producerConsumer(e.env)
	cid := e.client(cons, "eservice", nil)
	e.must(200, "POST", "/v1/clients/"+cid+"/purposes", cons, map[string]any{"purposeId": pid})
	for _, alg := range []string{"RS256", "ES256", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			k := e.upload(cons, cid, alg)
			a := assertion(t, k, cid, pid, map[string]any{"digest": map[string]any{"alg": "SHA256",
				"value": strings.Repeat("ab", 32)}, "nbf": time.Now().Unix(), "some_private_claim": "ignored"})
			c := e.issued(e.form("/oauth2/token", tokenForm(a, cid)))
			if c["sub"] != cid || c["client_id"] != cid || c["aud"] != "https://registry.example/api" || c["purposeId"] != pid ||
				c["iss"] != testIssuer || c["jti"] == "" || c["nbf"] != c["iat"] || c["tenant"] != nil {
				t.Fatalf("claims %v", c)
			}
			if d, _ := c["digest"].(map[string]any); d["value"] != strings.Repeat("ab", 32) {
				t.Fatalf("digest %v", c["digest"])
			}
			rec, ok := e.auditRecord(c["jti"].(string))
			if !ok {
				t.Fatal("no audit record for the voucher")
			}
			if rec.ClientID != cid || rec.KID != k.kid || rec.PurposeID != pid || rec.EServiceID != esID || rec.Tenant != "cons" ||
				rec.CallerAddress == "" || rec.AssertionJTI == "" || rec.VoucherExpiresAt.Sub(rec.VoucherIssuedAt) != 600*time.Second {
				t.Fatalf("audit record %+v", rec)
			}
		})
	}
	// PDND's path, and a standard private_key_jwt client: aud an array holding the
	// issuer, client_id in the form and claims the reference platform would refuse.
	k := e.upload(cons, cid, "ES256")
	a := assertion(t, k, cid, pid, map[string]any{"aud": []string{testIssuer, "https://other.example"}})
	last := e.issued(e.form("/token.oauth2", tokenForm(a, cid)))

	// The audit history, per client and per key, newest first, one page at a time.
	var page struct {
		Items []struct {
			VoucherJTI string `json:"voucherJti"`
			KID        string `json:"kid"`
			ClientID   string `json:"clientId"`
			Position   string `json:"position"`
		} `json:"items"`
		NextCursor string `json:"nextCursor"`
	}
	if err := json.Unmarshal(e.must(200, "GET", "/v1/clients/"+cid+"/history/vouchers?limit=3", cons, nil).body, &page); err != nil {
		t.Fatal(err)
	}
	if len(page.Items) != 3 || page.NextCursor == "" || page.Items[0].VoucherJTI != last["jti"] || page.Items[0].KID != k.kid {
		t.Fatalf("first page of the client's audit %+v", page)
	}
	next := page.NextCursor
	page.NextCursor = ""
	if err := json.Unmarshal(e.must(200, "GET", "/v1/clients/"+cid+"/history/vouchers?limit=3&cursor="+url.QueryEscape(next), cons, nil).body, &page); err != nil {
		t.Fatal(err)
	}
	if len(page.Items) != 1 || page.NextCursor != "" || page.Items[0].ClientID != cid {
		t.Fatalf("second page of the client's audit %+v", page)
	}
	if err := json.Unmarshal(e.must(200, "GET", "/v1/clients/"+cid+"/keys/"+k.kid+"/history/vouchers", cons, nil).body, &page); err != nil {
		t.Fatal(err)
	}
	if len(page.Items) != 1 || page.Items[0].VoucherJTI != last["jti"] {
		t.Fatalf("the key's audit %+v", page)
	}
	// Another tenant's admin does not see it; a plain member may not read audits.
	e.must(404, "GET", "/v1/clients/"+cid+"/history/vouchers", prod, nil)
	e.must(404, "GET", "/v1/clients/"+cid+"/keys/"+k.kid+"/history/vouchers", prod, nil)
	e.must(403, "GET", "/v1/clients/"+cid+"/history/vouchers", e.user("cons", cons, "mo", "member"), nil)
}

func TestTokenRequestRefusals(t *testing.T) {
	e := newVoucherEnv(t, nil)
	_, cons, _, pid := producerConsumer(e.env)
	cid := e.client(cons, "eservice", nil)
	e.must(200, "POST", "/v1/clients/"+cid+"/purposes", cons, map[string]any{"purposeId": pid})
	k := e.upload(cons, cid, "ES256")
	other := e.client(cons, "eservice", nil)
	otherKey := e.upload(cons, other, "ES256")
	good := func() string { return assertion(t, k, cid, pid, nil) }

	// The form.
	r := e.do("POST", "/oauth2/token", "", map[string]any{"grant_type": "client_credentials"})
	refused(t, r, "invalid_request", "")
	f := tokenForm(good(), "")
	f.Set("grant_type", "password")
	refused(t, e.form("/oauth2/token", f), "unsupported_grant_type", "")
	f = tokenForm(good(), "")
	f.Add("client_assertion", good())
	refused(t, e.form("/oauth2/token", f), "invalid_request", "client_assertion")
	f = tokenForm(good(), "")
	f.Del("client_assertion_type")
	refused(t, e.form("/oauth2/token", f), "invalid_request", "client_assertion_type")

	// The assertion.
	refused(t, e.form("/oauth2/token", tokenForm(good(), other)), "invalid_client", "sub does not match client_id")
	refused(t, e.form("/oauth2/token", tokenForm(assertion(t, k, cid, pid, map[string]any{"aud": "keyledger.test"}), "")),
		"invalid_client", "https://")
	refused(t, e.form("/oauth2/token", tokenForm(assertion(t, k, cid, pid, map[string]any{"exp": time.Now().Add(-time.Minute).Unix()}), "")),
		"invalid_client", "")
	refused(t, e.form("/oauth2/token", tokenForm(assertion(t, k, cid, pid, map[string]any{
		"iat": time.Now().Unix(), "exp": time.Now().Add(2 * time.Hour).Unix()}), "")), "invalid_client", "at most 3600")
	refused(t, e.form("/oauth2/token", tokenForm(assertion(t, k, cid, pid, map[string]any{"iat": time.Now().Add(time.Minute).Unix()}), "")),
		"invalid_client", "")
	// A kid of another client; an e-service client without purposeId, or with a purpose
	// not linked to it: each refusal names its cause.
	refused(t, e.form("/oauth2/token", tokenForm(assertion(t, otherKey, cid, pid, nil), "")), "invalid_client",
		"no key with kid "+otherKey.kid+" is registered on client "+cid)
	refused(t, e.form("/oauth2/token", tokenForm(assertion(t, k, cid, "", nil), "")), "invalid_request", "purposeId is required")
	refused(t, e.form("/oauth2/token", tokenForm(assertion(t, otherKey, other, pid, nil), "")), "unauthorized_client",
		"purpose "+pid+" is not linked to client "+other)
	// alg none and HS256 signed with the public key.
	none := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"iss": cid, "sub": cid, "aud": testIssuer,
		"jti": uuid.NewString(), "iat": time.Now().Unix(), "exp": time.Now().Add(time.Minute).Unix(), "purposeId": pid})
	none.Header["kid"] = k.kid
	raw, _ := none.SignedString(jwt.UnsafeAllowNoneSignatureType)
	refused(t, e.form("/oauth2/token", tokenForm(raw, "")), "invalid_client", "alg none")
	hs := jwt.NewWithClaims(jwt.SigningMethodHS256, none.Claims)
	hs.Header["kid"] = k.kid
	raw, _ = hs.SignedString([]byte(publicPEM(t, k.priv)))
	refused(t, e.form("/oauth2/token", tokenForm(raw, "")), "invalid_client", "HMAC")

	// Replay: the same assertion is good once.
	a := good()
	e.issued(e.form("/oauth2/token", tokenForm(a, cid)))
	refused(t, e.form("/oauth2/token", tokenForm(a, cid)), "invalid_client", "jti")
}

// TestRevocationsRefusedRightAfterTheCommand: a voucher is refused by the very next
// token request after the API answered a key deletion, a purpose removal, an e-service
// suspension.
func TestRevocationsRefusedRightAfterTheCommand(t *testing.T) {
	e := newVoucherEnv(t, nil)
	prod, cons, esID, pid := producerConsumer(e.env)
	cid := e.client(cons, "eservice", nil)
	e.must(200, "POST", "/v1/clients/"+cid+"/purposes", cons, map[string]any{"purposeId": pid})
	k := e.upload(cons, cid, "ES256")
	e.issued(e.form("/oauth2/token", tokenForm(assertion(t, k, cid, pid, nil), cid)))

	e.must(200, "POST", "/v1/eservices/"+esID+"/suspend", prod, nil)
	refused(t, e.form("/oauth2/token", tokenForm(assertion(t, k, cid, pid, nil), cid)), "invalid_grant", "suspended")
	e.must(200, "POST", "/v1/eservices/"+esID+"/activate", prod, nil)
	e.issued(e.form("/oauth2/token", tokenForm(assertion(t, k, cid, pid, nil), cid)))

	e.must(200, "POST", "/v1/purposes/"+pid+"/suspend", prod, nil)
	refused(t, e.form("/oauth2/token", tokenForm(assertion(t, k, cid, pid, nil), cid)), "invalid_grant", "suspended")
	e.must(200, "POST", "/v1/purposes/"+pid+"/activate", cons, nil)

	e.must(204, "DELETE", "/v1/clients/"+cid+"/purposes/"+pid, cons, nil)
	if r := e.form("/oauth2/token", tokenForm(assertion(t, k, cid, pid, nil), cid)); r.status != 400 {
		t.Fatalf("purpose removed: %d %s", r.status, r.body)
	}
	e.must(200, "POST", "/v1/clients/"+cid+"/purposes", cons, map[string]any{"purposeId": pid})
	e.issued(e.form("/oauth2/token", tokenForm(assertion(t, k, cid, pid, nil), cid)))

	e.must(204, "DELETE", "/v1/clients/"+cid+"/keys/"+k.kid, cons, nil)
	refused(t, e.form("/oauth2/token", tokenForm(assertion(t, k, cid, pid, nil), cid)), "invalid_client", "")
}

// TestAPIClientVoucherCallsTheAPI: an API client's voucher authenticates calls to the
// API with the roles the client holds at the time of the call.
func TestAPIClientVoucherCallsTheAPI(t *testing.T) {
	e := newVoucherEnv(t, nil)
	admin := e.tenant("acme")
	e.tenant("globex")
	cid := e.client(admin, "api", map[string]any{"roles": []string{"admin"}})
	k := e.upload(admin, cid, "EdDSA")
	refused(t, e.form("/oauth2/token", tokenForm(assertion(t, k, cid, "p1", nil), cid)), "invalid_request", "purposeId must not be sent")
	c := e.issued(e.form("/oauth2/token", tokenForm(assertion(t, k, cid, "", nil), cid)))
	if c["aud"] != testAPIAudience || c["tenant"] != "acme" || c["purposeId"] != nil {
		t.Fatalf("API voucher claims %v", c)
	}
	if roles, _ := c["roles"].([]any); len(roles) != 1 || roles[0] != "admin" {
		t.Fatalf("roles %v", c["roles"])
	}
	tok := c["raw"].(string)

	// The client acts as an admin of its tenant, and the events name it.
	made := e.must(201, "POST", "/v1/clients", tok, map[string]any{"kind": "eservice", "name": "Made by a machine"}).json(t)["id"].(string)
	h := e.must(200, "GET", "/v1/clients/"+made+"/history", tok, nil).json(t)
	first := h["items"].([]any)[0].(map[string]any)["actor"].(map[string]any)
	if first["id"] != cid || first["kind"] != "client" {
		t.Fatalf("history actor %v", first)
	}
	// Another tenant's resources stay invisible.
	gl := e.client(e.token("globex", "globex-admin"), "api", nil)
	e.must(404, "GET", "/v1/clients/"+gl, tok, nil)

	// Roles taken away take effect at the next call, with the same voucher.
	e.must(200, "PUT", "/v1/clients/"+cid+"/roles", admin, map[string]any{"roles": []string{"auditor"}})
	e.must(403, "POST", "/v1/clients", tok, map[string]any{"kind": "eservice", "name": "Made by a machine"})
	e.must(200, "GET", "/v1/clients/"+made+"/history", tok, nil)
	e.must(200, "PUT", "/v1/clients/"+cid+"/roles", admin, map[string]any{"roles": []string{}})
	e.must(403, "GET", "/v1/clients", tok, nil)
	e.must(409, "PUT", "/v1/clients/"+made+"/roles", admin, map[string]any{"roles": []string{"admin"}})

	// An e-service voucher (another aud) and a forged one do not authenticate.
	_, cons, _, pid := producerConsumer(e.env)
	ec := e.client(cons, "eservice", nil)
	e.must(200, "POST", "/v1/clients/"+ec+"/purposes", cons, map[string]any{"purposeId": pid})
	ek := e.upload(cons, ec, "ES256")
	ev := e.issued(e.form("/oauth2/token", tokenForm(assertion(t, ek, ec, pid, nil), ec)))["raw"].(string)
	if r := e.do("GET", "/v1/clients", ev, nil); r.status != 401 {
		t.Fatalf("an e-service voucher on the API: %d %s", r.status, r.body)
	}
	forged := tok[:strings.LastIndex(tok, ".")+1] + "AAAA"
	if r := e.do("GET", "/v1/clients", forged, nil); r.status != 401 {
		t.Fatalf("a forged voucher: %d %s", r.status, r.body)
	}
	// A deleted client's voucher no longer works.
	e.must(200, "PUT", "/v1/clients/"+cid+"/roles", admin, map[string]any{"roles": []string{"admin"}})
	e.must(200, "GET", "/v1/clients", tok, nil)
	e.must(204, "DELETE", "/v1/clients/"+cid, admin, nil)
	e.must(403, "GET", "/v1/clients", tok, nil)
}

func TestNoVoucherWithoutAudit(t *testing.T) {
	e := newVoucherEnv(t, nil)
	admin := e.tenant("acme")
	cid := e.client(admin, "api", map[string]any{"roles": []string{"member"}})
	k := e.upload(admin, cid, "ES256")
	for _, fail := range []*atomic.Bool{&e.audit.failSubmit, &e.audit.failAppend} {
		fail.Store(true)
		r := e.form("/oauth2/token", tokenForm(assertion(t, k, cid, "", nil), cid))
		if r.status != 503 || strings.Contains(string(r.body), "access_token") || strings.Contains(string(r.body), "eyJ") {
			t.Fatalf("audit failing: %d %s", r.status, r.body)
		}
		if code, _ := oauthErr(t, r); code != "temporarily_unavailable" {
			t.Fatalf("code %q", code)
		}
		fail.Store(false)
	}
	e.issued(e.form("/oauth2/token", tokenForm(assertion(t, k, cid, "", nil), cid)))
}

func TestTokenEndpointRefusesWhileTheKeyRegistryIsNotReady(t *testing.T) {
	e := newVoucherEnv(t, func(e *env) voucher.Entries {
		// A runner that never ran: the voucher model has no active generation.
		r, err := runner.New(runner.Config{Events: e.store, Store: readmodel.NewMemory()})
		if err != nil {
			t.Fatal(err)
		}
		return api.VoucherEntries(r.Reader())
	})
	admin := e.tenant("acme")
	cid := e.client(admin, "api", nil)
	k := e.upload(admin, cid, "ES256")
	r := e.form("/oauth2/token", tokenForm(assertion(t, k, cid, "", nil), cid))
	if r.status != 503 || r.header.Get("Retry-After") == "" {
		t.Fatalf("read model not ready: %d %s", r.status, r.body)
	}
}

func TestAssertionCheck(t *testing.T) {
	e := newVoucherEnv(t, nil)
	_, cons, _, pid := producerConsumer(e.env)
	sam := e.user("cons", cons, "sam", "security")
	e.user("cons", cons, "mia", "member")
	cid := e.client(cons, "eservice", map[string]any{"members": []string{"sam"}})
	e.must(200, "POST", "/v1/clients/"+cid+"/purposes", cons, map[string]any{"purposeId": pid})
	k := e.upload(cons, cid, "RS256")

	a := assertion(t, k, cid, pid, nil)
	rep := e.must(200, "POST", "/v1/clients/"+cid+"/assertion-check", sam, map[string]any{"client_assertion": a}).json(t)
	if rep["valid"] != true {
		t.Fatalf("report %v", rep)
	}
	// Checking records no jti: the assertion still obtains a voucher.
	e.issued(e.form("/oauth2/token", tokenForm(a, cid)))

	bad := assertion(t, k, cid, pid, map[string]any{"aud": "https://elsewhere.example", "iss": "someone"})
	rep = e.must(200, "POST", "/v1/clients/"+cid+"/assertion-check", cons, map[string]any{"client_assertion": bad}).json(t)
	failed := map[string]string{}
	for _, c := range rep["checks"].([]any) {
		c := c.(map[string]any)
		if c["outcome"] == "failed" {
			failed[c["name"].(string)] = c["description"].(string)
		}
	}
	if rep["valid"] != false || failed["aud"] == "" || failed["iss_sub"] == "" || failed["signature"] != "" {
		t.Fatalf("report of a bad assertion: %v", rep)
	}
	e.must(403, "POST", "/v1/clients/"+cid+"/assertion-check", e.token("cons", "mia"), map[string]any{"client_assertion": a})
	e.must(404, "POST", "/v1/clients/"+cid+"/assertion-check", e.tenant("other"), map[string]any{"client_assertion": a})
	e.must(400, "POST", "/v1/clients/"+cid+"/assertion-check", sam, map[string]any{"client_assertion": ""})
}

func TestAuthorizationServerMetadataAndJWKS(t *testing.T) {
	e := newVoucherEnv(t, nil)
	m := e.must(200, "GET", "/.well-known/oauth-authorization-server", "", nil).json(t)
	if m["issuer"] != testIssuer || m["token_endpoint"] != testIssuer+"/oauth2/token" || m["jwks_uri"] != testIssuer+"/.well-known/jwks.json" {
		t.Fatalf("metadata %v", m)
	}
	if methods, _ := m["token_endpoint_auth_methods_supported"].([]any); len(methods) != 1 || methods[0] != "private_key_jwt" {
		t.Fatalf("auth methods %v", m["token_endpoint_auth_methods_supported"])
	}
	first := e.signer.Current().KID
	if _, err := e.signer.Rotate(); err != nil {
		t.Fatal(err)
	}
	var set struct {
		Keys []struct {
			KID string `json:"kid"`
			Use string `json:"use"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(e.must(200, "GET", "/.well-known/jwks.json", "", nil).body, &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 2 || set.Keys[0].KID != e.signer.Current().KID || set.Keys[1].KID != first || set.Keys[0].Use != "sig" {
		t.Fatalf("JWKS after a rotation %+v", set)
	}
}
