package keeper

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"sort"
	"time"

	"github.com/vallum/vallum/internal/wire"
)

// The compact list (docs/compact-list.md): besides per-ban state, the
// keeper publishes each list as retained chunks and a manifest naming
// them (internal/wire). One keeper of a list cuts them (cut.go): the one
// its record names. Another keeper of the list follows: it adopts the
// chunks the cutter publishes, and only turns events into state.

// chunkSet is what a keeper knows of one list's chunks.
type chunkSet struct {
	man      *wire.Manifest // adopted or published; nil: none yet
	manBytes []byte         // man as published, to know its echo
	data     [][]byte       // the payload of each chunk of man.Gen; nil: on the broker (chunkLocked)
	first    []netip.Prefix // the first entry of each chunk at its cut: chunk j holds first[j] <= p < first[j+1]
	wrote    []time.Time    // when each chunk was last written
	dec      []wire.Entry   // chunk decIdx decoded, for inChunksLocked
	decIdx   int
	dirty    map[int]bool // chunks holding an unbanned entry: to rewrite
	changes  int          // bans changed, lifted or expired since the last cut
	recut    bool         // a chunk could not be rewritten: the next maintain cuts
	cutAt    time.Time    // the last cut, or when the keeper settled
	// burst: bans of bursts since the last cut, held by the view alone
	// (fBurst), from burstFirst to burstLast (burst.go).
	burst                 int
	burstFirst, burstLast time.Time
	// bursts counts the messages whose bans went to the view for a cut
	// (Keeper.Bursts); a cut holds those counted when it read the view.
	bursts uint64
	// later: per-ban states a cut left, touched lately; deleted at laterAt.
	later   []later
	laterAt time.Time
	// seen: changes when maintain last looked; stillAt: since when they
	// have not moved (cutDueLocked's cut of a burst's tail).
	seen    int
	stillAt time.Time
	// foreign: when a manifest of another keeper came, and what its
	// chunks hold: the per-ban states it deletes next are no unbans
	// (movedLocked).
	foreign     time.Time
	foreignBans map[netip.Prefix]int64
	// deltas: the per-ban states on the broker newer than the cut, by
	// topic, to announce in the manifest (deltas.go); rescan: make them
	// anew from the view; deltasAt: when they were last announced.
	deltas   map[string]int64
	rescan   bool
	deltasAt time.Time
	// manSent counts the keeper's publishes of the list's manifest, and
	// manBack those that came back: the per-ban states the keeper deletes
	// after a cut go out after a manifest, so none of them comes back
	// before it (cleanBackLocked).
	manSent, manBack uint32

	// Read before Settle and live: manifests and chunks not adopted yet.
	readMan *wire.Manifest            // the manifest read before Settle
	next    *wire.Manifest            // a live manifest whose chunks are not all here
	other   map[uint64]map[int][]byte // chunks of generations not adopted, by generation
}

// sentManLocked publishes the manifest of list l as it is (sentLocked).
func (k *Keeper) sentManLocked(l *list) retain {
	l.ch.manSent++
	return k.sentLocked(wire.ManifestTopic(l.root), l.ch.manBytes)
}

// maxOtherGens bounds the generations of chunks kept aside live: the one
// that comes, and one that a manifest may still name.
const maxOtherGens = 3

// cmpPrefix is the order of entries in chunks: IPv4 first, then address,
// then prefix length.
func cmpPrefix(a, b netip.Prefix) int {
	return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
}

// keep puts a chunk aside until a manifest names its generation.
func (c *chunkSet) keep(gen uint64, n int, payload []byte) {
	if c.other == nil {
		c.other = map[uint64]map[int][]byte{}
	}
	if c.other[gen] == nil {
		for len(c.other) >= maxOtherGens { // drop the oldest
			oldest := uint64(1<<64 - 1)
			for g := range c.other {
				oldest = min(oldest, g)
			}
			delete(c.other, oldest)
		}
		c.other[gen] = map[int][]byte{}
	}
	if n < wire.MaxChunks {
		c.other[gen][n] = payload
	}
}

