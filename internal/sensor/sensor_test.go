package sensor

import (
	"context"
	"net/netip"
	"testing"
	"time"
)

// syn4 is an IPv4 TCP SYN header from src to port.
func syn4(src netip.Addr, port uint16) []byte {
	b := make([]byte, 40)
	b[0], b[9] = 0x45, 6
	a := src.As4()
	copy(b[12:], a[:])
	b[22], b[23] = byte(port>>8), byte(port)
	return b
}

func syn6(src netip.Addr, port uint16) []byte {
	b := make([]byte, 60)
	b[0], b[6] = 0x60, 6
	a := src.As16()
	copy(b[8:], a[:])
	b[42], b[43] = byte(port>>8), byte(port)
	return b
}

// TestPortOf: the source and port of both families, TCP and UDP; short,
// non-TCP/UDP and garbage packets are left out rather than read past
// their end.
func TestPortOf(t *testing.T) {
	v6 := netip.MustParseAddr("2001:db8::7")
	proto := func(b []byte, at int, p byte) []byte { b[at] = p; return b }
	for _, c := range []struct {
		b    []byte
		src  netip.Addr
		port Port
		ok   bool
	}{
		{syn4(attacker, 22), attacker, TCP(22), true},
		{syn6(v6, 443), v6, TCP(443), true},
		{proto(syn4(attacker, 53), 9, 17), attacker, Port{53, true}, true},
		{proto(syn6(v6, 161), 6, 17), v6, Port{161, true}, true},
		{syn4(attacker, 22)[:21], netip.Addr{}, Port{}, false},
		{syn6(v6, 443)[:43], netip.Addr{}, Port{}, false},
		{append([]byte{0x4f}, make([]byte, 30)...), netip.Addr{}, Port{}, false}, // ihl 60 > length
		{proto(syn4(attacker, 1), 9, 1), netip.Addr{}, Port{}, false},            // ICMP
		{proto(syn6(v6, 1), 6, 58), netip.Addr{}, Port{}, false},                 // ICMPv6
		{nil, netip.Addr{}, Port{}, false},
		{[]byte{0x20, 1, 2}, netip.Addr{}, Port{}, false},
	} {
		src, port, ok := portOf(c.b)
		if src != c.src || port != c.port || ok != c.ok {
			t.Errorf("portOf(% x): %v %v %v, want %v %v %v", c.b, src, port, ok, c.src, c.port, c.ok)
		}
	}
}

// TestPacketsToBan: a scan read from logged packets is queued for a ban
// once and counted; packets over the per-second cap are counted as
// overload and never read.
func TestPacketsToBan(t *testing.T) {
	s := New(Options{Rate: 100, Detector: DetectorOptions{Ports: 5}})
	for p := range 50 {
		s.packet(syn4(attacker, uint16(1000+p)), t0.Add(time.Duration(p)*time.Millisecond))
	}
	if len(s.bans) != 1 || <-s.bans != netip.PrefixFrom(attacker, 32) {
		t.Fatalf("a scan of 50 ports queued %d bans, want 1 of %v", len(s.bans)+1, attacker)
	}
	if got := s.stats.Packets.Load(); got != 50 {
		t.Fatalf("packets counted %d, want 50", got)
	}
	// A flood from other sources in the same second: 100 a second read.
	for i := range 1000 {
		s.packet(syn6(netip.AddrFrom16([16]byte{0x20, 1, 0xd, 0xb8, 15: byte(i)}), 1), t0.Add(500*time.Millisecond))
	}
	if p, o := s.stats.Packets.Load(), s.stats.Overload.Load(); p != 100 || o != 950 {
		t.Fatalf("after the flood: %d read, %d overload; want 100 and 950", p, o)
	}
	s.packet(syn4(netip.MustParseAddr("192.0.2.9"), 1), t0.Add(2*time.Second))
	if p := s.stats.Packets.Load(); p != 101 {
		t.Fatalf("the next second read nothing (%d)", p)
	}
}

// TestBanLoop: queued scanners reach Ban and the counter; a full queue
// drops the ban and counts it rather than block the reader.
func TestBanLoop(t *testing.T) {
	got := make(chan netip.Prefix, 100)
	release := make(chan struct{})
	s := New(Options{Detector: DetectorOptions{Ports: 1}, Ban: func(_ context.Context, a netip.Prefix) error {
		<-release
		got <- a
		return nil
	}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.banLoop(ctx)
	n := cap(s.bans) + 10
	for i := range n {
		src := netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})
		s.packet(syn4(src, 1), t0)
		s.packet(syn4(src, 2), t0)
	}
	close(release)
	deadline := time.After(10 * time.Second)
	for s.stats.Bans.Load()+s.stats.Overload.Load() < int64(n) {
		select {
		case <-deadline:
			t.Fatalf("bans %d + dropped %d, want %d", s.stats.Bans.Load(), s.stats.Overload.Load(), n)
		case <-got:
		}
	}
	if o := s.stats.Overload.Load(); o < 9 || o > 10 {
		t.Fatalf("dropped %d bans, want the 9 or 10 beyond the queue", o)
	}
}

// TestMappedSource: an IPv4-mapped IPv6 source is banned as the IPv4
// address.
func TestMappedSource(t *testing.T) {
	s := New(Options{Detector: DetectorOptions{Ports: 1}})
	mapped := netip.AddrFrom16(attacker.As16())
	s.packet(syn6(mapped, 1), t0)
	s.packet(syn6(mapped, 2), t0)
	if len(s.bans) != 1 || <-s.bans != netip.PrefixFrom(attacker, 32) {
		t.Fatal("a mapped source was not banned as its IPv4 address")
	}
}
