package api_test

// The OpenAPI document (api/openapi.yaml) is kept honest three ways: it must be a valid
// OpenAPI 3.1 document, it must describe exactly the routes the server registers (with
// the policy each is registered with), and every request/response pair the component
// tests make is validated against it (env.do calls validateExchange).
//
// kin-openapi (v0.153.0) loads and validates OpenAPI 3.1 documents, and openapi3filter
// validates 3.1 bodies with a JSON Schema 2020-12 validator (type arrays with "null",
// const, if/then/else, …). One 3.1 limit matters here: `nullable` is not a 3.1
// keyword and is ignored, so the document writes nullable fields as `type: [x, "null"]`.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/keyledger/keyledger/api"
)

const openAPIFile = "openapi.yaml"

var (
	openAPIOnce   sync.Once
	openAPIDoc    *openapi3.T
	openAPIRouter routers.Router
	openAPIErr    error
)

// loadOpenAPI loads and validates the document once per test binary.
func loadOpenAPI(t testing.TB) (*openapi3.T, routers.Router) {
	t.Helper()
	openAPIOnce.Do(func() {
		loader := openapi3.NewLoader()
		doc, err := loader.LoadFromFile(openAPIFile)
		if err != nil {
			openAPIErr = fmt.Errorf("load %s: %w", openAPIFile, err)
			return
		}
		if err := doc.Validate(context.Background(),
			openapi3.EnableSchemaFormatValidation(),
			openapi3.EnableSchemaPatternValidation(),
			openapi3.EnableSchemaDefaultsValidation(),
			openapi3.EnableExamplesValidation(),
			openapi3.EnableMultiError(),
		); err != nil {
			openAPIErr = fmt.Errorf("validate %s: %w", openAPIFile, err)
			return
		}
		r, err := gorillamux.NewRouter(doc)
		if err != nil {
			openAPIErr = fmt.Errorf("route %s: %w", openAPIFile, err)
			return
		}
		openAPIDoc, openAPIRouter = doc, r
	})
	if openAPIErr != nil {
		t.Fatal(openAPIErr)
	}
	return openAPIDoc, openAPIRouter
}

// validationOptions: authentication is the server's business (openapi3filter only has to
// see that the operation declares it), and an undocumented status is a mismatch.
func validationOptions() *openapi3filter.Options {
	return &openapi3filter.Options{
		AuthenticationFunc:    func(context.Context, *openapi3filter.AuthenticationInput) error { return nil },
		IncludeResponseStatus: true,
		MultiError:            true,
	}
}

// validateExchange checks one request and its answer against the document. The request
// is validated only when the server accepted it (status < 400): tests send malformed
// requests on purpose. The response is always validated, problem documents included,
// and a status below 500 must be listed explicitly (not only covered by "default").
func validateExchange(t *testing.T, req *http.Request, reqBody []byte, status int, header http.Header, body []byte) {
	t.Helper()
	_, router := loadOpenAPI(t)
	ctx := context.Background()
	req = req.Clone(ctx)
	req.Body = nil
	if reqBody != nil {
		req.Body = http.NoBody
		if len(reqBody) > 0 {
			req.Body = readCloser{bytes.NewReader(reqBody)}
		}
	}
	route, params, err := router.FindRoute(req)
	if err != nil {
		t.Errorf("openapi: %s %s (answered %d): no operation in %s: %v", req.Method, req.URL.Path, status, openAPIFile, err)
		return
	}
	name := fmt.Sprintf("operation %s (%s %s)", route.Operation.OperationID, req.Method, route.Path)
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: validationOptions()}
	if status < 400 {
		if err := openapi3filter.ValidateRequest(ctx, in); err != nil {
			t.Errorf("openapi: %s: the request to %s, which the server accepted with %d, does not match the document: %v\nrequest body: %s",
				name, req.URL.Path, status, err, reqBody)
		}
	}
	if status < 500 && route.Operation.Responses.Status(status) == nil {
		t.Errorf("openapi: %s: status %d is not documented\nresponse body: %s", name, status, body)
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: status, Header: header, Options: validationOptions()}
	out.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		t.Errorf("openapi: %s: the %d response does not match the document: %v\nresponse headers: %v\nresponse body: %s",
			name, status, err, header, body)
	}
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

