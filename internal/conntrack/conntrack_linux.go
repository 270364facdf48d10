//go:build linux

package conntrack

import (
	"fmt"
	"net/netip"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/vallum/vallum/internal/nlwalk"
)

// Conn is a ctnetlink socket. It is not safe for concurrent use.
type Conn struct {
	c *netlink.Conn
}

// Dial opens the socket in the network namespace whose fd is netns (<= 0:
// the current one).
func Dial(netns int) (*Conn, error) {
	c, err := nlwalk.Dial(unix.NETLINK_NETFILTER, netns)
	if err != nil {
		return nil, fmt.Errorf("conntrack netlink: %w", err)
	}
	return &Conn{c: c}, nil
}

// Close closes the socket.
func (c *Conn) Close() error { return c.c.Close() }

// Delete walks the table once and deletes every entry whose original
// source or reply source match accepts (so both the connections an address
// opened and those opened to it). It returns how many it deleted; an entry
// that ended between the dump and its delete is not counted, nor an error.
func (c *Conn) Delete(match func(netip.Addr) bool) (int, error) {
	var dels []netlink.Message
	err := nlwalk.Dump(c.c, dumpRequest(), func(m netlink.Message) {
		e, err := parseEntry(m)
		if err != nil || !match(e.OrigSrc) && !match(e.ReplySrc) {
			return // nothing to match it by, or not banned
		}
		if d, err := deleteRequest(e); err == nil {
			dels = append(dels, d)
		}
	})
	if err != nil {
		return 0, fmt.Errorf("conntrack dump: %w", err)
	}
	n, err := nlwalk.Do(c.c, dels)
	if err != nil {
		return n, fmt.Errorf("conntrack delete: %w", err)
	}
	return n, nil
}
