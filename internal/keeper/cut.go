package keeper

import (
	"net/netip"
	"slices"
	"time"

	"github.com/vallum/vallum/internal/wire"
)

const (
	// DefaultCutAfter: a cut once this many bans changed since the last,
	// or 1 % of the list if more.
	DefaultCutAfter = 10_000
	// DefaultCutEvery: a cut at least this often while anything changed.
	DefaultCutEvery = time.Hour
	// stillCutMin: the changes a list must have had since its last cut
	// for a cut once they stopped for statedFor (cutDueLocked).
	stillCutMin = 1000
	// rewriteEvery coalesces the rewrites of one chunk: an unban of a
	// ban a chunk holds rewrites that chunk (about 94 KB) at most this
	// often; a host that syncs meanwhile keeps the ban that long more.
	rewriteEvery = time.Second
)

// cutDueLocked reports whether list i needs a cut now, and notes since
// when its changes have been still.
func (k *Keeper) cutDueLocked(i int, now time.Time) bool {
	l := k.lists[i]
	if l.ch.changes != l.ch.seen {
		l.ch.seen, l.ch.stillAt = l.ch.changes, now
	}
	if !k.cutter(l) {
		return false
	}
	if k.stillCutLocked(l, now) {
		return true
	}
	size := 0
	if l.ch.man != nil {
		size = l.ch.man.Entries
	}
	if due := l.ch.burstDue(k.cutCost); !due.IsZero() && !now.Before(due) {
		return true
	}
	return l.ch.man == nil || l.ch.recut || l.ch.changes > max(k.o.CutAfter, size/100) ||
		l.ch.changes > 0 && now.Sub(l.ch.cutAt) >= k.o.CutEvery
}

// stillCutLocked reports whether list l's changes since its last cut are
// the tail of a burst, still for statedFor: a cut folds them in, and
// deletes their per-ban states at once (made statedFor ago). Left for the
// hourly cut, the last 10,000 states of a burst of 100,000 held the hub at
// 113 to 127 MB resident (a run with GOGC 25), 57 to 76 once deleted:
// mochi's copies of the few left pinned the memory pages of all the others.
// Only where the cut deletes them (not with legacy state).
func (k *Keeper) stillCutLocked(l *list, now time.Time) bool {
	return l.ch.man != nil && wire.IsEpochV2(l.rec.Epoch) && l.ch.changes >= stillCutMin &&
		now.Sub(l.ch.stillAt) >= statedFor && now.Sub(l.ch.cutAt) >= statedFor
}

// cutLocked publishes list i as a new generation of chunks: every live ban
// of the view, sorted, at most wire.MaxChunkEntries a chunk; then the
// manifest; then it deletes the chunks of the generations before, and,
// unless the list keeps legacy state (an epoch not in the v2 spelling),
// the per-ban states the chunks now hold. cutOutside does the same with
// the sorting and encoding outside the lock.
func (k *Keeper) cutLocked(i int, now time.Time) []retain {
	c := k.collectLocked(i, now)
	c.build()
	return k.commitLocked(c)
}

// cutOutside cuts list i as cutLocked does, holding the lock only to read
// the view and to commit: a cut of 1,000,000 bans took seconds, and the
// hub's event path, which waits for the lock, stalled a publisher that
// long. It returns nil if the chunks changed meanwhile (Settle adopted
// others): what was due stays due. Else it notes in *held the burst
// messages the cut holds (Options.Flushed).
func (k *Keeper) cutOutside(i int, now time.Time, held *[]flushed) []retain {
	k.mu.Lock()
	c := k.collectLocked(i, now)
	k.mu.Unlock()
	c.build()
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.lists[i].ch.man != c.old || !k.cutter(k.lists[i]) {
		return nil
	}
	*held = append(*held, flushed{i, c.bursts})
	return k.commitLocked(c)
}

// cutting is one cut in the making.
type cutting struct {
	i, list        int
	root, epoch    string
	now, began     time.Time
	old            *wire.Manifest // the list's manifest when the cut began
	items          []cutItem      // the bans read; build parses and sorts them
	strs           []meta         // the interned reasons, origins and counts they name
	burst, changes int            // the list's counts when the cut began
	bursts         uint64         // the list's burst messages when the cut began

	m     wire.Manifest
	data  [][]byte
	first []netip.Prefix
	out   []retain // the chunks
}