// movedLocked reports whether a deletion of the state of p, at version
// at, now is likely another keeper's after its cut: one came within
// statedFor, and its chunks hold p at that version. A client's unban then
// is taken by its event.
func (c *chunkSet) movedLocked(p netip.Prefix, at int64, now time.Time) bool {
	v, ok := c.foreignBans[p]
	return ok && v == at && now.Sub(c.foreign) < statedFor
}

// foreignLocked notes another keeper's manifest m, with what its chunks
// hold if they are all here.
func (c *chunkSet) foreignLocked(root string, m wire.Manifest, now time.Time) {
	cs, err := checkChunks(root, m, c.other[m.Gen])
	if err != nil {
		return
	}
	c.foreign, c.foreignBans = now, map[netip.Prefix]int64{}
	for _, ch := range cs {
		for _, e := range ch.Entries {
			c.foreignBans[e.Prefix] = e.State.At.UnixMilli()
		}
	}
}

// chunkOf returns the index of the chunk whose range holds p; -1 if none.
func (c *chunkSet) chunkOf(p netip.Prefix) int {
	if c.man == nil || len(c.first) == 0 {
		return -1
	}
	j := sort.Search(len(c.first), func(j int) bool { return cmpPrefix(c.first[j], p) > 0 })
	return max(0, j-1)
}

// inChunksLocked reports whether the chunks of list i hold the ban of
// topic at version at.
func (k *Keeper) inChunksLocked(i int, topic string, at int64) bool {
	l := k.lists[i]
	t, err := wire.ParseTopic(l.root, topic)
	j := l.ch.chunkOf(t.Prefix)
	if err != nil || j < 0 || j >= len(l.ch.data) {
		return false
	}
	if l.ch.decIdx != j || l.ch.dec == nil {
		p, err := k.chunkLocked(l, j)
		c, err2 := wire.DecodeChunk(p)
		if err != nil || err2 != nil {
			return false
		}
		l.ch.dec, l.ch.decIdx = c.Entries, j
	}
	n, found := sort.Find(len(l.ch.dec), func(n int) int { return cmpPrefix(t.Prefix, l.ch.dec[n].Prefix) })
	return found && l.ch.dec[n].State.At.UnixMilli() == at
}

// readChunks takes a manifest or a chunk read before Settle.
func (k *Keeper) readChunks(i, what int, topic string, payload []byte) {
	l := k.lists[i]
	k.mu.Lock()
	defer k.mu.Unlock()
	if what == onManifest {
		l.ch.readMan = nil
		if len(payload) == 0 {
			return
		}
		m, err := wire.DecodeManifest(payload)
		if err != nil {
			k.quiet.warn("bad_manifest", "manifest does not parse: not believed", "list", l.root, "err", err)
			return
		}
		l.ch.readMan = &m
		return
	}
	if gen, n, ok := wire.ParseChunkTopic(l.root, topic); ok && len(payload) > 0 {
		l.ch.keep(gen, n, payload)
	}
}

// checkChunks decodes the chunks m names from have and checks each against
// m: its checksum, header and order. A damaged chunk is not believed.
func checkChunks(root string, m wire.Manifest, have map[int][]byte) ([]wire.Chunk, error) {
	out := make([]wire.Chunk, len(m.CRC))
	total := 0
	var last netip.Prefix
	for n, crc := range m.CRC {
		p, ok := have[n]
		if !ok {
			return nil, fmt.Errorf("chunk %d of %d missing", n, len(m.CRC))
		}
		if wire.ChunkCRC(p) != crc {
			return nil, fmt.Errorf("chunk %d: checksum %08x, the manifest says %08x", n, wire.ChunkCRC(p), crc)
		}
		c, err := wire.DecodeChunk(p)
		if err != nil {
			return nil, fmt.Errorf("chunk %d: %w", n, err)
		}
		if c.Root != root || c.Gen != m.Gen || c.Index != n || c.Count != len(m.CRC) {
			return nil, fmt.Errorf("%w: chunk %d says list %q, generation %x, %d of %d", wire.ErrBadChunk, n, wire.Clip(c.Root), c.Gen, c.Index, c.Count)
		}
		for _, e := range c.Entries {
			if last.IsValid() && cmpPrefix(last, e.Prefix) >= 0 {
				return nil, fmt.Errorf("%w: chunk %d: %s out of order", wire.ErrBadChunk, n, e.Prefix)
			}
			last = e.Prefix
		}
		total += len(c.Entries)
		out[n] = c
	}
	if total != m.Entries {
		return nil, fmt.Errorf("%w: %d entries, the manifest says %d", wire.ErrBadChunk, total, m.Entries)
	}
	return out, nil
}

