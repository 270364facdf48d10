package ipset

import (
	"encoding/binary"
	"net/netip"

	"github.com/vallum/vallum/bridge"
	"github.com/vallum/vallum/internal/wire"
)

// Protocol constants from the kernel's include/uapi/linux/netfilter/ipset/
// ip_set.h. lrh3321/ipset-go exports most of them too, but it builds only on
// Linux and has IPSET_ERR_HASH_FULL off by one, while this file must build
// everywhere so that the encoding is unit-tested on any machine.
const (
	protocolVersion = 6 // IPSET_PROTOCOL_MIN: what every kernel since 3.x accepts
	nfnlSubsysIPSet = 6 // NFNL_SUBSYS_IPSET

	cmdProtocol = 1
	cmdCreate   = 2
	cmdList     = 7
	cmdAdd      = 9
	cmdDel      = 10
	cmdTest     = 11
	cmdHeader   = 12
	cmdType     = 13

	// Command-level attributes.
	attrProtocol = 1
	attrSetName  = 2
	attrTypeName = 3
	attrRevision = 4
	attrFamily   = 5
	attrFlags    = 6
	attrData     = 7
	attrADT      = 8
	attrLineNo   = 9

	// Attributes inside IPSET_ATTR_DATA (create and add/del).
	attrIP        = 1
	attrCIDR      = 3
	attrTimeout   = 6
	attrCadtFlags = 8
	attrHashSize  = 18
	attrMaxElem   = 19
	attrElements  = 24
	attrComment   = 26

	// Attributes inside IPSET_ATTR_IP.
	attrIPv4 = 1
	attrIPv6 = 2

	nlaNested    = 0x8000 // NLA_F_NESTED
	nlaNetOrder  = 0x4000 // NLA_F_NET_BYTEORDER
	nlaTypeMask  = 0x3fff
	nfprotoIPv4  = 2      // NFPROTO_IPV4
	nfprotoIPv6  = 10     // NFPROTO_IPV6
	flagListHead = 1 << 2 // IPSET_FLAG_LIST_HEADER: `ipset list -t`
	withComment  = 1 << 4 // IPSET_FLAG_WITH_COMMENT in IPSET_ATTR_CADT_FLAGS

	// Netlink message header fields (linux/netlink.h).
	nlmsgHdrLen = 16
	nlmError    = 2
	nlmDone     = 3
	nlmRequest  = 0x1
	nlmAck      = 0x4
	nlmRoot     = 0x100
	nlmMatch    = 0x200
	nlmExcl     = 0x200
	nlmCreate   = 0x400
	nlmDump     = nlmRoot | nlmMatch
)

// Kernel error codes (negated in NLMSG_ERROR) that vallum tells apart.
const (
	errProtocol     = 4097 // IPSET_ERR_PROTOCOL
	errInvalidCIDR  = 4104 // IPSET_ERR_INVALID_CIDR
	errTimeout      = 4107 // IPSET_ERR_TIMEOUT
	errIPAddrIPv4   = 4109 // IPSET_ERR_IPADDR_IPV4
	errIPAddrIPv6   = 4110 // IPSET_ERR_IPADDR_IPV6
	errComment      = 4112 // IPSET_ERR_COMMENT
	errTypeSpecific = 4352 // IPSET_ERR_TYPE_SPECIFIC == IPSET_ERR_HASH_FULL for hash types
)

// builder appends netlink attributes to one message.
type builder struct{ b []byte }

// begin starts a netfilter message for cmd. The sequence number is left
// zero: the socket fills it in when it sends.
func (m *builder) begin(cmd int, flags uint16) {
	m.b = m.b[:0]
	m.b = binary.NativeEndian.AppendUint32(m.b, 0) // length, set in bytes
	m.b = binary.NativeEndian.AppendUint16(m.b, uint16(nfnlSubsysIPSet<<8|cmd))
	m.b = binary.NativeEndian.AppendUint16(m.b, flags)
	m.b = append(m.b, make([]byte, 8)...) // seq, pid
	// nfgenmsg: family, version NFNETLINK_V0, res_id (big endian) 0.
	m.b = append(m.b, 2 /* AF_INET */, 0, 0, 0)
	m.u8(attrProtocol, protocolVersion)
}