// collectLocked reads the bans of list i for a cut; build parses them.
// The interned strings are taken as they are now: they are only ever
// appended to, so the entries read name none beyond.
func (k *Keeper) collectLocked(i int, now time.Time) *cutting {
	l := k.lists[i]
	c := &cutting{i: i, root: l.root, epoch: l.rec.Epoch, now: now, began: time.Now(), old: l.ch.man,
		burst: l.ch.burst, changes: l.ch.changes, bursts: l.ch.bursts, strs: k.strs.strs}
	if l.ch.man != nil { // what the list held, and what came since: appends that copy no more
		c.items = make([]cutItem, 0, l.ch.man.Entries+l.ch.changes+l.ch.burst)
	}
	nowUnix := now.Unix()
	for topic, e := range k.bans {
		// A ban the view holds but neither a state nor a chunk on the
		// broker does is left out: another keeper deleted it, in doubt
		// (foreignLocked), and the events have yet to say it again.
		if int(e.list) != i || e.exp != 0 && e.exp <= nowUnix || e.flags&(fState|fChunk|fBurst) == 0 {
			continue
		}
		c.items = append(c.items, cutItem{topic: topic, e: e}) // its prefix parsed by build
	}
	return c
}

// build sorts the cut's bans and encodes its chunks; it touches nothing
// of the keeper's.
func (c *cutting) build() {
	strs := interned{strs: c.strs}
	items := c.items[:0] // parsed in place
	for _, it := range c.items {
		t, err := wire.ParseTopic(c.root, it.topic)
		if err != nil {
			continue
		}
		it.p = t.Prefix
		items = append(items, it)
	}
	clear(c.items[len(items):]) // the topics of what was left out
	c.items = items
	slices.SortFunc(items, func(a, b cutItem) int { return cmpPrefix(a.p, b.p) })
	gen := uint64(c.now.UnixMilli())
	if c.old != nil && gen <= c.old.Gen {
		gen = c.old.Gen + 1
	}
	count := (len(items) + wire.MaxChunkEntries - 1) / wire.MaxChunkEntries
	c.m = wire.Manifest{Epoch: c.epoch, Gen: gen, Cut: c.now, Entries: len(items), CRC: make([]uint32, count)}
	c.data, c.first = make([][]byte, count), make([]netip.Prefix, count)
	chunk := make([]wire.Entry, 0, min(len(items), wire.MaxChunkEntries))
	for j := range count {
		part := items[j*wire.MaxChunkEntries : min(len(items), (j+1)*wire.MaxChunkEntries)]
		chunk = chunk[:0]
		for _, it := range part {
			chunk = append(chunk, wire.Entry{Prefix: it.p, State: stateOfWith(&strs, it.e)})
		}
		p := wire.EncodeChunk(wire.Chunk{Root: c.root, Gen: gen, Index: j, Count: count, Entries: chunk})
		c.data[j], c.first[j], c.m.CRC[j] = p, part[0].p, wire.ChunkCRC(p)
		c.out = append(c.out, retain{wire.ChunkTopic(c.root, gen, j), p})
	}
}