// foldReadLocked adopts the chunks read before Settle, if the manifest
// read is of the list's epoch and every chunk it names is there intact.
// It reports whether it adopted them, and whether the manifest named
// chunks that are missing or damaged.
func (k *Keeper) foldReadLocked(i int) (adopted, damaged bool) {
	l := k.lists[i]
	m := l.ch.readMan
	l.ch.readMan = nil
	if m == nil || m.Epoch != l.rec.Epoch {
		return false, false
	}
	cs, err := checkChunks(l.root, *m, l.ch.other[m.Gen])
	if err != nil {
		k.log.Error("the list's chunks on the broker are damaged or missing: not believed; the keeper publishes them again from what it holds",
			"list", l.root, "gen", wire.GenString(m.Gen), "err", err)
		return false, true
	}
	k.adoptLocked(i, *m, cs, true)
	return true, false
}

// adoptLocked makes m and its chunks the list's and, with fold, folds
// their entries into the keeper's view: an entry the view holds at a later
// version stays as the view has it. Only what is read before Settle is
// folded: a keeper's view follows the events it has read, and chunks cut
// live by another keeper, further on in them, would make the keeper skip
// an event it has yet to read (the view says so already).
func (k *Keeper) adoptLocked(i int, m wire.Manifest, cs []wire.Chunk, fold bool) {
	l := k.lists[i]
	now := k.now()
	l.ch.man, l.ch.manBytes = &m, wire.EncodeManifest(m)
	l.ch.data, l.ch.first, l.ch.wrote = make([][]byte, len(cs)), make([]netip.Prefix, len(cs)), make([]time.Time, len(cs))
	l.ch.dec = nil
	delete(l.ch.other, m.Gen)
	for j, c := range cs {
		l.ch.data[j] = wire.EncodeChunk(c)
		if len(c.Entries) > 0 {
			l.ch.first[j] = c.Entries[0].Prefix
		} else if j > 0 {
			l.ch.first[j] = l.ch.first[j-1]
		}
		for _, e := range c.Entries {
			if fold {
				k.foldLocked(i, e, now)
			}
		}
	}
	if l.ch.cutAt.IsZero() || m.Cut.After(l.ch.cutAt) {
		l.ch.cutAt = m.Cut
	}
}

// foldLocked takes one chunk entry into the view.
func (k *Keeper) foldLocked(i int, e wire.Entry, now time.Time) {
	if _, live := e.State.Remaining(now); !live || k.guard.Check(e.Prefix) != nil {
		return // expired, or refused: the next cut sheds it
	}
	topic := wire.StateTopic(k.lists[i].root, e.Prefix)
	old, known := k.bans[topic]
	if known && old.at >= e.State.At.UnixMilli() {
		old.flags |= fChunk
		old.gen = k.gen
		k.bans[topic] = old
		return
	}
	n := k.entryLocked(i, e.State)
	n.flags = fChunk | old.flags&fState
	k.bans[topic] = n
	if n.exp != 0 && (!known || old.exp != n.exp) {
		k.scheduleLocked(topic, n.exp)
	}
}

// entryLocked returns the view's entry for state s of list i.
func (k *Keeper) entryLocked(i int, s wire.State) entry {
	return entry{at: s.At.UnixMilli(), exp: unixOrZero(s.Expires), gen: k.gen, list: uint8(i),
		meta: k.strs.id(meta{s.Reason, s.Origin, min(max(s.Count, 0), math.MaxInt32)})}
}

// stateOf returns the state an entry of the view stands for.
func (k *Keeper) stateOf(e entry) wire.State { return stateOfWith(&k.strs, e) }