func TestOpenAPIDocumentIsValid(t *testing.T) {
	doc, _ := loadOpenAPI(t)
	if !doc.IsOpenAPI31OrLater() || doc.OpenAPI != "3.1.0" {
		t.Fatalf("openapi %q, want 3.1.0", doc.OpenAPI)
	}
	if doc.Components == nil || doc.Components.SecuritySchemes["bearerAuth"] == nil {
		t.Fatal("no bearerAuth security scheme")
	}
	ids := map[string]string{}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			where := method + " " + path
			if op.OperationID == "" || op.Summary == "" || op.Description == "" {
				t.Errorf("%s: needs an operationId, a summary and a description", where)
			}
			if other, dup := ids[op.OperationID]; dup {
				t.Errorf("%s and %s share operationId %q", where, other, op.OperationID)
			}
			ids[op.OperationID] = where
		}
	}
}

// docPath turns an echo route path into the document's form: /v1/clients/:id → /v1/clients/{id}.
var echoParam = regexp.MustCompile(`:([A-Za-z0-9_]+)`)

func docPath(p string) string { return echoParam.ReplaceAllString(p, "{$1}") }

func TestEveryRouteIsDocumented(t *testing.T) {
	doc, _ := loadOpenAPI(t)
	e := newVoucherEnv(t, nil) // every route, the token endpoint's included
	registered := map[string]bool{}
	for _, rt := range e.api.Echo().Routes() {
		key := rt.Method + " " + docPath(rt.Path)
		registered[key] = true
		item := doc.Paths.Value(docPath(rt.Path))
		var op *openapi3.Operation
		if item != nil {
			op = item.GetOperation(rt.Method)
		}
		if op == nil {
			t.Errorf("route %s is registered but not in %s", key, openAPIFile)
			continue
		}
		policy, ok := e.api.PolicyOf(rt.Method, rt.Path)
		if !ok {
			continue // TestEveryRouteHasAPolicy reports it
		}
		checkOperation(t, key, op, item, policy)
	}
	var extra []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			if !registered[method+" "+path] {
				extra = append(extra, method+" "+path)
			}
		}
	}
	sort.Strings(extra)
	for _, k := range extra {
		t.Errorf("%s documents %s, which the server does not register", openAPIFile, k)
	}
}

// checkOperation checks what the document says of a route against how it is registered:
// its policy in the description, its security, and the error answers the policy and
// the operation's inputs make possible.
func checkOperation(t *testing.T, key string, op *openapi3.Operation, item *openapi3.PathItem, policy api.Policy) {
	t.Helper()
	if want := "Policy: **" + string(policy) + "**"; !strings.Contains(op.Description, want) {
		t.Errorf("%s: the description must name its policy, %q", key, want)
	}
	public := policy == api.Public
	switch {
	case public && (op.Security == nil || len(*op.Security) != 0):
		t.Errorf("%s: a public route must declare `security: []`", key)
	case !public && op.Security != nil:
		t.Errorf("%s: must inherit the document's bearerAuth security, not override it", key)
	}
	has := func(status int) bool { return op.Responses.Status(status) != nil }
	var want []int
	if !public {
		want = append(want, 401, 503)
		if policy != api.Authenticated {
			want = append(want, 403)
		}
	}
	params := slices.Concat(item.Parameters, op.Parameters)
	for _, p := range params {
		switch {
		case p.Value == nil:
		case p.Value.In == openapi3.ParameterInPath && !public:
			want = append(want, 404)
		case p.Value.In == openapi3.ParameterInHeader && p.Value.Name == "If-Match":
			want = append(want, 400, 412)
		}
	}
	if op.RequestBody != nil {
		want = append(want, 400, 413)
		// A form body of the wrong type is an OAuth invalid_request (400), not a 415.
		if op.RequestBody.Value == nil || op.RequestBody.Value.Content.Get("application/x-www-form-urlencoded") == nil {
			want = append(want, 415)
		}
	}
	for _, status := range want {
		if !has(status) {
			t.Errorf("%s: does not document the %d it can answer", key, status)
		}
	}
	if !public && op.Responses.Default() == nil {
		t.Errorf("%s: needs a default (server error) response", key)
	}
}

