package web

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vallum/vallum/internal/wire"
)

// keeperSim publishes a list as the keeper does (internal/keeper, cut.go):
// a v2 record, then cuts of chunks and a manifest, into an Index.
type keeperSim struct {
	x     *Index
	root  string
	epoch string
	gen   uint64
	man   wire.Manifest
	parts [][]wire.Entry // the current generation's chunks
}

func newKeeperSim(x *Index, root string, live bool) *keeperSim {
	k := &keeperSim{x: x, root: root, epoch: wire.EpochV2("0123456789abcdef")}
	x.Feed(wire.RecordTopic(root), wire.EncodeRecord(wire.Record{Epoch: k.epoch, Since: time.Now()}), live)
	return k
}

// cut publishes bans as a new generation in chunks of per: the chunks,
// then the manifest, then the old chunks deleted.
func (k *keeperSim) cut(bans []wire.Entry, per int, live bool) {
	old, oldN := k.gen, len(k.parts)
	k.gen++
	k.parts = nil
	for i := 0; i < len(bans); i += per {
		k.parts = append(k.parts, slices.Clone(bans[i:min(len(bans), i+per)]))
	}
	k.man = wire.Manifest{Epoch: k.epoch, Gen: k.gen, Cut: time.Now(), Entries: len(bans), CRC: make([]uint32, len(k.parts))}
	for n := range k.parts {
		k.publishChunk(n, live)
	}
	k.x.Feed(wire.ManifestTopic(k.root), wire.EncodeManifest(k.man), live)
	for n := range oldN {
		k.x.Feed(wire.ChunkTopic(k.root, old, n), nil, live)
	}
}

func (k *keeperSim) publishChunk(n int, live bool) {
	b := wire.EncodeChunk(wire.Chunk{Root: k.root, Gen: k.gen, Index: n, Count: len(k.parts), Entries: k.parts[n]})
	k.man.CRC[n] = wire.ChunkCRC(b)
	k.x.Feed(wire.ChunkTopic(k.root, k.gen, n), b, live)
}

// rewrite drops p from its chunk: the chunk, then the manifest.
func (k *keeperSim) rewrite(p netip.Prefix, live bool) {
	for n, part := range k.parts {
		if i := slices.IndexFunc(part, func(e wire.Entry) bool { return e.Prefix == p }); i >= 0 {
			k.parts[n] = slices.Delete(part, i, i+1)
			k.man.Entries--
			k.publishChunk(n, live)
			k.x.Feed(wire.ManifestTopic(k.root), wire.EncodeManifest(k.man), live)
			return
		}
	}
}

func entries(first, n int, at time.Time) []wire.Entry {
	out := make([]wire.Entry, n)
	for i := range out {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, byte((first + i) >> 8), byte(first + i)}), 32)
		out[i] = wire.Entry{Prefix: p, State: wire.State{At: at, Reason: "feed", Origin: "import"}}
	}
	return out
}

func count(t *testing.T, x *Index, list string) int {
	t.Helper()
	x.flush()
	pg, ok := x.Bans(list, "", 0, 1)
	if !ok {
		t.Fatalf("no list %s", list)
	}
	return pg.Total
}

func has(x *Index, list string, p netip.Prefix) bool {
	x.flush()
	pg, _ := x.Bans(list, wire.FormatPrefix(p), 0, 10)
	for _, b := range pg.Bans {
		if b.Prefix == wire.FormatPrefix(p) {
			return true
		}
	}
	return false
}

// drain returns the live events sent so far.
func drain(x *Index, ch <-chan Event) []Event {
	x.flush()
	var out []Event
	for {
		select {
		case e := <-ch:
			out = append(out, e)
		default:
			return out
		}
	}
}

