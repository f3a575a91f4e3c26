package main

import (
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/keyledger/keyledger/voucher"
)

func signingKeyCmd(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:   "signing-key",
		Short: "List, rotate and remove the keys that sign vouchers (in <data-dir>/signing-keys)",
		Long: `Keyledger signs vouchers with the current key of <data-dir>/signing-keys and publishes every
key of the directory at /.well-known/jwks.json, so that resource servers keep verifying the
vouchers an older key signed while a rotation takes effect.

Rotation: run "keyledger signing-key rotate" (with the server's --data-dir); running servers
sign with the new key within 30 seconds. Once every voucher the old key signed has expired
(the longest voucher lifetime after the rotation, at most 24 hours), remove it with
"keyledger signing-key remove <kid>".

With --signing-key-files (KEYLEDGER_SIGNING_KEY_FILES) the keys are the operator's files:
rotate by putting the new key first in the list and keeping the old one until its vouchers
expired.`,
	}
	root.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List the published signing keys, the current one first",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			s, err := openSigner(&e.cfg)
			if err != nil {
				return err
			}
			return printKeys(e, s)
		},
	}, &cobra.Command{
		Use:   "rotate",
		Short: "Generate a new signing key (of --signing-alg) and make it current; the old ones stay published",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if len(e.cfg.SigningKeyFiles) > 0 {
				return errors.New("signing keys come from --signing-key-files: rotate by putting the new key file first in the list and restarting")
			}
			s, err := openSigner(&e.cfg)
			if err != nil {
				return err
			}
			prev := s.Current()
			k, err := s.Rotate()
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "new current key %s (%s); previous key %s stays published: remove it once the vouchers it signed have expired\n",
				k.KID, k.Alg, prev.KID)
			return printKeys(e, s)
		},
	}, &cobra.Command{
		Use:   "remove <kid>",
		Short: "Stop publishing a signing key that is not current (its vouchers no longer verify)",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			if len(e.cfg.SigningKeyFiles) > 0 {
				return errors.New("signing keys come from --signing-key-files: drop the file from the list instead")
			}
			s, err := openSigner(&e.cfg)
			if err != nil {
				return err
			}
			if err := s.Remove(args[0]); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "removed signing key %s\n", args[0])
			return printKeys(e, s)
		},
	})
	return root
}

func printKeys(e *env, s *voucher.Signer) error {
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "KID\tALG\tCURRENT")
	for _, k := range s.Keys() {
		cur := ""
		if k.Current {
			cur = "yes"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\n", k.KID, k.Alg, cur)
	}
	return w.Flush()
}
