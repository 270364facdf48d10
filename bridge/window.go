package bridge

import (
	"errors"
	"net/netip"
	"slices"
	"time"

	"github.com/vallum/vallum/internal/listread"
	"github.com/vallum/vallum/internal/wire"
)

// seen is what a sync's window read of one list: per prefix, the version
// (the state's At, Unix milliseconds) of the newest state or chunk entry,
// negative when that newest one is no ban (expired, or lifted). Chunks and
// per-ban state (the changes since the chunks were cut) are merged by it,
// last writer wins: of two reads of one prefix the later version is
// applied and the older one skipped, in whatever order they come.
//
// Memory: as ownership keys its entries, about 12 bytes per IPv4 address
// (a million: tens of MB less than a map of netip.Prefix).
type seen struct {
	v4     map[[4]byte]int64
	other  map[netip.Prefix]int64
	muts   int                       // changes, for deltaCheck's memo
	seeded map[netip.Prefix]struct{} // seed's, until read in the window
}

// stateBit marks a version a per-ban state was read at (not a chunk
// entry alone): the per-ban states the manifest announces (wire.Deltas)
// are counted from these. Versions are Unix milliseconds, far below it.
const stateBit = 1 << 62

// ver is the version a value of seen stands for.
func ver(v int64) int64 { return abs(v) &^ stateBit }

// newSeen returns an empty seen sized for about n IPv4 bans: a late join
// of a million fills it without growing it twenty times.
func newSeen(n int) *seen {
	return &seen{v4: make(map[[4]byte]int64, n), other: map[netip.Prefix]int64{}}
}

// peekEntries is how many bans a manifest says its chunks hold, at most
// limit (the sets' capacity), for sizing the window; 0 when it does not
// parse.
func peekEntries(payload []byte, limit int) int {
	m, err := wire.DecodeManifest(payload)
	if err != nil {
		return 0
	}
	return min(m.Entries, limit)
}

func (s *seen) get(p netip.Prefix) (int64, bool) {
	if s == nil {
		return 0, false
	}
	if p.Addr().Is4() && p.Bits() == 32 {
		v, ok := s.v4[p.Addr().As4()]
		return v, ok
	}
	v, ok := s.other[p]
	return v, ok
}

// has reports whether the newest read of p is a ban.
func (s *seen) has(p netip.Prefix) bool {
	v, ok := s.get(p)
	return ok && v > 0
}

// take notes a read of p at version at (ban or not; a per-ban state or
// not), and reports whether it is the newest read of p so far: false, it
// is older than one already applied, and must not be, or it is a ban read
// again at the version already applied (a chunk entry and the per-ban
// state it was cut from: the keeper deletes that state some seconds after
// its cut, and a host that joins meanwhile reads both). A seeded ban was
// applied before the window opened, perhaps to a set destroyed since:
// read again, it is applied again.
func (s *seen) take(p netip.Prefix, at int64, ban, state bool) bool {
	old, ok := s.get(p)
	if ok && ver(old) > at {
		return false
	}
	at = max(at, 1)
	again := ban && ok && old > 0 && ver(old) == at && !s.isSeeded(p)
	// A chunk entry and a per-ban state of one version: the state is read.
	state = state || ok && ver(old) == at && abs(old)&stateBit != 0
	s.set(p, at, ban, state)
	if s.seeded != nil {
		delete(s.seeded, p)
	}
	return !again
}

// seed notes a ban whose state came live just before the window opened
// (see recentState.seed).
func (s *seen) seed(p netip.Prefix, at int64) {
	if s.take(p, at, true, true) {
		if s.seeded == nil {
			s.seeded = map[netip.Prefix]struct{}{}
		}
		s.seeded[p] = struct{}{}
	}
}

func (s *seen) isSeeded(p netip.Prefix) bool {
	_, ok := s.seeded[p]
	return ok
}

func (s *seen) set(p netip.Prefix, at int64, ban, state bool) {
	s.muts++
	v := at
	if state {
		v |= stateBit
	}
	if !ban {
		v = -v
	}
	if p.Addr().Is4() && p.Bits() == 32 {
		s.v4[p.Addr().As4()] = v
	} else {
		s.other[p] = v
	}
}