// A v2 list as its keeper keeps it: per-ban states folded into a cut and
// then deleted stay banned; a burst that never had a state shows from its
// chunks, as one line of the live stream; a chunk rewritten without a ban
// unbans it, as does a del event; a new generation replaces the old one.
func TestIndexReadsChunks(t *testing.T) {
	x := NewIndex([]string{"feed"})
	ch, stop := x.Watch()
	defer stop()
	k := newKeeperSim(x, "feed", true)
	at := time.Now().Add(-time.Minute).Truncate(time.Millisecond)

	// Ten per-ban states, then a cut folds them in and deletes them.
	states := entries(0, 10, at)
	for _, e := range states {
		x.Feed(wire.StateTopic("feed", e.Prefix), wire.EncodeState(e.State), true)
	}
	if n := count(t, x, "feed"); n != 10 {
		t.Fatalf("%d bans after 10 states", n)
	}
	drain(x, ch)
	k.cut(states, 4, true)
	for _, e := range states {
		x.Feed(wire.StateTopic("feed", e.Prefix), nil, true)
	}
	if n := count(t, x, "feed"); n != 10 {
		t.Fatalf("%d bans after a cut deleted the folded states, want 10", n)
	}
	if ev := drain(x, ch); len(ev) != 0 {
		t.Fatalf("a cut of what was shown sent %d live events: %+v", len(ev), ev[0])
	}

	// A burst of 5,000 with no per-ban state: a cut of 5,010.
	all := append(slices.Clone(states), entries(10, 5000, at.Add(time.Second))...)
	k.cut(all, 1000, true)
	if n := count(t, x, "feed"); n != 5010 {
		t.Fatalf("%d bans after a burst's cut, want 5010", n)
	}
	ev := drain(x, ch)
	if len(ev) != 1 || ev[0].Kind != EventBan || ev[0].Count != 5000 || !strings.Contains(ev[0].Msg, "5000") {
		t.Fatalf("a burst of 5,000 sent the live stream %d events (first %+v), want one summary of 5000", len(ev), ev)
	}

	// An unban as a chunk rewrite, and one as a del event.
	gone1, gone2 := all[2].Prefix, all[3000].Prefix
	k.rewrite(gone1, true)
	if has(x, "feed", gone1) || !has(x, "feed", all[1].Prefix) || count(t, x, "feed") != 5009 {
		t.Fatalf("after a chunk rewrite without %s: shown %v, %d bans, want gone and 5009", gone1, has(x, "feed", gone1), count(t, x, "feed"))
	}
	ev = drain(x, ch)
	if len(ev) != 1 || ev[0].Kind != EventUnban || ev[0].Prefix != wire.FormatPrefix(gone1) {
		t.Fatalf("live events of a chunk rewrite: %+v, want one unban of %s", ev, gone1)
	}
	x.Feed(wire.EventTopic("feed", wire.KindDel), []byte(wire.FormatPrefix(gone2)+"\n"), true)
	x.Feed(wire.StateTopic("feed", gone2), nil, true) // the keeper's delete of its state
	if has(x, "feed", gone2) || count(t, x, "feed") != 5008 {
		t.Fatalf("after a del event of %s: shown %v, %d bans, want gone and 5008", gone2, has(x, "feed", gone2), count(t, x, "feed"))
	}
	k.rewrite(gone2, true) // then its chunk's rewrite: nothing more
	if ev := drain(x, ch); len(ev) != 1 || ev[0].Kind != EventUnban || ev[0].Prefix != wire.FormatPrefix(gone2) {
		t.Fatalf("live events of a del event: %+v, want one unban of %s", ev, gone2)
	}

	// A later state on top of a chunk entry wins; a new generation that
	// leaves out a ban read from an old one unbans it.
	newer := wire.State{At: at.Add(time.Hour), Reason: "again"}
	x.Feed(wire.StateTopic("feed", all[5].Prefix), wire.EncodeState(newer), true)
	if pg, _ := x.Bans("feed", wire.FormatPrefix(all[5].Prefix), 0, 1); len(pg.Bans) != 1 || pg.Bans[0].Reason != "again" {
		t.Fatalf("a later state over a chunk entry: %+v", pg.Bans)
	}
	rest := slices.DeleteFunc(slices.Clone(k.all()), func(e wire.Entry) bool { return e.Prefix == all[4].Prefix })
	k.cut(rest, 1000, true)
	if has(x, "feed", all[4].Prefix) || !has(x, "feed", all[5].Prefix) || count(t, x, "feed") != 5007 {
		t.Fatalf("after a cut without %s: shown %v, %d bans, want gone and 5007", all[4].Prefix, has(x, "feed", all[4].Prefix), count(t, x, "feed"))
	}

	// A restart: the store's retained messages (record, manifest, chunks;
	// states of a v2 list are loaded too), then Settle.
	y := NewIndex([]string{"feed"})
	y.Feed(wire.StateTopic("feed", all[5].Prefix), wire.EncodeState(newer), false)
	y.Feed(wire.RecordTopic("feed"), wire.EncodeRecord(wire.Record{Epoch: k.epoch, Since: time.Now()}), false)
	y.Feed(wire.ManifestTopic("feed"), wire.EncodeManifest(k.man), false)
	for n, part := range k.parts {
		b := wire.EncodeChunk(wire.Chunk{Root: "feed", Gen: k.gen, Index: n, Count: len(k.parts), Entries: part})
		y.Feed(wire.ChunkTopic("feed", k.gen, n), b, false)
	}
	y.Settle()
	if n := count(t, y, "feed"); n != 5007 {
		t.Fatalf("a restart loaded %d bans from the chunks, want 5007", n)
	}
	if pg, _ := y.Bans("feed", wire.FormatPrefix(all[5].Prefix), 0, 1); len(pg.Bans) != 1 || pg.Bans[0].Reason != "again" {
		t.Fatalf("after a restart, the later state over a chunk entry: %+v", pg.Bans)
	}
}

