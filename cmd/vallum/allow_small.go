//go:build vallum_small && (mips || mipsle)

package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newAllowCmd: the MIPS router builds leave `vallum allow` out (12 KB):
// an admin changes the shared allowlist from another host. The bridge
// still follows the allowlist, and the hub's keeper applies it.
func newAllowCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "allow",
		Short: "Not in the MIPS router builds: run it on another host",
		RunE: func(*cobra.Command, []string) error {
			return errors.New("allow is not in the MIPS router builds (size): run `vallum allow` on another host")
		},
	}
}