// bytes finishes the message and returns it.
func (m *builder) bytes() []byte {
	binary.NativeEndian.PutUint32(m.b[0:4], uint32(len(m.b)))
	return m.b
}

func (m *builder) attr(typ uint16, v []byte) {
	m.b = binary.NativeEndian.AppendUint16(m.b, uint16(4+len(v)))
	m.b = binary.NativeEndian.AppendUint16(m.b, typ)
	m.b = append(m.b, v...)
	for len(m.b)%4 != 0 {
		m.b = append(m.b, 0)
	}
}

func (m *builder) u8(typ uint16, v uint8) { m.attr(typ, []byte{v}) }

// u32 appends a host-order u32 (IPSET_ATTR_LINENO is one).
func (m *builder) u32(typ uint16, v uint32) {
	m.attr(typ, binary.NativeEndian.AppendUint32(nil, v))
}

// be32 appends a network-order u32, as the kernel wants for timeouts,
// sizes and flags.
func (m *builder) be32(typ uint16, v uint32) {
	m.attr(typ|nlaNetOrder, binary.BigEndian.AppendUint32(nil, v))
}

func (m *builder) str(typ uint16, s string) { m.attr(typ, append([]byte(s), 0)) }

// nest starts a nested attribute; end closes it.
func (m *builder) nest(typ uint16) int {
	at := len(m.b)
	m.attr(typ|nlaNested, nil)
	return at
}

func (m *builder) end(at int) {
	binary.NativeEndian.PutUint16(m.b[at:], uint16(len(m.b)-at))
}

// header is what vallum needs to know of a kernel set.
type header struct {
	name     string
	typ      string
	family   uint8 // NFPROTO_IPV4 or NFPROTO_IPV6
	revision uint8
	size     uint32
	maxElem  uint32
	timeout  bool // created with timeout support
	comments bool
}

// info turns h into what the bridge sees.
func (h header) info() bridge.SetInfo {
	return bridge.SetInfo{
		Name: h.name, Family: familyOf(h.family), Type: h.typ,
		Size: int(h.size), MaxElem: h.maxElem, Comments: h.comments,
	}
}

func familyOf(nfproto uint8) bridge.Family {
	switch nfproto {
	case nfprotoIPv4:
		return bridge.IPv4
	case nfprotoIPv6:
		return bridge.IPv6
	}
	return 0
}

func nfproto(f bridge.Family) uint8 {
	if f == bridge.IPv6 {
		return nfprotoIPv6
	}
	return nfprotoIPv4
}

// encodeADT builds one IPSET_CMD_ADD or IPSET_CMD_DEL message that carries
// all of ops (of one action) the way `ipset restore` batches them: one
// IPSET_ATTR_DATA per entry inside IPSET_ATTR_ADT, each with its line number
// (1-based index into ops). The command-level IPSET_ATTR_LINENO makes the
// kernel stop at the first failing entry and echo the request back with
// that attribute rewritten to the failing line.
//
// NLM_F_EXCL is set only for adds with Keep: without it the kernel applies
// IPSET_FLAG_EXIST (flag_exist() in ip_set_core.c), which is `ipset -exist`:
// an add of a present entry refreshes its timeout and comment, a del of an
// absent one is no error. With it, an add of a present entry is refused
// (IPSET_ERR_EXIST at its line) and the entry left as it is.
//
// It stops before the message would outgrow maxMsgBytes and returns how
// many of ops it holds (at least one).
func (m *builder) encodeADT(h header, action bridge.Action, ops []bridge.Op) ([]byte, int) {
	cmd := cmdAdd
	if action == bridge.Del {
		cmd = cmdDel
	}
	flags := uint16(nlmRequest | nlmAck)
	if action == bridge.Add && ops[0].Keep {
		// Without NLM_F_EXCL the kernel replaces an existing entry
		// (IPSET_FLAG_EXIST); with it, it refuses the entry instead.
		flags |= nlmExcl
	}
	m.begin(cmd, flags)
	m.str(attrSetName, h.name)
	m.u32(attrLineNo, 0)
	adt := m.nest(attrADT)
	n := 0
	for n < len(ops) && (n == 0 || len(m.b)+maxEntryBytes <= maxMsgBytes) {
		m.entry(h, ops[n], uint32(n+1))
		n++
	}
	m.end(adt)
	return m.bytes(), n
}

