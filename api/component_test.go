package api_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyledger/keyledger/api"
	"github.com/keyledger/keyledger/api/auth"
	"github.com/keyledger/keyledger/commands"
	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/eventstore/embedded"
	"github.com/keyledger/keyledger/projections/readmodel"
	"github.com/keyledger/keyledger/projections/runner"
)

// env is the whole HTTP server in-process on a real embedded store, with the read models
// projected by a runner into the in-process read-model store, and development tokens.
//
// Like a well-behaved client, env reads its own writes: every GET it sends carries the
// highest Keyledger-Position any earlier answer gave, as Keyledger-Min-Position, unless
// the test sets that header itself (an empty value sends none).
type env struct {
	t     *testing.T
	srv   *httptest.Server
	api   *api.Server
	dir   string
	toks  map[string]string
	store eventstore.Store
	rd    *runner.Reader

	mu   sync.Mutex
	seen eventstore.Position // the highest Keyledger-Position answered so far
}

func newEnv(t *testing.T, configure ...func(*api.Deps)) *env {
	t.Helper()
	dir := t.TempDir()
	store, err := embedded.Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	v, err := auth.New(context.Background(), auth.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	r, err := runner.New(runner.Config{Events: store, Store: readmodel.NewMemory(), Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done }) // registered before the store's Close: runs first
	deadline := time.Now().Add(30 * time.Second)
	for r.Healthy() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("read models not ready: %v", r.Healthy())
		}
		time.Sleep(time.Millisecond)
	}
	cmds := commands.New(store, commands.Config{MaxClientKeys: 5, MaxKeychainKeys: 3}, nil, nil)
	deps := api.Deps{Ready: []api.ReadyCheck{{Name: "eventstore", Pinger: store}},
		Logger: logger, Commands: cmds, Verifier: api.UserTokens(v), Reads: r.Reader()}
	for _, c := range configure {
		c(&deps)
	}
	s := api.New(deps)
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return &env{t: t, srv: srv, api: s, dir: dir, toks: map[string]string{}, store: store, rd: r.Reader()}
}

// saw records a Keyledger-Position answered to a request env did not send itself.
func (e *env) saw(position string) {
	if position == "" {
		return
	}
	pos, err := eventstore.ParsePosition(position)
	if err != nil {
		e.t.Errorf("Keyledger-Position %q: %v", position, err)
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.seen.Less(pos) {
		e.seen = pos
	}
}

// minPosition is the Keyledger-Min-Position env sends with its reads ("" for none).
func (e *env) minPosition() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.seen.IsZero() {
		return ""
	}
	return e.seen.String()
}

// token returns a development token for tenant/user ("" tenant: the operator).
func (e *env) token(tenant, user string) string {
	key := tenant + "/" + user
	if tok, ok := e.toks[key]; ok {
		return tok
	}
	p := auth.Principal{Subject: user, Tenant: tenant, Operator: tenant == ""}
	tok, err := auth.MintDevelopmentToken(e.dir, p, time.Hour, time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	e.toks[key] = tok
	return tok
}

type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
	return m
}

func (r resp) code(t *testing.T) string {
	t.Helper()
	c, _ := r.json(t)["code"].(string)
	return c
}

