package ipset

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/vallum/vallum/bridge"
	"github.com/vallum/vallum/internal/wire"
)

var errShort = errors.New("truncated netlink attribute")

// attrs calls fn for each netlink attribute in b, with the flag bits
// (nested, network order) stripped from the type.
func attrs(b []byte, fn func(typ uint16, v []byte) error) error {
	for len(b) >= 4 {
		n := int(binary.NativeEndian.Uint16(b[0:2]))
		typ := binary.NativeEndian.Uint16(b[2:4]) & nlaTypeMask
		if n < 4 || n > len(b) {
			return errShort
		}
		if err := fn(typ, b[4:n]); err != nil {
			return err
		}
		n = (n + 3) &^ 3
		if n > len(b) {
			break
		}
		b = b[n:]
	}
	return nil
}

func be32(v []byte) uint32 {
	if len(v) < 4 {
		return 0
	}
	return binary.BigEndian.Uint32(v)
}

func cstring(v []byte) string {
	for i, c := range v {
		if c == 0 {
			return string(v[:i])
		}
	}
	return string(v)
}

// message is one netlink message: its type and its payload after the
// 16-byte header.
type message struct {
	typ     uint16
	seq     uint32
	payload []byte
}

// splitMessages cuts a datagram into netlink messages.
func splitMessages(b []byte) ([]message, error) {
	var ms []message
	for len(b) >= nlmsgHdrLen {
		n := int(binary.NativeEndian.Uint32(b[0:4]))
		if n < nlmsgHdrLen || n > len(b) {
			return ms, fmt.Errorf("netlink message of %d bytes in %d: %w", n, len(b), errShort)
		}
		ms = append(ms, message{
			typ:     binary.NativeEndian.Uint16(b[4:6]),
			seq:     binary.NativeEndian.Uint32(b[8:12]),
			payload: b[nlmsgHdrLen:n],
		})
		b = b[min(len(b), (n+3)&^3):]
	}
	return ms, nil
}

// kernelError is an NLMSG_ERROR answer. Line is the 1-based line (index in
// the batch) of the entry that failed, 0 when the whole request failed.
type kernelError struct {
	Code int // positive errno or IPSET_ERR_* code
	Line uint32
}

func (e *kernelError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("kernel error %d at entry %d", e.Code, e.Line)
	}
	return fmt.Sprintf("kernel error %d", e.Code)
}

// parseError reads an NLMSG_ERROR payload: a negative errno, then the
// request echoed back. For a batch the kernel (call_ad in ip_set_core.c)
// rewrites the command-level IPSET_ATTR_LINENO of that echo to the line of
// the failing entry. Code 0 is an ACK and yields nil.
func parseError(p []byte) (*kernelError, error) {
	if len(p) < 4 {
		return nil, fmt.Errorf("netlink error message: %w", errShort)
	}
	code := -int(int32(binary.NativeEndian.Uint32(p[0:4])))
	if code == 0 {
		return nil, nil
	}
	ke := &kernelError{Code: code}
	echo := p[4:]
	const skip = nlmsgHdrLen + 4 // echoed nlmsghdr and nfgenmsg
	if len(echo) >= skip {
		n := min(len(echo), int(binary.NativeEndian.Uint32(echo[0:4])))
		if n >= skip {
			attrs(echo[skip:n], func(typ uint16, v []byte) error {
				if typ == attrLineNo && len(v) >= 4 {
					ke.Line = binary.NativeEndian.Uint32(v)
				}
				return nil
			})
		}
	}
	return ke, nil
}

// parseList reads one IPSET_CMD_LIST message of a dump into h and, when
// entries is not nil, appends the set's entries to it. The first message of
// a dump carries the header; later ones carry only more entries.
func parseList(p []byte, h *header, entries *[]bridge.Entry) error {
	if len(p) < 4 {
		return fmt.Errorf("ipset list message: %w", errShort)
	}
	return attrs(p[4:], func(typ uint16, v []byte) error {
		switch typ {
		case attrSetName:
			h.name = cstring(v)
		case attrTypeName:
			h.typ = cstring(v)
		case attrFamily, attrRevision:
			if len(v) < 1 {
				return errShort
			}
			if typ == attrFamily {
				h.family = v[0]
			} else {
				h.revision = v[0]
			}
		case attrData:
			return attrs(v, h.data)
		case attrADT:
			if entries == nil {
				return nil
			}
			return attrs(v, func(typ uint16, v []byte) error {
				if typ != attrData {
					return nil
				}
				en, err := parseEntry(v)
				if err == nil {
					*entries = append(*entries, en)
				}
				return err
			})
		}
		return nil
	})
}

// data reads the set header inside IPSET_ATTR_DATA.
func (h *header) data(typ uint16, v []byte) error {
	switch typ {
	case attrMaxElem:
		h.maxElem = be32(v)
	case attrElements:
		h.size = be32(v)
	case attrTimeout:
		h.timeout = true
	case attrCadtFlags:
		h.comments = be32(v)&withComment != 0
	}
	return nil
}

// parseEntry reads one entry of a dump. IPv6 addresses come in
// IPSET_ATTR_IPADDR_IPV6 (ipset-go only looks for the IPv4 one); hash:ip
// sends no CIDR, which means a host prefix.
func parseEntry(b []byte) (bridge.Entry, error) {
	var (
		en   bridge.Entry
		addr netip.Addr
		bits = -1
	)
	err := attrs(b, func(typ uint16, v []byte) error {
		switch typ {
		case attrIP:
			return attrs(v, func(typ uint16, v []byte) error {
				var ok bool
				addr, ok = netip.AddrFromSlice(v)
				if !ok || (typ == attrIPv4) != addr.Is4() {
					return fmt.Errorf("ipset entry address of %d bytes in attribute %d: %w", len(v), typ, errShort)
				}
				return nil
			})
		case attrCIDR:
			if len(v) < 1 {
				return errShort
			}
			bits = int(v[0])
		case attrTimeout:
			en.Timeout = wire.Timeout(be32(v))
		case attrComment:
			en.Comment = cstring(v)
		}
		return nil
	})
	if err != nil {
		return en, err
	}
	if !addr.IsValid() {
		return en, fmt.Errorf("ipset entry without address: %w", errShort)
	}
	if bits < 0 {
		bits = addr.BitLen()
	}
	en.Prefix, err = addr.Prefix(bits)
	return en, err
}
