package sensor

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// scan has src touch ports from..to-1, one a millisecond from at, and
// returns how many of those calls reported a scanner.
func scan(d *Detector, src netip.Addr, from, to int, at time.Time) int {
	n := 0
	for p := from; p < to; p++ {
		if seen(d, src, uint16(p), at.Add(time.Duration(p-from)*time.Millisecond)) {
			n++
		}
	}
	return n
}

// seen has src touch TCP port at: whether it became a scanner.
func seen(d *Detector, src netip.Addr, port uint16, at time.Time) bool {
	_, scan := d.Seen(src, TCP(port), at)
	return scan
}

var attacker = netip.MustParseAddr("203.0.113.7")

// TestThreshold: N distinct ports are allowed, the N+1th reports, once.
func TestThreshold(t *testing.T) {
	d := NewDetector(DetectorOptions{Ports: 10, Window: time.Minute})
	if n := scan(d, attacker, 1000, 1010, t0); n != 0 {
		t.Fatalf("10 ports reported %d times; want none (more than 10 is a scan)", n)
	}
	if !seen(d, attacker, 2000, t0.Add(time.Second)) {
		t.Fatal("the 11th distinct port did not report the scanner")
	}
	if n := scan(d, attacker, 3000, 3100, t0.Add(2*time.Second)); n != 0 {
		t.Fatalf("a reported scanner was reported %d more times", n)
	}
}

// TestDistinctPorts: one port hit again and again is no scan.
func TestDistinctPorts(t *testing.T) {
	d := NewDetector(DetectorOptions{Ports: 3})
	for i := range 1000 {
		if seen(d, attacker, uint16(22+i%3), t0.Add(time.Duration(i)*time.Millisecond)) {
			t.Fatalf("3 ports hit %d times reported a scan", i+1)
		}
	}
}

// TestWindow: ports touched further apart than the window never add up.
func TestWindow(t *testing.T) {
	d := NewDetector(DetectorOptions{Ports: 5, Window: 10 * time.Second})
	for i := range 100 {
		if seen(d, attacker, uint16(1000+i), t0.Add(time.Duration(i)*3*time.Second)) {
			t.Fatalf("one port every 3 s (4 per 10 s window) reported a scan at port %d", i)
		}
	}
}

// TestWindowEdge: six ports within 10 s is a scan; the same six spread
// over 11 s, one of them outside the window, is not.
func TestWindowEdge(t *testing.T) {
	for _, c := range []struct {
		step time.Duration
		want bool
	}{{1900 * time.Millisecond, true}, {2200 * time.Millisecond, false}} {
		d := NewDetector(DetectorOptions{Ports: 5, Window: 10 * time.Second})
		got := false
		for i := range 6 {
			got = seen(d, attacker, uint16(100+i), t0.Add(time.Duration(i)*c.step)) || got
		}
		if got != c.want {
			t.Errorf("6 ports %v apart: reported %v, want %v", c.step, got, c.want)
		}
	}
}

// TestIgnorePorts: ignored ports never count, however many times.
func TestIgnorePorts(t *testing.T) {
	var ign []uint16
	for p := range 50 {
		ign = append(ign, uint16(8000+p))
	}
	d := NewDetector(DetectorOptions{Ports: 3, Ignore: ign})
	if n := scan(d, attacker, 8000, 8050, t0); n != 0 {
		t.Fatalf("50 ignored ports reported %d times", n)
	}
	if d.Tracked() != 0 {
		t.Fatalf("ignored ports made %d table entries", d.Tracked())
	}
	if n := scan(d, attacker, 9000, 9004, t0); n != 1 {
		t.Fatalf("4 other ports after them: reported %d times, want 1", n)
	}
}

