// Package listread assembles a compact list (docs/compact-list.md) as a
// reader receives it in one subscription: the manifest and the chunks of
// its generation, in any order, with other generations and half-written
// rewrites among them. The bridge and `vallum list` read a list with it;
// each merges the per-ban state (the deltas) itself, last writer wins by
// the state's At (Newer).
package listread

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vallum/vallum/internal/wire"
)

// Reader takes the chunks a manifest names, once each, and hands their
// entries to Take as it takes them: nothing of a chunk is kept once it is
// taken, so a list of a million costs what the caller keeps of it. The
// raw payloads of chunks whose manifest has not come yet are kept until it
// comes (the broker sends the filters of one SUBSCRIBE in any order).
// Not safe for concurrent use.
type Reader struct {
	Root string
	// Take gets every entry of every chunk taken, expired ones too.
	Take func(wire.Entry)
	// Begin, when set, is told which chunk the entries Take gets next come
	// from (the web view's index replaces a rewritten chunk's entries).
	Begin func(gen uint64, n int)

	man     *wire.Manifest
	pending map[uint64]map[int][]byte // chunks of generations no manifest named yet
	taken   map[int]uint32            // index -> checksum taken
	damaged map[int]string            // index -> why the last copy was refused
	stale   bool                      // a chunk taken was replaced since
	buf     []wire.Entry              // the entries of the chunk being taken
}

// New returns a Reader of list root.
func New(root string, take func(wire.Entry)) *Reader {
	return &Reader{Root: root, Take: take, pending: map[uint64]map[int][]byte{},
		taken: map[int]uint32{}, damaged: map[int]string{}}
}

// Manifest takes a manifest payload: the chunks of its generation that
// came first and match its checksums are taken now. An empty payload (a
// deleted manifest) leaves the list without one. It returns an error for
// a manifest that does not parse (wire.ErrBadPayload), which changes
// nothing, and for the chunks it refused (wire.ErrBadChunk).
func (r *Reader) Manifest(payload []byte) error {
	if len(payload) == 0 {
		r.stale = r.stale || len(r.taken) > 0
		r.man, r.taken = nil, map[int]uint32{}
		return nil
	}
	m, err := wire.DecodeManifest(payload)
	if err != nil {
		return err
	}
	if r.man != nil && r.man.Gen != m.Gen {
		r.stale = r.stale || len(r.taken) > 0
		r.taken = map[int]uint32{}
	}
	for n, sum := range r.taken {
		if n >= len(m.CRC) || m.CRC[n] != sum { // rewritten after it was taken
			r.stale = true
			delete(r.taken, n)
		}
	}
	// A chunk refused as damaged stays so while the manifest names it as
	// it was: a manifest rewritten for its deltas alone leaves it damaged.
	for n := range r.damaged {
		if r.man == nil || r.man.Gen != m.Gen || n >= len(m.CRC) || m.CRC[n] != r.man.CRC[n] {
			delete(r.damaged, n)
		}
	}
	r.man = &m
	for gen := range r.pending {
		if gen < m.Gen {
			delete(r.pending, gen) // an older cut: never to be named again
		}
	}
	var errs []error
	for n, payload := range r.pending[m.Gen] {
		if r.matches(n, payload) {
			delete(r.pending[m.Gen], n)
			errs = append(errs, r.take(n, payload))
		}
	}
	return errors.Join(errs...)
}

// Chunk takes a chunk message of list Root, or keeps it until a manifest
// names it. It returns an error for a topic that is not a chunk of Root,
// and for a chunk of the manifest's generation and checksum that does not
// parse (damaged on the broker: refused).
func (r *Reader) Chunk(topic string, payload []byte) error {
	gen, n, ok := wire.ParseChunkTopic(r.Root, topic)
	if !ok {
		return fmt.Errorf("%w: %q is not a chunk topic of %s", wire.ErrBadChunk, wire.Clip(topic), r.Root)
	}
	switch {
	case len(payload) == 0: // deleted: an old generation going away
		delete(r.pending[gen], n)
	case r.man != nil && gen == r.man.Gen && r.matches(n, payload):
		if _, done := r.taken[n]; !done {
			return r.take(n, payload)
		}
	case r.man != nil && gen < r.man.Gen:
	default: // a newer cut, or a rewrite whose manifest is on its way
		if r.pending[gen] == nil {
			r.pending[gen] = map[int][]byte{}
		}
		r.pending[gen][n] = payload
	}
	return nil
}

func (r *Reader) matches(n int, payload []byte) bool {
	return n < len(r.man.CRC) && wire.ChunkCRC(payload) == r.man.CRC[n]
}

// take decodes chunk n of the manifest's generation and hands on its
// entries; a chunk that does not parse or whose header does not match
// its topic and manifest is refused whole.
func (r *Reader) take(n int, payload []byte) error {
	c, err := wire.DecodeChunkInto(payload, r.buf)
	if err == nil && (c.Root != r.Root || c.Gen != r.man.Gen || c.Index != n || c.Count != len(r.man.CRC)) {
		err = fmt.Errorf("%w: header says list %q generation %s chunk %d of %d", wire.ErrBadChunk,
			wire.Clip(c.Root), wire.GenString(c.Gen), c.Index, c.Count)
	}
	if err != nil {
		r.damaged[n] = err.Error()
		return fmt.Errorf("list %s chunk %d of generation %s: %w", r.Root, n, wire.GenString(r.man.Gen), err)
	}
	delete(r.damaged, n)
	r.buf = c.Entries
	if r.Begin != nil {
		r.Begin(c.Gen, n)
	}
	for _, e := range c.Entries {
		r.Take(e)
	}
	r.taken[n] = r.man.CRC[n]
	return nil
}