// commitLocked makes the cut c the list's and returns what to publish:
// its chunks, its manifest, the deletions of the generations before and of
// the per-ban states the chunks now hold.
func (k *Keeper) commitLocked(c *cutting) []retain {
	l := k.lists[c.i]
	m := c.m
	// No state is newer than the cut yet (deltas.go): as they come, the
	// manifest announces them.
	m.Deltas = &wire.Deltas{Upto: c.now}
	old := l.ch
	l.ch.man, l.ch.manBytes = &m, wire.EncodeManifest(m)
	l.ch.data, l.ch.first, l.ch.wrote, l.ch.dec = c.data, c.first, make([]time.Time, len(c.data)), nil
	l.ch.dirty, l.ch.cutAt, l.ch.recut = nil, c.now, false
	l.ch.deltasAt = c.now
	// What came while the cut was built is for the next one.
	l.ch.changes, l.ch.burst = max(0, l.ch.changes-c.changes), max(0, l.ch.burst-c.burst)
	if l.ch.burst > 0 {
		l.ch.burstFirst = l.ch.burstLast
	}
	out := append(c.out, k.sentManLocked(l))
	// The generations before: the last one, and any other on the broker.
	if old.man != nil && old.man.Gen != m.Gen {
		for j := range old.man.CRC {
			out = append(out, retain{wire.ChunkTopic(l.root, old.man.Gen, j), nil})
		}
	}
	for g, have := range old.other {
		for j := range have {
			out = append(out, retain{wire.ChunkTopic(l.root, g, j), nil})
		}
	}
	l.ch.other, l.ch.next = nil, nil
	out = append(out, k.foldedLocked(l, c.items, wire.IsEpochV2(l.rec.Epoch))...)
	k.free.cut(m.Entries)
	k.log.Info("cut", "list", l.root, "entries", m.Entries, "chunks", len(m.CRC), "took", time.Since(c.began).Round(time.Millisecond))
	return out
}

// cleaned is what the keeper deleted of one topic after cuts: the version
// deleted last, how many deletions have yet to come back, and the
// manifest published last before the first of them (chunkSet.manSent).
type cleaned struct {
	at  int64
	n   int32
	man uint32
}

// cleanBackLocked reports whether a deletion of topic that comes now may
// be the echo of the keeper's own after a cut: one came back and more are
// due, and the manifest published before the first of them came back too
// (or a minute passed since the last cut: an echo may be lost). A
// deletion is an empty payload, whoever sends it: a client's unban that
// comes first is no echo. Taken for one, while the keeper read far behind
// its broker, it revived a ban the client had lifted and left the one its
// cleanup clobbered lifted (TestTwoKeepersClients, seeds above 100).
func (k *Keeper) cleanBackLocked(i int, topic string) bool {
	c, l := k.cleaning[topic], &k.lists[i].ch
	return c.n > 0 && (c.man <= l.manBack || k.now().Sub(l.cutAt) > pubsKeep)
}

// cutItem is one ban of a cut: 72 bytes, the view's entry as read, its
// wire.Entry (136 bytes with the topic) made a chunk at a time: for a
// million bans, 136 MB less at the cut's peak.
type cutItem struct {
	p     netip.Prefix
	topic string
	e     entry
}

// foldedLocked marks the bans of a cut as held by a chunk and, with
// cleanup, deletes their per-ban state: its echo is no unban (cleaning).
// A state made or touched within statedFor stays until the next cut: a
// client that changes it again meanwhile (`vallum unban` after `vallum
// ban`), whose messages the keeper may not have read yet, is not raced by
// the deletion. Shorter holds failed TestTwoKeepersClients (a keeper far
// behind its broker): 30 of 1,000 runs at 2 s, 6 at 3 s, 1 at 4 s, 2 of
// 10,000 at 5 s (none of 20,000 at statedFor).
func (k *Keeper) foldedLocked(l *list, items []cutItem, cleanup bool) []retain {
	var out []retain
	l.ch.later = l.ch.later[:0]
	for n, it := range items {
		e, ok := k.bans[it.topic]
		if !ok || e.at != it.e.at {
			// Lifted, or banned again, while the cut was built: the
			// chunk holds what was; a lifted ban's chunk is rewritten.
			if !ok {
				k.dirtyLocked(l, n/wire.MaxChunkEntries)
			}
			continue
		}
		e.flags = e.flags&^fBurst | fChunk
		k.bans[it.topic] = e
		if cleanup && e.flags&fState != 0 {
			if r, ok := k.cleanLocked(it.topic, e.at); ok {
				out = append(out, r)
			} else {
				l.ch.later = append(l.ch.later, later{it.topic, e.at})
			}
		}
	}
	l.ch.laterAt = k.now().Add(statedFor)
	return out
}

// later is a per-ban state a cut left for cleanLaterLocked.
type later struct {
	topic string
	at    int64
}

