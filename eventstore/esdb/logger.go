package esdb

import (
	"context"
	"fmt"
	"log/slog"

	esdbc "github.com/EventStore/EventStore-Client-Go/v4/esdb"
)

// clientLogger replaces the client's console logging with l. The client logs every
// failed call at error level, including calls its caller cancelled; those lines carry
// component=esdb-client so that they can be filtered.
func clientLogger(l *slog.Logger) esdbc.LoggingFunc {
	l = l.With("component", "esdb-client")
	return func(level esdbc.LogLevel, format string, args ...any) {
		// The client's Configuration.applyLogger passes its arguments as one slice.
		if len(args) == 1 {
			if inner, ok := args[0].([]any); ok {
				args = inner
			}
		}
		var lvl slog.Level
		switch level {
		case esdbc.LogDebug:
			lvl = slog.LevelDebug
		case esdbc.LogInfo:
			lvl = slog.LevelInfo
		case esdbc.LogWarn:
			lvl = slog.LevelWarn
		default:
			lvl = slog.LevelError
		}
		ctx := context.Background()
		if !l.Enabled(ctx, lvl) {
			return
		}
		msg := format
		if len(args) > 0 {
			msg = fmt.Sprintf(format, args...)
		}
		l.Log(ctx, lvl, msg)
	}
}
