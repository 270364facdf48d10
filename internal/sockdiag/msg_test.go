package sockdiag

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/mdlayher/netlink"
)

// diagMsg is an inet_diag_msg as the kernel sends it, for a socket of
// family from src:sport to dst:dport with the given cookie.
func diagMsg(family uint8, src, dst netip.Addr, sport, dport uint16, cookie uint64) netlink.Message {
	b := make([]byte, msgLen)
	b[0], b[1] = family, 1 // ESTABLISHED
	id := b[idOff : idOff+idLen]
	binary.BigEndian.PutUint16(id[0:2], sport)
	binary.BigEndian.PutUint16(id[2:4], dport)
	copy(id[4:20], src.AsSlice())
	copy(id[20:36], dst.AsSlice())
	binary.NativeEndian.PutUint32(id[36:40], 2) // interface
	binary.NativeEndian.PutUint64(id[40:48], cookie)
	return netlink.Message{Header: netlink.Header{Type: msgByFamily, Flags: netlink.Multi}, Data: b}
}

func TestParseSocket(t *testing.T) {
	for _, tc := range []struct {
		name     string
		family   uint8
		src, dst string
		want     string
	}{
		{"ipv4", afInet, "10.0.0.1", "198.51.100.7", "198.51.100.7"},
		{"ipv6", afInet6, "2001:db8::1", "2001:db8::7", "2001:db8::7"},
		{"ipv4 peer of an ipv6 socket", afInet6, "::ffff:10.0.0.1", "::ffff:198.51.100.7", "198.51.100.7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := diagMsg(tc.family, netip.MustParseAddr(tc.src), netip.MustParseAddr(tc.dst), 22, 40000, 0x1122334455667788)
			s, err := parseSocket(m)
			if err != nil {
				t.Fatal(err)
			}
			if s.Peer != netip.MustParseAddr(tc.want) || s.Family != tc.family {
				t.Errorf("parseSocket = peer %s family %d, want %s %d", s.Peer, s.Family, tc.want, tc.family)
			}
		})
	}
	if _, err := parseSocket(netlink.Message{Header: netlink.Header{Type: msgByFamily}, Data: make([]byte, 10)}); err == nil {
		t.Error("parseSocket of a short message succeeded")
	}
}

// TestDestroyRequest: the destroy names the socket by the whole id of the
// dump (ports, addresses, interface, cookie), for TCP, in its family.
func TestDestroyRequest(t *testing.T) {
	m := diagMsg(afInet6, netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::7"), 22, 40000, 42)
	s, err := parseSocket(m)
	if err != nil {
		t.Fatal(err)
	}
	d := destroyRequest(s)
	if d.Header.Type != 21 || d.Header.Flags != netlink.Request|netlink.Acknowledge || len(d.Data) != reqLen {
		t.Fatalf("destroyRequest = type %d flags %v len %d, want 21, request|ack, %d", d.Header.Type, d.Header.Flags, len(d.Data), reqLen)
	}
	if d.Data[0] != afInet6 || d.Data[1] != protoTCP {
		t.Errorf("family, protocol = %d, %d, want %d, %d", d.Data[0], d.Data[1], afInet6, protoTCP)
	}
	if !bytes.Equal(d.Data[8:], m.Data[idOff:idOff+idLen]) {
		t.Errorf("destroy id = %x, want the dump's %x", d.Data[8:], m.Data[idOff:idOff+idLen])
	}
}

func TestDumpRequest(t *testing.T) {
	d := dumpRequest(afInet)
	if d.Header.Type != 20 || d.Header.Flags&netlink.Dump != netlink.Dump || d.Data[0] != afInet || d.Data[1] != protoTCP {
		t.Fatalf("dumpRequest = %+v", d)
	}
	states := binary.NativeEndian.Uint32(d.Data[4:8])
	for st, want := range map[int]bool{1: true, 2: true, 8: true, stateTimeWait: false, stateClose: false, stateListen: false} {
		if got := states&(1<<st) != 0; got != want {
			t.Errorf("dump asks for state %d: %v, want %v", st, got, want)
		}
	}
}
