package listread

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vallum/vallum/internal/wire"
)

const root = "bl"

var epoch = "0123456789abcdef"

// cut is one generation of a list as a keeper publishes it: its chunks'
// payloads and the manifest naming them.
type cut struct {
	gen      uint64
	chunks   [][]byte
	manifest []byte
}

// makeCut splits n bans (10.0.x.y, from first) into chunks of per.
func makeCut(gen uint64, first, n, per int, at time.Time) cut {
	c := cut{gen: gen}
	count := (n + per - 1) / per
	m := wire.Manifest{Epoch: epoch, Gen: gen, Cut: at, Entries: n}
	for k := range count {
		ch := wire.Chunk{Root: root, Gen: gen, Index: k, Count: count}
		for i := k * per; i < min(n, (k+1)*per); i++ {
			ch.Entries = append(ch.Entries, wire.Entry{Prefix: addr(first + i), State: wire.State{At: at, Origin: "keeper"}})
		}
		b := wire.EncodeChunk(ch)
		c.chunks = append(c.chunks, b)
		m.CRC = append(m.CRC, wire.ChunkCRC(b))
	}
	c.manifest = wire.EncodeManifest(m)
	return c
}

func addr(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 32)
}

func (c cut) topic(n int) string { return wire.ChunkTopic(root, c.gen, n) }

// taker collects what a Reader takes, counting each prefix's takes.
type taker struct{ got map[netip.Prefix]int }

func newReader() (*Reader, *taker) {
	tk := &taker{got: map[netip.Prefix]int{}}
	return New(root, func(e wire.Entry) { tk.got[e.Prefix]++ }), tk
}

