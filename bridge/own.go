package bridge

import (
	"net/netip"
	"sync"
	"time"

	"github.com/vallum/vallum/internal/wire"
)

// An entry a person added by hand (no vallum comment) is never changed or
// removed by vallum: a shared ban of the same address does not give it a
// timeout, and an unban or a legacy del does not remove it. The bridge
// remembers which entries of each set are its own: those listed with its
// comments (when it starts and at every sync) and those it has added since.
// An add of a prefix it does not own asks the kernel to keep an entry that
// is already there (Op.Keep), and a del of one is not sent. The kernel
// decides, so a hand-made entry added a moment ago is safe too.
//
// Memory: 12 to 20 bytes per IPv4 address owned (19 MB for a million).

// owned is what vallum believes it has in one set, with when each entry
// expires in Unix seconds (0: never).
type owned struct {
	v4    map[[4]byte]uint32
	other map[netip.Prefix]uint32
	swept int // size after the last sweep of expired entries
}

func newOwned() *owned {
	return &owned{v4: map[[4]byte]uint32{}, other: map[netip.Prefix]uint32{}}
}

func (o *owned) len() int { return len(o.v4) + len(o.other) }

func (o *owned) has(p netip.Prefix, now uint32) bool {
	exp, ok := o.expiry(p)
	return ok && (exp == 0 || exp+expiryGrace > now)
}

// expiry returns when the owned entry p expires (0: never), if owned.
func (o *owned) expiry(p netip.Prefix) (uint32, bool) {
	if p.Addr().Is4() && p.Bits() == 32 {
		exp, ok := o.v4[p.Addr().As4()]
		return exp, ok
	}
	exp, ok := o.other[p]
	return exp, ok
}

// expiryGrace keeps an entry owned a little past the second it expires:
// the kernel's timer started a moment after the one counted here, and a
// re-ban of an entry that has not quite expired must refresh it, not be
// taken for a person's.
const expiryGrace = 2

func (o *owned) put(p netip.Prefix, exp uint32) {
	if p.Addr().Is4() && p.Bits() == 32 {
		o.v4[p.Addr().As4()] = exp
	} else {
		o.other[p] = exp
	}
}

func (o *owned) del(p netip.Prefix) {
	if p.Addr().Is4() && p.Bits() == 32 {
		delete(o.v4, p.Addr().As4())
	} else {
		delete(o.other, p)
	}
}

// sweep forgets expired entries once the set has doubled since the last
// sweep: entries from legacy events expire without a del.
func (o *owned) sweep(now uint32) {
	if o.len() < 2*max(o.swept, 1024) {
		return
	}
	for k, exp := range o.v4 {
		if exp != 0 && exp+expiryGrace <= now {
			delete(o.v4, k)
		}
	}
	for k, exp := range o.other {
		if exp != 0 && exp+expiryGrace <= now {
			delete(o.other, k)
		}
	}
	o.swept = o.len()
}

// expiry is when an entry added now with timeout t ends; 0 for never (a
// permanent entry, or the set's default, which is none in vallum's sets).
func expiry(t wire.Timeout, now uint32) uint32 {
	if t <= 0 {
		return 0
	}
	return now + uint32(t)
}

// ownership holds what vallum owns in every set. The worker uses it; the
// watcher resets a set it created again.
type ownership struct {
	mu   sync.Mutex
	sets map[string]*owned
	// kernel is held by the worker from plan to applied, and by the
	// watcher while it looks a witness up (see witness.go): an entry the
	// worker has just removed from the kernel is then no longer owned
	// when the watcher finds it missing.
	kernel sync.Mutex
}

func unixNow() uint32 { return uint32(time.Now().Unix()) }

// load replaces what is known of set by the entries listed from it, in
// place: a million addresses take 19 MB, not to be held twice.
func (w *ownership) load(set string, entries []Entry) {
	now := unixNow()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.sets == nil {
		w.sets = map[string]*owned{}
	}
	o := w.sets[set]
	if o == nil {
		o = newOwned()
		w.sets[set] = o
	}
	clear(o.v4)
	clear(o.other)
	for _, e := range entries {
		if e.Comment == CommentState || e.Comment == CommentEvent {
			o.put(e.Prefix, expiry(e.Timeout, now))
		}
	}
	o.swept = o.len()
}