// cleanLocked deletes the per-ban state of topic, which a chunk holds at
// version at, unless it changed since or was touched within statedFor.
func (k *Keeper) cleanLocked(topic string, at int64) (retain, bool) {
	e, ok := k.bans[topic]
	if !ok || e.at != at || e.flags&(fState|fChunk) != fState|fChunk ||
		e.at >= k.now().Add(-statedFor).UnixMilli() || k.touchedLocked(topic) {
		return retain{}, false
	}
	e.flags &^= fState
	k.bans[topic] = e
	c := k.cleaning[topic]
	if c.n == 0 {
		c.man = k.lists[e.list].ch.manSent
	}
	k.cleaning[topic] = cleaned{at: e.at, n: c.n + 1, man: c.man}
	return retain{topic, nil}, true
}

// cleanLaterLocked deletes, statedFor after a cut, the per-ban states the
// cut left because they were touched lately. What is still touched is
// tried again statedFor later, as long as the chunk holds that version:
// left for the next cut (up to an hour), 226 of 100,000 expired bans kept
// their per-ban state on the broker.
func (k *Keeper) cleanLaterLocked(l *list) []retain {
	// The manifest goes out again before the deletions: their echoes come
	// after its own (cleanBackLocked).
	witness := l.ch.manBytes != nil
	if witness {
		l.ch.manSent++
	}
	var out []retain
	keep := l.ch.later[:0]
	for _, x := range l.ch.later {
		if r, ok := k.cleanLocked(x.topic, x.at); ok {
			out = append(out, r)
		} else if e, held := k.bans[x.topic]; held && e.at == x.at && e.flags&(fState|fChunk) == fState|fChunk {
			keep = append(keep, x)
		}
	}
	l.ch.later = keep
	l.ch.laterAt = k.now().Add(statedFor)
	switch {
	case !witness:
	case len(out) == 0:
		l.ch.manSent--
	default:
		out = append([]retain{k.sentLocked(wire.ManifestTopic(l.root), l.ch.manBytes)}, out...)
	}
	return out
}

// cleanedLocked takes the echo of a deletion of foldedLocked. A state a
// client published between the cut and the deletion was deleted with it:
// the keeper publishes it again.
func (k *Keeper) cleanedLocked(topic string) []retain {
	c := k.cleaning[topic]
	if c.n--; c.n > 0 {
		k.cleaning[topic] = c
	} else if delete(k.cleaning, topic); len(k.cleaning) == 0 {
		// A map keeps its table when emptied: after a cut of a million,
		// 11 MB for nothing.
		k.cleaning = map[string]cleaned{}
	}
	e, ok := k.bans[topic]
	if !ok || e.at == c.at || e.flags&fState == 0 {
		return nil
	}
	if k.revived == nil {
		k.revived = map[string]revived{}
	}
	k.revived[topic] = revived{at: e.at, list: e.list}
	// Not sentLocked: no decision of the keeper's on the ban's events,
	// which would make it doubt another keeper's next one (recentLocked).
	return []retain{k.copiedLocked(topic, wire.EncodeState(k.stateOf(e)))}
}

// revived is a state cleanedLocked published again, on the word of a
// deletion it took for its cleanup's echo. That deletion may have been a
// client's unban, with the cleanup's own still on the way to the broker:
// then the copy lands over whatever the broker took meanwhile. Seen in
// TestTwoKeepersClients (a keeper far behind its broker): a lifted ban
// came back for good.
type revived struct {
	at   int64
	seen bool   // a message of the topic came before the copy came back
	last []byte // the last of them: what the broker held under the copy
	list uint8
	// witness: the copy came back after seen, and the keeper published
	// the manifest again (chunkSet.manSent) before it puts last back.
	witness uint32
}