func mustNil(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// The manifest before or after its chunks, or among them: the same list,
// every entry taken once, complete when the last chunk is in.
func TestManifestBeforeAndAfterChunks(t *testing.T) {
	c := makeCut(7, 0, 10, 4, time.UnixMilli(1000))
	for _, at := range []int{0, 1, 2, 3} { // the manifest comes after `at` chunks
		r, tk := newReader()
		for n := range 3 {
			if n == at {
				mustNil(t, r.Manifest(c.manifest))
			}
			if st := r.Status(); st.Complete && st.Manifest {
				t.Fatalf("manifest after %d chunks: complete after %d chunks", at, n)
			}
			mustNil(t, r.Chunk(c.topic(n), c.chunks[n]))
		}
		if at == 3 {
			if r.Status().Manifest || len(tk.got) != 0 {
				t.Fatalf("chunks taken before any manifest named them: %d", len(tk.got))
			}
			mustNil(t, r.Manifest(c.manifest))
		}
		mustNil(t, r.Chunk(c.topic(1), c.chunks[1])) // the same chunk again
		st := r.Status()
		if !st.Complete || len(tk.got) != 10 {
			t.Fatalf("manifest after %d chunks: %+v, %d entries taken, want complete with 10", at, st, len(tk.got))
		}
		for p, k := range tk.got {
			if k != 1 {
				t.Errorf("manifest after %d chunks: %s taken %d times", at, p, k)
			}
		}
	}
}

// A chunk whose checksum is not the manifest's (written at another moment
// than the manifest, mid-rewrite) is not taken, and the list is not
// complete; the next manifest naming it takes it.
func TestMismatchedChecksumWaitsForManifest(t *testing.T) {
	old := makeCut(7, 0, 8, 4, time.UnixMilli(1000))
	rewrite := makeCut(7, 0, 7, 4, time.UnixMilli(1000)) // chunk 1 rewritten, a ban lifted
	r, tk := newReader()
	mustNil(t, r.Manifest(old.manifest))
	mustNil(t, r.Chunk(old.topic(0), old.chunks[0]))
	mustNil(t, r.Chunk(rewrite.topic(1), rewrite.chunks[1]))
	st := r.Status()
	if st.Complete || !strings.Contains(st.Why, "chunks 1 missing or not matching") {
		t.Fatalf("status %+v, want chunk 1 not matching", st)
	}
	if tk.got[addr(4)] != 0 {
		t.Fatal("a chunk of another checksum than the manifest's was taken")
	}
	mustNil(t, r.Manifest(rewrite.manifest))
	if st := r.Status(); !st.Complete || st.Stale || tk.got[addr(4)] != 1 || tk.got[addr(7)] != 0 {
		t.Fatalf("after the rewrite's manifest: %+v, taken %v", st, tk.got)
	}
}

// A chunk the manifest names that never comes: not complete, and the
// status names it.
func TestMissingChunk(t *testing.T) {
	c := makeCut(7, 0, 12, 4, time.UnixMilli(1000))
	r, tk := newReader()
	mustNil(t, r.Manifest(c.manifest))
	mustNil(t, r.Chunk(c.topic(0), c.chunks[0]))
	mustNil(t, r.Chunk(c.topic(2), c.chunks[2]))
	st := r.Status()
	if st.Complete || !strings.Contains(st.Why, "chunks 1 missing") || len(tk.got) != 8 {
		t.Fatalf("status %+v with %d taken, want chunk 1 missing and 8 taken", st, len(tk.got))
	}
}

// Chunks of two generations interleaved (a cut published while a reader
// reads the previous one): the manifest's generation alone is taken, and a
// newer generation's chunks wait for their manifest.
func TestTwoGenerationsInterleaved(t *testing.T) {
	g1 := makeCut(7, 0, 8, 4, time.UnixMilli(1000))
	g2 := makeCut(9, 100, 8, 4, time.UnixMilli(2000))
	r, tk := newReader()
	mustNil(t, r.Chunk(g2.topic(0), g2.chunks[0]))
	mustNil(t, r.Chunk(g1.topic(0), g1.chunks[0]))
	mustNil(t, r.Manifest(g1.manifest))
	mustNil(t, r.Chunk(g2.topic(1), g2.chunks[1]))
	mustNil(t, r.Chunk(g1.topic(1), g1.chunks[1]))
	if st := r.Status(); !st.Complete || st.Gen != 7 || len(tk.got) != 8 || tk.got[addr(100)] != 0 {
		t.Fatalf("status %+v, taken %d (generation 9's first: %d), want generation 7 alone", st, len(tk.got), tk.got[addr(100)])
	}
	// Generation 9's manifest: its chunks that came take, and what was
	// taken of generation 7 is stale (it may hold lifted bans).
	mustNil(t, r.Manifest(g2.manifest))
	st := r.Status()
	if !st.Stale || st.Complete || st.Gen != 9 || tk.got[addr(100)] != 1 || tk.got[addr(104)] != 1 {
		t.Fatalf("after generation 9's manifest: %+v, taken %v", st, tk.got)
	}
	// An old generation's chunk after the newer manifest is dropped.
	mustNil(t, r.Chunk(g1.topic(1), g1.chunks[1]))
	if tk.got[addr(4)] != 1 {
		t.Fatal("a chunk of an older generation was taken after a newer manifest")
	}
}

// A chunk whose payload is damaged on the broker (its trailer still the
// manifest's checksum) is refused whole with an error that says so, and
// the list is not complete.
func TestDamagedChunkRefused(t *testing.T) {
	c := makeCut(7, 0, 8, 4, time.UnixMilli(1000))
	bad := append([]byte(nil), c.chunks[1]...)
	bad[40] ^= 0xff
	r, tk := newReader()
	mustNil(t, r.Manifest(c.manifest))
	mustNil(t, r.Chunk(c.topic(0), c.chunks[0]))
	err := r.Chunk(c.topic(1), bad)
	if !errors.Is(err, wire.ErrBadChunk) || !strings.Contains(err.Error(), "chunk 1") {
		t.Fatalf("damaged chunk: err %v, want ErrBadChunk naming chunk 1", err)
	}
	st := r.Status()
	if st.Complete || !strings.Contains(st.Why, "refused as damaged") || len(tk.got) != 4 {
		t.Fatalf("status %+v, %d taken: want not complete, damaged named, chunk 0 alone", st, len(tk.got))
	}
	// The manifest rewritten for its deltas alone: still damaged.
	m, err := wire.DecodeManifest(c.manifest)
	mustNil(t, err)
	m.Deltas = &wire.Deltas{Upto: time.UnixMilli(2000), DeltaSum: wire.DeltaSum{Count: 1, Sum: 7}}
	mustNil(t, r.Manifest(wire.EncodeManifest(m)))
	if st := r.Status(); !strings.Contains(st.Why, "refused as damaged") {
		t.Fatalf("after a manifest of the same chunks: %q, want the damaged chunk named", st.Why)
	}
	// A chunk whose header says another chunk (copied to the wrong topic)
	// is refused as well.
	err = r.Chunk(c.topic(1), c.chunks[0])
	if err != nil || r.Status().Complete {
		t.Fatalf("chunk 0 on chunk 1's topic: err %v, complete %v; want it left waiting (other checksum)", err, r.Status().Complete)
	}
	mustNil(t, r.Chunk(c.topic(1), c.chunks[1]))
	if st := r.Status(); !st.Complete {
		t.Fatalf("the good copy of chunk 1: %+v", st)
	}
}

// A chunk written under another list's topic, or a topic that is not a
// chunk's, is refused.
func TestChunkTopicRefused(t *testing.T) {
	r, _ := newReader()
	for _, topic := range []string{"vallum/list/other/0000000000000007/0", "vallum/list/bl/7/0", "bl/ban/10.0.0.1"} {
		if err := r.Chunk(topic, []byte("x")); err == nil {
			t.Errorf("%s: taken as a chunk of %s", topic, root)
		}
	}
}

// Per-ban state (the deltas) newer and older than a chunk's entry, and
// expired entries, merged as `vallum list` does: last writer wins.
func TestListMergeLastWriterWins(t *testing.T) {
	p := addr(1)
	chunkAt, now := time.UnixMilli(2000), time.Now()
	l := List{}
	older := wire.State{At: time.UnixMilli(1000), Reason: "older"}
	newer := wire.State{At: time.UnixMilli(3000), Reason: "newer"}
	fromChunk := wire.State{At: chunkAt, Reason: "chunk"}
	for i, order := range [][]wire.State{{fromChunk, older, newer}, {newer, fromChunk, older}, {older, newer, fromChunk}} {
		l = List{}
		for _, s := range order {
			l.Put(p, s)
		}
		if l[p].Reason != "newer" {
			t.Errorf("order %d: %q won, want the newest", i, l[p].Reason)
		}
	}
	l = List{}
	l.Put(p, wire.State{At: time.UnixMilli(4000), Expires: now.Add(-time.Minute)})
	l.Put(p, fromChunk)
	if _, active := l[p].Remaining(now); active {
		t.Error("an older entry brought back a ban whose newest state has expired")
	}
}

// A v2 epoch is the same life of a list as its plain spelling.
func TestSameEpoch(t *testing.T) {
	if !SameEpoch(epoch, wire.EpochV2(epoch)) || SameEpoch(epoch, "fedcba9876543210") {
		t.Fatal("SameEpoch")
	}
}

// A list of 1,000,000 in 245 chunks goes through the Reader without it
// keeping them: what it holds after is the manifest and a checksum per
// chunk.
func TestBigListStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	const n, per = 1000000, wire.MaxChunkEntries
	c := cut{gen: 7}
	m := wire.Manifest{Epoch: epoch, Gen: 7, Cut: time.UnixMilli(1000), Entries: n}
	count := 0
	r := New(root, func(wire.Entry) { count++ })
	var payloads [][]byte
	for k := 0; k*per < n; k++ {
		ch := wire.Chunk{Root: root, Gen: 7, Index: k, Count: (n + per - 1) / per}
		for i := k * per; i < min(n, (k+1)*per); i++ {
			a := netip.AddrFrom4([4]byte{20, byte(i >> 16), byte(i >> 8), byte(i)})
			ch.Entries = append(ch.Entries, wire.Entry{Prefix: netip.PrefixFrom(a, 32), State: wire.State{At: m.Cut}})
		}
		b := wire.EncodeChunk(ch)
		payloads = append(payloads, b)
		m.CRC = append(m.CRC, wire.ChunkCRC(b))
	}
	mustNil(t, r.Manifest(wire.EncodeManifest(m)))
	for k, b := range payloads {
		mustNil(t, r.Chunk(c.topic(k), b))
	}
	if st := r.Status(); !st.Complete || count != n || len(r.pending) != 0 {
		t.Fatalf("status %+v, %d taken, %d pending generations; want %d", st, count, len(r.pending), n)
	}
}

