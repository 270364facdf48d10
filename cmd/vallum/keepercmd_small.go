//go:build vallum_small

package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/spf13/cobra"
)

// The router builds (contrib/build-static.sh, tag vallum_small) leave the
// standalone keeper out (57 KB of mips), for a command a hub
// on a router does not need (its embedded broker keeps its lists itself).
var errNoKeeper = errors.New("vallum keeper is not in this build (a router build, tag vallum_small): " +
	"run it from a full build (linux/amd64 or arm64), or use the embedded broker, which keeps its lists itself")

func newKeeperCmd() *cobra.Command {
	return &cobra.Command{Use: "keeper", Short: "Keep lists' state on any broker (not in this router build)",
		Args: cobra.ArbitraryArgs, DisableFlagParsing: true,
		RunE: func(*cobra.Command, []string) error { return errNoKeeper }}
}

func (c config) keeperBeside(string, *slog.Logger) (func(context.Context) error, func(), error) {
	return nil, nil, errNoKeeper
}
