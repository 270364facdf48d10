package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"

	"golang.org/x/sync/errgroup"

	"github.com/vallum/vallum/bridge"
	"github.com/vallum/vallum/internal/enforce"
)

// killLists checks that --kill-connections names lists of -t.
func killLists(kill []string, lists []bridge.List) error {
	var errs []error
	for _, k := range kill {
		if !slices.ContainsFunc(lists, func(l bridge.List) bool { return l.Root == k }) {
			errs = append(errs, fmt.Errorf("--kill-connections %q: no such list: name a list topic's ROOT as given to -t", k))
		}
	}
	return errors.Join(errs...)
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