// do sends one request and validates the exchange against the OpenAPI document.
func (e *env) do(method, path, token string, body any, hdr ...string) resp {
	e.t.Helper()
	var rd io.Reader
	var raw []byte
	switch b := body.(type) {
	case nil:
	case string:
		raw = []byte(b)
		rd = strings.NewReader(b)
	default:
		raw, _ = json.Marshal(b)
		rd = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, e.srv.URL+path, rd)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if method == http.MethodGet {
		if pos := e.minPosition(); pos != "" {
			req.Header.Set(api.HeaderMinPosition, pos)
		}
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	if req.Header.Get(api.HeaderMinPosition) == "" {
		req.Header.Del(api.HeaderMinPosition)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	e.saw(res.Header.Get(api.HeaderPosition))
	validateExchange(e.t, req, raw, res.StatusCode, res.Header, b)
	return resp{status: res.StatusCode, header: res.Header, body: b}
}

func (e *env) must(status int, method, path, token string, body any, hdr ...string) resp {
	e.t.Helper()
	r := e.do(method, path, token, body, hdr...)
	if r.status != status {
		e.t.Fatalf("%s %s: %d %s, want %d", method, path, r.status, r.body, status)
	}
	return r
}

// tenant creates a tenant with admin "<id>-admin" and returns the admin's token.
func (e *env) tenant(id string) string {
	e.must(201, "POST", "/v1/tenants", e.token("", "op"), map[string]any{"id": id, "name": "Tenant " + id,
		"admin": map[string]any{"id": id + "-admin", "name": "Admin of " + id}})
	return e.token(id, id+"-admin")
}

func (e *env) user(tenant, admin, id string, roles ...string) string {
	e.must(201, "POST", "/v1/users", admin, map[string]any{"id": id, "name": "User " + id, "roles": roles})
	return e.token(tenant, id)
}

func (e *env) client(admin, kind string, extra map[string]any) string {
	body := map[string]any{"kind": kind, "name": "Client " + kind + " x"}
	for k, v := range extra {
		body[k] = v
	}
	r := e.must(201, "POST", "/v1/clients", admin, body)
	return r.json(e.t)["id"].(string)
}

func rsaPEM(t *testing.T, bits int) (string, *rsa.PrivateKey) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), k
}

func keyBody(name, pemText string) map[string]any {
	return map[string]any{"name": name, "key": pemText, "use": "sig"}
}

func TestTenantsAndUsers(t *testing.T) {
	e := newEnv(t)
	admin := e.tenant("acme")
	r := e.must(201, "POST", "/v1/users", admin, map[string]any{"id": "bob", "name": "Bob", "roles": []string{"security"}})
	if r.header.Get("Location") != "/v1/users/bob" || r.header.Get("ETag") != `"0"` || r.header.Get("Keyledger-Position") == "" {
		t.Fatalf("creation headers: %v", r.header)
	}
	e.must(409, "POST", "/v1/users", admin, map[string]any{"id": "bob", "name": "Bob"})
	r = e.must(400, "POST", "/v1/users", admin, map[string]any{"id": "a/b", "name": "", "roles": []string{"king"}})
	if p := r.json(t); p["code"] != "validation_failed" || len(p["errors"].([]any)) != 3 {
		t.Fatalf("validation problem: %s", r.body)
	}
	if r := e.do("POST", "/v1/users", admin, `{"id":"x","name":"X","extra":1}`); r.status != 400 || r.code(t) != "invalid_json" {
		t.Fatalf("unknown field: %d %s", r.status, r.body)
	}
	list := e.must(200, "GET", "/v1/users", admin, nil).json(t)["items"].([]any)
	if len(list) != 2 {
		t.Fatalf("users: %v", list)
	}
	// If-Match: a stale version is refused with 412, the current one works.
	e.must(412, "PATCH", "/v1/users/bob", admin, map[string]any{"name": "Robert"}, "If-Match", `"7"`)
	r = e.must(200, "PATCH", "/v1/users/bob", admin, map[string]any{"name": "Robert", "roles": []string{"security", "auditor"}}, "If-Match", `"0"`)
	if got := r.json(t); got["name"] != "Robert" || len(got["roles"].([]any)) != 2 || r.header.Get("ETag") != `"1"` {
		t.Fatalf("patched user: %s %v", r.body, r.header)
	}
	// Only admins manage users; unregistered callers can do nothing.
	bob := e.token("acme", "bob")
	e.must(403, "GET", "/v1/users", bob, nil)
	e.must(403, "GET", "/v1/clients", e.token("acme", "stranger"), nil)
	e.must(403, "GET", "/v1/users", e.token("", "op"), nil)
	e.must(403, "POST", "/v1/tenants", admin, map[string]any{"id": "x", "name": "X", "admin": map[string]any{"id": "a", "name": "A"}})
	e.must(401, "GET", "/v1/users", "", nil)
	if r := e.do("GET", "/v1/users", "not.a.token", nil); r.status != 401 || r.code(t) != "token_malformed" && r.code(t) != "token_invalid" {
		t.Fatalf("bad token: %d %s", r.status, r.body)
	}
	// An auditor reads history but changes nothing and manages no users.
	aud := e.user("acme", admin, "audrey", "auditor")
	e.must(200, "GET", "/v1/users/bob/history", aud, nil)
	e.must(403, "POST", "/v1/users", aud, map[string]any{"id": "z", "name": "Z"})
	e.must(403, "POST", "/v1/clients", aud, map[string]any{"kind": "api", "name": "Auditor's"})
	sec := e.user("acme", admin, "sid", "security")
	e.must(403, "GET", "/v1/users/bob/history", sec, nil) // security operators are not auditors
	e.must(204, "DELETE", "/v1/users/bob", admin, nil)
	e.must(404, "GET", "/v1/users/bob", admin, nil)
	hist := e.must(200, "GET", "/v1/users/bob/history", admin, nil).json(t)["items"].([]any)
	types := []string{}
	for _, h := range hist {
		types = append(types, h.(map[string]any)["type"].(string))
	}
	if strings.Join(types, ",") != "user.registered.v1,user.updated.v1,user.deleted.v1" {
		t.Fatalf("history types %v", types)
	}
	first := hist[0].(map[string]any)
	if first["actor"].(map[string]any)["id"] != "acme-admin" || first["correlationId"] == "" {
		t.Fatalf("history entry %v", first)
	}
}

