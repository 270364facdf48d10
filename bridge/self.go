package bridge

import (
	"context"
	"net/netip"

	"github.com/vallum/vallum/internal/wire"
)

// The guard learns this host's own addresses from a netlink watch
// (guard.Watch), a moment after they appear. A ban that came in that
// moment, or long before, may be in the kernel set when an address it
// covers becomes the host's own: the host would then ban itself for as
// long as the ban lasts. So when the guard gains an address, the worker
// lifts the entries of vallum's that cover it (liftOwn), and a batch
// whose bans were checked before the guard last changed is checked again
// before it reaches the kernel (recheck): the lift runs after every item
// queued before it, and every item after it is checked again.

// watchOwn has the guard tell the worker of every address it gains, and
// lifts the bans that cover the addresses it knows already (vallum may
// have been stopped when the host got them). Until ctx is done.
func (b *Bridge) watchOwn(ctx context.Context) {
	g := b.opts.Guard
	g.OnNew(func(added []netip.Prefix) { b.app.enqueue(item{own: added}) })
	context.AfterFunc(ctx, func() { g.OnNew(nil) })
	if own := g.Dynamic(); len(own) > 0 {
		b.app.enqueue(item{own: own})
	}
}

// liftOwn removes from the kernel sets the entries of vallum's that cover
// one of own (entries made by hand are never vallum's to remove), each
// logged and counted as a refused ban.
func (a *applier) liftOwn(ctx context.Context, own []netip.Prefix) {
	for _, l := range a.opts.Lists {
		for _, addr := range own {
			set := l.setFor(addr)
			covered := a.own.covering(set, addr.Addr())
			if len(covered) == 0 {
				continue
			}
			ops := make([]Op, len(covered))
			for i, p := range covered {
				ops[i] = Op{Action: Del, Prefix: p, Timeout: wire.DefaultTimeout}
				a.refuse.refuse("allowlisted", p.String()+" own", "topic", l.Root, "prefix", p,
					"err", "covers an address this host now has: ban lifted", "address", addr.Addr())
			}
			a.applySet(ctx, set, ops)
		}
	}
}

// covering returns the entries of set that vallum owns and that hold
// addr: a lookup and a scan of the prefixes, not of every address.
func (w *ownership) covering(set string, addr netip.Addr) []netip.Prefix {
	w.mu.Lock()
	defer w.mu.Unlock()
	o := w.sets[set]
	if o == nil {
		return nil
	}
	var out []netip.Prefix
	if addr.Is4() {
		if _, ok := o.v4[addr.As4()]; ok {
			out = append(out, netip.PrefixFrom(addr, 32))
		}
	}
	for p := range o.other {
		if p.Contains(addr) {
			out = append(out, p)
		}
	}
	return out
}

// recheck runs the adds of ops through the guard again (see above): those
// it now refuses are dropped, refused and counted.
func (a *applier) recheck(ops []setOp) []setOp {
	out := ops[:0]
	for _, so := range ops {
		if so.op.Action != Add || a.allowed(a.rootOf(so.set), so.op.Prefix) {
			out = append(out, so)
		}
	}
	return out
}

// rootOf names the list whose set is set, for the log.
func (a *applier) rootOf(set string) string {
	for _, l := range a.opts.Lists {
		if l.Set4 == set || l.Set6 == set {
			return l.Root
		}
	}
	return set
}
