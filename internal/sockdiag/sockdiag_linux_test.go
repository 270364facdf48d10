//go:build linux

package sockdiag

import (
	"errors"
	"net"
	"net/netip"
	"runtime"
	"syscall"
	"testing"
	"time"

	vnl "github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/vallum/vallum/internal/netnstest"
)

// inNS runs fn on a thread inside ns; sockets made there stay in ns.
func inNS(t *testing.T, ns netns.NsHandle, fn func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err == nil {
			err = netns.Set(ns)
		}
		if err != nil {
			errc <- err
			return // still locked: the thread ends with the goroutine
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- err
			return
		}
		orig.Close()
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// TestDestroyInNamespace opens connections inside a fresh namespace from
// 127.0.0.2, 127.0.0.3 (to an IPv4 listener and, as an IPv4-mapped peer,
// to a dual-stack one) and fd00::2, closes the sockets of the peers
// 127.0.0.2 and fd00::2, and checks what each program sees: the server's
// socket aborted, the client reset, the other connection still carrying
// data, the listeners still accepting.
func TestDestroyInNamespace(t *testing.T) {
	ns := netnstest.New(t)
	h, err := vnl.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		t.Fatal(err)
	}
	addr, _ := vnl.ParseAddr("fd00::2/128")
	addr.Flags = 0x02 // IFA_F_NODAD: usable at once
	if err := h.AddrAdd(lo, addr); err != nil {
		t.Fatal(err)
	}

	var l4, l6 net.Listener
	inNS(t, ns, func() (err error) {
		if l4, err = net.Listen("tcp4", "127.0.0.1:0"); err != nil {
			return err
		}
		l6, err = net.Listen("tcp", "[::]:0")
		return err
	})
	defer l4.Close()
	defer l6.Close()
	type pair struct{ client, server net.Conn }
	connect := func(l net.Listener, from, to string) pair {
		var p pair
		inNS(t, ns, func() (err error) {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
			if p.client, err = d.Dial("tcp", net.JoinHostPort(to, port(l))); err != nil {
				return err
			}
			p.server, err = l.Accept()
			return err
		})
		t.Cleanup(func() { p.client.Close(); p.server.Close() })
		return p
	}
	banned := connect(l4, "127.0.0.2", "127.0.0.1")
	mapped := connect(l6, "127.0.0.2", "127.0.0.1") // an IPv6 socket on the server side
	banned6 := connect(l6, "fd00::2", "::1")
	kept := connect(l4, "127.0.0.3", "127.0.0.1")

	c, err := Dial(int(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.CanDestroy(); err != nil {
		t.Skipf("CanDestroy: %v", err)
	}
	ban := map[netip.Addr]bool{netip.MustParseAddr("127.0.0.2"): true, netip.MustParseAddr("fd00::2"): true}
	n, err := c.Destroy(func(a netip.Addr) bool { return ban[a] })
	if errors.Is(err, ErrUnsupported) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Errorf("Destroy = %d, want 3 (the server sides of the banned peers' connections)", n)
	}
	for name, p := range map[string]pair{"ipv4": banned, "ipv4-mapped": mapped, "ipv6": banned6} {
		if err := readErr(p.server); !errors.Is(err, syscall.ECONNABORTED) {
			t.Errorf("%s: the server's socket of a banned peer reads %v, want ECONNABORTED", name, err)
		}
		if err := readErr(p.client); !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("%s: the banned client reads %v, want ECONNRESET (the kernel's reset)", name, err)
		}
	}
	if _, err := kept.client.Write([]byte("x")); err != nil {
		t.Fatalf("the other client cannot write: %v", err)
	}
	if err := readErr(kept.server); err != nil {
		t.Errorf("the other connection was closed too: %v", err)
	}
	connect(l4, "127.0.0.2", "127.0.0.1") // the listener still accepts
}

// readErr reads one byte with a deadline, and returns the error (nil when
// a byte came).
func readErr(c net.Conn) error {
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err := c.Read(make([]byte, 1))
	return err
}

func port(l net.Listener) string {
	_, p, _ := net.SplitHostPort(l.Addr().String())
	return p
}
