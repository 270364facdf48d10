package keeper

import (
	"runtime"
	"testing"
	"time"
	"unsafe"
)

// A cut holds one item per ban while it sorts them: 72 bytes, not the
// wire.Entry and topic (136) a chunk is encoded from. 56 on the 32-bit
// router builds (their pointers and string headers are half as wide).
func TestCutItemSize(t *testing.T) {
	want := uintptr(72)
	if unsafe.Sizeof(uintptr(0)) == 4 {
		want = 56
	}
	if n := unsafe.Sizeof(cutItem{}); n != want {
		t.Errorf("cutItem is %d bytes, want %d", n, want)
	}
}

// TestCutAllocates: reading and building a cut of a list of 100,000 bans
// allocates about the items (72 bytes a ban) and the chunks (about 30):
// the chunks' entries are made a chunk at a time, and the items are read
// into one array the size of the list. Reading the bans into an array of
// their own, then into wire.Entry items, made more than 176 bytes a ban.
func TestCutAllocates(t *testing.T) {
	needChunks(t)
	const n = 100_000
	s := newKeeper(t, nil, Options{Name: "hub"})
	banN(s.b, 0, n, " timeout 3600")
	s.k.maintain() // the first cut, which sizes the next one's items
	banN(s.b, n, 1000, " timeout 3600")
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s.k.mu.Lock()
	c := s.k.collectLocked(0, s.k.now())
	s.k.mu.Unlock()
	c.build()
	runtime.ReadMemStats(&after)
	if c.m.Entries != n+1000 {
		t.Fatalf("the cut holds %d bans, want %d", c.m.Entries, n+1000)
	}
	if per := (after.TotalAlloc - before.TotalAlloc) / (n + 1000); per > 120 {
		t.Errorf("a cut of %d allocated %d bytes a ban, want at most 120", n+1000, per)
	}
}

// TestMemoryReturned: the keeper returns memory to the system after a cut
// of 10,000 bans or more, each return ten times as long after the last as
// it took (here 1 s): a cut due meanwhile returns it at the first maintain
// after; a cut of fewer returns nothing.
func TestMemoryReturned(t *testing.T) {
	needChunks(t)
	s := newKeeper(t, nil, Options{Name: "hub"})
	returned := 0
	s.k.free.os = func() { returned++; s.clk.add(time.Second) }
	banN(s.b, 0, 5000, "")
	s.k.maintain() // the first cut, of 5,000
	if returned != 0 {
		t.Fatalf("%d returns after a cut of 5,000, want none", returned)
	}
	s.clk.add(time.Second)
	banN(s.b, 5000, 10001, "")
	s.k.maintain()
	if returned != 1 {
		t.Fatalf("%d returns after a cut of 15,001, want 1", returned)
	}
	s.clk.add(time.Second)
	banN(s.b, 20000, 10001, "")
	s.k.maintain()
	if m := s.b.manifest(t, "blacklist"); m.Entries != 25002 || returned != 1 {
		t.Fatalf("a cut of %d a second after the last: %d returns, want a cut of 25,002 and still 1", m.Entries, returned)
	}
	s.clk.add(freePace*time.Second - time.Second)
	s.k.maintain()
	if returned != 2 {
		t.Errorf("%d returns 10 s later, want 2", returned)
	}
}

// TestStillCut: the per-ban states of a burst's tail, fewer than a cut
// needs, are folded into a cut once the list has been still for 10 s,
// and deleted at once; with fewer than 1,000 changes, or legacy state,
// they wait for the hourly cut.
func TestStillCut(t *testing.T) {
	needChunks(t)
	for _, tc := range []struct {
		name   string
		tail   int
		legacy bool
		states int // per-ban states left 11 s after the tail
	}{
		{"tail of 2,000", 2000, false, 0},
		{"tail of 999", 999, false, 999},
		{"legacy state", 2000, true, 12500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newKeeper(t, nil, Options{Name: "hub", LegacyState: tc.legacy})
			banN(s.b, 0, 10500, "")
			s.k.maintain() // a cut of 10,500
			s.clk.add(statedFor + time.Second)
			s.k.maintain() // their per-ban states deleted
			gen := s.b.manifest(t, "blacklist").Gen
			banN(s.b, 20000, tc.tail, "")
			s.k.maintain()
			s.clk.add(statedFor / 2)
			s.k.maintain()
			if m := s.b.manifest(t, "blacklist"); m.Gen != gen {
				t.Fatalf("a cut of %d while the tail was still for 5 s", m.Entries)
			}
			s.clk.add(statedFor/2 + time.Second)
			s.k.maintain()
			if n := len(s.b.rawStates("blacklist")); n != tc.states {
				t.Errorf("%d per-ban states, want %d", n, tc.states)
			}
			if got := s.b.states("blacklist"); len(got) != 10500+tc.tail {
				t.Errorf("a host reads %d bans, want %d", len(got), 10500+tc.tail)
			}
		})
	}
}