// reserve makes room for about n IPv4 entries in what vallum owns of set,
// before a late join of that many: grown one batch at a time, the map was
// rebuilt some twenty times on the way to a million, on the worker.
func (w *ownership) reserve(set string, n int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	o := w.sets[set]
	if o == nil || len(o.v4) >= n/2 {
		return
	}
	v4 := make(map[[4]byte]uint32, n)
	for k, v := range o.v4 {
		v4[k] = v
	}
	o.v4 = v4
}

// reset records that set is new and empty.
func (w *ownership) reset(set string) { w.load(set, nil) }

// plan rewrites ops for set: adds of prefixes vallum does not own keep an
// existing entry, and dels of them are dropped. A set that was never
// loaded (no comment support) is left to ops as they are.
func (w *ownership) plan(set string, ops []Op) []Op {
	w.mu.Lock()
	defer w.mu.Unlock()
	o := w.sets[set]
	if o == nil {
		return ops
	}
	now := unixNow()
	out := make([]Op, 0, len(ops))
	for _, op := range ops {
		mine := o.has(op.Prefix, now)
		switch {
		case op.Action == Del && !mine:
			continue
		case op.Action == Add && !mine:
			op.Keep = true
		}
		out = append(out, op)
	}
	return out
}

// applied records the ops the kernel took (all but those in failed).
func (w *ownership) applied(set string, ops []Op, failed map[netip.Prefix]bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	o := w.sets[set]
	if o == nil {
		return
	}
	now := unixNow()
	for _, op := range ops {
		switch {
		case failed[op.Prefix]:
		case op.Action == Add:
			o.put(op.Prefix, expiry(op.Timeout, now))
		default:
			o.del(op.Prefix)
		}
	}
	o.sweep(now)
}

// witness returns an address entry of set that vallum owns and that will
// not expire within witnessMargin seconds: prev while it still is one,
// else the best of the first witnessScan found (permanent, or the latest
// expiry). Map order is random, so a scan is short whatever the set's size.
func (w *ownership) witness(set string, prev netip.Prefix, now uint32) (netip.Prefix, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	o := w.sets[set]
	if o == nil {
		return netip.Prefix{}, false
	}
	if prev.IsValid() && o.lasts(prev, now+witnessMargin) {
		return prev, true
	}
	var best netip.Prefix
	var bestExp uint32
	seen := 0
	consider := func(p netip.Prefix, exp uint32) bool {
		if exp == 0 || exp > now+witnessMargin {
			if !best.IsValid() || bestExp != 0 && (exp == 0 || exp > bestExp) {
				best, bestExp = p, exp
			}
		}
		seen++
		return seen < witnessScan && !(best.IsValid() && bestExp == 0)
	}
	for a, exp := range o.v4 {
		if !consider(netip.PrefixFrom(netip.AddrFrom4(a), 32), exp) {
			break
		}
	}
	for p, exp := range o.other {
		if seen >= witnessScan || best.IsValid() && bestExp == 0 {
			break
		}
		if !p.IsSingleIP() {
			seen++ // a prefix (an interval in nft): not a witness
			continue
		}
		consider(p, exp)
	}
	return best, best.IsValid()
}

// witnessMargin is how long, in seconds, a witness must have left: one
// that expires between the pick and the kernel lookup is no witness.
const witnessMargin = 5

// witnessScan bounds the entries looked at to pick a witness.
const witnessScan = 64

// lasts says whether p is owned and will not expire by then.
func (o *owned) lasts(p netip.Prefix, then uint32) bool {
	exp, ok := o.expiry(p)
	return ok && (exp == 0 || exp > then)
}

// stillOwned says whether p is owned and not about to expire, after a
// lookup found it missing: if not, the worker or its timeout removed it.
func (w *ownership) stillOwned(set string, p netip.Prefix, now uint32) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	o := w.sets[set]
	return o != nil && o.lasts(p, now+1)
}

// forget drops p from what vallum owns in set.
func (w *ownership) forget(set string, p netip.Prefix) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if o := w.sets[set]; o != nil {
		o.del(p)
	}
}