func TestKeyRules(t *testing.T) {
	e := newEnv(t)
	admin := e.tenant("acme")
	sec := e.user("acme", admin, "sam", "security")
	sec2 := e.user("acme", admin, "sue", "security")
	member := e.user("acme", admin, "mia", "member")
	cid := e.client(admin, "api", map[string]any{"members": []string{"sam", "mia"}})
	base := "/v1/clients/" + cid

	k1, _ := rsaPEM(t, 2048)
	// A security operator who is not a member, and a plain member, may not upload.
	if r := e.do("POST", base+"/keys", sec2, keyBody("k", k1)); r.status != 403 || r.code(t) != "key_forbidden" {
		t.Fatalf("non-member security operator: %d %s", r.status, r.body)
	}
	e.must(403, "POST", base+"/keys", member, keyBody("k", k1))
	r := e.must(201, "POST", base+"/keys", sec, keyBody("sam's key", k1))
	kid := r.json(t)["kid"].(string)
	if r.header.Get("Location") != base+"/keys/"+kid || r.json(t)["jwk"] == nil {
		t.Fatalf("upload answer %v %s", r.header, r.body)
	}
	// Same key again, on this client or any other: 409.
	if r := e.do("POST", base+"/keys", admin, keyBody("again", k1)); r.status != 409 || r.code(t) != "key_already_registered" {
		t.Fatalf("duplicate: %d %s", r.status, r.body)
	}
	other := e.client(admin, "eservice", nil)
	e.must(409, "POST", "/v1/clients/"+other+"/keys", admin, keyBody("again", k1))

	k2, _ := rsaPEM(t, 2048)
	adminKid := e.must(201, "POST", base+"/keys", admin, keyBody("admin key", k2)).json(t)["kid"].(string)
	// Security operators delete only their own keys; admins any.
	if r := e.do("DELETE", base+"/keys/"+adminKid, sec, nil); r.status != 403 || r.code(t) != "not_own_key" {
		t.Fatalf("sec deletes admin's key: %d %s", r.status, r.body)
	}
	e.must(204, "DELETE", base+"/keys/"+kid, sec, nil)
	e.must(404, "GET", base+"/keys/"+kid, admin, nil)
	// The deleted key's kid is free again, anywhere.
	e.must(201, "POST", "/v1/clients/"+other+"/keys", admin, keyBody("moved", k1))

	// Member removal flags the keys the member uploaded.
	k3, _ := rsaPEM(t, 2048)
	samKid := e.must(201, "POST", base+"/keys", sec, keyBody("sam's second", k3)).json(t)["kid"].(string)
	e.must(204, "DELETE", base+"/members/sam", admin, nil)
	keys := e.must(200, "GET", base+"/keys", admin, nil).json(t)["items"].([]any)
	flagged := map[string]bool{}
	for _, k := range keys {
		k := k.(map[string]any)
		flagged[k["kid"].(string)] = k["uploaderRemoved"].(bool)
		if k["uploaderRemoved"].(bool) && k["uploaderRemovedAt"] == nil {
			t.Fatalf("flag without a time: %v", k)
		}
	}
	if !flagged[samKid] || flagged[adminKid] {
		t.Fatalf("flags after removing sam: %v", flagged)
	}
	view := e.must(200, "GET", base, admin, nil).json(t)
	if recs := view["recommendations"].([]any); len(recs) != 1 || !strings.Contains(recs[0].(string), samKid) {
		t.Fatalf("recommendations %v", recs)
	}
	// The removed member can no longer operate on the client's keys.
	e.must(403, "DELETE", base+"/keys/"+samKid, sec, nil)
	// Only registered users become members.
	if r := e.do("POST", base+"/members", admin, map[string]any{"userId": "ghost"}); r.status != 409 || r.code(t) != "user_not_registered" {
		t.Fatalf("unregistered member: %d %s", r.status, r.body)
	}
	// Key limit (5 in this test's configuration).
	for i := 0; i < 3; i++ { // k2, k3 and three more: the limit of 5
		k, _ := rsaPEM(t, 2048)
		e.must(201, "POST", base+"/keys", admin, keyBody("fill", k))
	}
	k6, _ := rsaPEM(t, 2048)
	if r := e.do("POST", base+"/keys", admin, keyBody("too many", k6)); r.status != 409 || r.code(t) != "too_many_keys" {
		t.Fatalf("over the limit: %d %s", r.status, r.body)
	}
	// Deleting the client removes its keys: their kids are free again.
	e.must(204, "DELETE", base, admin, nil)
	e.must(404, "GET", base, admin, nil)
	e.must(201, "POST", "/v1/clients/"+other+"/keys", admin, keyBody("from the deleted client", k2))
}

