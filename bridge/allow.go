package bridge

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"strings"
	"sync"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/vallum/vallum/internal/datadir"
	"github.com/vallum/vallum/internal/guard"
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
// on the wire before the first event or state can be. (mochi 2.7.9 makes
// every subscription of a SUBSCRIBE, sends the SUBACK, then the retained
// messages filter by filter in the order of the packet; but paho builds
// the packet from a map, in random order, and a live event may come on a
// filter made before the allowlist's: one SUBSCRIBE of its own is what
// orders them. TestAllowLateJoinerBeforeAnyBan fails with one.) The
// messages of one connection are decoded in order, so the guard holds the
// allowlist when the first ban is checked.
//
// What the broker holds is the allowlist: an entry deleted while the host
// was away is dropped at the next sync. A sync's read runs from its
// allowlist SUBSCRIBE to marker A; the entries it did not see are dropped
// when the sync ends (marker B), unless the sync found a list lost (see
// dropAllow). (A session's queue redelivered out of order by mochi could
// bring back an entry deleted a moment after it was added, until the next
// sync: 15 s later at most, see ConfirmSync.)

// allowlist is what the bridge knows of the shared allowlist. The decoder
// changes it; a sync starts its read, and the worker ends it, behind mu.
type allowlist struct {
	mu      sync.Mutex
	entries map[netip.Prefix]uint32 // each with the last read that saw it, or the last read before it came
	reads   uint32                  // reads started so far
	open    bool                    // a read is open
	read    bool                    // a read ended, and its sync not yet (drop)
	dirty   bool                    // changed during the read: saved when it ends
}

// reading starts a read of the allowlist (on), or abandons one that
// cannot be complete (the broker refused it).
func (l *allowlist) reading(on bool) {
	l.mu.Lock()
	if on {
		l.reads++
	}
	l.open, l.read = on, false
	l.mu.Unlock()
}

// set records one entry (in) or its deletion, and reports whether the
// bridge knew the entry before.
func (l *allowlist) set(p netip.Prefix, in bool) (known bool) {
	l.mu.Lock() // no defer here and below: each costs the router builds
	if l.entries == nil {
		l.entries = map[netip.Prefix]uint32{}
	}
	_, known = l.entries[p]
	if in {
		l.entries[p] = l.reads
	} else {
		delete(l.entries, p)
	}
	l.mu.Unlock()
	return known
}

// settle closes a read (marker A came back): the entries it did not see
// are gone from the broker, to be dropped when the sync ends (drop). It
// reports whether the allowlist changed during the read.
func (l *allowlist) settle() (changed bool) {
	l.mu.Lock()
	changed = l.open && l.dirty
	l.read = l.read || l.open
	l.open, l.dirty = false, false
	l.mu.Unlock()
	return changed
}

// drop drops the entries the last read did not see and that did not come
// since, unless keep: then it returns how many it keeps.
func (l *allowlist) drop(keep bool) (dropped []netip.Prefix, kept int) {
	l.mu.Lock()
	for p, r := range l.entries {
		switch {
		case !l.read || r == l.reads:
		case keep:
			kept++
		default:
			delete(l.entries, p)
			dropped = append(dropped, p)
		}
	}
	l.read = false
	l.mu.Unlock()
	return dropped, kept
}

// share gives g the entries and, unless a read is open (then it is done
// when the read ends), saves them in file. All under the lock: the
// decoder and the worker both change the allowlist, and the guard and the
// file must end with the latest.
func (l *allowlist) share(g *guard.Guard, file string) (err error) {
	l.mu.Lock()
	ps := make([]netip.Prefix, 0, len(l.entries))
	for p := range l.entries {
		ps = append(ps, p)
	}
	g.SetShared(ps)
	l.dirty = l.dirty || l.open
	if !l.open && file != "" && allowFull {
		var b []byte
		for _, p := range ps {
			b = append(append(b, wire.FormatPrefix(p)...), '\n')
		}
		err = datadir.WriteAtomic(file, b, 0o640)
	}
	l.mu.Unlock()
	return err
}

// allowMessage takes one message of the allowlist, on the message
// goroutine: the guard has the entry before the next message is decoded.
func (d *decoder) allowMessage(topic string, payload []byte) item {
	p, err := wire.ParseAllowTopic(topic)
	in := len(payload) > 0 // else a deletion
	var a wire.Allow
	if err == nil && in && allowFull {
		a, err = wire.DecodeAllow(payload)
	}
	if err != nil {
		d.refuse.refuse("bad_allow", topic, "topic", wire.Clip(topic), "err", err)
		return item{}
	}
	if d.allow.set(p, in) == in {
		return item{} // read again at a sync (its bans were lifted when it came), or gone already
	}
	d.allowChanged()
	if !in {
		d.log.Info("shared allowlist: entry deleted", "prefix", p)
		return item{}
	}
	if allowFull {
		d.log.Info("shared allowlist: entry added", "prefix", p, "comment", a.Comment, "origin", a.Origin)
	} else {
		d.log.Info("shared allowlist: entry added", "prefix", p)
	}
	return item{lift: &p} // the worker lifts the bans it covers
}

