// Package api serves Keyledger's HTTP API with echo: routes, each with its authorization
// policy, error → problem-document mapping, correlation ids, request logs and metrics.
package api

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo-contrib/echoprometheus"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/keyledger/keyledger/commands"
	"github.com/keyledger/keyledger/projections/runner"
)

// Pinger reports whether a dependency can serve. The event store is one.
type Pinger interface {
	Ping(ctx context.Context) error
}

// Deps is what the API needs from the rest of the process.
type Deps struct {
	// Ready lists what /readyz checks: the event store always, Redis when configured.
	Ready []ReadyCheck
	// Logger receives one line per request; nil means slog.Default().
	Logger *slog.Logger
	// Registry receives the HTTP metrics and is served on /metrics. Nil creates a fresh
	// registry holding only the HTTP metrics.
	Registry *prometheus.Registry
	// ReadyTimeout bounds the store check of /readyz. Default 2s.
	ReadyTimeout time.Duration
	// BodyLimit caps request bodies. Default "1M".
	BodyLimit string
	// Commands handles commands; their answers and the history queries load aggregates
	// and streams from the event store through it.
	Commands *commands.Service
	// Reads is how queries read read models (the directory for lists and details, the
	// keys model for producer keys): each waits through it, bounded by ReadWait, until
	// the model has reached the request's minimum position. Nil: every query answers 503.
	Reads *runner.Reader
	// ReadWait bounds how long a query waits for its read model to reach the request's
	// minimum position before it answers 503 with Retry-After. Default 2s. A longer
	// wait holds a request (and its connection) for as long.
	ReadWait time.Duration
	// RevocationWait bounds how long a command that revokes access waits for the read
	// models that grant access to apply it before answering 202 instead. Default 2s.
	RevocationWait time.Duration
	// Verifier authenticates bearer tokens.
	Verifier TokenVerifier
	// Vouchers serves the token endpoint, its metadata and assertion checks. Nil: those
	// routes are absent.
	Vouchers *Vouchers
}

// Server is the HTTP API.
type Server struct {
	echo     *echo.Echo
	deps     Deps
	policies map[string]Policy
}

// New builds the API with every route registered.
func New(deps Deps) *Server {
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if deps.Registry == nil {
		deps.Registry = prometheus.NewRegistry()
	}
	if deps.ReadyTimeout <= 0 {
		deps.ReadyTimeout = 2 * time.Second
	}
	if deps.ReadWait <= 0 {
		deps.ReadWait = 2 * time.Second
	}
	if deps.RevocationWait <= 0 {
		deps.RevocationWait = 2 * time.Second
	}
	if deps.BodyLimit == "" {
		deps.BodyLimit = "1M"
	}
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = problemHandler(deps.Logger)

	s := &Server{echo: e, deps: deps, policies: map[string]Policy{}}
	e.Use(
		traceTask(),
		correlationID(),
		middleware.RecoverWithConfig(middleware.RecoverConfig{
			DisablePrintStack: true,
			LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
				deps.Logger.ErrorContext(c.Request().Context(), "panic in handler",
					"error", err.Error(), "stack", string(stack))
				return err
			},
		}),
		echoprometheus.NewMiddlewareWithConfig(echoprometheus.MiddlewareConfig{
			Namespace:                 "keyledger",
			Subsystem:                 "http",
			Registerer:                deps.Registry,
			DoNotUseRequestPathFor404: true,
			Skipper:                   func(c echo.Context) bool { return c.Path() == "/metrics" },
		}),
		requestLog(deps.Logger),
		middleware.BodyLimit(deps.BodyLimit),
	)
	s.routes()
	return s
}

// Handler is the http.Handler to serve.
func (s *Server) Handler() http.Handler { return s.echo }

// Echo exposes the router, for tests that walk the route table.
func (s *Server) Echo() *echo.Echo { return s.echo }

func (s *Server) routes() {
	s.handle(http.MethodGet, "/healthz", Public, s.healthz)
	s.handle(http.MethodGet, "/readyz", Public, s.readyz)
	s.handle(http.MethodGet, "/metrics", Public, echo.WrapHandler(
		promhttp.HandlerFor(s.deps.Registry, promhttp.HandlerOpts{Registry: s.deps.Registry})))
	s.userRoutes()
	s.clientRoutes()
	s.producerRoutes()
	s.voucherRoutes()
	s.auditRoutes()
	s.handle(http.MethodGet, "/openapi.yaml", Public, s.openapi)
}

// ReadyCheck is one dependency /readyz checks.
type ReadyCheck struct {
	Name string
	Pinger
}

type status struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks,omitempty"`
}

// healthz answers while the process can serve HTTP at all.
func (s *Server) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, status{Status: "ok"})
}

// readyz answers 200 only when every dependency can serve; otherwise 503 naming each
// one that cannot.
func (s *Server) readyz(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), s.deps.ReadyTimeout)
	defer cancel()
	checks := map[string]string{}
	var failed []string
	var firstErr error
	for _, rc := range s.deps.Ready {
		if err := rc.Ping(ctx); err != nil {
			checks[rc.Name] = err.Error()
			failed = append(failed, rc.Name+": "+err.Error())
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		checks[rc.Name] = "ok"
	}
	if len(failed) > 0 {
		return &Problem{Status: http.StatusServiceUnavailable, Code: CodeNotReady,
			Title: "Not ready", Detail: strings.Join(failed, "; "), cause: firstErr}
	}
	return c.JSON(http.StatusOK, status{Status: "ready", Checks: checks})
}
