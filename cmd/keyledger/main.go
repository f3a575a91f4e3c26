// Command keyledger is the Keyledger server and its operator subcommands. This package
// holds wiring and configuration only.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "keyledger:", err)
		os.Exit(1)
	}
}

// env is what a subcommand gets: its validated configuration and where to write.
type env struct {
	cfg    Config
	stdout io.Writer
	stderr io.Writer
}

// run builds the command tree and executes args. ctx ends on SIGTERM/SIGINT.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	e := &env{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "keyledger",
		Short:         "Keyledger keeps the keys to machine-to-machine access, with their full history.",
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnv(cmd.Flags(), getenv); err != nil {
				return fmt.Errorf("invalid configuration:\n  %w", err)
			}
			return e.cfg.Validate()
		},
	}
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	e.cfg.bindFlags(root.PersistentFlags())
	root.AddCommand(serveCmd(e), checkCmd(e), configCmd(e), tokenCmd(e), rebuildCmd(e), signingKeyCmd(e))
	err := root.ExecuteContext(ctx)
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return nil // stopped by a signal: a clean exit
	}
	return err
}
