package bridge

import (
	"context"
	"errors"
	"maps"
	"net/netip"
	"runtime"
	"time"

	"golang.org/x/sync/semaphore"
)

// setOp is an op bound for one kernel set.
type setOp struct {
	set string
	op  Op
}

// item is one unit of the ordered queue: the ops of one MQTT message (acked
// once the kernel has them), or a reconciliation or a lift (allow.go) that
// must run after every message received before it.
type item struct {
	ack    func() // nil for internal items
	ops    []setOp
	sync   *syncResult
	lift   *netip.Prefix  // an allow entry
	own    []netip.Prefix // addresses the host gained (own.go: liftOwn)
	gen    uint64         // the guard's Gen before the ops were checked
	weight int64          // ops held in the pending bound until applied
	room   map[string]int // sets to make room in for a late join (ownership.reserve)
}

// applier is the applying worker's side: the worker goroutine (work) owns
// it, takes the queue in order, applies it to the kernel and reconciles
// the syncs. Run uses it before the worker starts; the watcher (watch,
// repair.go) checks and repairs the sets beside the worker, through the
// parts that say they are locked.
type applier struct {
	*shared
	be    Backend            // serialises its own calls (see Backend)
	specs map[string]SetSpec // by set name, to create a set again; set by New

	queue   chan item           // from the decoding side (enqueue), in order
	pending *semaphore.Weighted // decoded ops not yet applied

	comments   setFlags  // locked: sets whose entries can carry comments
	own        ownership // locked: the watcher picks and checks witnesses
	events     eventAdds // when event adds were applied
	lostStreak int       // syncs in a row that found a list lost
	repairs    repairs   // the watcher's, and the worker's requests for one
	coalescer  coalescer // under own.kernel, as applySet
}

func newApplier(sh *shared, be Backend) *applier {
	o := sh.opts
	a := &applier{
		shared: sh, be: be, specs: map[string]SetSpec{},
		queue:   make(chan item, o.QueueLen),
		pending: semaphore.NewWeighted(o.MaxPending),
		repairs: repairs{poke: make(chan struct{}, 1)},
	}
	for _, l := range o.Lists {
		a.specs[l.Set4] = SetSpec{Name: l.Set4, Family: IPv4, MaxElem: o.MaxElem, Create: o.Create}
		a.specs[l.Set6] = SetSpec{Name: l.Set6, Family: IPv6, MaxElem: o.MaxElem, Create: o.Create}
	}
	return a
}

// enqueue hands an item to the worker. It runs on the message goroutine,
// and waits while the queue or the pending bound is full. When the bridge
// stops first, the item is dropped unacknowledged: the broker sends it
// again.
func (a *applier) enqueue(it item) {
	if it.weight > 0 && a.pending.Acquire(a.stop.ctx, it.weight) != nil {
		return
	}
	a.stats.QueueDepth.Add(1)
	select {
	case a.queue <- it:
	case <-a.stop.ctx.Done():
		a.stats.QueueDepth.Add(-1)
	}
}

// work applies the queue in order until ctx is done. The batch in hand when
// ctx ends is still applied and acknowledged; what is left in the queue is
// not acknowledged, so a persistent session gets it again.
func (a *applier) work(ctx context.Context) {
	batch := make([]item, 0, 64)
	for {
		select {
		case <-ctx.Done():
			return
		case it := <-a.queue:
			batch = append(batch[:0], it)
		}
		a.stats.QueueDepth.Add(-1)
		batch = a.fill(batch)
		a.applyBatch(context.WithoutCancel(ctx), batch)
	}
}