func TestKeyRejections(t *testing.T) {
	e := newEnv(t)
	admin := e.tenant("acme")
	cid := e.client(admin, "api", nil)
	path := "/v1/clients/" + cid + "/keys"

	pub, rk := rsaPEM(t, 2048)
	short, _ := rsaPEM(t, 1024)
	privDER := x509.MarshalPKCS1PrivateKey(rk)
	private := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: privDER}))
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "x"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	certDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &rk.PublicKey, rk)
	if err != nil {
		t.Fatal(err)
	}
	cert := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certDER}))
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	p224DER, _ := x509.MarshalPKIXPublicKey(&p224.PublicKey)
	unsupported := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: p224DER}))

	cases := []struct {
		name, key, code string
	}{
		{"several PEM blocks", pub + pub, "key_multiple_pem_blocks"},
		{"a private key", private, "key_is_private"},
		{"a certificate", cert, "key_is_certificate"},
		{"unparsable", "hello", "key_unparsable"},
		{"RSA 1024", short, "key_rsa_too_short"},
		{"EC P-224", unsupported, "key_type_unsupported"},
	}
	for _, c := range cases {
		r := e.do("POST", path, admin, keyBody("k", c.key))
		if r.status != 400 || r.code(t) != c.code {
			t.Errorf("%s: %d %s, want 400 %s", c.name, r.status, r.body, c.code)
		}
	}
	// Accepted: RSA 2048, EC P-256 and P-384, Ed25519 (as PEM and as JWK).
	for _, curve := range []elliptic.Curve{elliptic.P256(), elliptic.P384()} {
		k, _ := ecdsa.GenerateKey(curve, rand.Reader)
		der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
		e.must(201, "POST", path, admin, keyBody("ec", string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))))
	}
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	edDER, _ := x509.MarshalPKIXPublicKey(edPub)
	r := e.must(201, "POST", path, admin, keyBody("ed", string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: edDER}))))
	if r.json(t)["alg"] != "EdDSA" {
		t.Fatalf("ed25519 alg: %s", r.body)
	}
	jwkPub, _ := rsaPEM(t, 2048)
	_ = jwkPub
	// A JWK of an RSA key: its kid is the same thumbprint the PEM form gets.
	first := e.must(201, "POST", path, admin, keyBody("rsa", pub)).json(t)
	jwk := first["jwk"]
	e.must(204, "DELETE", path+"/"+first["kid"].(string), admin, nil)
	again := e.must(201, "POST", path, admin, map[string]any{"name": "as jwk", "key": jwk, "use": "sig"}).json(t)
	if again["kid"] != first["kid"] {
		t.Fatalf("JWK kid %v, PEM kid %v", again["kid"], first["kid"])
	}
	if r := e.do("POST", path, admin, map[string]any{"name": "alg", "key": pub, "use": "sig", "alg": "ES256"}); r.status != 400 || r.code(t) != "key_alg_mismatch" {
		t.Fatalf("alg mismatch: %d %s", r.status, r.body)
	}
}

