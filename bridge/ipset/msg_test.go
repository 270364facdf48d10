package ipset

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"slices"
	"testing"

	"github.com/vallum/vallum/bridge"
	"github.com/vallum/vallum/internal/wire"
)

var (
	net4 = header{name: "bl", typ: "hash:net", family: nfprotoIPv4, timeout: true, comments: true}
	net6 = header{name: "bl6", typ: "hash:net", family: nfprotoIPv6, timeout: true, comments: true}
	ip4  = header{name: "hosts", typ: "hash:ip", family: nfprotoIPv4}
)

func op(a bridge.Action, p string, timeout wire.Timeout, comment string) bridge.Op {
	return bridge.Op{Action: a, Prefix: netip.MustParsePrefix(p), Timeout: timeout, Comment: comment}
}

// TestEncodeADTWire pins the bytes of one entry against the layout
// `ipset -exist add bl 192.0.2.7 timeout 300` uses, so that the encoder and
// the dump parser cannot agree on a mistake.
func TestEncodeADTWire(t *testing.T) {
	var m builder
	req, n := m.encodeADT(net4, bridge.Add, []bridge.Op{op(bridge.Add, "192.0.2.7/32", 300, "")})
	ne := binary.NativeEndian
	var want []byte
	want = ne.AppendUint32(want, 88)
	want = ne.AppendUint16(want, 6<<8|9)       // NFNL_SUBSYS_IPSET, IPSET_CMD_ADD
	want = ne.AppendUint16(want, 0x1|0x4)      // NLM_F_REQUEST|NLM_F_ACK, no NLM_F_EXCL: -exist
	want = append(want, make([]byte, 8)...)    // seq, pid: filled in by the socket
	want = append(want, 2, 0, 0, 0)            // nfgenmsg
	want = append(nla(want, 5, 1), 6, 0, 0, 0) // IPSET_ATTR_PROTOCOL 6
	want = append(nla(want, 7, 2), 'b', 'l', 0, 0)
	want = append(nla(want, 8, 9), 0, 0, 0, 0) // IPSET_ATTR_LINENO 0: batch mode
	want = ne.AppendUint16(want, 44)
	want = ne.AppendUint16(want, 8|0x8000) // IPSET_ATTR_ADT
	want = ne.AppendUint16(want, 40)
	want = ne.AppendUint16(want, 7|0x8000) // IPSET_ATTR_DATA
	want = ne.AppendUint16(want, 12)
	want = ne.AppendUint16(want, 1|0x8000) // IPSET_ATTR_IP
	want = ne.AppendUint16(want, 8)
	want = ne.AppendUint16(want, 1|0x4000) // IPSET_ATTR_IPADDR_IPV4
	want = append(want, 192, 0, 2, 7)
	want = append(nla(want, 5, 3), 32, 0, 0, 0) // IPSET_ATTR_CIDR
	want = ne.AppendUint16(want, 8)
	want = ne.AppendUint16(want, 6|0x4000) // IPSET_ATTR_TIMEOUT, big endian
	want = append(want, 0, 0, 1, 44)
	want = nla(want, 8, 9)
	want = ne.AppendUint32(want, 1) // IPSET_ATTR_LINENO 1
	if n != 1 || !bytes.Equal(req, want) {
		t.Errorf("encodeADT = %d entries\n% x\nwant\n% x", n, req, want)
	}
}

// nla appends a netlink attribute header, in the CPU's byte order as
// netlink wants (the tests also run on big-endian MIPS, under qemu).
func nla(b []byte, n, typ uint16) []byte {
	return binary.NativeEndian.AppendUint16(binary.NativeEndian.AppendUint16(b, n), typ)
}

// decodeADT returns the entries and line numbers of an add/del request.
func decodeADT(t *testing.T, req []byte) (flags uint16, entries []bridge.Entry, lines []uint32) {
	t.Helper()
	ms, err := splitMessages(req)
	if err != nil || len(ms) != 1 {
		t.Fatalf("splitMessages: %d messages, %v", len(ms), err)
	}
	attrs(ms[0].payload[4:], func(typ uint16, v []byte) error {
		if typ != attrADT {
			return nil
		}
		return attrs(v, func(_ uint16, v []byte) error {
			en, err := parseEntry(v)
			if err != nil {
				t.Fatalf("parseEntry: %v", err)
			}
			entries, lines = append(entries, en), append(lines, lineOf(v))
			return nil
		})
	})
	return binary.NativeEndian.Uint16(req[6:8]), entries, lines
}