// stateOfWith is stateOf with the interned strings strs.
func stateOfWith(strs *interned, e entry) wire.State {
	m := strs.str(e.meta)
	s := wire.State{At: time.UnixMilli(e.at), Reason: m.reason, Origin: m.origin, Count: m.count}
	if e.exp != 0 {
		s.Expires = time.Unix(e.exp, 0)
	}
	return s
}

// cutter reports whether this keeper cuts list l's chunks: the record
// names it. Another keeper of the list follows.
func (k *Keeper) cutter(l *list) bool { return l.settled && l.rec.Keeper == k.o.Name }

// manifest takes a live message on a list's manifest topic.
func (k *Keeper) manifest(i int, payload []byte) {
	l := k.lists[i]
	k.mu.Lock()
	if !l.settled || k.reading {
		k.mu.Unlock()
		k.readChunks(i, onManifest, "", payload)
		return
	}
	if k.echoLocked(wire.ManifestTopic(l.root), payload) { // our own coming back
		l.ch.manBack = min(l.ch.manBack+1, l.ch.manSent)
		var out []retain
		if len(k.revived) > 0 {
			out = k.fixRevivedLocked(l)
		}
		k.mu.Unlock()
		_ = k.publish(out)
		return
	}
	var out []retain
	m, err := wire.DecodeManifest(payload)
	if err == nil && (l.ch.man == nil || !bytes.Equal(payload, l.ch.manBytes)) && !sameChunks(l.ch.man, m) {
		l.ch.foreignLocked(l.root, m, k.now())
	}
	switch {
	case l.ch.man != nil && bytes.Equal(payload, l.ch.manBytes):
		// the one adopted, again
	case len(payload) == 0 || err != nil:
		if k.cutter(l) && l.ch.man != nil {
			k.quiet.warn("bad_manifest", "manifest deleted or broken: publishing it again", "list", l.root, "err", err)
			out = append(out, k.sentManLocked(l))
		}
	case m.Epoch != l.rec.Epoch:
		// Another keeper's, before the records agree: the winner's stands.
		if k.cutter(l) && l.ch.man != nil && l.rec.Epoch < m.Epoch {
			out = append(out, k.sentManLocked(l))
		}
	case l.ch.man != nil && m.Gen == l.ch.man.Gen && !k.cutter(l):
		k.rewrittenLocked(i, m)
	case l.ch.man != nil && k.cutter(l) && !m.Cut.After(l.ch.man.Cut):
		// Another keeper's older cut: ours stands.
		out = append(out, k.sentManLocked(l))
	default:
		l.ch.next = &m
		k.adoptNextLocked(i)
	}
	k.mu.Unlock()
	_ = k.publish(out)
}

// chunk takes a live message on a chunk topic of a list.
func (k *Keeper) chunk(i int, topic string, payload []byte) {
	l := k.lists[i]
	gen, n, _ := wire.ParseChunkTopic(l.root, topic)
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(payload) == 0 {
		return // a deleted chunk: the manifest says what counts
	}
	if c := &l.ch; c.man != nil && gen == c.man.Gen && n < len(c.data) &&
		(c.data[n] != nil && bytes.Equal(c.data[n], payload) || c.data[n] == nil && wire.ChunkCRC(payload) == c.man.CRC[n]) {
		return // our own coming back, or the one the broker holds
	}
	l.ch.keep(gen, n, payload)
	if l.settled && !k.reading {
		k.adoptNextLocked(i)
	}
}

// adoptNextLocked adopts the manifest of another generation that came
// live, once all its chunks are there: another keeper cut.
func (k *Keeper) adoptNextLocked(i int) {
	l := k.lists[i]
	m := l.ch.next
	if m == nil || len(l.ch.other[m.Gen]) < len(m.CRC) {
		return
	}
	l.ch.next = nil
	cs, err := checkChunks(l.root, *m, l.ch.other[m.Gen])
	if err != nil {
		k.quiet.error("bad_chunk", "another keeper's chunks are damaged: not believed", "list", l.root, "err", err)
		return
	}
	k.adoptLocked(i, *m, cs, false)
	l.ch.changes, l.ch.dirty = 0, nil
}

