package main

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/vallum/vallum/bridge/ipset"
	"github.com/vallum/vallum/internal/lab"
)

// watcher reads a host's ipset headers over netlink from the benchmark
// process: a header dump costs tens of microseconds, whatever the set's
// size, so it can be polled often without disturbing what it measures.
type watcher struct {
	be *ipset.Backend
}

func newWatcher(h *lab.Host) (*watcher, error) {
	ns, err := h.NetNS()
	if err != nil {
		return nil, err
	}
	defer ns.Close() // the backend's socket keeps the namespace
	be, err := ipset.New(ipset.Options{NetNS: int(ns)})
	if err != nil {
		return nil, fmt.Errorf("ipset in %s: %w", h.Name, err)
	}
	return &watcher{be: be}, nil
}

func (w *watcher) close() { w.be.Close() }

// size is the number of entries in set, or -1 when it cannot be read (for
// example before the daemon has created it).
func (w *watcher) size(set string) int {
	info, err := w.be.Info(context.Background(), set)
	if err != nil {
		return -1
	}
	return info.Size
}

// waitSize polls until set holds at least want entries and returns when it
// first did, or the size it had at the deadline. The kernel counts a hash
// set's live entries one by one for every header (about 10 ms for
// 1,000,000 here), so the pause between polls grows with that cost to keep
// the watcher from taking the CPU it measures.
func (w *watcher) waitSize(set string, want int, deadline time.Time, every time.Duration) (time.Time, int, error) {
	for {
		start := time.Now()
		n := w.size(set)
		now := time.Now()
		if n >= want {
			return now, n, nil
		}
		if now.After(deadline) {
			return now, n, fmt.Errorf("set %s holds %d entries at the deadline, want %d", set, n, want)
		}
		time.Sleep(max(every, 4*now.Sub(start)))
	}
}

// waitFor polls until set holds last, at the cost of one hash lookup in
// the kernel each time (where a size read walks the whole set, and would
// take the CPU it measures), then reads the size once. Bans are applied in
// order, so the last one in means all are in; the size confirms it, and
// if it does not, waitSize goes on until want or the deadline.
func (w *watcher) waitFor(set string, last netip.Addr, want int, deadline time.Time, every time.Duration) (time.Time, int, error) {
	p := netip.PrefixFrom(last, last.BitLen())
	for {
		in, err := w.be.Has(context.Background(), set, p)
		now := time.Now()
		if err == nil && in {
			if n := w.size(set); n >= want {
				return now, n, nil
			}
			return w.waitSize(set, want, deadline, every)
		}
		if now.After(deadline) {
			n := w.size(set)
			return now, n, fmt.Errorf("set %s holds %d entries at the deadline, want %d", set, n, want)
		}
		time.Sleep(every)
	}
}