// maxEntryBytes bounds one encoded entry: an IPv6 address, CIDR, timeout,
// line number and a comment of 255 bytes.
const maxEntryBytes = 4 + 4 + 20 + 8 + 8 + 8 + 4 + 256

// entry appends one IPSET_ATTR_DATA for op.
func (m *builder) entry(h header, op bridge.Op, line uint32) {
	data := m.nest(attrData)
	ip := m.nest(attrIP)
	if a := op.Prefix.Addr(); a.Is4() {
		b := a.As4()
		m.attr(attrIPv4|nlaNetOrder, b[:])
	} else {
		b := a.As16()
		m.attr(attrIPv6|nlaNetOrder, b[:])
	}
	m.end(ip)
	// hash:ip would read a CIDR as a range of addresses to add one by one;
	// Apply only lets host prefixes through to it, so it gets no CIDR.
	if h.typ == "hash:net" {
		m.u8(attrCIDR, uint8(op.Prefix.Bits()))
	}
	if op.Action == bridge.Add && op.Timeout >= 0 && h.timeout {
		m.be32(attrTimeout, uint32(min(op.Timeout, wire.MaxTimeout)))
	}
	m.u32(attrLineNo, line)
	if op.Action == bridge.Add && op.Comment != "" && h.comments {
		m.str(attrComment, clipComment(op.Comment))
	}
	m.end(data)
}

// clipComment keeps a comment within IPSET_MAX_COMMENT_SIZE (255 bytes).
func clipComment(s string) string {
	if len(s) > 255 {
		return s[:255]
	}
	return s
}

// encodeCreate builds IPSET_CMD_CREATE for a hash:net set of family f with
// timeout support (default 0: permanent) and comments.
func (m *builder) encodeCreate(name string, f bridge.Family, revision uint8, maxElem uint32) []byte {
	m.begin(cmdCreate, nlmRequest|nlmAck|nlmCreate|nlmExcl)
	m.str(attrSetName, name)
	m.str(attrTypeName, "hash:net")
	m.u8(attrRevision, revision)
	m.u8(attrFamily, nfproto(f))
	data := m.nest(attrData)
	m.be32(attrHashSize, hashSize(maxElem))
	m.be32(attrMaxElem, maxElem)
	m.be32(attrTimeout, 0)
	m.be32(attrCadtFlags, withComment)
	m.end(data)
	return m.bytes()
}

// hashSize is the initial bucket count (the kernel rounds it to a power
// of two). The kernel doubles it as the set grows, rehashing every entry
// each time; measured here, starting a 4M set at ipset's default of 1,024
// buckets held batched adds to ~0.5-0.75M/s, starting at 65,536 gave
// ~1.4-2M/s. 65,536 buckets cost the kernel 512 KiB, so small sets start
// smaller.
func hashSize(maxElem uint32) uint32 {
	return max(64, min(65536, maxElem/64))
}

// encodeType asks for the revisions of type typ the kernel supports.
func (m *builder) encodeType(typ string, f bridge.Family) []byte {
	m.begin(cmdType, nlmRequest|nlmAck)
	m.str(attrTypeName, typ)
	m.u8(attrFamily, nfproto(f))
	return m.bytes()
}

// encodeTest asks whether the set holds p, as `ipset test` does.
func (m *builder) encodeTest(h header, p netip.Prefix) []byte {
	m.begin(cmdTest, nlmRequest|nlmAck)
	m.str(attrSetName, h.name)
	m.entry(h, bridge.Op{Action: bridge.Del, Prefix: p}, 0) // no timeout or comment
	return m.bytes()
}

// encodeHeader asks for the name, type, revision and family of the named
// set (IPSET_CMD_HEADER): unlike the header of a list, which counts the
// entries and the memory of a hash set by walking it (50 ms for a million
// entries here), it costs the kernel nothing.
func (m *builder) encodeHeader(name string) []byte {
	m.begin(cmdHeader, nlmRequest|nlmAck)
	m.str(attrSetName, name)
	return m.bytes()
}

// encodeList asks for a dump of the named set: the header alone (as
// `ipset list -t` does) or with every entry.
func (m *builder) encodeList(name string, headerOnly bool) []byte {
	m.begin(cmdList, nlmRequest|nlmAck|nlmDump)
	m.str(attrSetName, name)
	if headerOnly {
		m.be32(attrFlags, flagListHead)
	}
	return m.bytes()
}
