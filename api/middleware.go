package api

import (
	"context"
	"log/slog"
	"runtime/trace"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
)

// HeaderCorrelationID carries the correlation id of a request and its answer.
const HeaderCorrelationID = "X-Correlation-Id"

type ctxKey int

const correlationKey ctxKey = iota

// CorrelationIDFrom returns the request's correlation id, or "" outside a request.
func CorrelationIDFrom(ctx context.Context) string {
	id, _ := ctx.Value(correlationKey).(string)
	return id
}

// validCorrelationID accepts what a caller may reasonably send (a UUID, a trace id, a
// short token) and refuses what could forge log lines or bloat them.
func validCorrelationID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' ||
			ch == '-' || ch == '_' || ch == '.' || ch == ':') {
			return false
		}
	}
	return true
}

// traceTask makes each request a task of the execution trace while one is being taken
// (GET /debug/pprof/trace on the --debug-addr listener), named after its method and route
// ("POST /oauth2/token"): go tool trace then shows each route's latency and where it was
// spent, and bench/tokenload's -trace breaks the token endpoint's requests down with it.
// Outside a trace it costs one atomic load.
func traceTask() echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if !trace.IsEnabled() {
				return next(c)
			}
			req := c.Request()
			ctx, task := trace.NewTask(req.Context(), req.Method+" "+c.Path())
			defer task.End()
			c.SetRequest(req.WithContext(ctx))
			return next(c)
		}
	}
}

// correlationID takes the caller's X-Correlation-Id when it is well formed, else makes
// one, and puts it in the request context and on the response.
func correlationID() echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			id := c.Request().Header.Get(HeaderCorrelationID)
			if !validCorrelationID(id) {
				id = uuid.NewString()
			}
			req := c.Request()
			c.SetRequest(req.WithContext(context.WithValue(req.Context(), correlationKey, id)))
			c.Response().Header().Set(HeaderCorrelationID, id)
			return next(c)
		}
	}
}

// requestLog writes one structured line per request, after it is answered.
func requestLog(log *slog.Logger) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			err := next(c)
			if err != nil {
				// Let the error handler write the answer now so the status is known.
				c.Error(err)
			}
			req := c.Request()
			level := slog.LevelInfo
			if c.Response().Status >= 500 {
				level = slog.LevelError
			}
			log.LogAttrs(req.Context(), level, "request",
				slog.String("correlation_id", CorrelationIDFrom(req.Context())),
				slog.String("method", req.Method),
				slog.String("route", c.Path()),
				slog.String("path", req.URL.Path),
				slog.Int("status", c.Response().Status),
				slog.Int64("bytes", c.Response().Size),
				slog.Duration("duration", time.Since(start)),
				slog.String("remote", c.RealIP()),
			)
			return nil
		}
	}
}
