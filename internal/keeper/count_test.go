package keeper

import (
	"maps"
	"testing"
	"time"
)

// TestBansCounted: Bans counts each list's live bans, whatever holds them
// (per-ban state, a burst not yet cut, chunks after the cut); an unban, an
// expired ban (before Run clears it) and a refused line do not count.
func TestBansCounted(t *testing.T) {
	needChunks(t)
	s := newKeeper(t, nil, Options{Roots: []string{"blacklist", "whitelist"}, Name: "hub", BurstLines: 256})
	s.k.cut(t)
	if got, want := s.k.Bans(), map[string]int64{"blacklist": 0, "whitelist": 0}; !maps.Equal(got, want) {
		t.Fatalf("Bans() of empty lists = %v, want %v", got, want)
	}
	s.b.client("blacklist/add", "192.0.2.1 timeout 10\n192.0.2.2\n192.0.2.3\n0.0.0.0/0\n127.0.0.1", false)
	s.b.client("blacklist/del", "192.0.2.3", false)
	s.b.client("whitelist/add", "198.51.100.1", false)
	s.b.client("blacklist/add", burstMessage(nil, 0, 1000, " timeout 3600"), false) // a burst
	want := map[string]int64{"blacklist": 1002, "whitelist": 1}
	if got := s.k.Bans(); !maps.Equal(got, want) {
		t.Errorf("Bans() with a burst pending = %v, want %v", got, want)
	}
	s.k.Flush()
	if got := s.k.Bans(); !maps.Equal(got, want) {
		t.Errorf("Bans() after the burst's cut = %v, want %v", got, want)
	}
	s.clk.add(11 * time.Second) // 192.0.2.1 expired; Run has not cleared it yet
	want["blacklist"]--
	if got := s.k.Bans(); !maps.Equal(got, want) {
		t.Errorf("Bans() 11 s later = %v, want %v", got, want)
	}
}