// stateGone notes that the per-ban state of p was deleted, on a list
// where a deletion is no unban (its keeper deleted what a cut folded in).
func (s *seen) stateGone(p netip.Prefix) {
	if v, ok := s.get(p); ok && abs(v)&stateBit != 0 {
		s.set(p, ver(v), v > 0, false)
	}
}

// deltas returns the per-ban states read whose versions covers takes.
func (s *seen) deltas(covers func(int64) bool) wire.DeltaSum {
	var d wire.DeltaSum
	if s == nil {
		return d
	}
	for a, v := range s.v4 {
		if abs(v)&stateBit != 0 && covers(ver(v)) {
			d.Add(netip.PrefixFrom(netip.AddrFrom4(a), 32), ver(v))
		}
	}
	for p, v := range s.other {
		if abs(v)&stateBit != 0 && covers(ver(v)) {
			d.Add(p, ver(v))
		}
	}
	return d
}

// len is the number of bans read.
func (s *seen) len() int {
	n := 0
	if s == nil {
		return 0
	}
	for _, v := range s.v4 {
		if v > 0 {
			n++
		}
	}
	for _, v := range s.other {
		if v > 0 {
			n++
		}
	}
	return n
}

func abs(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

// chunked is a list's compact form as a sync read it: the chunks its
// manifest named, read with listread.
type chunked struct {
	rd   *listread.Reader
	ops  []setOp // the ops of the message being decoded
	room int     // how many it makes room for at once
}

// chunkOps turns a manifest or chunk message into the ops of the chunk
// entries it lets the window take: an add for each ban newer than what the
// window read of its prefix. Outside a window they are not read (the
// bridge is subscribed to the chunks only during a sync); a live manifest
// goes to manifestLive.
//
// room is, for the first manifest of the window, how many bans it says the
// list holds: the worker makes room for them (ownership.reserve).
func (d *decoder) chunkOps(l List, topic string, payload []byte, manifest bool) (ops []setOp, room int) {
	s := &d.sync
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.open {
		if manifest {
			d.later.manifestLive(d.shared, l.Root, payload)
		}
		return nil, 0
	}
	ch := s.chunks[l.Root]
	if ch == nil {
		ch = &chunked{}
		ch.rd = listread.New(l.Root, func(e wire.Entry) {
			if ch.ops == nil {
				ch.ops = make([]setOp, 0, ch.room)
			}
			ch.ops = d.entryOp(s, l, e, ch.ops)
		})
		s.chunks[l.Root] = ch
	}
	var err error
	if manifest {
		ch.room = wire.MaxChunkEntries // the chunks that came before it
		if _, ok := s.present[l.Root]; !ok && len(payload) > 0 {
			room = peekEntries(payload, int(d.opts.MaxElem))
			s.present[l.Root] = newSeen(room)
		}
		err = ch.rd.Manifest(payload)
	} else {
		ch.room = min(len(payload)/14, wire.MaxChunkEntries) // an entry is at least 14 bytes
		err = ch.rd.Chunk(topic, payload)
	}
	if errors.Is(err, wire.ErrBadPayload) {
		d.refuse.refuse("bad_manifest", topic, "topic", wire.Clip(topic), "err", err)
	} else if err != nil {
		d.refuse.refuse("bad_chunk", topic, "topic", wire.Clip(topic), "err", err)
	}
	ops = ch.ops
	ch.ops = nil
	return ops, room
}

// entryOp appends the add of a chunk entry to ops, when it is the newest
// read of its prefix and a ban still; the window notes it either way.
// Called with s.mu held.
func (d *decoder) entryOp(s *syncer, l List, e wire.Entry, ops []setOp) []setOp {
	left, active := e.State.Remaining(time.Now())
	w := s.present[l.Root]
	if w == nil {
		w = newSeen(0)
		s.present[l.Root] = w
	}
	if !w.take(e.Prefix, e.State.At.UnixMilli(), active, false) || !active || !d.allowed(l.Root, e.Prefix) {
		return ops
	}
	return append(ops, setOp{set: l.setFor(e.Prefix), op: Op{Action: Add, Prefix: e.Prefix, Timeout: left, Comment: CommentState}})
}

// chunkRefs is what the last sync of each list took of its chunks, to
// notice a rewrite that came just after it.
type chunkRefs struct {
	took    map[string]listread.Status // by list root
	at      time.Time                  // when the last sync ended
	partial map[string]bool            // lists the last sync read partially
}

// raceWindow is how long after a sync a change of the chunks it read makes
// the bridge sync again. An unban lifts the ban's state at once and the
// keeper rewrites its chunk a moment later (at most a second, coalesced):
// a host that read the old chunk before the rewrite and subscribed to the
// state after the unban holds the ban. An unban while the sync reads wins
// in the window (the state's deletion is newer than the chunk's entry),
// and a host already synced gets the unban itself.
var raceWindow = 10 * time.Second // a variable for the tests

// manifestLive looks at a manifest that came outside a sync: a list read
// partially syncs again at once, as does one whose chunks changed just
// after the sync read them. Under a stream of unbans each sync would see a
// rewrite after it: such syncs are at most one every 3 x raceWindow.
// Called with the syncer locked.
func (l *later) manifestLive(s *shared, root string, payload []byte) {
	l.mu.Lock()
	refs, last := l.refs, l.manifest
	l.mu.Unlock()
	if refs.partial[root] {
		if time.Since(last) >= recentFor { // else the lost list's retry comes
			l.noteManifestSync()
			s.syncLater(0, "a new manifest came for a list read partially")
		}
		return
	}
	took, ok := refs.took[root]
	if !ok || !took.Manifest || time.Since(refs.at) > raceWindow || time.Since(last) < 3*raceWindow || len(payload) == 0 {
		return
	}
	m, err := wire.DecodeManifest(payload)
	if err != nil || (m.Gen == took.Gen && slices.Equal(m.CRC, took.CRC)) {
		return
	}
	l.noteManifestSync()
	s.syncLater(0, "the list's chunks changed just after the sync read them")
}

func (l *later) noteManifestSync() {
	l.mu.Lock()
	l.manifest = time.Now()
	l.mu.Unlock()
}

// took notes what a closing window read of each list's chunks.
func (l *later) took(chunks map[string]*chunked, p map[string]partial) {
	refs := chunkRefs{took: map[string]listread.Status{}, at: time.Now(), partial: map[string]bool{}}
	for root, ch := range chunks {
		refs.took[root] = ch.rd.Status()
	}
	for root, why := range p {
		refs.partial[root] = !why.stale
	}
	l.mu.Lock()
	l.refs = refs
	l.mu.Unlock()
}

// chunksAlone reports whether list root is kept as chunks without per-ban
// state for every ban: its keeper record's epoch, in this window or at
// the last trusted sync, is in the v2 spelling (wire.EpochV2). Its keeper
// deletes the per-ban states a cut folded into chunks.
func (d *decoder) chunksAlone(root string) bool {
	d.sync.mu.Lock()
	rec, ok := d.sync.records[root]
	open := d.sync.open
	d.sync.mu.Unlock()
	if open && ok {
		return rec.ok && wire.IsEpochV2(rec.rec.Epoch)
	}
	known, _ := d.epochs.epoch(root)
	return wire.IsEpochV2(known)
}

// deltaMemo is the last deltaCheck of a list: its result, for a window
// and manifest unchanged since (every chunk message asks again).
type deltaMemo struct {
	muts int
	gen  uint64
	d    wire.Deltas
	why  string
}

// deltaCheck says why the per-ban states the window read of list root are
// not those its manifest announces (see listread.Status.DeltasWhy); ""
// when they are. Its chunks must be read whole first: they are checked
// first. Called with s.mu held.
func (s *syncer) deltaCheck(root string, st listread.Status) string {
	if st.Deltas == nil || !st.Complete {
		return ""
	}
	w := s.present[root]
	muts := 0
	if w != nil {
		muts = w.muts
	}
	if m, ok := s.memo[root]; ok && m.muts == muts && m.gen == st.Gen && m.d == *st.Deltas {
		return m.why
	}
	why := st.DeltasWhy(w.deltas(st.Covers))
	if s.memo == nil {
		s.memo = map[string]deltaMemo{}
	}
	s.memo[root] = deltaMemo{muts, st.Gen, *st.Deltas, why}
	return why
}
