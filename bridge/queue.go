package bridge

import (
	"context"
	"errors"
	"maps"
	"net/netip"
	"runtime"
	"time"
)

// setOp is an op bound for one kernel set.
type setOp struct {
	set string
	op  Op
}

// item is one unit of the ordered queue: the ops of one MQTT message (acked
// once the kernel has them), or a reconciliation that must run after every
// message received before it.
type item struct {
	ack    func() // nil for internal items
	ops    []setOp
	sync   *syncResult
	weight int64 // ops held in the pending bound until applied
}

// work applies the queue in order until ctx is done. The batch in hand when
// ctx ends is still applied and acknowledged; what is left in the queue is
// not acknowledged, so a persistent session gets it again.
func (b *Bridge) work(ctx context.Context) {
	batch := make([]item, 0, 64)
	for {
		select {
		case <-ctx.Done():
			return
		case it := <-b.queue:
			batch = append(batch[:0], it)
		}
		b.stats.QueueDepth.Add(-1)
		batch = b.fill(batch)
		b.applyBatch(context.WithoutCancel(ctx), batch)
	}
}

// fill takes more items from the queue without waiting, up to MaxBatch ops;
// a sync item always ends a batch, so that it sees every op before it.
func (b *Bridge) fill(batch []item) []item {
	n := len(batch[0].ops)
	yielded := false
	for n < b.opts.MaxBatch && batch[len(batch)-1].sync == nil {
		select {
		case it := <-b.queue:
			b.stats.QueueDepth.Add(-1)
			batch = append(batch, it)
			n += len(it.ops)
		default:
			if yielded {
				return batch
			}
			// Let the message goroutine run once before applying: when
			// messages come one by one, it queues those already read, and
			// one netlink round trip takes them all instead of one each.
			runtime.Gosched()
			yielded = true
		}
	}
	return batch
}

func (b *Bridge) applyBatch(ctx context.Context, batch []item) {
	var sets []string
	bySet := map[string][]Op{}
	for _, it := range batch {
		for _, so := range it.ops {
			if _, ok := bySet[so.set]; !ok {
				sets = append(sets, so.set)
			}
			bySet[so.set] = append(bySet[so.set], so.op)
		}
	}
	start := time.Now()
	var banned []netip.Prefix
	for _, set := range sets {
		banned = append(banned, b.applySet(ctx, set, bySet[set])...)
	}
	if len(sets) > 0 {
		b.stats.observeApply(time.Since(start))
	}
	if len(banned) > 0 {
		b.opts.Banned(banned) // the kernel has them: cut their connections
	}
	last := batch[len(batch)-1]
	if last.sync != nil {
		b.reconcile(ctx, last.sync)
	}
	var done int64
	for _, it := range batch {
		if it.ack != nil {
			it.ack()
		}
		done += it.weight
	}
	b.pending.Release(done)
}

// coalesce keeps the last op of each prefix, in the order the prefixes came
// first. The kernel result is the same as applying every op in turn (add
// and del are idempotent), with fewer entries to send.
func coalesce(ops []Op) []Op {
	if len(ops) < 2 {
		return ops
	}
	pos := make(map[netip.Prefix]int, len(ops))
	out := ops[:0:0]
	for _, op := range ops {
		if i, ok := pos[op.Prefix]; ok {
			out[i] = op
			continue
		}
		pos[op.Prefix] = len(out)
		out = append(out, op)
	}
	return out
}

// applySet applies ops to one set, coalesced, leaving entries vallum does
// not own alone (see own.go). A set destroyed while vallum runs is created
// again (when creating is allowed) and the batch retried once. The
// counters count every op received, not what coalescing left, so that they
// do not depend on how messages fell into batches. For a set of
// Options.KillLists, it returns the prefixes the kernel added.
func (b *Bridge) applySet(ctx context.Context, set string, received []Op) []netip.Prefix {
	b.own.kernel.Lock() // see ownership.kernel
	defer b.own.kernel.Unlock()
	ops := b.own.plan(set, coalesce(received))
	err := b.be.Apply(ctx, set, ops)
	if errors.Is(err, ErrNoSet) && b.opts.Create {
		if spec, ok := b.specs[set]; ok {
			if info, cerr := b.be.Ensure(ctx, spec); cerr == nil {
				b.log.Warn("set was missing and is created again", "set", set)
				if info.Comments {
					b.own.reset(set)
				}
				err = b.be.Apply(ctx, set, ops)
				b.setLost() // it holds this batch only: resync the rest
			}
		}
	}
	var ae *ApplyError
	switch {
	case err == nil:
	case errors.As(err, &ae):
		b.refused(set, ae)
	default:
		b.log.Error("apply failed", "set", set, "ops", len(ops), "err", err)
		b.stats.inc(&b.stats.errors, errKind(err), int64(len(received)))
		return nil
	}
	var failed map[netip.Prefix]bool
	if ae != nil {
		failed = make(map[netip.Prefix]bool, len(ae.Failed))
		for _, f := range ae.Failed {
			failed[f.Op.Prefix] = true
		}
	}
	b.own.applied(set, ops, failed)
	b.events.applied(set, ops, failed, b.opts.eventSettle)
	b.countApplied(set, received, ae)
	if b.opts.kill[set] {
		return addedOf(ops, failed)
	}
	return nil
}

