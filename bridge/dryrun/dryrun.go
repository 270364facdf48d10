// Package dryrun is a bridge.Backend that logs every op instead of
// applying it: to see what vallum would do on a host before it may touch
// the firewall (cs-firewall-bouncer's dry-run mode).
package dryrun

import (
	"context"
	"log/slog"

	"github.com/vallum/vallum/bridge"
)

// Backend logs what it is asked and holds nothing.
type Backend struct{ log *slog.Logger }

// New returns a Backend that logs to log.
func New(log *slog.Logger) *Backend { return &Backend{log: log} }

// Ensure logs the set and says it exists, with comments, as asked.
func (d *Backend) Ensure(_ context.Context, s bridge.SetSpec) (bridge.SetInfo, error) {
	d.log.Info("dryrun: ensure set", "set", s.Name, "family", s.Family.String(), "create", s.Create)
	return bridge.SetInfo{Name: s.Name, Family: s.Family, Type: "dryrun", Comments: true}, nil
}

// Apply logs one line per op.
func (d *Backend) Apply(_ context.Context, set string, ops []bridge.Op) error {
	for _, op := range ops {
		d.log.Info("dryrun", "set", set, "op", op.Action.String(), "prefix", op.Prefix, "timeout", int64(op.Timeout))
	}
	return nil
}

// List returns no entries: nothing was applied.
func (d *Backend) List(context.Context, string) ([]bridge.Entry, error) { return nil, nil }

// Info names the set, empty.
func (d *Backend) Info(_ context.Context, set string) (bridge.SetInfo, error) {
	return bridge.SetInfo{Name: set, Type: "dryrun"}, nil
}

// Close does nothing.
func (d *Backend) Close() error { return nil }
