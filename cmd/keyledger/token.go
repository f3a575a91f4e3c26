package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyledger/keyledger/api/auth"
)

// maxDevTokenTTL caps the lifetime of a development token.
const maxDevTokenTTL = 30 * 24 * time.Hour

func tokenCmd(e *env) *cobra.Command {
	var (
		tenant, user string
		operator     bool
		ttl          time.Duration
	)
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Print a user token signed with the development key of the data dir (development mode only)",
		Long: `Print a user token signed with the development key in the data directory, creating
the key if missing. A server on the same data directory without --user-issuer trusts it.

Refused when a user token issuer is configured: such a server trusts only the identity
provider's tokens.`,
		Example: `  keyledger token --tenant t1 --user alice
  keyledger token --operator --user ops --ttl 15m
  curl -H "Authorization: Bearer $(keyledger token --tenant t1 --user alice)" localhost:8080/v1/clients`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if e.cfg.UserIssuer != "" {
				return fmt.Errorf("user tokens come from the issuer %q (user-issuer / %s); the server does not trust development tokens, so ask the identity provider for one", e.cfg.UserIssuer, envName("user-issuer"))
			}
			if operator {
				if tenant != "" {
					return errors.New("--operator: the platform operator belongs to no tenant; drop --tenant")
				}
				if user == "" {
					user = "operator"
				}
			} else if tenant == "" || user == "" {
				return errors.New("--tenant and --user are required (or --operator for an operator token)")
			}
			if ttl <= 0 || ttl > maxDevTokenTTL {
				return fmt.Errorf("--ttl %s: want more than 0 and at most %s", ttl, maxDevTokenTTL)
			}
			tok, err := auth.MintDevelopmentToken(e.cfg.DataDir,
				auth.Principal{Subject: user, Tenant: tenant, Operator: operator}, ttl, time.Now())
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(e.stdout, tok)
			return err
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&tenant, "tenant", "", "tenant id (the token's tenant claim)")
	fs.StringVar(&user, "user", "", `user id (the token's sub); default "operator" with --operator`)
	fs.BoolVar(&operator, "operator", false, "mint a platform operator token (no tenant)")
	fs.DurationVar(&ttl, "ttl", time.Hour, "token lifetime")
	return cmd
}
