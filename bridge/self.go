package bridge

import (
	"context"
	"net/netip"
)

// The guard learns this host's own addresses from a netlink watch
// (guard.Watch), a moment after they appear. A ban that came in that
// moment, or long before, may be in the kernel set when an address it
// covers becomes the host's own: the host would then ban itself for as
// long as the ban lasts. So when the guard gains an address, the worker
// lifts the entries of vallum's that cover it (lift, allow.go), and a
// batch whose bans were checked before the guard last changed is checked
// again before it reaches the kernel (recheck): the lift runs after every
// item queued before it, and every item after it is checked again.

// watchOwn has the guard tell the worker of the addresses it holds (vallum
// may have been stopped when the host got them) and of every address it
// gains, until ctx is done.
func (b *Bridge) watchOwn(ctx context.Context) {
	g := b.opts.Guard
	g.OnNew(func(added []netip.Prefix) { b.app.enqueue(item{own: added}) })
	context.AfterFunc(ctx, func() { g.OnNew(nil) })
}

// recheck runs the adds of ops through the guard again (see above): those
// it now refuses are dropped, refused and counted.
func (a *applier) recheck(ops []setOp) []setOp {
	out := ops[:0]
	for _, so := range ops {
		if so.op.Action != Add || a.allowed(so.set, so.op.Prefix) {
			out = append(out, so)
		}
	}
	return out
}
