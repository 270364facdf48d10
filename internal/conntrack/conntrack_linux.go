//go:build linux

package conntrack

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// timeout bounds one dump or one round of deletes: the kernel answers in
// milliseconds, and a lost answer must not hang the caller.
const timeout = 30 * time.Second

// chunk is how many deletes go out in one write. Each is acknowledged in a
// datagram of its own, and the socket's receive buffer must hold them all.
const chunk = 64

// Conn is a ctnetlink socket. It is not safe for concurrent use.
type Conn struct {
	c *netlink.Conn
}

// Dial opens the socket in the network namespace whose fd is netns (<= 0:
// the current one).
func Dial(netns int) (*Conn, error) {
	if netns < 0 {
		netns = 0
	}
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: netns})
	if err != nil {
		return nil, fmt.Errorf("conntrack netlink: %w", err)
	}
	// Acks and errors then echo the header of a delete only.
	_ = c.SetOption(netlink.CapAcknowledge, true)
	return &Conn{c: c}, nil
}

// Close closes the socket.
func (c *Conn) Close() error { return c.c.Close() }

// Delete walks the table once and deletes every entry whose original
// source or reply source match accepts (so both the connections an address
// opened and those opened to it). It returns how many it deleted; an entry
// that ended between the dump and its delete is not counted, nor an error.
func (c *Conn) Delete(match func(netip.Addr) bool) (int, error) {
	entries, err := c.matching(match)
	if err != nil {
		return 0, err
	}
	deleted := 0
	for len(entries) > 0 {
		n := min(len(entries), chunk)
		d, err := c.deleteAll(entries[:n])
		deleted += d
		if err != nil {
			return deleted, err
		}
		entries = entries[n:]
	}
	return deleted, nil
}

// matching dumps the table and keeps the entries match accepts. The dump is
// read as it comes: a table of 100,000 entries is never held whole.
func (c *Conn) matching(match func(netip.Addr) bool) ([]Entry, error) {
	if err := c.c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return nil, err
	}
	if _, err := c.c.Send(dumpRequest()); err != nil {
		return nil, fmt.Errorf("conntrack dump: %w", err)
	}
	var out []Entry
	for m, err := range c.c.ReceiveIter() {
		if err != nil {
			return nil, fmt.Errorf("conntrack dump: %w", err)
		}
		e, err := parseEntry(m)
		if err != nil {
			continue // nothing to match it by
		}
		if match(e.OrigSrc) || match(e.ReplySrc) {
			out = append(out, e)
		}
	}
	return out, nil
}

// deleteAll sends the deletes of entries in one write and reads one answer
// for each.
func (c *Conn) deleteAll(entries []Entry) (int, error) {
	msgs := make([]netlink.Message, 0, len(entries))
	for _, e := range entries {
		m, err := deleteRequest(e)
		if err != nil {
			return 0, err
		}
		msgs = append(msgs, m)
	}
	if err := c.c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return 0, err
	}
	if _, err := c.c.SendMessages(msgs); err != nil {
		return 0, fmt.Errorf("conntrack delete: %w", err)
	}
	deleted := 0
	var first error
	for range msgs {
		_, err := c.c.Receive()
		switch {
		case err == nil:
			deleted++
		case errors.Is(err, unix.ENOENT): // ended meanwhile
		case errors.Is(err, os.ErrDeadlineExceeded):
			return deleted, fmt.Errorf("conntrack delete: %w", err)
		case first == nil:
			// Read the other answers all the same, so that none is
			// left for the next walk to mistake for its own.
			first = fmt.Errorf("conntrack delete: %w", err)
		}
	}
	return deleted, first
}
