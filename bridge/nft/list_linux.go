//go:build linux

package nft

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"time"

	"github.com/google/nftables"

	"github.com/vallum/vallum/bridge"
	"github.com/vallum/vallum/internal/wire"
)

// List returns the entries of the set and its companion.
func (b *Backend) List(ctx context.Context, set string) ([]bridge.Entry, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	t, err := b.resolve(set)
	if err != nil {
		return nil, err
	}
	var all []bridge.Entry
	for _, s := range []*nftables.Set{t.addr, t.net} {
		if s == nil {
			continue
		}
		e, err := b.entries(s)
		if err != nil {
			return nil, err
		}
		all = append(all, e...)
	}
	return all, nil
}

// entries dumps one set. An interval set dumps each range as a start
// element and an end element (flag INTERVAL_END, key one past the range),
// or, with the pipapo backend, as one element with KeyEnd (inclusive).
func (b *Backend) entries(s *nftables.Set) ([]bridge.Entry, error) {
	elems, err := b.conn.GetSetElements(s)
	if err != nil {
		return nil, fmt.Errorf("nft list set %q: %w", s.Name, err)
	}
	var out []bridge.Entry
	var ends []netip.Addr
	for _, e := range elems {
		if a, ok := netip.AddrFromSlice(e.Key); ok && e.IntervalEnd {
			ends = append(ends, a)
		}
	}
	sort.Slice(ends, func(i, j int) bool { return ends[i].Less(ends[j]) })
	for _, e := range elems {
		start, ok := netip.AddrFromSlice(e.Key)
		if !ok || e.IntervalEnd {
			continue
		}
		last := start
		if end, ok := netip.AddrFromSlice(e.KeyEnd); ok {
			last = end
		} else if s.Interval {
			last = lastBefore(start, ends)
		}
		for _, p := range rangePrefixes(start, last) {
			out = append(out, bridge.Entry{Prefix: p, Timeout: remaining(e.Expires), Comment: e.Comment})
		}
	}
	return out, nil
}

// remaining turns the kernel's milliseconds left into whole seconds,
// rounded up so that an entry about to expire still reads as timed.
func remaining(d time.Duration) wire.Timeout {
	if d <= 0 {
		return 0
	}
	return wire.Timeout((d + time.Second - 1) / time.Second)
}

// lastBefore returns the address before the first end above start, or the
// family's last address when the range runs to the top (nft sends no end).
func lastBefore(start netip.Addr, ends []netip.Addr) netip.Addr {
	i := sort.Search(len(ends), func(i int) bool { return start.Less(ends[i]) })
	if i == len(ends) {
		return lastAddr(start)
	}
	return ends[i].Prev()
}
