// Package enforce cuts the open connections of banned addresses: once a
// batch of bans is in the kernel sets, it closes the local TCP sockets of
// those addresses (internal/sockdiag, what `ss -K` does) and deletes their
// connection-tracking entries (internal/conntrack), each in one walk for
// all the addresses that came since the last walk.
package enforce

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"time"
)

// DefaultMaxPending bounds the prefixes waiting for a walk: a late join of
// a whole list queues every ban, and the connections of those beyond the
// bound are left (they were cut when the bans first came, if vallum ran).
const DefaultMaxPending = 100000

// Options configure a Killer.
type Options struct {
	NetNS      int          // fd of the network namespace to act in; <= 0: the current one
	MaxPending int          // default DefaultMaxPending
	Logger     *slog.Logger // nil: discard
}

// walker is a table walk that removes what match accepts: a sockdiag or a
// conntrack connection.
type walker interface {
	walk(match func(netip.Addr) bool) (int, error)
	Close() error
}

// Killer cuts connections in its own goroutine (Run), so that the bridge
// hands it bans without waiting for a walk. Its methods are safe for
// concurrent use.
type Killer struct {
	log  *slog.Logger
	max  int
	dial func(kind string) (walker, error) // kind: "sockets" or "conntrack"

	mu      sync.Mutex
	pending []netip.Prefix
	skipped int // bans beyond max since the last walk
	poke    chan struct{}
	// Owned by Run.
	socks, ct walker            // nil: not open
	failed    map[string]string // the last error of each kind, until a walk succeeds
}

// Ban queues ps for the next walk and returns at once; it never blocks the
// caller (the bridge's apply worker).
func (k *Killer) Ban(ps []netip.Prefix) {
	k.mu.Lock()
	room := max(k.max-len(k.pending), 0)
	k.pending = append(k.pending, ps[:min(room, len(ps))]...)
	k.skipped += len(ps) - min(room, len(ps))
	k.mu.Unlock()
	select {
	case k.poke <- struct{}{}:
	default: // a walk is due already; it takes these too
	}
}

// Run walks whenever bans are queued, until ctx is done, then closes its
// sockets. It returns nil on a clean stop.
func (k *Killer) Run(ctx context.Context) error {
	defer k.close()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-k.poke:
		}
		k.mu.Lock()
		ps, skipped := k.pending, k.skipped
		k.pending, k.skipped = nil, 0
		k.mu.Unlock()
		if skipped > 0 {
			k.log.Warn("too many bans at once to cut all their connections: some are left open", "skipped", skipped, "max", k.max)
		}
		if len(ps) > 0 {
			k.cut(ps)
		}
	}
}

// cut closes the sockets and deletes the conntrack entries of ps now, in
// one walk of each table, and logs what it did. Sockets go first: the
// reset the kernel sends then still belongs to the tracked connection.
func (k *Killer) cut(ps []netip.Prefix) {
	start := time.Now()
	set := newPrefixSet(ps)
	socks := k.walk(&k.socks, "sockets", set.contains)
	ct := k.walk(&k.ct, "conntrack", set.contains)
	level := slog.LevelDebug // a walk per batch: bans at a high rate would flood the log
	if socks+ct > 0 {
		level = slog.LevelInfo
	}
	k.log.Log(context.Background(), level, "cut connections of banned addresses", "prefixes", len(ps),
		"sockets", socks, "conntrack", ct, "took", time.Since(start).Round(time.Microsecond))
}

// walk runs one walk on *w, opening it first when needed. After an error
// the connection is closed, and opened anew for the next walk; an error is
// logged when it differs from the last one of its kind, so that a kernel
// that keeps refusing does not fill the log. A kernel that cannot close
// sockets is told once and not asked again.
func (k *Killer) walk(w *walker, kind string, match func(netip.Addr) bool) int {
	var n int
	var err error
	if *w == nil {
		*w, err = k.dial(kind)
	}
	if err == nil {
		n, err = (*w).walk(match)
	}
	if err == nil {
		delete(k.failed, kind)
		return n
	}
	if *w != nil {
		(*w).Close()
		*w = nil
	}
	if errors.Is(err, errUnsupported) {
		k.log.Warn("local TCP connections of banned addresses are not closed: "+err.Error(), "kind", kind)
		*w = nop{}
	} else if k.failed[kind] != err.Error() {
		k.failed[kind] = err.Error()
		k.log.Error("cutting connections failed (logged again when the error changes)", "kind", kind, "err", err)
	}
	return n
}

func (k *Killer) close() {
	for _, w := range []walker{k.socks, k.ct} {
		if w != nil {
			w.Close()
		}
	}
}

// nop stands for a walk the kernel cannot do.
type nop struct{}

func (nop) walk(func(netip.Addr) bool) (int, error) { return 0, nil }
func (nop) Close() error                            { return nil }

func newKiller(o Options, dial func(kind string) (walker, error)) *Killer {
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.MaxPending <= 0 {
		o.MaxPending = DefaultMaxPending
	}
	return &Killer{log: o.Logger, max: o.MaxPending, dial: dial, poke: make(chan struct{}, 1), failed: map[string]string{}}
}