// revivedLocked takes a live state message of topic. When it is the copy
// cleanedLocked published, come back after other messages of the topic,
// the broker held the last of those before the copy landed: the keeper
// publishes it again (again true), and the copy is not taken. Not at once:
// a keeper far behind its broker reads the copy back long after it
// landed, and the broker may hold a client's later state by then, which
// that would clobber (TestTwoKeepersClients). The keeper publishes the
// manifest again first; a message of the topic that comes before its echo
// came after the copy, and the copy is gone from the broker: nothing to
// put back. With the echo, the keeper is caught up (fixRevivedLocked).
func (k *Keeper) revivedLocked(topic string, p parsed) (out []retain, again bool) {
	r, ok := k.revived[topic]
	if !ok {
		return nil, false
	}
	if r.witness != 0 { // a later message: the copy is gone
		delete(k.revived, topic)
		return nil, false
	}
	if !p.del && p.state.At.UnixMilli() == r.at { // the copy, back
		if !r.seen {
			delete(k.revived, topic)
			return nil, false
		}
		l := k.lists[r.list]
		if l.ch.manBytes == nil { // no manifest to wait for
			delete(k.revived, topic)
			return []retain{k.copiedLocked(topic, r.last)}, true
		}
		out = append(out, k.sentManLocked(l))
		r.witness = l.ch.manSent
		k.revived[topic] = r
		return out, true
	}
	r.seen, r.last = true, nil
	if !p.del {
		r.last = wire.EncodeState(p.state)
	}
	k.revived[topic] = r
	return nil, false
}

// fixRevivedLocked puts back, once the manifest published after their
// copy came back has come back too, what the broker held under the
// copies of list l that no later message replaced (see revivedLocked).
func (k *Keeper) fixRevivedLocked(l *list) []retain {
	var out []retain
	for topic, r := range k.revived {
		if r.witness != 0 && k.lists[r.list] == l && r.witness <= l.ch.manBack {
			delete(k.revived, topic)
			out = append(out, k.copiedLocked(topic, r.last))
		}
	}
	return out
}

// maintain cuts the lists due for a cut and rewrites the chunks due for a
// rewrite; it returns when the next rewrite is due (zero: none).
func (k *Keeper) maintain() time.Time {
	if !chunksBuilt {
		return time.Time{}
	}
	k.cutMu.Lock()
	defer k.cutMu.Unlock()
	began, now := time.Now(), k.now()
	var out []retain
	var next time.Time
	k.mu.Lock()
	// Every pubsKeep, and every statedFor while the maps of recent client
	// states are big: 100,000 states published in a burst held about
	// 15 MB in them for a minute, a million ten times as much.
	if since := now.Sub(k.swept); since >= pubsKeep || since >= statedFor && len(k.stated)+len(k.touched) >= freeAtDeleted {
		k.sweepLocked(now)
		k.swept = now
	}
	var due []int
	var held []flushed
	for i := range k.lists {
		if k.cutDueLocked(i, now) {
			due = append(due, i)
			continue
		}
		l := k.lists[i]
		if l.ch.burst > 0 && !k.cutter(l) {
			out = append(out, k.unburstLocked(i)...)
			held = append(held, flushed{i, l.ch.bursts})
		}
		if due := l.ch.burstDue(k.cutCost); !due.IsZero() && (next.IsZero() || due.Before(next)) {
			next = due
		}
		if len(l.ch.later) > 0 && !now.Before(l.ch.laterAt) && k.cutter(l) {
			out = append(out, k.cleanLaterLocked(l)...)
		}
		announced := k.announceLocked(i, now) // deltas.go
		o, n := k.flushLocked(i, now)
		if announced && len(o) == 0 { // else flushLocked wrote the manifest
			l.ch.manBytes = wire.EncodeManifest(*l.ch.man)
			o = append(o, k.sentManLocked(l))
		}
		out = append(out, o...)
		if !n.IsZero() && (next.IsZero() || n.Before(next)) {
			next = n
		}
	}
	k.mu.Unlock()
	for _, i := range due {
		out = append(out, k.cutOutside(i, now, &held)...)
	}
	k.flushed(held, k.publish(out))
	k.mu.Lock()
	k.releaseChunksLocked() // what was published, and chunks adopted meanwhile
	k.mu.Unlock()
	k.freeAfter(out) // also one a cut of Flush or before left due
	if len(due) > 0 {
		k.costed(began)
	}
	return next
}

// freeAfter returns memory to the system after big transient work (free.go).
func (k *Keeper) freeAfter(out []retain) { k.free.after(out, k.now) }

// touchedLocked reports whether anyone (a client, another keeper, this
// one) published topic's state within statedFor.
func (k *Keeper) touchedLocked(topic string) bool {
	at, ok := k.touched[topic]
	return ok && k.now().Sub(at) < statedFor || k.recentLocked(topic)
}
