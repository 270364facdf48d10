package web

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vallum/vallum/internal/listread"
	"github.com/vallum/vallum/internal/wire"
)

// chunkFeed reads a list as a host reads it (docs/compact-list.md): the
// keeper's record, the manifest and the chunks of its generation
// (internal/listread), the per-ban states on top. A keeper whose record is
// in the v2 spelling (wire.EpochV2) keeps per-ban state only for what
// changed since its last cut, and deletes the states a cut folded in: on
// such a list an empty state is not an unban. Unbans reach it as del
// events and as chunk rewrites: a chunk taken again replaces the entries
// read from it before.
type chunkFeed struct {
	l  *listIndex
	v2 atomic.Bool // the keeper record's epoch is in the v2 spelling

	mu     sync.Mutex // the reader and what follows: the broker feeds from many goroutines
	rd     *listread.Reader
	epoch  string       // the record's; "" before one
	stamp  uint32       // one per message fed: the entries read from it are marked with it
	cur    uint16       // 1+ the chunk being taken
	gen    uint64       // the generation the slots' chunks belong to
	since  uint32       // the stamp that began gen: chunk slots marked before it are of an older one
	older  bool         // slots of an older generation may be left: swept once gen is whole
	have   map[int]bool // the chunks of gen taken
	taken  map[int]bool
	loaded bool // fed before Settle: no live events
	now    time.Time
	sum    summary
}

func (c *chunkFeed) init(l *listIndex) {
	c.l = l
	c.rd = listread.New(l.root, c.take)
	c.rd.Begin = c.begin
}

func (c *chunkFeed) begin(gen uint64, n int) {
	if gen != c.gen {
		c.gen, c.since, c.older, c.have = gen, c.stamp, true, map[int]bool{}
	}
	c.have[n] = true
	c.cur = uint16(n + 1)
	c.taken[n] = true
}

func (c *chunkFeed) take(e wire.Entry) {
	if !e.State.Expires.IsZero() && !e.State.Expires.After(c.now) {
		return // its time is up: every reader drops it
	}
	if c.l.put(e.Prefix, e.State, c.loaded, c.cur, c.stamp) {
		c.sum.ban(c.l.root, e)
	}
}

// feedKeeper takes a message of the vallum/ namespace: a list's keeper
// record, manifest or chunk.
func (x *Index) feedKeeper(topic string, payload []byte, live bool) {
	for _, r := range x.roots {
		l := x.lists[r]
		switch {
		case topic == wire.RecordTopic(r):
			l.chunks.record(payload)
		case topic == wire.ManifestTopic(r):
			x.chunksLater(l, live, func(rd *listread.Reader) {
				if m, err := wire.DecodeManifest(payload); err == nil && l.chunks.epoch != "" &&
					!listread.SameEpoch(m.Epoch, l.chunks.epoch) {
					return // another life of the list than its record's
				}
				_ = rd.Manifest(payload)
			})
		case strings.HasPrefix(topic, wire.ChunkPrefix+r+"/"):
			if _, _, ok := wire.ParseChunkTopic(r, topic); ok {
				x.chunksLater(l, live, func(rd *listread.Reader) { _ = rd.Chunk(topic, payload) })
			}
		default:
			continue
		}
		return
	}
}

// chunksLater feeds a live manifest or chunk in the index's own goroutine,
// in the order they came: the broker calls Feed before it sends a retained
// message on (mochi's OnRetainMessage), and the manifest of a cut of
// 1,000,000 new bans took 0.9 s to read into the index, as long a delay
// for every host's copy of it. The retained messages loaded at start are
// fed at once (Settle follows). Bans are versioned (put): what a chunk
// read late holds older than a state read since loses to it.
func (x *Index) chunksLater(l *listIndex, live bool, read func(*listread.Reader)) {
	if !live {
		x.feedChunks(l, live, read)
		return
	}
	x.later(func() { x.feedChunks(l, live, read) })
}

// later runs f in the index's goroutine, after what was queued before.
func (x *Index) later(f func()) {
	x.workOnce.Do(func() {
		x.work = make(chan func(), 1024)
		go func() {
			for f := range x.work {
				f()
			}
		}()
	})
	x.work <- f
}

// flush waits until the live manifests and chunks fed so far are read.
func (x *Index) flush() {
	done := make(chan struct{})
	x.later(func() { close(done) })
	<-done
}

func (c *chunkFeed) record(payload []byte) {
	rec, err := wire.DecodeRecord(payload)
	if err != nil {
		return
	}
	c.mu.Lock()
	c.epoch = rec.Epoch
	c.mu.Unlock()
	c.v2.Store(wire.IsEpochV2(rec.Epoch))
}

