//go:build linux

package conntrack

import (
	"encoding/binary"
	"net/netip"
	"testing"

	vnl "github.com/vishvananda/netlink"

	"github.com/vallum/vallum/internal/netnstest"
)

// BenchmarkWalk is the cost of one walk (dump and match, nothing to
// delete) of a table of 10,000 entries: what each batch of bans costs a
// host with --kill-connections. go test -run X -bench Walk ./internal/conntrack/
func BenchmarkWalk(b *testing.B) {
	ns := netnstest.New(b)
	h, err := vnl.NewHandleAt(ns)
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	const n = 10000
	for i := range n {
		var src [4]byte
		binary.BigEndian.PutUint32(src[:], 0x0a000000+uint32(i))
		create(b, h, flow{netip.AddrFrom4(src).String(), "10.255.0.1", 0}, 1000)
	}
	c, err := Dial(int(ns))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	banned := netip.MustParseAddr("198.51.100.7")
	for b.Loop() {
		if d, err := c.Delete(func(a netip.Addr) bool { return a == banned }); d != 0 || err != nil {
			b.Fatal(d, err)
		}
	}
	b.ReportMetric(float64(n), "entries")
}