// fill takes more items from the queue without waiting, up to MaxBatch ops;
// a sync or a lift always ends a batch, so that it sees every op before it
// and none after it.
func (a *applier) fill(batch []item) []item {
	n := len(batch[0].ops)
	yielded := false
	for n < a.opts.MaxBatch && !batch[len(batch)-1].ends() {
		select {
		case it := <-a.queue:
			a.stats.QueueDepth.Add(-1)
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

// ends says whether it must be the last item of its batch.
func (it *item) ends() bool { return it.sync != nil || it.lift != nil || it.own != nil }

func (a *applier) applyBatch(ctx context.Context, batch []item) {
	gen := a.opts.Guard.Gen()
	for i := range batch {
		for set, n := range batch[i].room {
			a.own.reserve(set, n)
		}
		if batch[i].gen != gen {
			batch[i].ops = a.recheck(batch[i].ops)
		}
	}
	sets, bySet := bySet(batch)
	start := time.Now()
	var banned []netip.Prefix
	for _, set := range sets {
		banned = append(banned, a.applySet(ctx, set, bySet[set])...)
	}
	if len(sets) > 0 {
		a.stats.observeApply(time.Since(start))
	}
	if len(banned) > 0 {
		a.opts.Banned(banned) // the kernel has them: cut their connections
	}
	last := batch[len(batch)-1]
	if last.lift != nil {
		a.lift(ctx, *last.lift, false)
	}
	for _, p := range last.own {
		a.lift(ctx, p, true)
	}
	if last.sync != nil {
		a.reconcile(ctx, last.sync)
	}
	var done int64
	for _, it := range batch {
		if it.ack != nil {
			it.ack()
		}
		done += it.weight
	}
	a.pending.Release(done)
}

// bySet splits the ops of a batch by set, in order, and names the sets in
// the order they came first.
func bySet(batch []item) ([]string, map[string][]Op) {
	var sets []string
	count := map[string]int{}
	for _, it := range batch {
		for _, so := range it.ops {
			if _, ok := count[so.set]; !ok {
				sets = append(sets, so.set)
			}
			count[so.set]++
		}
	}
	m := make(map[string][]Op, len(sets))
	for _, set := range sets {
		m[set] = make([]Op, 0, count[set])
	}
	for _, it := range batch {
		for _, so := range it.ops {
			m[so.set] = append(m[so.set], so.op)
		}
	}
	return sets, m
}

// coalesce keeps the last op of each prefix, in the order the prefixes came
// first. The kernel result is the same as applying every op in turn (add
// and del are idempotent), with fewer entries to send.
func coalesce(ops []Op) []Op {
	var c coalescer
	return c.coalesce(ops)
}

// coalescer is coalesce with its index kept from batch to batch: the
// worker coalesces every batch, a late join of a million bans in batches
// of 10,000, and a map of netip.Prefix made for each took a tenth of the
// worker's time. IPv4 addresses, nearly every ban, are keyed by their 4
// bytes, which hash in a fraction of a Prefix's time.
type coalescer struct {
	v4    map[[4]byte]int32
	other map[netip.Prefix]int32
}

// coalesceKeep bounds the batches whose index is kept for the next: a
// message of 70,000 addresses gets an index of its own, not kept.
const coalesceKeep = 1 << 14

func (c *coalescer) coalesce(ops []Op) []Op {
	if len(ops) < 2 {
		return ops
	}
	v4, other := c.v4, c.other
	switch {
	case len(ops) > coalesceKeep || v4 == nil:
		v4, other = make(map[[4]byte]int32, len(ops)), map[netip.Prefix]int32{}
		if len(ops) <= coalesceKeep {
			c.v4, c.other = v4, other
		}
	default:
		clear(v4)
		clear(other)
	}
	out := make([]Op, 0, len(ops))
	for _, op := range ops {
		var i int32
		var ok bool
		a := op.Prefix.Addr()
		if four := a.Is4() && op.Prefix.Bits() == 32; four {
			i, ok = v4[a.As4()]
			if !ok {
				v4[a.As4()] = int32(len(out))
			}
		} else if i, ok = other[op.Prefix]; !ok {
			other[op.Prefix] = int32(len(out))
		}
		if ok {
			out[i] = op
			continue
		}
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
func (a *applier) applySet(ctx context.Context, set string, received []Op) []netip.Prefix {
	a.own.kernel.Lock() // see ownership.kernel
	defer a.own.kernel.Unlock()
	ops := a.own.plan(set, a.coalescer.coalesce(received))
	err := a.be.Apply(ctx, set, ops)
	if errors.Is(err, ErrNoSet) && a.opts.Create {
		if spec, ok := a.specs[set]; ok {
			if info, cerr := a.be.Ensure(ctx, spec); cerr == nil {
				a.log.Warn("set was missing and is created again", "set", set)
				if info.Comments {
					a.own.reset(set)
				}
				err = a.be.Apply(ctx, set, ops)
				a.setLost() // it holds this batch only: resync the rest
			}
		}
	}
	var ae *ApplyError
	switch {
	case err == nil:
	case errors.As(err, &ae):
		a.refused(set, ae)
	default:
		a.log.Error("apply failed", "set", set, "ops", len(ops), "err", err)
		a.stats.inc(&a.stats.errors, errKind(err), int64(len(received)))
		return nil
	}
	var failed map[netip.Prefix]bool
	if ae != nil {
		failed = make(map[netip.Prefix]bool, len(ae.Failed))
		for _, f := range ae.Failed {
			failed[f.Op.Prefix] = true
		}
	}
	a.own.applied(set, ops, failed)
	a.events.applied(set, ops, failed, a.opts.eventSettle)
	a.countApplied(set, received, ae)
	if a.opts.kill[set] {
		return addedOf(ops, failed)
	}
	return nil
}

// eventAdds remembers when the worker applied the adds of events, for a
// while: a sync does not judge an event entry younger than
// Options.eventSettle (see removeStale). Used by the worker only.
//
// Memory: what comes in 2 x eventSettle (a burst's adds: burstLag more),
// in Unix seconds, keyed as owned keys its entries (about 12 bytes per
// IPv4 address). With time.Time per netip.Prefix a flood of 1,000,000
// event adds in 6 s took the daemon from under 200 MB to 280 MB.
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
	for _, op := range ops {
		if op.Action != Add || op.Comment != CommentEvent || failed[op.Prefix] {
			continue
		}
		sec := uint32(now.Unix())
		if op.Burst { // judged as if applied burstLag later
			sec = uint32(now.Add(burstLag).Unix())
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

// burstLag is how much longer than eventSettle a sync leaves a burst's add
// alone when the list does not hold it. The keeper cuts a burst once it
// pauses, resting four times a cut's cost between cuts while it goes on:
// measured, the last cut of a 1,000,000-line import came 30 to 69 s after
// the import returned, on two loaded cores, and a host that synced in
// between removed the bans its events had brought and the list did not
// hold yet (291,882 of them, until its next sync: TestImportMillion).
const burstLag = 2 * time.Minute

// since reports whether the add of p to set by an event was applied after
// t, or in its second (the times are whole seconds: a tie is young); a
// burst's add counts as applied burstLag later.
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
func (a *applier) refused(set string, ae *ApplyError) {
	for _, f := range ae.Failed {
		if errors.Is(f.Err, ErrExists) {
			a.refuse.refuse("hand_made", set+" "+f.Op.Prefix.String(), "set", set, "prefix", f.Op.Prefix,
				"err", "an entry added by hand (no vallum comment) is left as it is")
			continue
		}
		a.refuse.kernel(set, f)
		a.stats.inc(&a.stats.errors, errKind(f.Err), 1)
	}
}

func (a *applier) countApplied(set string, ops []Op, ae *ApplyError) {
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
	a.stats.inc(&a.stats.adds, set, adds)
	a.stats.inc(&a.stats.dels, set, dels)
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
