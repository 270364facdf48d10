package main

import (
	"context"
	"errors"
	"net/netip"

	"github.com/vallum/vallum/bridge"
)

// Has passes the bridge's witness lookups (bridge.Prober: a set emptied by
// a firewall reload is noticed by one entry gone) to backends that have
// them; the others answer ErrUnsupported, and the bridge skips the check.
func (l *lockedBackend) Has(ctx context.Context, set string, p netip.Prefix) (bool, error) {
	pr, ok := l.be.(bridge.Prober)
	if !ok {
		return false, errors.ErrUnsupported
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return pr.Has(ctx, set, p)
}

var _ bridge.Prober = (*lockedBackend)(nil)
