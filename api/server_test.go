package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	rtrace "runtime/trace"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	xtrace "golang.org/x/exp/trace"

	"github.com/keyledger/keyledger/eventstore"
)

type pingFunc func(context.Context) error

func (f pingFunc) Ping(ctx context.Context) error { return f(ctx) }

func ok(context.Context) error { return nil }

func newTestServer(t *testing.T, checks ...ReadyCheck) (*Server, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	if len(checks) == 0 {
		checks = []ReadyCheck{{Name: "eventstore", Pinger: pingFunc(ok)}}
	}
	s := New(Deps{Ready: checks, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	return s, &logs
}

func do(t *testing.T, s *Server, method, path string, hdr map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	return rec
}

func decodeProblem(t *testing.T, rec *httptest.ResponseRecorder) Problem {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		t.Fatalf("content type %q, want application/problem+json (body %s)", ct, rec.Body)
	}
	var p Problem
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
		t.Fatalf("problem body %q: %v", rec.Body, err)
	}
	return p
}

func TestEveryRouteHasAPolicy(t *testing.T) {
	s, _ := newTestServer(t)
	routes := s.Echo().Routes()
	if len(routes) == 0 {
		t.Fatal("no routes registered")
	}
	for _, r := range routes {
		if _, ok := s.PolicyOf(r.Method, r.Path); !ok {
			t.Errorf("route %s %s has no authorization policy", r.Method, r.Path)
		}
	}
	// A route added behind the registry's back is caught.
	s.Echo().GET("/sneaky", func(c echo.Context) error { return nil })
	if _, ok := s.PolicyOf(http.MethodGet, "/sneaky"); ok {
		t.Fatal("a route added without handle() reports a policy")
	}
}

func TestHealthz(t *testing.T) {
	s, _ := newTestServer(t, ReadyCheck{Name: "eventstore", Pinger: pingFunc(func(context.Context) error {
		return errors.New("down")
	})})
	rec := do(t, s, http.MethodGet, "/healthz", nil)
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"ok"`) {
		t.Fatalf("healthz with a failing store: %d %s (liveness must not depend on the store)", rec.Code, rec.Body)
	}
}

func TestReadyz(t *testing.T) {
	s, _ := newTestServer(t)
	rec := do(t, s, http.MethodGet, "/readyz", nil)
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"eventstore":"ok"`) {
		t.Fatalf("readyz with a healthy store: %d %s", rec.Code, rec.Body)
	}

	down := fmt.Errorf("dial 127.0.0.1:2113: %w", eventstore.ErrUnavailable)
	s, _ = newTestServer(t,
		ReadyCheck{Name: "eventstore", Pinger: pingFunc(func(context.Context) error { return down })},
		ReadyCheck{Name: "redis", Pinger: pingFunc(ok)},
	)
	rec = do(t, s, http.MethodGet, "/readyz", nil)
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("readyz with an unreachable store: %d", rec.Code)
	}
	p := decodeProblem(t, rec)
	if p.Code != CodeNotReady || !strings.Contains(p.Detail, "eventstore: dial 127.0.0.1:2113") || strings.Contains(p.Detail, "redis") {
		t.Fatalf("readyz problem %+v does not name the failing dependency alone", p)
	}
}

func TestCorrelationID(t *testing.T) {
	s, logs := newTestServer(t)
	rec := do(t, s, http.MethodGet, "/healthz", map[string]string{HeaderCorrelationID: "abc-123"})
	if got := rec.Header().Get(HeaderCorrelationID); got != "abc-123" {
		t.Fatalf("given correlation id came back as %q", got)
	}
	if !strings.Contains(logs.String(), `"correlation_id":"abc-123"`) {
		t.Fatalf("request log lacks the correlation id: %s", logs)
	}

	rec = do(t, s, http.MethodGet, "/healthz", nil)
	if _, err := uuid.Parse(rec.Header().Get(HeaderCorrelationID)); err != nil {
		t.Fatalf("generated correlation id %q is not a UUID", rec.Header().Get(HeaderCorrelationID))
	}

	for _, bad := range []string{"a b", "x\ny", strings.Repeat("a", 129), "<script>"} {
		rec = do(t, s, http.MethodGet, "/healthz", map[string]string{HeaderCorrelationID: bad})
		got := rec.Header().Get(HeaderCorrelationID)
		if got == bad {
			t.Errorf("malformed correlation id %q was accepted", bad)
		}
		if _, err := uuid.Parse(got); err != nil {
			t.Errorf("malformed correlation id %q replaced by %q, not a fresh UUID", bad, got)
		}
	}
}

