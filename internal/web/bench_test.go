package web

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/vallum/vallum/internal/wire"
)

// index1M builds an index of one list of 1,000,000 bans with a few
// reasons and origins, and reports the heap it holds per ban.
func index1M(b *testing.B) *Index {
	b.Helper()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	x := NewIndex([]string{"feed"})
	t0 := time.Now().Add(-time.Hour)
	for i := range 1000000 {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
		st := wire.State{At: t0.Add(time.Duration(i) * time.Microsecond), Reason: fmt.Sprint("r", i%7), Origin: fmt.Sprint("h", i%13)}
		x.Feed(wire.StateTopic("feed", p), wire.EncodeState(st), false)
	}
	x.Settle()
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.Logf("index of 1,000,000 bans: %d bytes of heap a ban", (after.HeapAlloc-before.HeapAlloc)/1000000)
	return x
}

// BenchmarkPage1M: the last page of 1,000,000 bans (the longest walk),
// a search by address, by prefix and by reason.
// go test -run X -bench Page1M ./internal/web/
func BenchmarkPage1M(b *testing.B) {
	x := index1M(b)
	for _, q := range []struct{ name, q string }{{"last", ""}, {"address", "10.3.2.1"}, {"prefix", "10.3.0.0/16"}, {"reason", "r3"}, {"text", "10.3.2."}} {
		b.Run(q.name, func(b *testing.B) {
			off := 0
			if q.q == "" {
				off = 1000000 - PageSize
			}
			for b.Loop() {
				if pg, _ := x.Bans("feed", q.q, off, PageSize); len(pg.Bans) == 0 {
					b.Fatal("empty page")
				}
			}
		})
	}
}

// BenchmarkChunkRewrite1M: a list of 1,000,000 read from 245 chunks (the
// heap the index holds a ban is logged), then one chunk rewritten without
// a ban at a time: the chunk's decoding and the walk that unbans what it
// lost. go test -run X -bench ChunkRewrite1M ./internal/web/
func BenchmarkChunkRewrite1M(b *testing.B) {
	all := make([]wire.Entry, 1000000)
	t0 := time.Now().Add(-time.Hour)
	for i := range all {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
		all[i] = wire.Entry{Prefix: p, State: wire.State{At: t0, Reason: fmt.Sprint("r", i%7), Origin: fmt.Sprint("h", i%13)}}
	}
	k := newKeeperSim(NewIndex(nil), "feed", false) // indexes nothing
	k.cut(all, 4096, false)                         // k.parts and the manifest: held through the measure
	all = nil
	chunks := make([][]byte, len(k.parts))
	for n, part := range k.parts {
		chunks[n] = wire.EncodeChunk(wire.Chunk{Root: "feed", Gen: k.gen, Index: n, Count: len(k.parts), Entries: part})
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	k.x = NewIndex([]string{"feed"})
	k.x.Feed(wire.RecordTopic("feed"), wire.EncodeRecord(wire.Record{Epoch: k.epoch, Since: time.Now()}), false)
	t0 = time.Now()
	for n, c := range chunks { // live: as a cut comes, chunks first
		k.x.Feed(wire.ChunkTopic("feed", k.gen, n), c, true)
	}
	k.x.Feed(wire.ManifestTopic("feed"), wire.EncodeManifest(k.man), true)
	k.x.flush()
	took := time.Since(t0)
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(chunks)
	b.Logf("index of 1,000,000 bans read from chunks: %d bytes of heap a ban; the manifest that names them took %v to feed", (int64(after.HeapAlloc)-int64(before.HeapAlloc))/1000000, took)
	if n := count(&testing.T{}, k.x, "feed"); n != 1000000 {
		b.Fatalf("%d bans read", n)
	}
	i := 0
	for b.Loop() {
		k.rewrite(k.parts[i%len(k.parts)][0].Prefix, true)
		k.x.flush()
		i++
	}
}