// rewrittenLocked takes the cutter's manifest of the generation adopted,
// with chunks rewritten: the entries a rewritten chunk no longer holds are
// unbanned, unless the view holds a later state of theirs than the chunk.
func (k *Keeper) rewrittenLocked(i int, m wire.Manifest) {
	l := k.lists[i]
	if len(m.CRC) != len(l.ch.data) {
		return
	}
	have := l.ch.other[m.Gen]
	for j, crc := range m.CRC {
		if crc == l.ch.man.CRC[j] {
			continue
		}
		p, ok := have[j]
		nc, err := wire.DecodeChunk(p)
		if !ok || wire.ChunkCRC(p) != crc || err != nil || nc.Gen != m.Gen || nc.Index != j || nc.Root != l.root {
			k.quiet.error("bad_chunk", "another keeper's rewritten chunk is damaged or missing: not believed", "list", l.root, "chunk", j)
			continue
		}
		op, _ := k.chunkLocked(l, j)
		oc, _ := wire.DecodeChunk(op)
		kept := map[netip.Prefix]bool{}
		for _, e := range nc.Entries {
			kept[e.Prefix] = true
		}
		for _, e := range oc.Entries {
			topic := wire.StateTopic(l.root, e.Prefix)
			// As another keeper's state: the keeper's own recent decision
			// on the ban's events stands (recentLocked).
			if b, ok := k.bans[topic]; ok && !kept[e.Prefix] && b.at <= e.State.At.UnixMilli() && !k.recentLocked(topic) {
				k.dropLocked(topic)
			}
		}
		l.ch.data[j], l.ch.man.CRC[j], l.ch.dec = p, crc, nil
		delete(have, j)
	}
	l.ch.man.Entries, l.ch.man.Deltas = m.Entries, m.Deltas
	l.ch.manBytes = wire.EncodeManifest(*l.ch.man)
}

// sameChunks reports whether m names the chunks a names, as they are:
// a manifest rewritten for its deltas alone (deltas.go) is no cut.
func sameChunks(a *wire.Manifest, m wire.Manifest) bool {
	return a != nil && a.Epoch == m.Epoch && a.Gen == m.Gen && a.Cut.Equal(m.Cut) && a.Entries == m.Entries && slices.Equal(a.CRC, m.CRC)
}

// unbannedLocked notes that the ban of topic was lifted: the chunk that
// holds it is rewritten (flush).
func (k *Keeper) unbannedLocked(i int, topic string, e entry) {
	l := k.lists[i]
	l.ch.changes++
	if !chunksBuilt || e.flags&fChunk == 0 || !k.cutter(l) {
		return
	}
	t, err := wire.ParseTopic(l.root, topic)
	j := l.ch.chunkOf(t.Prefix)
	if err != nil || j < 0 {
		return
	}
	k.dirtyLocked(l, j)
}

// dirtyLocked marks chunk j of list l for a rewrite, and wakes Run.
func (k *Keeper) dirtyLocked(l *list, j int) {
	if l.ch.dirty == nil {
		l.ch.dirty = map[int]bool{}
	}
	l.ch.dirty[j] = true
	k.woken()
}

// errNoChunks: a list without chunks has none to rewrite.
var errNoChunks = errors.New("no chunks")

// rewriteLocked rewrites chunk j of list i without the bans the view no
// longer holds; ok false when it holds them all.
func (k *Keeper) rewriteLocked(i, j int) (retain, bool, error) {
	l := k.lists[i]
	if l.ch.man == nil || j >= len(l.ch.data) {
		return retain{}, false, errNoChunks
	}
	p, err := k.chunkLocked(l, j)
	if err != nil {
		return retain{}, false, err
	}
	c, err := wire.DecodeChunk(p)
	if err != nil {
		return retain{}, false, err
	}
	kept := c.Entries[:0]
	for _, e := range c.Entries {
		// Kept while the view holds the ban since the chunk did: a ban
		// lifted and made again since is per-ban state now.
		if b, ok := k.bans[wire.StateTopic(l.root, e.Prefix)]; ok && b.flags&fChunk != 0 {
			kept = append(kept, e)
		}
	}
	if len(kept) == len(c.Entries) {
		return retain{}, false, nil
	}
	l.ch.man.Entries -= len(c.Entries) - len(kept)
	c.Entries = kept
	p = wire.EncodeChunk(c)
	l.ch.data[j], l.ch.man.CRC[j], l.ch.dec = p, wire.ChunkCRC(p), nil
	return retain{wire.ChunkTopic(l.root, c.Gen, j), p}, true, nil
}