func TestKidUniquenessUnderConcurrentUploads(t *testing.T) {
	e := newEnv(t)
	admin := e.tenant("acme")
	const n = 20
	ids := make([]string, n)
	for i := range ids {
		ids[i] = e.client(admin, "api", nil)
	}
	pub, _ := rsaPEM(t, 2048)
	statuses := make([]int, n)
	codes := make([]string, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			j, _ := json.Marshal(keyBody("same", pub))
			req, _ := http.NewRequest("POST", e.srv.URL+"/v1/clients/"+ids[i]+"/keys", bytes.NewReader(j))
			req.Header.Set("Authorization", "Bearer "+admin)
			req.Header.Set("Content-Type", "application/json")
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				return
			}
			defer res.Body.Close()
			e.saw(res.Header.Get(api.HeaderPosition))
			var p map[string]any
			_ = json.NewDecoder(res.Body).Decode(&p)
			statuses[i] = res.StatusCode
			codes[i], _ = p["code"].(string)
		}()
	}
	close(start)
	wg.Wait()
	wins := 0
	for i, st := range statuses {
		switch {
		case st == 201:
			wins++
		case st == 409 && codes[i] == "key_already_registered":
		default:
			t.Errorf("upload %d: %d %s", i, st, codes[i])
		}
	}
	if wins != 1 {
		t.Fatalf("%d of %d concurrent uploads of one key won, want exactly 1", wins, n)
	}
	holders := 0
	for _, id := range ids {
		keys := e.must(200, "GET", "/v1/clients/"+id+"/keys", admin, nil).json(t)["items"].([]any)
		holders += len(keys)
	}
	if holders != 1 {
		t.Fatalf("%d clients hold the key", holders)
	}
}

// producerConsumer sets up a producer tenant with an e-service and a consumer tenant with
// an active purpose for it.
func producerConsumer(e *env) (prod, cons, esID, purposeID string) {
	prod = e.tenant("prod")
	cons = e.tenant("cons")
	esID = e.must(201, "POST", "/v1/eservices", prod, map[string]any{"name": "Registry API", "audience": "https://registry.example/api", "voucherLifetimeSeconds": 600}).json(e.t)["id"].(string)
	purposeID = e.must(201, "POST", "/v1/purposes", cons, map[string]any{"eserviceId": esID, "title": "Check registrations"}).json(e.t)["id"].(string)
	// Only the producer accepts the request.
	if r := e.do("POST", "/v1/purposes/"+purposeID+"/activate", cons, nil); r.status != 403 {
		e.t.Fatalf("consumer activating its own request: %d %s", r.status, r.body)
	}
	if st := e.must(200, "POST", "/v1/purposes/"+purposeID+"/activate", prod, nil).json(e.t)["state"]; st != "active" {
		e.t.Fatalf("state %v", st)
	}
	return
}