// allowSettle closes the sync's read of the allowlist when marker A came
// back (the sync's window just opened).
func (d *decoder) allowSettle() {
	if d.sync.justOpened() && d.allow.settle() {
		d.allowChanged()
	}
}

// dropAllow ends a sync, on the worker: the entries its read did not see
// are no longer on the broker, and are dropped. But a broker that lost
// the list (lost) lost the allowlist with it, and a lost allowlist is no
// more a deletion of every entry than a lost list is an unban of every
// ban: the entries are kept until a sync finds the list again.
func (s *shared) dropAllow(lost bool) {
	dropped, kept := s.allow.drop(lost)
	if kept > 0 {
		s.log.Warn("a list was found lost: keeping the shared allowlist entries it no longer holds", "entries", kept)
	}
	for _, p := range dropped {
		s.log.Info("shared allowlist: entry gone from the broker", "prefix", p)
	}
	if len(dropped) > 0 {
		s.allowChanged()
	}
}

// allowChanged gives the guard the allowlist as it now is, and saves it in
// Options.AllowFile: at once, or at the end of a read (once for a late
// join, not once per entry).
func (s *shared) allowChanged() {
	if err := s.allow.share(s.opts.Guard, s.opts.AllowFile); err != nil && allowFull {
		s.log.Error("cannot save the shared allowlist: after a restart, the bans it covers may apply until the first sync", "err", err)
	}
}

// loadAllow reads the allowlist Options.AllowFile kept: a host that
// restarts refuses the bans it covers at once, even those its session
// redelivers before the first sync (which reads the allowlist again and
// drops the entries the broker no longer holds). The bans of these
// entries were lifted when they came.
func (d *decoder) loadAllow() {
	if d.opts.AllowFile == "" || !allowFull {
		return
	}
	b, err := os.ReadFile(d.opts.AllowFile)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		d.log.Error("cannot read the shared allowlist kept from the last run: it is read from the broker at the first sync", "err", err)
	}
	for _, line := range strings.Fields(string(b)) { // written by allowChanged: one prefix a line
		if p, err := wire.ParsePrefix(line); err == nil {
			d.allow.set(p, true)
		}
	}
	d.allow.share(d.opts.Guard, "") // as read: nothing to save
}

// subscribeAllow reads the allowlist before the rest of a sync (see the
// top of this file). A broker that refuses it (an ACL that predates it)
// leaves the allowlist as the bridge knew it: the sync goes on. It
// returns false when the sync cannot go on.
func (b *Bridge) subscribeAllow(c mqtt.Client, abandon chan struct{}) bool {
	b.dec.allow.reading(true)
	refused, ok := b.subscribe(c, map[string]byte{wire.AllowFilter: 1}, map[string]string{wire.AllowFilter: ""}, abandon)
	if len(refused) > 0 || !ok {
		b.dec.allow.reading(false)
	}
	if len(refused) > 0 {
		b.log.Warn("the broker refused this host the shared allowlist, vallum/allow/#: not followed", "broker", b.brokerName())
	}
	return ok
}

// lift removes from the kernel sets the bans of vallum's that a new allow
// entry covers, or (own) that cover an address this host just got
// (self.go), each of those counted as a refused ban. Entries made by hand
// are never vallum's to remove. It runs on the worker, after every op
// queued before the entry came.
func (a *applier) lift(ctx context.Context, allow netip.Prefix, own bool) {
	if !allowFull && !own {
		return
	}
	for _, l := range a.opts.Lists {
		set := l.setFor(allow) // lists that share a set find nothing left the second time
		covered, ok := a.own.overlapping(set, allow)
		if !ok && !own {
			a.log.Warn("set has no comment support: vallum cannot tell its own entries and lifts none", "set", set, "allow", allow)
		}
		if len(covered) == 0 {
			continue
		}
		ops := make([]Op, len(covered))
		for i, p := range covered {
			ops[i] = Op{Action: Del, Prefix: p, Timeout: wire.DefaultTimeout}
		}
		a.applySet(ctx, set, ops)
		why := "ban lifted: the shared allowlist covers it"
		if own {
			why = "ban lifted: it covers an address this host now has"
			a.stats.inc(&a.stats.refused, "allowlisted", int64(len(covered)))
		}
		for _, p := range covered[:min(len(covered), maxLiftLogs)] {
			a.log.Warn(why, "set", set, "prefix", p, "allow", allow, "lifted", len(covered))
		}
	}
}

// maxLiftLogs bounds the lines one allow entry logs per set: a /16 may
// lift thousands of bans (each line says how many in all).
const maxLiftLogs = 20

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
	for a := range o.v4 { // a scan: an allow entry is a rare event
		if addr := netip.AddrFrom4(a); p.Contains(addr) {
			out = append(out, netip.PrefixFrom(addr, 32))
		}
	}
	for q := range o.other {
		if q.Overlaps(p) {
			out = append(out, q)
		}
	}
	return out, true
}