// eventAdds remembers when the worker applied the adds of events, for a
// while: a sync does not judge an event entry younger than
// Options.eventSettle (see removeStale). Used by the worker only.
//
// Memory: what comes in 2 x eventSettle, in Unix seconds, keyed as owned
// keys its entries (about 12 bytes per IPv4 address). With time.Time per
// netip.Prefix a flood of 1,000,000 event adds in 6 s took the daemon from
// under 200 MB to 280 MB.
type eventAdds struct {
	sets  map[string]*addTimes
	prune time.Time
}

type addTimes struct {
	v4    map[[4]byte]uint32
	other map[netip.Prefix]uint32
}

func (e *eventAdds) applied(set string, ops []Op, failed map[netip.Prefix]bool, settle time.Duration) {
	now := time.Now()
	sec := uint32(now.Unix())
	for _, op := range ops {
		if op.Action != Add || op.Comment != CommentEvent || failed[op.Prefix] {
			continue
		}
		if e.sets == nil {
			e.sets = map[string]*addTimes{}
		}
		m := e.sets[set]
		if m == nil {
			m = &addTimes{v4: map[[4]byte]uint32{}, other: map[netip.Prefix]uint32{}}
			e.sets[set] = m
		}
		if a := op.Prefix.Addr(); a.Is4() && op.Prefix.Bits() == 32 {
			m.v4[a.As4()] = sec
		} else {
			m.other[op.Prefix] = sec
		}
	}
	// Kept twice as long as needed: a sync that began before an add may
	// end long after it (a late join of a big list takes seconds).
	if keep := 2 * settle; now.Sub(e.prune) > keep {
		old := uint32(now.Add(-keep).Unix())
		for _, m := range e.sets {
			maps.DeleteFunc(m.v4, func(_ [4]byte, at uint32) bool { return at < old })
			maps.DeleteFunc(m.other, func(_ netip.Prefix, at uint32) bool { return at < old })
		}
		e.prune = now
	}
}

// since reports whether the add of p to set by an event was applied after
// t, or in its second (the times are whole seconds: a tie is young).
func (e *eventAdds) since(set string, p netip.Prefix, t time.Time) bool {
	m := e.sets[set]
	if m == nil {
		return false
	}
	var at uint32
	var ok bool
	if a := p.Addr(); a.Is4() && p.Bits() == 32 {
		at, ok = m.v4[a.As4()]
	} else {
		at, ok = m.other[p]
	}
	return ok && at >= uint32(t.Unix())
}

// refused logs and counts the ops the kernel refused. An add that found a
// hand-made entry left as it is, as asked, is a refusal of the input, not
// a kernel error.
func (b *Bridge) refused(set string, ae *ApplyError) {
	for _, f := range ae.Failed {
		if errors.Is(f.Err, ErrExists) {
			b.refuse.refuse("hand_made", set+" "+f.Op.Prefix.String(), "set", set, "prefix", f.Op.Prefix,
				"err", "an entry added by hand (no vallum comment) is left as it is")
			continue
		}
		b.refuse.kernel(set, f)
		b.stats.inc(&b.stats.errors, errKind(f.Err), 1)
	}
}

func (b *Bridge) countApplied(set string, ops []Op, ae *ApplyError) {
	var adds, dels int64
	for _, op := range ops {
		if op.Action == Add {
			adds++
		} else {
			dels++
		}
	}
	if ae != nil {
		for _, f := range ae.Failed {
			if f.Op.Action == Add {
				adds--
			} else {
				dels--
			}
		}
	}
	b.stats.inc(&b.stats.adds, set, adds)
	b.stats.inc(&b.stats.dels, set, dels)
}

// errKind names an error for the errors-by-kind counter.
func errKind(err error) string {
	switch {
	case errors.Is(err, ErrSetFull):
		return "set_full"
	case errors.Is(err, ErrFamily):
		return "wrong_family"
	case errors.Is(err, ErrSetType):
		return "set_type"
	case errors.Is(err, ErrNoSet):
		return "no_set"
	}
	return "kernel"
}
