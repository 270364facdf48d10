//go:build vallum_lean

package main

import (
	"context"
	"log/slog"

	"golang.org/x/sync/errgroup"

	"github.com/vallum/vallum/bridge"
	"github.com/vallum/vallum/bridge/nft"
)

// killBuilt is false in builds with -tags vallum_lean (the OpenWrt SDK
// package on MIPS, which cannot trim modules as contrib/build-static.sh
// does): cutting connections (internal/enforce and its netlink clients,
// about 45 KB) does not fit there under the 10 MB goal. bridgeOptions warns
// and runs without.
const killBuilt = false

func (c config) dropTo(*nft.Backend, []bridge.List) {}

func (c config) killConnections(context.Context, *errgroup.Group, *bridge.Options, *slog.Logger) error {
	return nil
}