func TestPurposesAndClients(t *testing.T) {
	e := newEnv(t)
	prod, cons, esID, pid := producerConsumer(e)
	_ = esID
	svcClient := e.client(cons, "eservice", nil)
	apiClient := e.client(cons, "api", nil)
	if r := e.do("POST", "/v1/clients/"+apiClient+"/purposes", cons, map[string]any{"purposeId": pid}); r.status != 409 || r.code(t) != "not_eservice_client" {
		t.Fatalf("api client linked to a purpose: %d %s", r.status, r.body)
	}
	e.must(200, "POST", "/v1/clients/"+svcClient+"/purposes", cons, map[string]any{"purposeId": pid})
	if r := e.do("POST", "/v1/clients/"+svcClient+"/purposes", cons, map[string]any{"purposeId": pid}); r.status != 409 || r.code(t) != "purpose_already_linked" {
		t.Fatalf("second link: %d %s", r.status, r.body)
	}
	// A second purpose, then unlinking one leaves the other.
	pid2 := e.must(201, "POST", "/v1/purposes", cons, map[string]any{"eserviceId": esID, "title": "Second purpose"}).json(t)["id"].(string)
	if r := e.do("POST", "/v1/clients/"+svcClient+"/purposes", cons, map[string]any{"purposeId": pid2}); r.status != 409 || r.code(t) != "purpose_not_linkable" {
		t.Fatalf("pending purpose linked: %d %s", r.status, r.body)
	}
	e.must(200, "POST", "/v1/purposes/"+pid2+"/activate", prod, nil)
	e.must(200, "POST", "/v1/clients/"+svcClient+"/purposes", cons, map[string]any{"purposeId": pid2})
	e.must(204, "DELETE", "/v1/clients/"+svcClient+"/purposes/"+pid2, cons, nil)
	if ps := e.must(200, "GET", "/v1/clients/"+svcClient, cons, nil).json(t)["purposes"].([]any); len(ps) != 1 || ps[0] != pid {
		t.Fatalf("purposes after unlinking the second: %v", ps)
	}
	// Either side suspends; archival by the consumer unlinks every client.
	e.must(200, "POST", "/v1/purposes/"+pid+"/suspend", prod, nil)
	e.must(200, "POST", "/v1/purposes/"+pid+"/activate", cons, nil)
	e.must(403, "POST", "/v1/purposes/"+pid+"/archive", prod, nil)
	e.must(200, "POST", "/v1/purposes/"+pid+"/archive", cons, nil)
	if ps := e.must(200, "GET", "/v1/clients/"+svcClient, cons, nil).json(t)["purposes"].([]any); len(ps) != 0 {
		t.Fatalf("archived purpose still linked: %v", ps)
	}
	hist := e.must(200, "GET", "/v1/clients/"+svcClient+"/history", cons, nil).json(t)["items"].([]any)
	last := hist[len(hist)-1].(map[string]any)
	if last["type"] != "client.purpose_removed.v1" || last["data"].(map[string]any)["reason"] != "purpose_archived" {
		t.Fatalf("last client event %v", last)
	}
	// Both sides see the purpose's history; a third tenant does not.
	e.must(200, "GET", "/v1/purposes/"+pid+"/history", prod, nil)
	e.must(200, "GET", "/v1/purposes/"+pid+"/history", cons, nil)
	third := e.tenant("third")
	e.must(404, "GET", "/v1/purposes/"+pid+"/history", third, nil)
	e.must(404, "GET", "/v1/purposes/"+pid, third, nil)
}

func TestKeychainsAndProducerKeys(t *testing.T) {
	e := newEnv(t)
	prod, cons, esID, _ := producerConsumer(e)
	pub, _ := rsaPEM(t, 2048)
	r := e.must(201, "POST", "/v1/keychains", prod, map[string]any{"name": "Producer keys", "keys": []any{keyBody("signing", pub)}})
	kc := r.json(t)
	kid := kc["keys"].([]any)[0].(map[string]any)["kid"].(string)
	kcID := kc["id"].(string)
	e.must(200, "POST", "/v1/keychains/"+kcID+"/eservices", prod, map[string]any{"eserviceId": esID})
	// The consumer cannot link the producer's e-service to its own keychain.
	other := e.must(201, "POST", "/v1/keychains", cons, map[string]any{"name": "Consumer chain"}).json(t)["id"].(string)
	e.must(404, "POST", "/v1/keychains/"+other+"/eservices", cons, map[string]any{"eserviceId": esID})
	// Any authenticated caller reads a producer key as a JWK.
	jwk := e.must(200, "GET", "/v1/producer-keys/"+kid, cons, nil).json(t)
	if jwk["kid"] != kid || jwk["kty"] != "RSA" || jwk["d"] != nil {
		t.Fatalf("producer key %v", jwk)
	}
	e.must(401, "GET", "/v1/producer-keys/"+kid, "", nil)
	// A client's key is not a producer key; the same key cannot go on a client.
	e.must(409, "POST", "/v1/clients/"+e.client(cons, "api", nil)+"/keys", cons, keyBody("dup", pub))
	e.must(204, "DELETE", "/v1/keychains/"+kcID, prod, nil)
	e.must(404, "GET", "/v1/producer-keys/"+kid, cons, nil)
}

