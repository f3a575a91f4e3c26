package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

func checkCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "check",
		Short: "Open the configured event store (the embedded one with a full integrity check), check it can serve, and report",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := e.cfg.newLogger(e.stderr)
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			store, err := openRawStore(ctx, &e.cfg, log, true)
			if err != nil {
				return err
			}
			defer store.Close()
			if err := store.Ping(ctx); err != nil {
				return fmt.Errorf("event store does not answer: %w", err)
			}
			where := e.cfg.DataDir
			if e.cfg.ESDBURL != "" {
				where = e.cfg.Redacted().ESDBURL
			}
			fmt.Fprintf(e.stdout, "event store ok: %s (%s)\n", storeKind(e.cfg), where)
			return nil
		},
	}
}

func configCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "config",
		Short: "Print the effective configuration (flags over KEYLEDGER_* variables over defaults)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r := e.cfg.Redacted()
			out := map[string]string{
				"addr":              r.Addr,
				"data-dir":          r.DataDir,
				"esdb-url":          r.ESDBURL,
				"redis-url":         r.RedisURL,
				"user-issuer":       r.UserIssuer,
				"user-jwks-url":     r.UserJWKSURL,
				"user-jwks-file":    r.UserJWKSFile,
				"max-client-keys":   fmt.Sprint(r.MaxClientKeys),
				"max-keychain-keys": fmt.Sprint(r.MaxKeychainKeys),
				"log-level":         r.LogLevel,
				"log-format":        r.LogFormat,
				"shutdown-timeout":  r.ShutdownTimeout.String(),
				"store":             storeKind(r),
			}
			enc := json.NewEncoder(e.stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(out)
		},
	}
}
