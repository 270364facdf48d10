package web

import (
	"math"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vallum/vallum/internal/wire"
)

// Index is the page's view of the hub's lists and hosts, fed with every
// message the hub's keeper reads (Feed): retained states, keeper records,
// manifests and chunks (chunks.go), del events, and the host statuses. It keeps each
// list's bans in the order they came (sorted by ban time once the retained
// messages are loaded), so that a page of the newest bans, or of any
// offset, is a walk over at most offset+limit entries: a list of 1,000,000
// is paged server-side without a sort per request.
//
// Memory: about 170 bytes a ban (the prefix in a slot and as a map key,
// times, interned reason and origin, the chunk it was read from);
// 167 read from states (BenchmarkPage1M) or from chunks
// (BenchmarkChunkRewrite1M). BenchmarkPage1M also times a page at the far
// end of 1,000,000 bans (0.06 ms) and a search through them (55 to 70 ms,
// under the list's read lock).
type Index struct {
	roots []string
	lists map[string]*listIndex
	now   func() time.Time
	live  *fanout

	mu    sync.Mutex
	hosts map[string]Host // by client id

	workOnce sync.Once
	work     chan func() // live manifests and chunks, read in order (chunksLater)
}

// NewIndex returns an empty index of the lists roots.
func NewIndex(roots []string) *Index {
	x := &Index{roots: slices.Clone(roots), lists: map[string]*listIndex{}, now: time.Now,
		live: newFanout(), hosts: map[string]Host{}}
	for _, r := range roots {
		x.lists[r] = newListIndex(r)
	}
	// The longest root first: a/b/ban/... belongs to a/b, not a.
	// (sort, not slices: each generic sort costs kilobytes on a router.)
	sort.Slice(x.roots, func(i, j int) bool { return len(x.roots[i]) > len(x.roots[j]) })
	return x
}

// listIndex is one list: slots in arrival order, deleted ones left as
// holes (Bits -1) until they are as many as the live ones.
type listIndex struct {
	root string

	mu      sync.RWMutex
	slots   []slot
	at      map[netip.Prefix]int32 // prefix -> slot
	reasons interned
	origins interned
	hours   map[int64]int // bans made per Unix hour, the last day

	chunks  chunkFeed    // the list as its keeper keeps it: record, manifest, chunks (chunks.go)
	expired atomic.Int64 // when expire last walked it, Unix seconds
}

type slot struct {
	p       netip.Prefix // invalid: a hole
	at      int64        // when banned, Unix milliseconds
	exp     int64        // Unix seconds; 0: never
	reason  uint16       // in reasons
	origin  uint16       // in origins
	count   uint16       // the keeper's escalation count (wire.State.Count), at most 65535
	pending bool         // fed before Settle: sorted then
	chunk   uint16       // 1+ the chunk this version was read from; 0: a per-ban state or event
	stamp   uint32       // the chunk feed (chunkFeed.stamp) that read it from its chunk
}

func newListIndex(root string) *listIndex {
	l := &listIndex{root: root, at: map[netip.Prefix]int32{}, hours: map[int64]int{},
		reasons: newInterned(), origins: newInterned()}
	l.chunks.init(l)
	return l
}

// Feed takes one message the broker carries: a list's retained state (a
// ban, or an empty payload: its deletion, an unban unless the list is kept
// as chunks), its keeper record, manifest or chunk, its del events, or a
// host's status. Others are ignored. live is false for retained messages
// loaded at start.
func (x *Index) Feed(topic string, payload []byte, live bool) {
	if id, ok := strings.CutPrefix(topic, wire.HostPrefix); ok {
		x.feedHost(id, payload, live)
		return
	}
	if strings.HasPrefix(topic, wire.Namespace+"/") {
		x.feedKeeper(topic, payload, live)
		return
	}
	for _, r := range x.roots {
		if wire.IsEventTopic(r, topic) {
			x.feedEvent(x.lists[r], topic, payload, live)
			return
		}
		if !strings.HasPrefix(topic, r+"/"+wire.LevelState+"/") {
			continue
		}
		t, err := wire.ParseTopic(r, topic)
		if err != nil || t.Kind != wire.KindState {
			return
		}
		x.feedState(x.lists[r], t.Prefix, payload, live)
		return
	}
}

func (x *Index) feedState(l *listIndex, p netip.Prefix, payload []byte, live bool) {
	if len(payload) == 0 {
		if l.chunks.v2.Load() {
			return // the keeper deleting a state its cut folded into a chunk (chunks.go)
		}
		x.unban(l, p, live)
		return
	}
	st, err := wire.DecodeState(payload)
	if err != nil {
		return
	}
	if l.put(p, st, !live, 0, 0) && live {
		x.live.send(Event{Kind: EventBan, List: l.root, Prefix: wire.FormatPrefix(p), Reason: st.Reason,
			Origin: st.Origin, At: st.At.UnixMilli(), Expires: unixOrZero(st.Expires)})
	}
}

// unban removes p, and tells the live stream when live.
func (x *Index) unban(l *listIndex, p netip.Prefix, live bool) {
	if s, ok := l.remove(p); ok && live {
		var sum summary
		sum.unban(l.root, s, x.now().Unix())
		sum.send(x, l.root)
	}
}