// TestCrossTenantAccessRefusedOnEveryRoute walks the route table and calls every route
// that names a resource with another tenant's admin: nothing may succeed.
func TestCrossTenantAccessRefusedOnEveryRoute(t *testing.T) {
	e := newEnv(t)
	prod, cons, esID, pid := producerConsumer(e)
	pub, _ := rsaPEM(t, 2048)
	cid := e.client(cons, "eservice", map[string]any{"keys": []any{keyBody("k", pub)}})
	kid := e.must(200, "GET", "/v1/clients/"+cid+"/keys", cons, nil).json(t)["items"].([]any)[0].(map[string]any)["kid"].(string)
	kcID := e.must(201, "POST", "/v1/keychains", cons, map[string]any{"name": "Consumer chain"}).json(t)["id"].(string)
	e.user("cons", cons, "carl", "member")
	_ = prod
	intruder := e.tenant("intruder")

	params := map[string]string{":kid": kid, ":userId": "carl", ":purposeId": pid, ":eserviceId": esID}
	idFor := func(path string) string {
		switch {
		case strings.HasPrefix(path, "/v1/clients/"):
			return cid
		case strings.HasPrefix(path, "/v1/keychains/"):
			return kcID
		case strings.HasPrefix(path, "/v1/users/"):
			return "carl"
		case strings.HasPrefix(path, "/v1/purposes/"):
			return pid
		case strings.HasPrefix(path, "/v1/tenants/"):
			return "cons"
		}
		return ""
	}
	checked := 0
	for _, rt := range e.api.Echo().Routes() {
		if !strings.Contains(rt.Path, ":id") || strings.HasPrefix(rt.Path, "/v1/eservices/") {
			continue // collections and the public e-service catalogue are checked below
		}
		path := strings.Replace(rt.Path, ":id", idFor(rt.Path), 1)
		for p, v := range params {
			path = strings.Replace(path, p, v, 1)
		}
		body := map[string]any{"userId": "carl", "purposeId": pid, "eserviceId": esID, "name": "Renamed", "key": pub, "use": "sig"}
		var b any
		if rt.Method == "POST" || rt.Method == "PATCH" {
			b = body
		}
		r := e.do(rt.Method, path, intruder, b)
		if r.status < 400 {
			t.Errorf("%s %s as another tenant's admin: %d %s", rt.Method, path, r.status, r.body)
		}
		checked++
	}
	if checked < 25 {
		t.Fatalf("only %d routes checked", checked)
	}
	// The victim's data is intact.
	if keys := e.must(200, "GET", "/v1/clients/"+cid+"/keys", cons, nil).json(t)["items"].([]any); len(keys) != 1 {
		t.Fatalf("victim's keys changed: %v", keys)
	}
	e.must(200, "GET", "/v1/users/carl", cons, nil)
	// Collections never list another tenant's resources.
	for _, path := range []string{"/v1/clients", "/v1/keychains", "/v1/users", "/v1/purposes"} {
		body := string(e.must(200, "GET", path, intruder, nil).body)
		for _, id := range []string{cid, kcID, pid} {
			if strings.Contains(body, id) {
				t.Errorf("%s lists another tenant's %s", path, id)
			}
		}
	}
	// Another tenant cannot suspend the producer's e-service.
	if r := e.do("POST", "/v1/eservices/"+esID+"/suspend", intruder, nil); r.status != 403 && r.status != 404 {
		t.Fatalf("another tenant suspends the e-service: %d %s", r.status, r.body)
	}
}
