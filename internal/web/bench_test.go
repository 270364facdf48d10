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
