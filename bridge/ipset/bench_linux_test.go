//go:build linux

package ipset_test

import (
	"context"
	"net/netip"
	"testing"

	"github.com/vallum/vallum/bridge"
	"github.com/vallum/vallum/bridge/ipset"
	"github.com/vallum/vallum/internal/netnstest"
)

// BenchmarkApply adds batches of 10,000 distinct IPv4 addresses with
// timeouts to a fresh set in a netns and reports adds per second.
func BenchmarkApply(b *testing.B) {
	benchApply(b, bridge.IPv4, func(n int) netip.Addr {
		return netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)})
	})
}

// BenchmarkApply6 is BenchmarkApply with IPv6 addresses.
func BenchmarkApply6(b *testing.B) {
	benchApply(b, bridge.IPv6, func(n int) netip.Addr {
		a := netip.MustParseAddr("2001:db8::").As16()
		a[12], a[13], a[14], a[15] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
		return netip.AddrFrom16(a)
	})
}

func benchApply(b *testing.B, f bridge.Family, addr func(int) netip.Addr) {
	const batch = 10000
	ns := netnstest.New(b)
	be, err := ipset.New(ipset.Options{NetNS: int(ns)})
	if err != nil {
		b.Fatalf("ipset.New: %v", err)
	}
	defer be.Close()
	ctx := context.Background()
	if _, err := be.Ensure(ctx, bridge.SetSpec{Name: "bench", Family: f, Create: true}); err != nil {
		b.Fatalf("Ensure: %v", err)
	}
	ops := make([]bridge.Op, batch)
	n := 0
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		for j := range ops {
			a := addr(n)
			n++
			ops[j] = bridge.Op{Action: bridge.Add, Prefix: netip.PrefixFrom(a, a.BitLen()), Timeout: 3600}
		}
		b.StartTimer()
		if err := be.Apply(ctx, "bench", ops); err != nil {
			b.Fatalf("Apply: %v", err)
		}
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "adds/s")
}
