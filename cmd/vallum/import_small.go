//go:build vallum_small || vallum_noimport

package main

import "github.com/spf13/cobra"

// importBuilt: the router builds leave `vallum import` out (import.go says
// why). Its one use is behind `if importBuilt`, so this stub is never
// linked.
const importBuilt = false

func newImportCmd() *cobra.Command { return nil }
