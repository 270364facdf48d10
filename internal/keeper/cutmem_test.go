package keeper

import (
	"runtime"
	"testing"
	"unsafe"
)

// A cut holds one item per ban while it sorts them: 72 bytes, not the
// wire.Entry and topic (136) a chunk is encoded from.
func TestCutItemSize(t *testing.T) {
	if n := unsafe.Sizeof(cutItem{}); n != 72 {
		t.Errorf("cutItem is %d bytes, want 72", n)
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
