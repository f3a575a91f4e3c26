package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyledger/keyledger/projections/models"
	"github.com/keyledger/keyledger/projections/readmodel"
	"github.com/keyledger/keyledger/projections/runner"
)

func rebuildCmd(e *env) *cobra.Command {
	var wait time.Duration
	names := runner.ModelNames(models.All())
	cmd := &cobra.Command{
		Use:   "rebuild <read-model>",
		Short: "Rebuild a read model in Redis into a new generation and switch to it (" + strings.Join(names, ", ") + ")",
		Long: `Asks the Keyledger process that projects the read model (whichever holds its lease in
Redis) to rebuild it from the event store into a new generation, while the current one keeps
serving, and to switch to it atomically once it has caught up; the old generation is then
deleted. Needs --redis-url (KEYLEDGER_REDIS_URL): without Redis the read models live in each
process's memory and are rebuilt from the event store at every start.

Waits until the new generation is active (at most --wait; 0 returns at once).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			model := args[0]
			if !slices.Contains(names, model) {
				return fmt.Errorf("unknown read model %q: one of %s", model, strings.Join(names, ", "))
			}
			if e.cfg.RedisURL == "" {
				return errors.New("no --redis-url (KEYLEDGER_REDIS_URL): read models are in process memory and are rebuilt from the event store at every start; restart keyledger to rebuild them")
			}
			rdb, err := openRedis(e.cfg.RedisURL)
			if err != nil {
				return err
			}
			defer rdb.Close()
			store, err := readmodel.NewRedis(rdb)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			asked, err := runner.RequestRebuild(ctx, rdb, "", model)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "rebuild of %s requested\n", model)
			if wait <= 0 {
				return nil
			}
			wctx, cancel := context.WithTimeout(ctx, wait)
			defer cancel()
			tick := time.NewTicker(200 * time.Millisecond)
			defer tick.Stop()
			for {
				gen, done, err := runner.RebuiltSince(wctx, store, model, asked)
				if err == nil && done {
					fmt.Fprintf(e.stdout, "%s rebuilt: generation %s is active\n", model, gen)
					return nil
				}
				select {
				case <-wctx.Done():
					if ctx.Err() != nil {
						return ctx.Err()
					}
					return fmt.Errorf("%s not rebuilt within %s (is a keyledger serve running with this Redis? its /readyz says what the projection does); the request stays and is carried out by the next projector", model, wait)
				case <-tick.C:
				}
			}
		},
	}
	cmd.Flags().DurationVar(&wait, "wait", 10*time.Minute, "how long to wait for the new generation to be active (0: do not wait)")
	return cmd
}
