//go:build linux

package sockdiag

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// timeout bounds one dump or one round of destroys.
const timeout = 30 * time.Second

// chunk is how many destroys go out in one write (one answer each).
const chunk = 64

// Conn is a NETLINK_SOCK_DIAG socket. It is not safe for concurrent use.
type Conn struct {
	c *netlink.Conn
}

// Dial opens the socket in the network namespace whose fd is netns (<= 0:
// the current one); the sockets it sees and closes are that namespace's.
func Dial(netns int) (*Conn, error) {
	if netns < 0 {
		netns = 0
	}
	c, err := netlink.Dial(unix.NETLINK_SOCK_DIAG, &netlink.Config{NetNS: netns})
	if err != nil {
		return nil, fmt.Errorf("sock_diag netlink: %w", err)
	}
	_ = c.SetOption(netlink.CapAcknowledge, true)
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
	var socks []Socket
	for _, fam := range []uint8{afInet, afInet6} {
		s, err := c.matching(fam, match)
		if err != nil {
			return 0, err
		}
		socks = append(socks, s...)
	}
	closed := 0
	for len(socks) > 0 {
		n := min(len(socks), chunk)
		d, err := c.destroyAll(socks[:n])
		closed += d
		if err != nil {
			return closed, err
		}
		socks = socks[n:]
	}
	return closed, nil
}

func (c *Conn) matching(family uint8, match func(netip.Addr) bool) ([]Socket, error) {
	if err := c.c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return nil, err
	}
	if _, err := c.c.Send(dumpRequest(family)); err != nil {
		return nil, fmt.Errorf("sock_diag dump: %w", err)
	}
	var out []Socket
	for m, err := range c.c.ReceiveIter() {
		if errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("%w (no inet_diag: %w)", ErrUnsupported, err)
		}
		if err != nil {
			return nil, fmt.Errorf("sock_diag dump: %w", err)
		}
		s, err := parseSocket(m)
		if err == nil && match(s.Peer) {
			out = append(out, s)
		}
	}
	return out, nil
}

// destroyAll sends the destroys of socks in one write and reads one answer
// for each; it reads them all even after an error, so that none is left
// for the next call.
func (c *Conn) destroyAll(socks []Socket) (int, error) {
	msgs := make([]netlink.Message, len(socks))
	for i, s := range socks {
		msgs[i] = destroyRequest(s)
	}
	if err := c.c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return 0, err
	}
	if _, err := c.c.SendMessages(msgs); err != nil {
		return 0, fmt.Errorf("sock_diag destroy: %w", err)
	}
	closed := 0
	var first error
	for range msgs {
		_, err := c.c.Receive()
		switch {
		case err == nil:
			closed++
		case errors.Is(err, unix.ENOENT): // closed meanwhile
		case errors.Is(err, os.ErrDeadlineExceeded):
			return closed, fmt.Errorf("sock_diag destroy: %w", err)
		case errors.Is(err, unix.EOPNOTSUPP):
			first = ErrUnsupported
		case first == nil:
			first = fmt.Errorf("sock_diag destroy: %w", err)
		}
	}
	return closed, first
}

// CanDestroy asks the kernel whether it can close sockets, by destroying a
// socket that does not exist: a kernel with CONFIG_INET_DIAG_DESTROY looks
// for it and answers ENOENT, one without refuses the command itself
// (EOPNOTSUPP), and then CanDestroy returns ErrUnsupported.
func (c *Conn) CanDestroy() error {
	if err := c.c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	_, err := c.c.Execute(destroyRequest(Socket{Family: afInet}))
	switch {
	case err == nil, errors.Is(err, unix.ENOENT):
		return nil
	case errors.Is(err, unix.EOPNOTSUPP):
		return ErrUnsupported
	}
	return fmt.Errorf("sock_diag destroy: %w", err)
}
