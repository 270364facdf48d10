package conntrack

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/mdlayher/netlink"
)

// tupleAttr encodes a tuple as ctnetlink does: CTA_TUPLE_IP with source
// and destination, CTA_TUPLE_PROTO with the protocol and ports.
func tupleAttr(t *testing.T, src, dst netip.Addr, sport, dport uint16) []byte {
	t.Helper()
	ae := netlink.NewAttributeEncoder()
	ae.Nested(ctaTupleIP, func(ip *netlink.AttributeEncoder) error {
		s, d := uint16(ctaIPV4Src), uint16(ctaIPV4Src+1)
		if src.Is6() {
			s, d = ctaIPV6Src, ctaIPV6Src+1
		}
		ip.Bytes(s, src.AsSlice())
		ip.Bytes(d, dst.AsSlice())
		return nil
	})
	ae.Nested(2, func(p *netlink.AttributeEncoder) error { // CTA_TUPLE_PROTO
		p.Uint8(1, 6) // CTA_PROTO_NUM: TCP
		p.ByteOrder = binary.BigEndian
		p.Uint16(2, sport)
		p.Uint16(3, dport)
		return nil
	})
	b, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// dumped is one message of a dump: orig a -> b, reply b -> a, an id, a
// status and, when zone is not 0, a zone.
func dumped(t *testing.T, a, b netip.Addr, id uint32, zone uint16) netlink.Message {
	t.Helper()
	fam := uint8(afInet)
	if a.Is6() {
		fam = afInet6
	}
	ae := netlink.NewAttributeEncoder()
	ae.Bytes(netlink.Nested|ctaTupleOrig, tupleAttr(t, a, b, 40000, 22))
	ae.Bytes(netlink.Nested|ctaTupleReply, tupleAttr(t, b, a, 22, 40000))
	ae.ByteOrder = binary.BigEndian
	ae.Uint32(3, 0x18e) // CTA_STATUS
	ae.Uint32(ctaID, id)
	if zone != 0 {
		ae.Uint16(ctaZone, zone)
	}
	attrs, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return netlink.Message{
		Header: netlink.Header{Type: msgType(msgCtNew), Flags: netlink.Multi},
		Data:   append(nfgenmsg(fam), attrs...),
	}
}

func TestParseEntry(t *testing.T) {
	for _, tc := range []struct {
		name     string
		a, b     string
		zone     uint16
		wantFam  uint8
		wantZone bool
	}{
		{"ipv4", "198.51.100.7", "10.0.0.1", 0, afInet, false},
		{"ipv6", "2001:db8::7", "2001:db8::1", 0, afInet6, false},
		{"zone", "198.51.100.7", "10.0.0.1", 5, afInet, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := netip.MustParseAddr(tc.a), netip.MustParseAddr(tc.b)
			e, err := parseEntry(dumped(t, a, b, 0xdeadbeef, tc.zone))
			if err != nil {
				t.Fatal(err)
			}
			if e.Family != tc.wantFam || e.OrigSrc != a || e.ReplySrc != b || idOf(e) != 0xdeadbeef || (e.zone != nil) != tc.wantZone {
				t.Errorf("parseEntry = family %d orig %s reply %s id %#x zone %v, want %d %s %s 0xdeadbeef %v",
					e.Family, e.OrigSrc, e.ReplySrc, idOf(e), e.zone, tc.wantFam, a, b, tc.wantZone)
			}
		})
	}
}

func TestParseEntryRefusesOthers(t *testing.T) {
	m := dumped(t, netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), 1, 0)
	m.Header.Type = netlink.Error
	if _, err := parseEntry(m); err == nil {
		t.Error("parseEntry of an error message succeeded")
	}
	if _, err := parseEntry(netlink.Message{Header: netlink.Header{Type: msgType(msgCtNew)}, Data: nfgenmsg(afInet)}); err == nil {
		t.Error("parseEntry of an entry without a tuple succeeded")
	}
}

// TestDeleteRequest: the delete carries the dumped tuple, id and zone as the
// kernel sent them, in a message of the entry's family, so it deletes that
// entry and no other.
func TestDeleteRequest(t *testing.T) {
	a, b := netip.MustParseAddr("2001:db8::7"), netip.MustParseAddr("2001:db8::1")
	d := dumped(t, a, b, 77, 3)
	e, err := parseEntry(d)
	if err != nil {
		t.Fatal(err)
	}
	m, err := deleteRequest(e)
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.Type != 0x102 || m.Header.Flags != netlink.Request|netlink.Acknowledge {
		t.Errorf("header = type %#x flags %v, want 0x102 request|ack", m.Header.Type, m.Header.Flags)
	}
	if !bytes.Equal(m.Data[:4], []byte{afInet6, 0, 0, 0}) {
		t.Errorf("nfgenmsg = %v, want family AF_INET6", m.Data[:4])
	}
	got := map[uint16][]byte{}
	ad, err := netlink.NewAttributeDecoder(m.Data[4:])
	if err != nil {
		t.Fatal(err)
	}
	for ad.Next() {
		got[ad.Type()] = ad.Bytes()
		if ad.Type() == ctaTupleOrig && ad.TypeFlags()&netlink.Nested == 0 {
			t.Error("CTA_TUPLE_ORIG is not flagged nested")
		}
	}
	want := map[uint16][]byte{ctaTupleOrig: e.tuple, ctaID: {0, 0, 0, 77}, ctaZone: e.zone}
	for k, v := range want {
		if !bytes.Equal(got[k], v) {
			t.Errorf("attribute %d = %x, want %x", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("delete has %d attributes, want %d", len(got), len(want))
	}
}

// TestDeleteNeverFlushes: ctnetlink reads a delete without a tuple as a
// flush of the whole table; no such message can be built.
func TestDeleteNeverFlushes(t *testing.T) {
	if _, err := deleteRequest(Entry{Family: afInet}); err == nil {
		t.Fatal("deleteRequest without a tuple succeeded: the kernel would flush the table")
	}
}

func TestDumpRequest(t *testing.T) {
	m := dumpRequest()
	if m.Header.Type != 0x101 || m.Header.Flags&netlink.Dump != netlink.Dump || !bytes.Equal(m.Data, []byte{0, 0, 0, 0}) {
		t.Errorf("dumpRequest = %+v, want type 0x101, dump, AF_UNSPEC", m)
	}
}
