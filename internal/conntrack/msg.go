// Package conntrack deletes the kernel's connection-tracking entries of
// given addresses, over ctnetlink (nfnetlink subsystem 1), in one walk of
// the table: a dump, matched in Go, then a delete of each match by its
// tuple. The kernel cannot filter a dump by address prefix, so the walk is
// paid once per call however many addresses it is given.
//
// The messages are written here on github.com/mdlayher/netlink, which the
// binary links anyway: vishvananda/netlink's conntrack API would link its
// whole package (too big for the router builds).
package conntrack

import (
	"encoding/binary"
	"errors"
	"net/netip"

	"github.com/mdlayher/netlink"
)

// ctnetlink constants (linux/netfilter/nfnetlink.h, nfnetlink_conntrack.h).
const (
	subsysCtnetlink = 1
	msgCtNew        = 0 // what a dump answers with
	msgCtGet        = 1
	msgCtDelete     = 2

	ctaTupleOrig  = 1
	ctaTupleReply = 2
	ctaID         = 12
	ctaZone       = 18

	ctaTupleIP  = 1
	ctaIPV4Src  = 1
	ctaIPV6Src  = 3
	afUnspec    = 0
	afInet      = 2
	afInet6     = 10
	nfnetlinkV0 = 0
)

// Entry is one connection-tracking entry as a dump shows it: enough to
// match it by address and to delete exactly it.
type Entry struct {
	Family   uint8      // afInet or afInet6
	OrigSrc  netip.Addr // who opened the connection
	ReplySrc netip.Addr // who answers (the original destination, or its NAT)

	tuple []byte // CTA_TUPLE_ORIG as the kernel sent it, to delete by
	id    []byte // CTA_ID: the delete must not hit a new entry of the same tuple
	zone  []byte // CTA_ZONE, when the entry has one
}

// msgType is the nfnetlink message type of a ctnetlink message.
func msgType(m uint16) netlink.HeaderType {
	return netlink.HeaderType(subsysCtnetlink<<8 | m)
}

// nfgenmsg is the header of every nfnetlink message: family, version and a
// big-endian resource id (0).
func nfgenmsg(family uint8) []byte { return []byte{family, nfnetlinkV0, 0, 0} }

// dumpRequest asks for every entry of every family (AF_UNSPEC: ctnetlink
// then dumps IPv4 and IPv6 in one pass).
func dumpRequest() netlink.Message {
	return netlink.Message{
		Header: netlink.Header{Type: msgType(msgCtGet), Flags: netlink.Request | netlink.Dump},
		Data:   nfgenmsg(afUnspec),
	}
}

// deleteRequest deletes e by its original tuple and id. The tuple is never
// left out: a delete without one flushes the whole table.
func deleteRequest(e Entry) (netlink.Message, error) {
	if len(e.tuple) == 0 {
		return netlink.Message{}, errors.New("conntrack entry without a tuple")
	}
	ae := netlink.NewAttributeEncoder()
	ae.Bytes(netlink.Nested|ctaTupleOrig, e.tuple)
	if e.id != nil {
		ae.Bytes(ctaID, e.id)
	}
	if e.zone != nil {
		ae.Bytes(ctaZone, e.zone)
	}
	attrs, err := ae.Encode()
	if err != nil {
		return netlink.Message{}, err
	}
	return netlink.Message{
		Header: netlink.Header{Type: msgType(msgCtDelete), Flags: netlink.Request | netlink.Acknowledge},
		Data:   append(nfgenmsg(e.Family), attrs...),
	}, nil
}

// parseEntry reads one message of a dump.
func parseEntry(m netlink.Message) (Entry, error) {
	if m.Header.Type != msgType(msgCtNew) || len(m.Data) < 4 {
		return Entry{}, errors.New("conntrack dump: unexpected message")
	}
	e := Entry{Family: m.Data[0]}
	ad, err := netlink.NewAttributeDecoder(m.Data[4:])
	if err != nil {
		return e, err
	}
	for ad.Next() {
		switch ad.Type() {
		case ctaTupleOrig:
			e.tuple = ad.Bytes()
			e.OrigSrc, err = tupleSrc(e.tuple)
		case ctaTupleReply:
			e.ReplySrc, err = tupleSrc(ad.Bytes())
		case ctaID:
			e.id = ad.Bytes()
		case ctaZone:
			e.zone = ad.Bytes()
		}
		if err != nil {
			return e, err
		}
	}
	if err := ad.Err(); err != nil {
		return e, err
	}
	if e.tuple == nil {
		return e, errors.New("conntrack dump: entry without a tuple")
	}
	return e, nil
}

// tupleSrc reads the source address of a tuple (CTA_TUPLE_IP, then
// CTA_IP_V4_SRC or CTA_IP_V6_SRC). A tuple of another layer 3 protocol has
// none: the zero Addr, which matches nothing.
func tupleSrc(tuple []byte) (netip.Addr, error) {
	var src netip.Addr
	ad, err := netlink.NewAttributeDecoder(tuple)
	if err != nil {
		return src, err
	}
	for ad.Next() {
		if ad.Type() != ctaTupleIP {
			continue
		}
		ad.Nested(func(ip *netlink.AttributeDecoder) error {
			for ip.Next() {
				switch b := ip.Bytes(); {
				case ip.Type() == ctaIPV4Src && len(b) == 4:
					src = netip.AddrFrom4([4]byte(b))
				case ip.Type() == ctaIPV6Src && len(b) == 16:
					src = netip.AddrFrom16([16]byte(b)).Unmap()
				}
			}
			return nil
		})
	}
	return src, ad.Err()
}

// idOf is e's conntrack id (for tests and logs); 0 when it has none.
func idOf(e Entry) uint32 {
	if len(e.id) != 4 {
		return 0
	}
	return binary.BigEndian.Uint32(e.id)
}
