package bridge

import (
	"net/netip"
	"testing"
)

// BenchmarkOwnership is the bridge's own cost per op of knowing its
// entries: plan and record a batch of 10,000 new adds.
func BenchmarkOwnership(b *testing.B) {
	ops := make([]Op, 10000)
	var w ownership
	w.reset("bl")
	n := 0
	for b.Loop() {
		for i := range ops {
			n++
			ops[i] = Op{Action: Add, Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)}), 32), Timeout: 3600}
		}
		planned := w.plan("bl", ops)
		w.applied("bl", planned, nil)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(ops)), "ns/op-entry")
}