// TestAllowed: an address the allowlist refuses is never reported nor
// tracked; others still are.
func TestAllowed(t *testing.T) {
	friend := netip.MustParseAddr("192.0.2.1")
	d := NewDetector(DetectorOptions{Ports: 3, Allowed: func(p netip.Prefix) bool { return p.Addr() != friend }})
	if n := scan(d, friend, 1, 1000, t0); n != 0 || d.Tracked() != 0 {
		t.Fatalf("allowlisted scanner: reported %d times, %d tracked", n, d.Tracked())
	}
	if n := scan(d, attacker, 1, 10, t0); n != 1 {
		t.Fatalf("other scanner reported %d times, want 1", n)
	}
}

// TestMappedAddress: an IPv4-mapped IPv6 source is the IPv4 address, for
// the table and the allowlist.
func TestMappedAddress(t *testing.T) {
	d := NewDetector(DetectorOptions{Ports: 2, Allowed: func(p netip.Prefix) bool { return p.Addr() != attacker }})
	mapped := netip.AddrFrom16(attacker.As16())
	if n := scan(d, mapped, 1, 10, t0); n != 0 {
		t.Fatalf("allowlisted address seen as IPv4-mapped IPv6 was reported %d times", n)
	}
}

// TestBoundedTable: a flood of distinct sources keeps the table at its
// size, evicting the least recently seen; a source kept busy survives.
func TestBoundedTable(t *testing.T) {
	d := NewDetector(DetectorOptions{Ports: 3, Sources: 100})
	busy := netip.MustParseAddr("198.51.100.1")
	for i := range 10000 {
		src := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		at := t0.Add(time.Duration(i) * time.Microsecond)
		if seen(d, src, 1, at) {
			t.Fatalf("source %v reported after one port", src)
		}
		if i%50 == 0 && i/50 < 3 { // three ports early, then nothing
			seen(d, busy, uint16(100+i/50), at)
		}
		if i%50 == 0 && i/50 >= 3 {
			seen(d, busy, 100, at) // the same port again keeps it recent
		}
		if d.Tracked() > 100 {
			t.Fatalf("%d sources tracked, table of 100", d.Tracked())
		}
	}
	if d.Evicted < 9800 {
		t.Fatalf("evicted %d, want the flood's overflow", d.Evicted)
	}
	if !seen(d, busy, 200, t0.Add(time.Second)) {
		t.Fatal("a source kept recent lost its ports to the flood")
	}
}

// TestEvictedComesBack: an evicted source starts again from nothing.
func TestEvictedComesBack(t *testing.T) {
	d := NewDetector(DetectorOptions{Ports: 3, Sources: 2})
	scan(d, attacker, 1, 4, t0) // three ports: not yet
	for i := range 2 {
		seen(d, netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), 1, t0.Add(time.Second))
	}
	if seen(d, attacker, 10, t0.Add(2*time.Second)) {
		t.Fatal("an evicted source kept its ports")
	}
}

// TestRearm: a reported source is reported again only after its rearm
// time, from a new set of ports.
func TestRearm(t *testing.T) {
	d := NewDetector(DetectorOptions{Ports: 2, Rearm: time.Hour})
	if n := scan(d, attacker, 1, 4, t0); n != 1 {
		t.Fatalf("reported %d, want 1", n)
	}
	if n := scan(d, attacker, 10, 20, t0.Add(30*time.Minute)); n != 0 {
		t.Fatalf("within the ban time: reported %d more", n)
	}
	if n := scan(d, attacker, 30, 33, t0.Add(2*time.Hour)); n != 1 {
		t.Fatalf("after the ban time: reported %d, want 1", n)
	}
}

// TestMaxPorts: a threshold above MaxPorts is clamped, so one source's
// memory stays bounded.
func TestMaxPorts(t *testing.T) {
	d := NewDetector(DetectorOptions{Ports: 1 << 30})
	if n := scan(d, attacker, 1, MaxPorts+2, t0); n != 1 {
		t.Fatalf("%d ports reported %d times, want 1", MaxPorts+1, n)
	}
}

