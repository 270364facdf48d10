// Package sockdiag closes the local TCP sockets whose peer matches, as
// `ss -K` does: a sock_diag dump of the TCP sockets of each family, matched
// in Go, then SOCK_DESTROY for each match. The kernel aborts the socket
// (the program holding it gets ECONNABORTED) and sends the peer a reset.
// SOCK_DESTROY needs a kernel built with CONFIG_INET_DIAG_DESTROY; without
// it Destroy returns ErrUnsupported.
//
// The messages (linux/inet_diag.h) are written here on mdlayher/netlink.
package sockdiag

import (
	"encoding/binary"
	"errors"
	"net/netip"

	"github.com/mdlayher/netlink"
)

// sock_diag constants.
const (
	msgByFamily = 20 // SOCK_DIAG_BY_FAMILY
	msgDestroy  = 21 // SOCK_DESTROY
	protoTCP    = 6
	afInet      = 2
	afInet6     = 10

	reqLen = 56 // struct inet_diag_req_v2
	msgLen = 72 // struct inet_diag_msg
	idOff  = 4  // struct inet_diag_sockid in both
	idLen  = 48
)

// TCP states (include/net/tcp_states.h) a dump skips: a listener has no
// peer, and TIME_WAIT and CLOSE sockets carry no data any more.
const (
	stateTimeWait = 6
	stateClose    = 7
	stateListen   = 10
)

// dumpStates is the state mask of a dump: every state but those above.
const dumpStates = ^uint32(1<<stateTimeWait | 1<<stateClose | 1<<stateListen)

// ErrUnsupported reports a kernel without CONFIG_INET_DIAG_DESTROY.
var ErrUnsupported = errors.New("the kernel cannot close sockets (built without CONFIG_INET_DIAG_DESTROY)")

// Socket is one local TCP socket as a dump shows it.
type Socket struct {
	Family uint8
	Peer   netip.Addr // the remote address, unmapped (an IPv6 socket of an IPv4 peer gives the IPv4 address)
	id     [idLen]byte
}

// request is an inet_diag_req_v2 for TCP sockets of family in states, for
// the socket id (all zero for a dump).
func request(family uint8, states uint32, id []byte) []byte {
	b := make([]byte, reqLen)
	b[0], b[1] = family, protoTCP
	binary.NativeEndian.PutUint32(b[4:8], states)
	copy(b[8:], id)
	return b
}

func dumpRequest(family uint8) netlink.Message {
	return netlink.Message{
		Header: netlink.Header{Type: msgByFamily, Flags: netlink.Request | netlink.Dump},
		Data:   request(family, dumpStates, nil),
	}
}

// destroyRequest names s by its whole id as the dump gave it: ports,
// addresses, interface and cookie, so that only that socket is closed.
func destroyRequest(s Socket) netlink.Message {
	return netlink.Message{
		Header: netlink.Header{Type: msgDestroy, Flags: netlink.Request | netlink.Acknowledge},
		Data:   request(s.Family, ^uint32(0), s.id[:]),
	}
}

// parseSocket reads one message of a dump.
func parseSocket(m netlink.Message) (Socket, error) {
	if m.Header.Type != msgByFamily || len(m.Data) < msgLen {
		return Socket{}, errors.New("sock_diag dump: unexpected message")
	}
	s := Socket{Family: m.Data[0]}
	copy(s.id[:], m.Data[idOff:idOff+idLen])
	dst := s.id[20:36] // after the ports (4) and the source address (16)
	switch s.Family {
	case afInet:
		s.Peer = netip.AddrFrom4([4]byte(dst[:4]))
	case afInet6:
		s.Peer = netip.AddrFrom16([16]byte(dst)).Unmap()
	default:
		return s, errors.New("sock_diag dump: unknown family")
	}
	return s, nil
}