// feedChunks runs read on the list's reader, then unbans what the chunks
// it took no longer hold, and sends the live stream what changed (a
// summary when it is much: a burst of 100,000 is one line).
func (x *Index) feedChunks(l *listIndex, live bool, read func(*listread.Reader)) {
	c := &l.chunks
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stamp++
	c.loaded = !live
	c.taken = map[int]bool{}
	c.sum = summary{}
	c.now = x.now()
	read(c.rd)
	old := c.older && c.whole()
	if len(c.taken) > 0 || old {
		for _, s := range l.sweep(c.taken, c.stamp, c.since, old) {
			c.sum.unban(l.root, s, c.now.Unix())
		}
		c.older = c.older && !old
	}
	if live {
		c.sum.send(x, l.root)
	}
}

// whole reports whether every chunk of the manifest was taken. (The
// reader's Status is of one read: stale for good after a new generation.)
func (c *chunkFeed) whole() bool {
	st := c.rd.Status()
	return st.Manifest && st.Gen == c.gen && len(c.have) == len(st.CRC)
}

// sweep unbans the slots read from a chunk that was taken again (stamp)
// without them, and, when old, those read from an older generation's
// chunks than the one since began (a walk over the list: one per chunk
// message that took something, about 10 ms at 1,000,000).
func (l *listIndex) sweep(taken map[int]bool, stamp, since uint32, old bool) []slot {
	l.mu.Lock()
	defer l.mu.Unlock()
	var gone []slot
	for i := range l.slots {
		s := &l.slots[i]
		if s.chunk == 0 || s.stamp == stamp {
			continue
		}
		if s.stamp < since && old || s.stamp >= since && taken[int(s.chunk-1)] {
			gone = append(gone, *s)
			l.holeLocked(int32(i))
		}
	}
	l.compactSomeLocked()
	return gone
}

// summary gathers the live events of one message: sent one by one when
// few, as one line per kind when many.
type summary struct {
	events []Event
	n      map[string]int // by kind
	total  int
}

const summaryAbove = 32

func (m *summary) add(e Event) {
	if m.n == nil {
		m.n = map[string]int{}
	}
	m.n[e.Kind]++
	m.total++
	if len(m.events) <= summaryAbove {
		m.events = append(m.events, e)
	}
}

func (m *summary) ban(root string, e wire.Entry) {
	m.add(Event{Kind: EventBan, List: root, Prefix: wire.FormatPrefix(e.Prefix), Reason: e.State.Reason,
		Origin: e.State.Origin, At: e.State.At.UnixMilli(), Expires: unixOrZero(e.State.Expires)})
}

// unban adds the unban of s, an expiry when its time is (about) up.
func (m *summary) unban(root string, s slot, now int64) {
	kind := EventUnban
	if s.exp != 0 && s.exp <= now+2 {
		kind = EventExpired
	}
	m.add(Event{Kind: kind, List: root, Prefix: wire.FormatPrefix(s.p)})
}

func (m *summary) send(x *Index, root string) {
	if m.total <= summaryAbove {
		for _, e := range m.events {
			x.live.send(e)
		}
		return
	}
	for _, kind := range []string{EventBan, EventUnban, EventExpired} {
		if n := m.n[kind]; n > 0 {
			x.live.send(Event{Kind: kind, List: root, Count: n, Msg: fmt.Sprintf("%d %s", n, plural[kind])})
		}
	}
}

var plural = map[string]string{EventBan: "bans", EventUnban: "unbans", EventExpired: "expired"}

// expireEvery is how often a list's expired bans are taken out: a keeper
// of chunks deletes nothing when a ban expires (every reader drops it by
// its time), and shows it until its next cut.
const expireEvery = 5 // seconds

// expire takes out the bans whose time is up, at most every expireEvery
// (a walk over the list: a few ms at 1,000,000).
func (x *Index) expire(l *listIndex) {
	now := x.now().Unix()
	last := l.expired.Load()
	if now-last < expireEvery || !l.expired.CompareAndSwap(last, now) {
		return
	}
	var sum summary
	l.mu.Lock()
	for i := range l.slots {
		if s := l.slots[i]; s.p.IsValid() && s.exp != 0 && s.exp <= now {
			sum.unban(l.root, s, now)
			l.holeLocked(int32(i))
		}
	}
	l.compactSomeLocked()
	l.mu.Unlock()
	sum.send(x, l.root)
}

// feedEvent takes an event message: its del lines unban (on a v2 list the
// only unban besides a chunk rewrite). Add lines are not read: the keeper
// turns them into states, or a burst into a cut's chunks.
func (x *Index) feedEvent(l *listIndex, topic string, payload []byte, live bool) {
	if t, err := wire.ParseTopic(l.root, topic); err != nil || t.Kind != wire.KindDel {
		return
	}
	lines, _ := wire.ParsePayload(payload)
	var sum summary
	now := x.now().Unix()
	for _, ln := range lines {
		if s, ok := l.remove(ln.Prefix); ok {
			sum.unban(l.root, s, now)
		}
	}
	if live {
		sum.send(x, l.root)
	}
}
