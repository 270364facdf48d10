//go:build vallum_small

package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// The router builds (contrib/build-static.sh, tag vallum_small) leave the
// standalone keeper out, its command and the daemon's --keeper flag (57 KB
// of mips), for what a hub on a router does not need: its embedded broker
// keeps its lists itself. A config file's keeper: true is refused at start.

func addKeeperCmd(*cobra.Command) {}

func keeperFlag(*pflag.FlagSet) {}

func (c config) keeperBeside(string, *slog.Logger) (func(context.Context) error, func(), error) {
	return nil, nil, errors.New("keeper: not in this router build")
}
