package bridge

import (
	"context"
	"net/netip"
	"sort"
	"strings"
	"sync"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/vallum/vallum/internal/wire"
)

// The fleet's shared allowlist is kept on the broker by an admin, one
// retained message per prefix under wire.AllowPrefix (`vallum allow add`).
// The bridge adds its entries to the guard beside --allow, so that no ban
// they cover is applied from then on, and lifts the bans it had applied
// that a new entry covers.
//
// A late joiner must know the allowlist before any ban comes: the sync
// subscribes to it in a SUBSCRIBE of its own, before the events' and the
// state's. A broker handles one client's packets in order and sends the
// retained messages of a subscription as it makes it, so every entry is
// on the wire before the first event or state can be (mochi sends the
// retained messages of one SUBSCRIBE filter by filter in the order of the
// packet, but paho builds the packet from a map, in random order: one
// SUBSCRIBE per step is what orders them). The messages of one connection
// are decoded in order, so the guard holds the allowlist when the first
// ban is checked.
//
// What the broker holds is the allowlist: an entry deleted while the host
// was away is dropped at the next sync. The window of a sync's read runs
// from its allowlist SUBSCRIBE to marker A; at A, the entries the window
// did not hold are dropped. (A session's queue redelivered out of order by
// mochi could bring back an entry deleted a moment after it was added,
// until the next sync: 15 s later at most, see ConfirmSync.)

// allowlist is what the bridge knows of the shared allowlist. The decoder
// owns it; a sync opens its window from another goroutine, behind mu.
type allowlist struct {
	mu      sync.Mutex
	entries map[netip.Prefix]wire.Allow
	window  map[netip.Prefix]wire.Allow // the entries read since the sync subscribed; nil: no read
}

// allowEntry is an allow entry new to the bridge: the worker lifts the
// bans it covers.
type allowEntry struct {
	prefix  netip.Prefix
	comment string
}

// open starts a read of the allowlist.
func (l *allowlist) open() {
	l.mu.Lock()
	l.window = map[netip.Prefix]wire.Allow{}
	l.mu.Unlock()
}

// abandon ends a read that cannot be complete (the broker refused it).
func (l *allowlist) abandon() {
	l.mu.Lock()
	l.window = nil
	l.mu.Unlock()
}

// set records one entry, or its deletion, and reports whether the bridge
// knew the entry before.
func (l *allowlist) set(p netip.Prefix, a wire.Allow, del bool) (known bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.entries == nil {
		l.entries = map[netip.Prefix]wire.Allow{}
	}
	_, known = l.entries[p]
	if del {
		delete(l.entries, p)
		if l.window != nil {
			delete(l.window, p)
		}
		return known
	}
	l.entries[p] = a
	if l.window != nil {
		l.window[p] = a
	}
	return known
}

// settle ends a read: the entries it did not hold are gone from the
// broker. It returns them, and nil when no read was open.
func (l *allowlist) settle() (gone []netip.Prefix) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.window == nil {
		return nil
	}
	for p := range l.entries {
		if _, ok := l.window[p]; !ok {
			gone = append(gone, p)
			delete(l.entries, p)
		}
	}
	l.window = nil
	return gone
}