// flushLocked rewrites the dirty chunks of list i that were not written
// within rewriteEvery, then the manifest. It returns the messages and the
// time of the next rewrite due (zero: none).
func (k *Keeper) flushLocked(i int, now time.Time) ([]retain, time.Time) {
	l := k.lists[i]
	var out []retain
	var next time.Time
	for j := range l.ch.dirty {
		if !k.cutter(l) || l.ch.man == nil || j >= len(l.ch.wrote) {
			delete(l.ch.dirty, j)
			continue
		}
		if due := l.ch.wrote[j].Add(rewriteEvery); now.Before(due) {
			if next.IsZero() || due.Before(next) {
				next = due
			}
			continue
		}
		delete(l.ch.dirty, j)
		r, ok, err := k.rewriteLocked(i, j)
		if err != nil {
			k.quiet.error("rewrite", "keeper could not rewrite a chunk: cutting the list again", "list", l.root, "chunk", j, "err", err)
			l.ch.recut = true // from the view, as at start (the broker's chunk is not the manifest's)
		}
		if ok {
			l.ch.wrote[j] = now
			out = append(out, r)
		}
	}
	if len(out) > 0 {
		l.ch.manBytes = wire.EncodeManifest(*l.ch.man)
		out = append(out, k.sentManLocked(l))
	}
	return out, next
}

// chunkLocked returns the payload of chunk j of list l: the keeper's
// copy, or once released the broker's, if it is still the one the
// manifest names.
func (k *Keeper) chunkLocked(l *list, j int) ([]byte, error) {
	if l.ch.man == nil || j >= len(l.ch.data) {
		return nil, errNoChunks
	}
	if p := l.ch.data[j]; p != nil || k.held == nil {
		return p, nil
	}
	p, ok := k.held.RetainedPayload(wire.ChunkTopic(l.root, l.ch.man.Gen, j))
	if !ok || wire.ChunkCRC(p) != l.ch.man.CRC[j] {
		return nil, fmt.Errorf("%w: chunk %d of generation %s is no longer on the broker as the manifest says", wire.ErrBadChunk, j, wire.GenString(l.ch.man.Gen))
	}
	return p, nil
}

// releaseChunksLocked drops the keeper's copy of each chunk the broker
// holds byte for byte (a Sink that is a RetainedReader): after a cut or a
// rewrite was published, or chunks adopted.
func (k *Keeper) releaseChunksLocked() {
	if k.held == nil {
		return
	}
	for _, l := range k.lists {
		for j, p := range l.ch.data {
			if p == nil || l.ch.man == nil {
				continue
			}
			if q, ok := k.held.RetainedPayload(wire.ChunkTopic(l.root, l.ch.man.Gen, j)); ok && bytes.Equal(p, q) {
				l.ch.data[j] = nil
			}
		}
	}
}

// interned holds the reasons, origins and escalation counts of the bans
// once each: a few jail and host names and counts for a list of a million.
type interned struct {
	ids  map[meta]uint32
	strs []meta
}

// meta is a state's reason, origin and count.
type meta struct {
	reason, origin string
	count          int
}

func newInterned() interned { return interned{ids: map[meta]uint32{{}: 0}, strs: []meta{{}}} }

func (t *interned) id(m meta) uint32 {
	if id, ok := t.ids[m]; ok {
		return id
	}
	id := uint32(len(t.strs))
	t.ids[m] = id
	t.strs = append(t.strs, m)
	return id
}

func (t *interned) str(id uint32) meta { return t.strs[id] }
