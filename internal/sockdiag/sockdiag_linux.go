//go:build linux

package sockdiag

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/vallum/vallum/internal/nlwalk"
)

// Conn is a NETLINK_SOCK_DIAG socket. It is not safe for concurrent use.
type Conn struct {
	c *netlink.Conn
}

// Dial opens the socket in the network namespace whose fd is netns (<= 0:
// the current one); the sockets it sees and closes are that namespace's.
func Dial(netns int) (*Conn, error) {
	c, err := nlwalk.Dial(unix.NETLINK_SOCK_DIAG, netns)
	if err != nil {
		return nil, fmt.Errorf("sock_diag netlink: %w", err)
	}
	return &Conn{c: c}, nil
}

// Close closes the socket.
func (c *Conn) Close() error { return c.c.Close() }

// Destroy closes every local TCP socket (IPv4 and IPv6, IPv4 peers of IPv6
// sockets included) whose peer match accepts, and returns how many it
// closed. A socket that closed by itself meanwhile is not counted, nor an
// error. On a kernel without CONFIG_INET_DIAG_DESTROY it closes none and
// returns ErrUnsupported.
func (c *Conn) Destroy(match func(netip.Addr) bool) (int, error) {
	var dels []netlink.Message
	for _, fam := range []uint8{afInet, afInet6} {
		err := nlwalk.Dump(c.c, dumpRequest(fam), func(m netlink.Message) {
			if s, err := parseSocket(m); err == nil && match(s.Peer) {
				dels = append(dels, destroyRequest(s))
			}
		})
		if errors.Is(err, unix.ENOENT) {
			return 0, fmt.Errorf("%w (no inet_diag: %w)", ErrUnsupported, err)
		}
		if err != nil {
			return 0, fmt.Errorf("sock_diag dump: %w", err)
		}
	}
	n, err := nlwalk.Do(c.c, dels)
	if errors.Is(err, unix.EOPNOTSUPP) {
		return n, ErrUnsupported
	}
	if err != nil {
		return n, fmt.Errorf("sock_diag destroy: %w", err)
	}
	return n, nil
}

// CanDestroy asks the kernel whether it can close sockets, by destroying a
// socket that does not exist: a kernel with CONFIG_INET_DIAG_DESTROY looks
// for it and answers ENOENT, one without refuses the command itself
// (EOPNOTSUPP), and then CanDestroy returns ErrUnsupported.
func (c *Conn) CanDestroy() error {
	_, err := nlwalk.Do(c.c, []netlink.Message{destroyRequest(Socket{Family: afInet})})
	if errors.Is(err, unix.EOPNOTSUPP) {
		return ErrUnsupported
	}
	return err
}
