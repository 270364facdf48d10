//go:build vallum_small

package main

import (
	"context"
	"log/slog"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"
)

// keeperBuilt: the router builds leave `vallum keeper` and --keeper out
// (keepercmd.go says why). Every use is behind `if keeperBuilt`, so these
// stubs are never linked, and the builds pay nothing for them; a config
// file's keeper: key is read and ignored there.
const keeperBuilt = false

func newKeeperCmd() *cobra.Command { return nil }

func keeperFlag(*pflag.FlagSet) {}

func startKeeperBeside(context.Context, *errgroup.Group, config, string, *slog.Logger) error {
	return nil
}