// Settle sorts what was fed before it (the retained messages loaded at
// start, in the broker's order) by ban time, oldest first.
func (x *Index) Settle() {
	for _, l := range x.lists {
		l.settle()
	}
}

// Refused sends a refusal to the live stream.
func (x *Index) Refused(reason, msg, user, topic string) {
	x.live.send(Event{Kind: EventRefused, Reason: reason, Msg: msg, User: user, Topic: topic})
}

// Watch returns the live events and a function that stops them.
func (x *Index) Watch() (<-chan Event, func()) { return x.live.watch() }

// put indexes a ban; it reports whether it is new or newer than the one
// indexed. A state older than the indexed one is ignored (the later ban
// wins, as in the bridges). chunk is 1+ the chunk it was read from (0: a
// per-ban state), read by chunk feed stamp: the same version read from a
// chunk is marked as the chunk's, so that the chunk's rewrite without it
// unbans it.
func (l *listIndex) put(p netip.Prefix, st wire.State, loading bool, chunk uint16, stamp uint32) bool {
	at := st.At.UnixMilli()
	l.mu.Lock()
	defer l.mu.Unlock()
	if i, ok := l.at[p]; ok {
		old := &l.slots[i]
		if old.at > at || old.at == at && old.exp == unixOrZero(st.Expires) {
			if chunk != 0 && old.at == at {
				old.chunk, old.stamp = chunk, stamp
			}
			return false
		}
		l.dropLocked(i)
	}
	s := slot{p: p, at: at, exp: unixOrZero(st.Expires), reason: l.reasons.add(st.Reason),
		origin: l.origins.add(st.Origin), count: uint16(min(st.Count, math.MaxUint16)), pending: loading,
		chunk: chunk, stamp: stamp}
	l.at[p] = int32(len(l.slots))
	l.slots = append(l.slots, s)
	l.hours[at/3600000]++
	l.pruneHoursLocked(time.Now().Unix() / 3600)
	return true
}

func (l *listIndex) remove(p netip.Prefix) (slot, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	i, ok := l.at[p]
	if !ok {
		return slot{}, false
	}
	s := l.slots[i]
	l.dropLocked(i)
	return s, true
}

// dropLocked makes slot i a hole, and compacts once holes are as many as
// live bans.
func (l *listIndex) dropLocked(i int32) {
	l.holeLocked(i)
	l.compactSomeLocked()
}

func (l *listIndex) holeLocked(i int32) {
	s := &l.slots[i]
	delete(l.at, s.p)
	l.reasons.release(s.reason)
	l.origins.release(s.origin)
	*s = slot{}
}

func (l *listIndex) compactSomeLocked() {
	if holes := len(l.slots) - len(l.at); holes > 1024 && holes > len(l.at) {
		l.compactLocked()
	}
}

func (l *listIndex) compactLocked() {
	live := l.slots[:0]
	for _, s := range l.slots {
		if s.p.IsValid() {
			l.at[s.p] = int32(len(live))
			live = append(live, s)
		}
	}
	clear(l.slots[len(live):])
	l.slots = slices.Clip(live)
}

func (l *listIndex) settle() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.compactLocked()
	sort.SliceStable(l.slots, func(i, j int) bool {
		a, b := &l.slots[i], &l.slots[j]
		if a.pending != b.pending { // loaded ones first: the live ones came after
			return a.pending
		}
		return a.pending && a.at < b.at
	})
	for i := range l.slots {
		l.slots[i].pending = false
		l.at[l.slots[i].p] = int32(i)
	}
}

// pruneHoursLocked forgets the hours before the last day.
func (l *listIndex) pruneHoursLocked(now int64) {
	if len(l.hours) <= 26 {
		return
	}
	for h := range l.hours {
		if h < now-24 {
			delete(l.hours, h)
		}
	}
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// interned numbers the reasons (or origins) of one list, and counts the
// live bans of each. Past maxInterned distinct values, the rest are one:
// other, so that a reporter who makes every reason unique costs no more.
type interned struct {
	ids   map[string]uint16
	names []string
	count []int
}

const (
	maxInterned = 4096
	otherID     = 0 // "": no reason given, or one past maxInterned
)

func newInterned() interned {
	return interned{ids: map[string]uint16{"": otherID}, names: []string{""}, count: []int{0}}
}

func (n *interned) add(s string) uint16 {
	id, ok := n.ids[s]
	if !ok && len(n.names) < maxInterned {
		id = uint16(len(n.names))
		n.ids[s] = id
		n.names = append(n.names, s)
		n.count = append(n.count, 0)
	}
	n.count[id]++
	return id
}

func (n *interned) release(id uint16) { n.count[id]-- }

// top returns the k values with the most live bans.
func (n *interned) top(k int) []Count {
	var out []Count
	for id, c := range n.count {
		if c > 0 {
			out = append(out, Count{Name: n.names[id], Count: c})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Name < out[j].Name
	})
	return out[:min(k, len(out))]
}