func TestEncodeADT(t *testing.T) {
	tests := []struct {
		name string
		h    header
		ops  []bridge.Op
		want []bridge.Entry // as the kernel's dump would show them
	}{
		{"ipv4 with timeouts", net4,
			[]bridge.Op{op(bridge.Add, "192.0.2.1/32", 60, ""), op(bridge.Add, "198.51.100.0/24", wire.DefaultTimeout, ""), op(bridge.Add, "192.0.2.2/32", 0, "")},
			[]bridge.Entry{{Prefix: netip.MustParsePrefix("192.0.2.1/32"), Timeout: 60}, {Prefix: netip.MustParsePrefix("198.51.100.0/24")}, {Prefix: netip.MustParsePrefix("192.0.2.2/32")}}},
		{"ipv6 with comment", net6,
			[]bridge.Op{op(bridge.Add, "2001:db8::7/128", 10, "vallum"), op(bridge.Add, "2001:db8:1::/48", wire.MaxTimeout+5, "")},
			[]bridge.Entry{{Prefix: netip.MustParsePrefix("2001:db8::7/128"), Timeout: 10, Comment: "vallum"}, {Prefix: netip.MustParsePrefix("2001:db8:1::/48"), Timeout: wire.MaxTimeout}}},
		{"del sends no timeout or comment", net4,
			[]bridge.Op{op(bridge.Del, "192.0.2.1/32", 60, "x")},
			[]bridge.Entry{{Prefix: netip.MustParsePrefix("192.0.2.1/32")}}},
		{"set without timeouts or comments", ip4,
			[]bridge.Op{op(bridge.Add, "192.0.2.1/32", 60, "x")},
			[]bridge.Entry{{Prefix: netip.MustParsePrefix("192.0.2.1/32")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m builder
			req, n := m.encodeADT(tt.h, tt.ops[0].Action, tt.ops)
			flags, got, lines := decodeADT(t, req)
			if n != len(tt.ops) || flags&nlmExcl != 0 {
				t.Errorf("encodeADT took %d of %d ops, flags %#x; want all, without NLM_F_EXCL", n, len(tt.ops), flags)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("entries sent %+v, want %+v", got, tt.want)
			}
			for i, l := range lines {
				if l != uint32(i+1) {
					t.Errorf("entry %d has line %d, want %d", i, l, i+1)
				}
			}
		})
	}
}

func TestEncodeADTSplits(t *testing.T) {
	ops := make([]bridge.Op, 5000)
	for i := range ops {
		ops[i] = op(bridge.Add, netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}).String()+"/32", 60, "")
	}
	var m builder
	req, n := m.encodeADT(net4, bridge.Add, ops)
	if n < 1000 || n >= len(ops) || len(req) > maxMsgBytes {
		t.Fatalf("encodeADT of %d ops: %d in %d bytes; want >= 1000 ops within %d bytes", len(ops), n, len(req), maxMsgBytes)
	}
	if _, got, _ := decodeADT(t, req); len(got) != n {
		t.Errorf("message holds %d entries, encodeADT says %d", len(got), n)
	}
}

func TestParseError(t *testing.T) {
	var m builder
	req, _ := m.encodeADT(net4, bridge.Add, []bridge.Op{op(bridge.Add, "192.0.2.1/32", 1, ""), op(bridge.Add, "192.0.2.2/32", 1, "")})
	// What call_ad() sends back: the error, then the request with its
	// command-level line number rewritten to the failing entry's.
	echo := bytes.Clone(req)
	i := bytes.Index(echo, append(nla(nil, 8, 9), 0, 0, 0, 0))
	binary.NativeEndian.PutUint32(echo[i+4:], 2)
	errno := func(code int32, rest []byte) []byte {
		return append(binary.NativeEndian.AppendUint32(nil, uint32(-code)), rest...)
	}
	tests := []struct {
		name    string
		payload []byte
		want    *kernelError
	}{
		{"ack", errno(0, req[:16]), nil},
		{"failing entry", errno(errTypeSpecific, echo), &kernelError{Code: errTypeSpecific, Line: 2}},
		{"whole request", errno(2, req), &kernelError{Code: 2}},
		{"no echo", errno(1, nil), &kernelError{Code: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseError(tt.payload)
			if err != nil || (got == nil) != (tt.want == nil) || (got != nil && *got != *tt.want) {
				t.Errorf("parseError = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
	if _, err := parseError([]byte{1}); err == nil {
		t.Error("parseError of 1 byte: no error")
	}
}

func TestParseList(t *testing.T) {
	// A dump comes as several messages: the header with the first entries,
	// then more entries. hash:ip entries carry no CIDR.
	var m builder
	m.begin(cmdList, 0)
	m.str(attrSetName, "bl6")
	m.str(attrTypeName, "hash:ip")
	m.u8(attrFamily, nfprotoIPv6)
	d := m.nest(attrData)
	m.be32(attrMaxElem, 1<<22)
	m.be32(attrElements, 2)
	m.be32(attrTimeout, 0)
	m.be32(attrCadtFlags, withComment)
	m.end(d)
	adt := m.nest(attrADT)
	m.entry(header{typ: "hash:ip", timeout: true, comments: true}, op(bridge.Add, "2001:db8::1/128", 7, "c"), 0)
	m.end(adt)
	first := bytes.Clone(m.bytes())
	m.begin(cmdList, 0)
	m.str(attrSetName, "bl6")
	adt = m.nest(attrADT)
	m.entry(header{typ: "hash:net"}, op(bridge.Add, "2001:db8:1::/48", 0, ""), 0)
	m.end(adt)
	var h header
	var got []bridge.Entry
	for _, msg := range [][]byte{first, m.bytes()} {
		if err := parseList(msg[nlmsgHdrLen:], &h, &got); err != nil {
			t.Fatalf("parseList: %v", err)
		}
	}
	wantH := header{name: "bl6", typ: "hash:ip", family: nfprotoIPv6, size: 2, maxElem: 1 << 22, timeout: true, comments: true}
	want := []bridge.Entry{
		{Prefix: netip.MustParsePrefix("2001:db8::1/128"), Timeout: 7, Comment: "c"},
		{Prefix: netip.MustParsePrefix("2001:db8:1::/48")},
	}
	if h != wantH || !slices.Equal(got, want) {
		t.Errorf("parseList = %+v, %+v\nwant %+v, %+v", h, got, wantH, want)
	}
}
