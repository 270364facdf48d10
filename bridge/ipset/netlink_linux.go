//go:build linux

package ipset

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Socket buffer sizes. A batch message is at most 64 KiB (maxMsgBytes) and
// a refused batch comes back whole inside the NLMSG_ERROR; a dump sends
// messages of up to 32 KiB. The margins cover the kernel's skb overhead.
const (
	sndBuf  = 1 << 20
	rcvBuf  = 4 << 20
	recvLen = 256 << 10
	// rcvTimeout bounds a wait for the kernel's answer, which normally
	// comes within milliseconds: a lost answer must not hang the bridge.
	rcvTimeout = 30 * time.Second
)

// sock is a raw NETLINK_NETFILTER socket. Its methods are called with the
// Backend's mutex held.
type sock struct {
	fd  int
	seq uint32
	buf []byte
}

// dial opens the socket, inside the network namespace ns when ns > 0.
func dial(ns int) (*sock, error) {
	fd, err := socketIn(ns)
	if err != nil {
		return nil, err
	}
	if err := setup(fd); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &sock{fd: fd, seq: uint32(time.Now().Unix()), buf: make([]byte, recvLen)}, nil
}

// socketIn creates the socket in namespace ns. A socket belongs to the
// namespace it was created in, so the creating thread enters ns and leaves
// it again. This runs on a goroutine of its own: if the thread cannot go
// back, the goroutine exits still locked and Go ends that thread, rather
// than let other goroutines run in the wrong namespace.
func socketIn(ns int) (int, error) {
	open := func() (int, error) {
		return unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	}
	if ns <= 0 {
		return open()
	}
	type result struct {
		fd  int
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{-1, fmt.Errorf("get current netns: %w", err)}
			return
		}
		defer orig.Close()
		if err := netns.Set(netns.NsHandle(ns)); err != nil {
			runtime.UnlockOSThread()
			ch <- result{-1, fmt.Errorf("enter netns fd %d: %w", ns, err)}
			return
		}
		fd, err := open()
		if rerr := netns.Set(orig); rerr != nil {
			if err == nil {
				unix.Close(fd)
			}
			ch <- result{-1, fmt.Errorf("return from netns fd %d: %w", ns, rerr)}
			return // still locked: the runtime ends this thread
		}
		runtime.UnlockOSThread()
		ch <- result{fd, err}
	}()
	r := <-ch
	return r.fd, r.err
}

// setup binds fd and sizes its buffers. The *FORCE options need
// CAP_NET_ADMIN, which the backend needs anyway; without them the kernel
// caps the sizes at net.core.[rw]mem_max.
func setup(fd int) error {
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("bind netlink socket: %w", err)
	}
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, sndBuf) != nil {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, sndBuf)
	}
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvBuf) != nil {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvBuf)
	}
	tv := unix.NsecToTimeval(rcvTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fmt.Errorf("netlink socket timeout: %w", err)
	}
	return nil
}

func (s *sock) close() error { return unix.Close(s.fd) }

// exec implements conn. Answers to earlier requests (the tail of a dump
// abandoned on an error) carry older sequence numbers and are skipped.
func (s *sock) exec(req []byte, fn func([]byte) error) error {
	s.seq++
	binary.NativeEndian.PutUint32(req[8:12], s.seq)
	if err := unix.Sendto(s.fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("netlink send: %w", err)
	}
	for {
		n, _, flags, _, err := unix.Recvmsg(s.fd, s.buf, nil, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("netlink receive: %w", err)
		}
		if flags&unix.MSG_TRUNC != 0 {
			return fmt.Errorf("netlink receive: answer larger than %d bytes", len(s.buf))
		}
		done, err := s.handle(s.buf[:n], fn)
		if done || err != nil {
			return err
		}
	}
}

// handle reads one datagram of the answer and says whether it ended it.
func (s *sock) handle(b []byte, fn func([]byte) error) (bool, error) {
	msgs, err := splitMessages(b)
	if err != nil {
		return true, err
	}
	for _, m := range msgs {
		if m.seq != s.seq {
			continue
		}
		switch m.typ {
		case nlmError:
			ke, err := parseError(m.payload)
			if ke != nil {
				return true, ke
			}
			return true, err
		case nlmDone:
			if len(m.payload) >= 4 {
				if code := -int32(binary.NativeEndian.Uint32(m.payload)); code > 0 {
					return true, &kernelError{Code: int(code)}
				}
			}
			return true, nil
		}
		if fn != nil {
			if err := fn(m.payload); err != nil {
				return true, err
			}
		}
	}
	return false, nil
}
