//go:build vallum_small && (mips || mipsle)

package main

import "github.com/spf13/cobra"

// newAllowCmd: the MIPS router builds leave `vallum allow` out (12 KB):
// an admin changes the shared allowlist from another host. The bridge
// still follows the allowlist.
func newAllowCmd() *cobra.Command { return nil }
