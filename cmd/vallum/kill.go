//go:build !vallum_lean

package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"

	"golang.org/x/sync/errgroup"

	"github.com/vallum/vallum/bridge"
	"github.com/vallum/vallum/bridge/nft"
	"github.com/vallum/vallum/internal/enforce"
)

// killBuilt says whether this build can cut connections.
const killBuilt = true

// dropTo has nb's forward rules drop packets to the members of the lists
// whose connections are cut too: for a router's routed flows, see DropTo.
func (c config) dropTo(nb *nft.Backend, lists []bridge.List) {
	for _, l := range lists {
		if slices.Contains(c.KillConnections, l.Root) {
			nb.DropTo(l.Set4, l.Set6)
		}
	}
}

// killConnections starts what cuts the connections of new bans when
// --kill-connections asks for it, and hands it to the bridge.
func (c config) killConnections(ctx context.Context, g *errgroup.Group, bo *bridge.Options, log *slog.Logger) error {
	if len(c.KillConnections) == 0 {
		return nil
	}
	log = log.With("component", "enforce")
	if c.Backend == "dryrun" {
		bo.Banned = func(ps []netip.Prefix) {
			log.Info("dryrun: would cut the connections of banned addresses", "prefixes", len(ps))
		}
		return nil
	}
	k, err := enforce.New(enforce.Options{Logger: log})
	if err != nil {
		return fmt.Errorf("--kill-connections: %w", err)
	}
	bo.Banned = k.Ban
	g.Go(func() error { return k.Run(ctx) })
	log.Info("cutting the connections of new bans", "lists", c.KillConnections)
	return nil
}
