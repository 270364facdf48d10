//go:build linux

package conntrack

import (
	"net"
	"net/netip"
	"slices"
	"testing"

	vnl "github.com/vishvananda/netlink"

	"github.com/vallum/vallum/internal/netnstest"
)

type flow struct {
	src, dst string
	zone     uint16
}

// TestDeleteInNamespace fills a fresh namespace's table with entries made
// over ctnetlink (IPv4, IPv6, one in a zone), deletes those of a /24 and of
// one IPv6 address, as opener or as answerer, and checks that exactly the
// others are left.
func TestDeleteInNamespace(t *testing.T) {
	ns := netnstest.New(t)
	h, err := vnl.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	flows := []flow{
		{"198.51.100.7", "10.0.0.1", 0},   // opened by a banned address
		{"10.0.0.1", "198.51.100.9", 0},   // opened to one
		{"198.51.100.8", "10.0.0.2", 5},   // in a zone
		{"2001:db8::7", "2001:db8::1", 0}, // IPv6
		{"203.0.113.1", "10.0.0.1", 0},    // kept
		{"2001:db8::8", "2001:db8::1", 0}, // kept
		{"10.0.0.1", "198.51.101.1", 0},   // kept: next /24
	}
	for i, f := range flows {
		create(t, h, f, uint16(1000+i))
	}
	banned := []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("2001:db8::7/128")}
	match := func(a netip.Addr) bool {
		return slices.ContainsFunc(banned, func(p netip.Prefix) bool { return p.Contains(a) })
	}
	c, err := Dial(int(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	n, err := c.Delete(match)
	if err != nil {
		t.Fatal(err)
	}
	if n != 4 {
		t.Errorf("Delete = %d, want 4", n)
	}
	left := list(t, h)
	want := []string{"10.0.0.1>198.51.101.1", "2001:db8::8>2001:db8::1", "203.0.113.1>10.0.0.1"}
	if !slices.Equal(left, want) {
		t.Errorf("left in the table: %v, want %v", left, want)
	}
	if n, err := c.Delete(match); n != 0 || err != nil {
		t.Errorf("second Delete = %d, %v, want 0, nil", n, err)
	}
}

func create(t testing.TB, h *vnl.Handle, f flow, sport uint16) {
	t.Helper()
	src, dst := net.ParseIP(f.src), net.ParseIP(f.dst)
	fam := vnl.InetFamily(vnl.FAMILY_V4)
	if src.To4() == nil {
		fam = vnl.FAMILY_V6
	} else {
		src, dst = src.To4(), dst.To4()
	}
	ct := &vnl.ConntrackFlow{
		FamilyType: uint8(fam), Zone: f.zone, TimeOut: 300,
		Forward:   vnl.IPTuple{SrcIP: src, DstIP: dst, Protocol: 6, SrcPort: sport, DstPort: 22},
		Reverse:   vnl.IPTuple{SrcIP: dst, DstIP: src, Protocol: 6, SrcPort: 22, DstPort: sport},
		ProtoInfo: &vnl.ProtoInfoTCP{State: 3}, // TCP_CONNTRACK_ESTABLISHED
	}
	if err := h.ConntrackCreate(vnl.ConntrackTable, fam, ct); err != nil {
		t.Fatalf("create %v: %v", f, err)
	}
}

func list(t testing.TB, h *vnl.Handle) []string {
	t.Helper()
	var out []string
	for _, fam := range []vnl.InetFamily{vnl.FAMILY_V4, vnl.FAMILY_V6} {
		flows, err := h.ConntrackTableList(vnl.ConntrackTable, fam)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range flows {
			out = append(out, f.Forward.SrcIP.String()+">"+f.Forward.DstIP.String())
		}
	}
	slices.Sort(out)
	return out
}