// A keeper cuts while a host reads: generation 9's manifest comes live
// after generation 7's chunks were taken, then generation 7's manifest
// again (mochi sends the retained copy it took before the cut after the
// live one). The older is ignored: it holds neither what was cut since
// nor the per-ban states the keeper deleted after the newer cut.
func TestOlderManifestAfterNewerIgnored(t *testing.T) {
	g7 := makeCut(7, 0, 8, 4, time.UnixMilli(1000))
	g9 := makeCut(9, 0, 12, 4, time.UnixMilli(2000))
	r, tk := newReader()
	mustNil(t, r.Manifest(g9.manifest))
	mustNil(t, r.Manifest(g7.manifest))
	for n := range g7.chunks {
		mustNil(t, r.Chunk(g7.topic(n), g7.chunks[n]))
	}
	for n := range g9.chunks {
		mustNil(t, r.Chunk(g9.topic(n), g9.chunks[n]))
	}
	if st := r.Status(); !st.Complete || st.Stale || st.Gen != 9 || len(tk.got) != 12 {
		t.Fatalf("status %+v, taken %d, want generation 9 whole, 12 bans", st, len(tk.got))
	}
}

// With Restart, a newer generation after chunks of an older were taken
// restarts the read: the caller is told before the newer's chunks are
// taken, and the read is whole once they are, not stale.
func TestRestartOnNewerGeneration(t *testing.T) {
	g7 := makeCut(7, 0, 8, 4, time.UnixMilli(1000))
	g9 := makeCut(9, 100, 8, 4, time.UnixMilli(2000))
	r, tk := newReader()
	var restarted []uint64
	r.Restart = func(gen uint64) {
		restarted = append(restarted, gen)
		clear(tk.got)
	}
	mustNil(t, r.Manifest(g7.manifest))
	mustNil(t, r.Chunk(g7.topic(0), g7.chunks[0]))
	mustNil(t, r.Chunk(g9.topic(0), g9.chunks[0])) // live, before its manifest
	mustNil(t, r.Manifest(g9.manifest))
	if len(restarted) != 1 || restarted[0] != 9 {
		t.Fatalf("Restart calls %v, want one for generation 9", restarted)
	}
	mustNil(t, r.Chunk(g9.topic(1), g9.chunks[1]))
	st := r.Status()
	if !st.Complete || st.Stale || st.Gen != 9 || len(tk.got) != 8 || tk.got[addr(100)] != 1 || tk.got[addr(0)] != 0 {
		t.Fatalf("status %+v, taken %v, want generation 9 alone, whole", st, tk.got)
	}
	// Without Restart the same read is stale.
	r, _ = newReader()
	mustNil(t, r.Manifest(g7.manifest))
	mustNil(t, r.Chunk(g7.topic(0), g7.chunks[0]))
	mustNil(t, r.Manifest(g9.manifest))
	if !r.Status().Stale {
		t.Fatal("a newer generation after chunks taken, without Restart: not stale")
	}
}
