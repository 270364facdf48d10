//go:build linux

// Package nlwalk is what internal/conntrack and internal/sockdiag share: a
// netlink socket in a namespace, a dump read as it comes (a table of
// 100,000 entries is never held whole), and a round of requests answered
// one by one.
package nlwalk

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// timeout bounds one dump or one round of requests: the kernel answers in
// milliseconds, and a lost answer must not hang the caller.
const timeout = 30 * time.Second

// chunk is how many requests go out in one write. Each is answered in a
// datagram of its own, and the socket's receive buffer must hold them all.
const chunk = 64

// Dial opens a netlink socket of family in the network namespace whose fd
// is netns (<= 0: the current one).
func Dial(family, netns int) (*netlink.Conn, error) {
	c, err := netlink.Dial(family, &netlink.Config{NetNS: max(netns, 0)})
	if err != nil {
		return nil, err
	}
	// Errors then echo the header of a request only.
	_ = c.SetOption(netlink.CapAcknowledge, true)
	return c, nil
}

// Dump sends the dump request req and calls each for every message of the
// answer, as it is read.
func Dump(c *netlink.Conn, req netlink.Message, each func(netlink.Message)) error {
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	if _, err := c.Send(req); err != nil {
		return err
	}
	for m, err := range c.ReceiveIter() {
		if err != nil {
			return err
		}
		each(m)
	}
	return nil
}

// Do sends reqs, which must ask for an acknowledgement, a chunk at a time,
// and returns how many the kernel carried out. One that found nothing
// (ENOENT: the entry or socket went meanwhile) is neither counted nor an
// error; of other errors the first is returned, once every answer is read,
// so that none is left for the next call to mistake for its own.
func Do(c *netlink.Conn, reqs []netlink.Message) (int, error) {
	done := 0
	var first error
	for len(reqs) > 0 {
		n := min(len(reqs), chunk)
		d, err := round(c, reqs[:n])
		done += d
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return done, err
		}
		if first == nil {
			first = err
		}
		reqs = reqs[n:]
	}
	return done, first
}

func round(c *netlink.Conn, reqs []netlink.Message) (int, error) {
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return 0, err
	}
	if _, err := c.SendMessages(reqs); err != nil {
		return 0, err
	}
	done := 0
	var first error
	for range reqs {
		_, err := c.Receive()
		switch {
		case err == nil:
			done++
		case errors.Is(err, unix.ENOENT):
		case errors.Is(err, os.ErrDeadlineExceeded):
			return done, err
		case first == nil:
			first = fmt.Errorf("netlink: %w", err)
		}
	}
	return done, first
}
