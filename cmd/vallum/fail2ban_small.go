//go:build vallum_small && (mips || mipsle)

package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newFail2banCmd: the MIPS router builds leave the action files out (the
// embedded files cost 32 KB there, and OpenWrt has no fail2ban); the
// command says where to find them.
func newFail2banCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "fail2ban-action",
		Short: "Not in the MIPS router builds: see fail2ban/action.d in the source, or run it on another host",
		RunE: func(*cobra.Command, []string) error {
			return errors.New("fail2ban-action is not in the MIPS router builds (size): take fail2ban/action.d/vallum.conf from vallum's source or package, or run `vallum fail2ban-action` on another host")
		},
	}
}
