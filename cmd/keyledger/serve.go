package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/keyledger/keyledger/api"
	"github.com/keyledger/keyledger/api/auth"
	"github.com/keyledger/keyledger/commands"
	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/eventstore/storemetrics"
	"github.com/keyledger/keyledger/projections/readmodel"
	"github.com/keyledger/keyledger/projections/runner"
)

func serveCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "serve",
		Short: "Serve the HTTP API (embedded event store unless --esdb-url is set)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return serve(cmd.Context(), e, serveHooks{})
		},
	}
}

// serve runs the server until ctx ends, then shuts down gracefully: the listener
// closes, in-flight requests finish (bounded by ShutdownTimeout), and the store closes.
func serve(ctx context.Context, e *env, hooks serveHooks) error {
	log := e.cfg.newLogger(e.stderr)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	store, err := openStore(ctx, &e.cfg, log, reg)
	if err != nil {
		return err
	}
	defer func() {
		if err := store.Close(); err != nil {
			log.Error("closing the event store", "error", err.Error())
		} else {
			log.Info("event store closed")
		}
	}()

	checks := []api.ReadyCheck{{Name: "eventstore", Pinger: store}}
	var rmStore readmodel.Store = readmodel.NewMemory()
	var rdb redis.UniversalClient
	if e.cfg.RedisURL != "" {
		c, err := openRedis(e.cfg.RedisURL)
		if err != nil {
			return err
		}
		defer c.Close()
		rdb = c
		checks = append(checks, api.ReadyCheck{Name: "redis", Pinger: redisPinger{c}})
		if rmStore, err = readmodel.NewRedis(c); err != nil {
			return fmt.Errorf("read models: %w", err)
		}
	}
	projections, err := runner.New(runner.Config{Events: store, Store: rmStore, Redis: rdb, Logger: log, Registerer: reg})
	if err != nil {
		return fmt.Errorf("projections: %w", err)
	}
	pctx, stopProjections := context.WithCancel(context.WithoutCancel(ctx))
	projected := make(chan struct{})
	go func() {
		defer close(projected)
		_ = projections.Run(pctx)
	}()
	// Projections stop after the HTTP server (requests in flight may wait for them) and
	// before the event store closes.
	defer func() {
		stopProjections()
		<-projected
	}()
	checks = append(checks, api.ReadyCheck{Name: "projections", Pinger: healthPinger(projections.Healthy)})
	verifier, err := auth.New(ctx, auth.Config{Issuer: e.cfg.UserIssuer, JWKSURL: e.cfg.UserJWKSURL,
		JWKSFile: e.cfg.UserJWKSFile, DataDir: e.cfg.DataDir, Logger: log})
	if err != nil {
		return fmt.Errorf("user tokens: %w", err)
	}
	if verifier.Development() {
		log.Warn("development mode: user tokens are signed by the key in the data directory; mint one with `keyledger token` — never run a shared deployment this way")
	}
	ln, err := net.Listen("tcp", e.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", e.cfg.Addr, err)
	}
	defer ln.Close()
	if e.cfg.Issuer == "" {
		e.cfg.Addr = ln.Addr().String() // the issuer derived from the address names the bound port
	}
	vouchers, stopVouchers, err := voucherPath(ctx, &e.cfg, log, store, projections.Reader(), rdb)
	if err != nil {
		return err
	}
	// Runs after the HTTP server stopped (no token request in flight) and before the
	// projections and the event store stop: the audit writer drains into the store.
	defer stopVouchers()
	cmds := commands.New(store, commands.Config{MaxClientKeys: e.cfg.MaxClientKeys, MaxKeychainKeys: e.cfg.MaxKeychainKeys}, nil, nil)
	srv := api.New(api.Deps{Ready: checks, Logger: log, Registry: reg, Commands: cmds,
		Verifier: api.WithAPIVouchers(api.UserTokens(verifier), vouchers.API), Reads: projections.Reader(), Vouchers: vouchers})
	if hooks.server != nil {
		hooks.server(srv)
	}
	hs := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	if e.cfg.DebugAddr != "" {
		stopDebug, err := serveDebug(e.cfg.DebugAddr, log)
		if err != nil {
			return err
		}
		defer stopDebug()
	}
	log.Info("keyledger serving", "addr", ln.Addr().String(), "store", storeKind(e.cfg), "version", version,
		"issuer", vouchers.Issuer, "assertion_audience", e.cfg.assertionAudience(), "signing_kid", vouchers.Signer.Current().KID,
		"signing_alg", vouchers.Signer.Current().Alg)
	if hooks.ready != nil {
		hooks.ready <- ln.Addr().String()
	}

	select {
	case err := <-errc:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: finishing in-flight requests", "timeout", e.cfg.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), e.cfg.ShutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		return fmt.Errorf("graceful shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http server: %w", err)
	}
	return nil
}

// serveHooks let in-process tests see inside serve; production passes the zero value.
type serveHooks struct {
	ready  chan<- string     // receives the bound address once connections are accepted
	server func(*api.Server) // sees the API before it serves
}

func storeKind(cfg Config) string {
	if cfg.ESDBURL != "" {
		return "eventstoredb"
	}
	return "embedded"
}

// openStore opens the configured event store, instrumented with metrics.
func openStore(ctx context.Context, cfg *Config, log *slog.Logger, reg prometheus.Registerer) (eventstore.Store, error) {
	s, err := openRawStore(ctx, cfg, log, false)
	if err != nil {
		return nil, err
	}
	return storemetrics.Wrap(s, reg), nil
}

// healthPinger adapts a health function to api.Pinger.
type healthPinger func() error

func (h healthPinger) Ping(context.Context) error { return h() }

// serveDebug serves Go's profiler on addr until the returned stop is called.
func serveDebug(addr string, log *slog.Logger) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("debug-addr %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	log.Warn("profiler served: keep it private", "debug_addr", ln.Addr().String())
	return func() { _ = srv.Close() }, nil
}
