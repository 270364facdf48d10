//go:build linux

package nft

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vallum/vallum/bridge"
)

var _ bridge.Prober = (*Backend)(nil)

// Has reports whether the set holds the address p, with one
// NFT_MSG_GETSETELEM for that key: a lookup in the kernel, not a dump
// (which grows with the square of a hash set's size, see info). The
// bridge asks it every second to notice a set emptied by a reload.
func (b *Backend) Has(ctx context.Context, set string, p netip.Prefix) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	t, err := b.resolve(set)
	if err != nil {
		return false, err
	}
	if !p.IsSingleIP() {
		return false, fmt.Errorf("nft lookup of %s: only addresses: %w", p, errors.ErrUnsupported)
	}
	s, err := t.check(bridge.Op{Prefix: p})
	if err != nil {
		return false, nil // the other family: not in this set
	}
	m := message{kind: unix.NFT_MSG_GETSETELEM, set: s, elems: []elem{{key: p.Addr().AsSlice(), timeout: -1}}}
	nm, err := m.encode(b.nextSeq(1))
	if err != nil {
		return false, err
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(5 * time.Second)
	}
	if err := b.raw.SetReadDeadline(deadline); err != nil {
		return false, err
	}
	// No ack asked: the kernel answers with the element, or an error.
	_, err = b.raw.Execute(nm)
	if errors.Is(err, unix.ENOENT) {
		// The element is absent (or, in a race with a reload, its set).
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("nft lookup in %q: %w", s.Name, err)
	}
	return true, nil
}