func TestUnknownRouteIsAProblem(t *testing.T) {
	s, _ := newTestServer(t)
	rec := do(t, s, http.MethodGet, "/nope", map[string]string{HeaderCorrelationID: "c-1"})
	if rec.Code != http.StatusNotFound {
		t.Fatalf("status %d", rec.Code)
	}
	p := decodeProblem(t, rec)
	if p.Code != CodeNotFound || p.Status != 404 || p.CorrelationID != "c-1" {
		t.Fatalf("problem %+v", p)
	}
	rec = do(t, s, http.MethodPost, "/healthz", nil)
	if p := decodeProblem(t, rec); rec.Code != http.StatusMethodNotAllowed || p.Code != CodeMethodNotAllowed {
		t.Fatalf("POST /healthz: %d %+v", rec.Code, p)
	}
}

func TestMetrics(t *testing.T) {
	s, _ := newTestServer(t)
	do(t, s, http.MethodGet, "/healthz", nil)
	rec := do(t, s, http.MethodGet, "/metrics", nil)
	if rec.Code != http.StatusOK {
		t.Fatalf("metrics: %d", rec.Code)
	}
	if !strings.Contains(rec.Body.String(), `keyledger_http_requests_total{code="200",host="example.com",method="GET",url="/healthz"} 1`) {
		t.Fatalf("metrics do not count the /healthz request:\n%s", rec.Body)
	}
}

func TestErrorTable(t *testing.T) {
	cases := []struct {
		err    error
		status int
		code   string
	}{
		{fmt.Errorf("append client-1: %w", &eventstore.ConcurrencyError{Stream: "client-1"}), 409, CodeConcurrency},
		{fmt.Errorf("x: %w", eventstore.ErrInvalidAppend), 400, CodeInvalidAppend},
		{fmt.Errorf("append: %w", eventstore.ErrStorageFull), 507, CodeStorageFull},
		{fmt.Errorf("read: %w: %w", eventstore.ErrUnavailable, errors.New("connection reset")), 503, CodeStoreUnavailable},
		{fmt.Errorf("open: %w", eventstore.ErrCorrupt), 500, CodeStorageCorrupt},
		{echo.NewHTTPError(http.StatusRequestEntityTooLarge), 413, CodeBodyTooLarge},
		{errors.New("boom"), 500, CodeInternal},
	}
	for _, c := range cases {
		p := toProblem(c.err)
		if p.Status != c.status || p.Code != c.code {
			t.Errorf("%v → %d %s, want %d %s", c.err, p.Status, p.Code, c.status, c.code)
		}
	}
	if p := toProblem(errors.New("secret detail")); strings.Contains(p.Detail, "secret") {
		t.Errorf("an unmapped error leaks its text to the caller: %q", p.Detail)
	}
}

func TestPanicIsRecovered(t *testing.T) {
	s, logs := newTestServer(t)
	s.handle(http.MethodGet, "/panic", Public, func(echo.Context) error { panic("kaboom") })
	rec := do(t, s, http.MethodGet, "/panic", nil)
	p := decodeProblem(t, rec)
	if rec.Code != 500 || p.Code != CodeInternal || strings.Contains(rec.Body.String(), "kaboom") {
		t.Fatalf("panic answered %d %s", rec.Code, rec.Body)
	}
	if !strings.Contains(logs.String(), "kaboom") {
		t.Fatalf("panic not logged: %s", logs)
	}
	// The server keeps serving.
	if rec := do(t, s, http.MethodGet, "/healthz", nil); rec.Code != 200 {
		t.Fatalf("after a panic healthz answers %d", rec.Code)
	}
}

// TestRequestsAreTraceTasks: while an execution trace is taken, each request is a task
// named after its method and route, ended when it is answered.
func TestRequestsAreTraceTasks(t *testing.T) {
	s, _ := newTestServer(t)
	var buf bytes.Buffer
	if err := rtrace.Start(&buf); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if rec := do(t, s, http.MethodGet, "/healthz", nil); rec.Code != http.StatusOK {
			rtrace.Stop()
			t.Fatalf("healthz answered %d", rec.Code)
		}
	}
	rtrace.Stop()
	r, err := xtrace.NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	begun, ended := map[xtrace.TaskID]string{}, 0
	for {
		ev, err := r.ReadEvent()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		switch ev.Kind() {
		case xtrace.EventTaskBegin:
			begun[ev.Task().ID] = ev.Task().Type
		case xtrace.EventTaskEnd:
			if _, ok := begun[ev.Task().ID]; ok {
				ended++
			}
		}
	}
	if len(begun) != 3 || ended != 3 {
		t.Fatalf("%d tasks begun, %d of them ended; want 3 and 3", len(begun), ended)
	}
	for _, typ := range begun {
		if typ != "GET /healthz" {
			t.Fatalf("task %q, want GET /healthz", typ)
		}
	}
}