// Status is how far a Reader got.
type Status struct {
	Manifest bool      // a manifest came (and was not deleted)
	Gen      uint64    // its generation
	Cut      time.Time // when its chunks were cut
	Epoch    string    // its epoch
	CRC      []uint32  // its checksums
	Entries  int       // the bans it says its chunks hold
	Complete bool      // every chunk it names was taken, and none replaced since
	Stale    bool      // a chunk taken was replaced (rewritten, or another generation) after it was taken
	Why      string    // what is missing, when not Complete
	// Deltas are the per-ban states the manifest announces; nil: none
	// (a keeper of an earlier release). See DeltasWhy.
	Deltas *wire.Deltas
}

// Covers reports whether a per-ban state of version at (Unix
// milliseconds) is one the manifest announces: newer than the cut, not
// newer than its Upto.
func (s Status) Covers(at int64) bool {
	return s.Deltas != nil && at > s.Cut.UnixMilli() && at <= s.Deltas.Upto.UnixMilli()
}

// DeltasWhy says why the per-ban states a reader read (read: those Covers
// takes) are not those the manifest announces; "" when they are, or when
// it announces none. A reader that reads a different set read the list
// partially, unless a state changed meanwhile: the list's keeper
// announces again within a second or two, and a read that matches it is
// whole.
func (s Status) DeltasWhy(read wire.DeltaSum) string {
	if s.Deltas == nil || read == s.Deltas.DeltaSum {
		return ""
	}
	return fmt.Sprintf("per-ban states made since the cut: read %d, the manifest of generation %s announces %d up to %s (digest %016x, read %016x)",
		read.Count, wire.GenString(s.Gen), s.Deltas.Count, s.Deltas.Upto.UTC().Format(time.RFC3339Nano), s.Deltas.Sum, read.Sum)
}

// StateSum sums the per-ban states a reader read (prefix -> version, Unix
// milliseconds) that the manifest announces (Covers) and that l, the list
// read, shows: a chunk entry of the same version counts as the state, one
// newer hides it. `vallum list` checks it with DeltasWhy, as the bridge
// checks its own reading.
func (s Status) StateSum(l List, states map[netip.Prefix]int64) wire.DeltaSum {
	var d wire.DeltaSum
	for p, at := range states {
		if got, ok := l[p]; ok && got.At.UnixMilli() == at && s.Covers(at) {
			d.Add(p, at)
		}
	}
	return d
}

// Status says whether the chunks read so far are the whole list. Without
// a manifest there are no chunks to wait for: Complete.
func (r *Reader) Status() Status {
	if r.man == nil {
		s := Status{Complete: !r.stale, Stale: r.stale}
		if r.stale {
			s.Why = "the list's manifest was deleted after chunks were read"
		}
		return s
	}
	s := Status{Manifest: true, Gen: r.man.Gen, Cut: r.man.Cut, Epoch: r.man.Epoch, CRC: r.man.CRC, Entries: r.man.Entries, Stale: r.stale,
		Deltas: r.man.Deltas}
	var missing, damaged []int
	for n := range r.man.CRC {
		if _, ok := r.taken[n]; ok {
			continue
		}
		if _, ok := r.damaged[n]; ok {
			damaged = append(damaged, n)
		} else {
			missing = append(missing, n)
		}
	}
	var why []string
	if len(damaged) > 0 {
		why = append(why, fmt.Sprintf("chunks %s refused as damaged (%s)", ints(damaged), wire.Clip(r.damaged[damaged[0]])))
	}
	if len(missing) > 0 {
		why = append(why, fmt.Sprintf("chunks %s missing or not matching the manifest", ints(missing)))
	}
	if r.stale {
		why = append(why, "a chunk read was rewritten since")
	}
	s.Complete = len(why) == 0
	if !s.Complete {
		s.Why = fmt.Sprintf("generation %s of %d chunks: %s", wire.GenString(r.man.Gen), len(r.man.CRC), strings.Join(why, "; "))
	}
	return s
}

// ints spells chunk numbers for a log line: the first few.
func ints(n []int) string {
	slices.Sort(n)
	var b strings.Builder
	for i, v := range n {
		if i == 5 {
			fmt.Fprintf(&b, " and %d more", len(n)-i)
			break
		}
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(strconv.Itoa(v))
	}
	return b.String()
}

// SameEpoch reports whether two epochs name one life of a list: the v2
// spelling (wire.EpochV2) of an epoch is the same epoch.
func SameEpoch(a, b string) bool { return wire.EpochV2(a) == wire.EpochV2(b) }

// List is a list read whole, as `vallum list` prints it: chunk entries and
// per-ban states merged last writer wins by At.
type List map[netip.Prefix]wire.State

// Put keeps s for p unless the list holds a later version of p.
func (l List) Put(p netip.Prefix, s wire.State) {
	if old, ok := l[p]; !ok || !s.At.Before(old.At) {
		l[p] = s
	}
}