// prefixes returns the entries, in order.
func (l *allowlist) prefixes() []netip.Prefix {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]netip.Prefix, 0, len(l.entries))
	for p := range l.entries {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// allowMessage takes one message of the allowlist, on the message
// goroutine: the guard has the entry before the next message is decoded.
func (d *decoder) allowMessage(topic string, payload []byte) item {
	p, err := wire.ParseAllowTopic(topic)
	if err != nil {
		d.refuse.refuse("bad_allow", topic, "topic", wire.Clip(topic), "err", err)
		return item{}
	}
	if len(payload) == 0 {
		if d.allow.set(p, wire.Allow{}, true) {
			d.allowChanged()
			d.log.Info("shared allowlist: entry deleted", "prefix", p)
		}
		return item{}
	}
	a, err := wire.DecodeAllow(payload)
	if err != nil {
		d.refuse.refuse("bad_allow", topic, "topic", wire.Clip(topic), "err", err)
		return item{}
	}
	if d.allow.set(p, a, false) {
		return item{} // read again at a sync: its bans were lifted when it came
	}
	d.allowChanged()
	d.log.Info("shared allowlist: entry added", "prefix", p, "comment", a.Comment, "origin", a.Origin)
	return item{lift: &allowEntry{prefix: p, comment: a.Comment}}
}

// allowSettle ends the sync's read of the allowlist when marker A came
// back (the sync's window just opened).
func (d *decoder) allowSettle() {
	if !d.sync.justOpened() {
		return
	}
	gone := d.allow.settle()
	for _, p := range gone {
		d.log.Info("shared allowlist: entry no longer on the broker, dropped", "prefix", p)
	}
	if len(gone) > 0 {
		d.allowChanged()
	}
}

// allowChanged gives the guard the allowlist as it now is.
func (d *decoder) allowChanged() {
	d.opts.Guard.SetShared(d.allow.prefixes())
}

// subscribeAllow reads the allowlist before the rest of a sync (see the
// top of this file). A broker that refuses it (an ACL that predates it)
// leaves the allowlist as the bridge knew it: the sync goes on. It
// returns false when the sync cannot go on.
func (b *Bridge) subscribeAllow(c mqtt.Client, abandon chan struct{}) bool {
	b.dec.allow.open()
	refused, ok := b.subscribe(c, map[string]byte{wire.AllowFilter: 1}, map[string]string{wire.AllowFilter: ""}, abandon)
	if len(refused) > 0 || !ok {
		b.dec.allow.abandon()
	}
	if len(refused) > 0 {
		b.log.Warn("the broker refused the subscription to the shared allowlist: this host does not follow it; let hosts read "+wire.AllowFilter,
			"broker", b.brokerName())
	}
	return ok
}

// lift removes from the kernel sets the bans of vallum's that a new allow
// entry covers (entries made by hand are never vallum's to remove). It
// runs on the worker, after every op queued before the entry came.
func (a *applier) lift(ctx context.Context, e allowEntry) {
	seen := map[string]bool{}
	for _, l := range a.opts.Lists {
		set := l.setFor(e.prefix)
		if seen[set] {
			continue
		}
		seen[set] = true
		covered := a.covered(ctx, set, e.prefix)
		if len(covered) == 0 {
			continue
		}
		ops := make([]Op, len(covered))
		for i, p := range covered {
			ops[i] = Op{Action: Del, Prefix: p, Timeout: wire.DefaultTimeout}
		}
		a.applySet(ctx, set, ops)
		for i, p := range covered {
			if i == maxLiftLogs {
				a.log.Warn("bans lifted: the shared allowlist covers them (not all logged)", "set", set, "count", len(covered), "allow", e.prefix, "comment", e.comment)
				break
			}
			a.log.Warn("ban lifted: the shared allowlist covers it", "set", set, "prefix", p, "allow", e.prefix, "comment", e.comment)
		}
	}
}

// maxLiftLogs bounds the lines one allow entry logs: a /16 may lift
// thousands of bans.
const maxLiftLogs = 20

// covered returns the entries of set that vallum owns and p overlaps. A
// set without comments (vallum cannot tell its entries) is listed, and all
// its entries p overlaps are returned, as an unban would remove them.
func (a *applier) covered(ctx context.Context, set string, p netip.Prefix) []netip.Prefix {
	if out, ok := a.own.overlapping(set, p); ok {
		return out
	}
	entries, err := a.be.List(ctx, set)
	if err != nil {
		a.log.Error("shared allowlist: cannot list set to lift the bans it covers", "set", set, "allow", p, "err", err)
		return nil
	}
	var out []netip.Prefix
	for _, e := range entries {
		if e.Prefix.Overlaps(p) {
			out = append(out, e.Prefix)
		}
	}
	return out
}

// overlapping returns the entries of set that vallum owns and p overlaps;
// false when the set was never loaded (it has no comments).
func (w *ownership) overlapping(set string, p netip.Prefix) ([]netip.Prefix, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	o := w.sets[set]
	if o == nil {
		return nil, false
	}
	var out []netip.Prefix
	switch {
	case p.Addr().Is4() && p.Bits() == 32:
		if _, ok := o.v4[p.Addr().As4()]; ok {
			out = append(out, p)
		}
	case p.Addr().Is4():
		for a := range o.v4 {
			if addr := netip.AddrFrom4(a); p.Contains(addr) {
				out = append(out, netip.PrefixFrom(addr, 32))
			}
		}
	}
	for q := range o.other {
		if q.Overlaps(p) {
			out = append(out, q)
		}
	}
	return out, true
}

// isAllowTopic reports whether topic is one of the allowlist's.
func isAllowTopic(topic string) bool { return strings.HasPrefix(topic, wire.AllowPrefix) }
