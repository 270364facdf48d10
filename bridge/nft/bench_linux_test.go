//go:build linux

package nft

import (
	"context"
	"net/netip"
	"testing"

	"github.com/vallum/vallum/bridge"
	"github.com/vallum/vallum/internal/netnstest"
)

// BenchmarkApply adds batches of 10,000 new addresses (with a timeout and
// a comment, as the bridge sends them) to the hash set of a created list.
func BenchmarkApply(b *testing.B) {
	ns := netnstest.New(b)
	be := openNft(b, ns, "")
	defer be.Close()
	ctx := context.Background()
	if _, err := be.Ensure(ctx, bridge.SetSpec{Name: "bench", Family: bridge.IPv4, Create: true}); err != nil {
		b.Fatal(err)
	}
	const batch = 10000
	ops := make([]bridge.Op, batch)
	n := 0
	b.ResetTimer()
	for range b.N {
		for i := range ops {
			n++
			a := netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)})
			ops[i] = bridge.Op{Action: bridge.Add, Prefix: netip.PrefixFrom(a, 32), Timeout: 3600, Comment: "vallum"}
		}
		if err := be.Apply(ctx, "bench", ops); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "adds/s")
}