// TestOpenAPIPublicRoutes exchanges with the public routes through env.do, so that their
// answers are validated too, and checks that the served document is the file.
func TestOpenAPIPublicRoutes(t *testing.T) {
	e := newEnv(t)
	e.must(200, "GET", "/healthz", "", nil)
	e.must(200, "GET", "/readyz", "", nil, "X-Correlation-Id", "trace-1")
	e.must(200, "GET", "/metrics", "", nil)
	r := e.must(200, "GET", "/openapi.yaml", "", nil)
	if ct := r.header.Get("Content-Type"); ct != "application/yaml" {
		t.Errorf("content type %q, want application/yaml", ct)
	}
	file, err := os.ReadFile(openAPIFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(r.body, file) {
		t.Error("GET /openapi.yaml does not serve api/openapi.yaml")
	}
}

// TestOpenAPIErrorAnswers provokes the error answers the other component tests do not,
// so that their problem documents are validated too.
func TestOpenAPIErrorAnswers(t *testing.T) {
	e := newEnv(t)
	admin := e.tenant("acme")
	e.user("acme", admin, "bob", "member")
	if r := e.do("POST", "/v1/users", admin, `{"id":"x","name":"X"}`, "Content-Type", "text/plain"); r.status != 415 {
		t.Errorf("text/plain body: %d %s, want 415", r.status, r.body)
	}
	big := `{"id":"x","name":"` + strings.Repeat("x", 2<<20) + `"}`
	if r := e.do("POST", "/v1/users", admin, big); r.status != 413 {
		t.Errorf("2 MiB body: %d, want 413", r.status)
	}
	if r := e.do("PATCH", "/v1/users/bob", admin, map[string]any{"name": "Robert"}, "If-Match", "yesterday"); r.status != 400 || r.code(t) != "invalid_if_match" {
		t.Errorf("invalid If-Match: %d %s", r.status, r.body)
	}
	if r := e.do("GET", "/v1/clients?kind=robot", admin, nil); r.status != 400 {
		t.Errorf("unknown kind: %d %s", r.status, r.body)
	}
	e.must(200, "GET", "/v1/clients?kind=api", admin, nil)
	e.must(200, "PATCH", "/v1/users/bob", admin, map[string]any{"name": nil, "roles": nil}, "If-Match", `W/"0"`)
	e.must(404, "GET", "/v1/eservices/nope", admin, nil)
	e.must(404, "GET", "/v1/producer-keys/nope", e.token("", "op"), nil)
	e.must(401, "GET", "/v1/producer-keys/nope", "not.a.token", nil)

	// Not ready, and not configured: 503 problem documents.
	down := api.New(api.Deps{Ready: []api.ReadyCheck{{Name: "eventstore", Pinger: pingerFunc(func(context.Context) error {
		return errors.New("connection refused")
	})}}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	srv := httptest.NewServer(down.Handler())
	defer srv.Close()
	for _, path := range []string{"/readyz", "/v1/users"} {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		req.Header.Set("Authorization", "Bearer x")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 503 {
			t.Errorf("GET %s on a server that is not ready: %d %s", path, res.StatusCode, body)
		}
		validateExchange(t, req, nil, res.StatusCode, res.Header, body)
	}
}

type pingerFunc func(context.Context) error

func (f pingerFunc) Ping(ctx context.Context) error { return f(ctx) }
