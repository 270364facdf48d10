package keeper

import (
	"fmt"
	"testing"
)

// BenchmarkBans: a scrape's count of a view of 1,000,000 bans.
func BenchmarkBans(b *testing.B) {
	k, err := New(Options{Roots: []string{"blacklist"}}, newFakeBroker(true))
	if err != nil {
		b.Fatal(err)
	}
	for i := range 1000000 {
		k.bans[fmt.Sprintf("blacklist/ban/10.%d.%d.%d", i>>16, byte(i>>8), byte(i))] = entry{flags: fChunk}
	}
	b.ResetTimer()
	for b.Loop() {
		if n := k.Bans()["blacklist"]; n != 1000000 {
			b.Fatalf("Bans() = %d, want 1,000,000", n)
		}
	}
}
