package main

import (
	"fmt"
	"log/slog"

	"github.com/vallum/vallum/bridge"
	"github.com/vallum/vallum/internal/backends"
)

// backend is a bridge.Backend that the daemon can close.
type backend = bridge.Backend

func newBackend(c config, log *slog.Logger) (backend, error) {
	if !backends.Known(c.Backend) {
		return nil, fmt.Errorf("--backend %q: choose one of %s", c.Backend, backends.Names())
	}
	o := backends.Options{NftTable: c.NftTable, Logger: log}
	if c.Backend == "auto" { // only auto looks at the lists
		lists, err := c.lists()
		if err != nil {
			return nil, fmt.Errorf("%s backend: %w", c.Backend, err)
		}
		o.Lists = lists
	}
	be, err := backends.Open(c.Backend, o)
	if err != nil {
		return nil, fmt.Errorf("%s backend: %w", c.Backend, err)
	}
	return be, nil
}