// TestIPv6Prefix: an IPv6 scanner that takes a new address of its /64 for
// every port is one source, reported as the /64; another /64 is another
// source; with Prefix6 128 each address stands alone.
func TestIPv6Prefix(t *testing.T) {
	addr := func(hi, lo uint64) netip.Addr {
		var b [16]byte
		binary.BigEndian.PutUint64(b[:8], hi)
		binary.BigEndian.PutUint64(b[8:], lo)
		return netip.AddrFrom16(b)
	}
	const net1, net2 = 0x20010db800010000, 0x20010db800020000
	d := NewDetector(DetectorOptions{Ports: 10})
	for i := range 10 {
		if _, scan := d.Seen(addr(net1, rand.Uint64()), TCP(uint16(1000+i)), t0); scan {
			t.Fatalf("%d ports reported a scan", i+1)
		}
		d.Seen(addr(net2, uint64(i)), TCP(uint16(1000+i)), t0) // its neighbour /64, 10 ports too
	}
	got, scan := d.Seen(addr(net1, rand.Uint64()), TCP(2000), t0)
	if want := netip.MustParsePrefix("2001:db8:1::/64"); !scan || got != want {
		t.Fatalf("the 11th port from a rotating /64: %v %v, want %v", got, scan, want)
	}
	if d.Tracked() != 2 {
		t.Fatalf("%d sources tracked for two /64s", d.Tracked())
	}
	d = NewDetector(DetectorOptions{Ports: 10, Prefix6: 128})
	for i := range 100 {
		if _, scan := d.Seen(addr(net1, uint64(i)), TCP(uint16(1000+i)), t0); scan {
			t.Fatal("with Prefix6 128, one port from each of 100 addresses reported a scan")
		}
	}
}

// TestIPv6PrefixAllowlisted: a /64 that holds an allowlisted address is
// never banned; its other addresses are counted and banned one by one.
func TestIPv6PrefixAllowlisted(t *testing.T) {
	friend := netip.MustParsePrefix("2001:db8:1::5/128")
	d := NewDetector(DetectorOptions{Ports: 3, Allowed: func(p netip.Prefix) bool { return !p.Overlaps(friend) }})
	if n := scan(d, friend.Addr(), 1, 100, t0); n != 0 {
		t.Fatalf("allowlisted address reported %d times", n)
	}
	rotating := 0
	for i := range 4 {
		if _, scan := d.Seen(netip.AddrFrom16([16]byte{0x20, 1, 0xd, 0xb8, 0, 1, 15: byte(100 + i)}), TCP(uint16(i)), t0); scan {
			rotating++
		}
	}
	if rotating != 0 {
		t.Fatal("addresses of an allowlisted address's /64 were counted together")
	}
	scanner := netip.MustParseAddr("2001:db8:1::99")
	var got []netip.Prefix
	for p := range 4 {
		if s, scan := d.Seen(scanner, TCP(uint16(p)), t0); scan {
			got = append(got, s)
		}
	}
	if len(got) != 1 || got[0] != netip.PrefixFrom(scanner, 128) {
		t.Fatalf("an address scanning 4 ports there: reported %v, want %v alone", got, scanner)
	}
}

// TestUDP: closed UDP ports count as TCP ones do; UDP and TCP of the same
// number are two ports; the ignored ports are ignored on both.
func TestUDP(t *testing.T) {
	d := NewDetector(DetectorOptions{Ports: 10, Ignore: []uint16{137}})
	for p := range 5 {
		d.Seen(attacker, Port{Num: uint16(500 + p), UDP: true}, t0)
		d.Seen(attacker, TCP(uint16(500+p)), t0)
	}
	for range 20 {
		d.Seen(attacker, Port{Num: 137, UDP: true}, t0)
	}
	if got, scan := d.Seen(attacker, Port{Num: 9, UDP: true}, t0); !scan || got != netip.PrefixFrom(attacker, 32) {
		t.Fatalf("5 UDP and 5 TCP ports, then another UDP port: %v %v, want a scan by %v", got, scan, attacker)
	}
	d = NewDetector(DetectorOptions{Ports: 3})
	for range 100 {
		if _, scan := d.Seen(attacker, Port{Num: 53, UDP: true}, t0); scan {
			t.Fatal("one UDP port again and again is a scan")
		}
	}
}