// all is every entry of the current generation.
func (k *keeperSim) all() []wire.Entry {
	var out []wire.Entry
	for _, p := range k.parts {
		out = append(out, p...)
	}
	return out
}

// On a list whose record is not v2 (per-ban state for every ban), an
// empty state is still an unban; a manifest of another epoch than the
// record's is not read.
func TestIndexV1StateDeleteUnbans(t *testing.T) {
	x := NewIndex([]string{"bl"})
	x.Feed(wire.RecordTopic("bl"), wire.EncodeRecord(wire.Record{Epoch: "0123456789abcdef", Since: time.Now()}), true)
	e := entries(0, 1, time.Now())[0]
	x.Feed(wire.StateTopic("bl", e.Prefix), wire.EncodeState(e.State), true)
	x.Feed(wire.StateTopic("bl", e.Prefix), nil, true)
	if n := count(t, x, "bl"); n != 0 {
		t.Fatalf("%d bans after the state's deletion on a v1 list", n)
	}
	k := &keeperSim{x: x, root: "bl", epoch: "fedcba9876543210"}
	k.cut(entries(0, 10, time.Now()), 4, true)
	if n := count(t, x, "bl"); n != 0 {
		t.Fatalf("%d bans read from a manifest of another epoch than the record's", n)
	}
}

// A ban read from a chunk leaves the page when its time is up, with no
// message from the keeper (a keeper of chunks deletes nothing then); one
// already expired in a chunk is not shown at all.
func TestIndexExpiresChunkBans(t *testing.T) {
	x := NewIndex([]string{"feed"})
	now := time.Now()
	x.now = func() time.Time { return now }
	ch, stop := x.Watch()
	defer stop()
	k := newKeeperSim(x, "feed", true)
	bans := entries(0, 3, now.Add(-time.Hour))
	bans[0].State.Expires = now.Add(time.Minute)
	bans[1].State.Expires = now.Add(-time.Second)
	k.cut(bans, 4, true)
	if n := count(t, x, "feed"); n != 2 || has(x, "feed", bans[1].Prefix) {
		t.Fatalf("%d bans shown (the expired one: %v), want 2 and not it", n, has(x, "feed", bans[1].Prefix))
	}
	drain(x, ch)
	now = now.Add(2 * time.Minute)
	if n := count(t, x, "feed"); n != 1 || has(x, "feed", bans[0].Prefix) {
		t.Fatalf("%d bans shown a minute after one expired, want 1", n)
	}
	if ev := drain(x, ch); len(ev) != 1 || ev[0].Kind != EventExpired || ev[0].Prefix != wire.FormatPrefix(bans[0].Prefix) {
		t.Fatalf("live events of an expiry: %+v", ev)
	}
}
