package broker

import (
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/vallum/vallum/internal/netnstest"
)

func TestListenNetwork(t *testing.T) {
	for addr, want := range map[string]string{
		"0.0.0.0:1883": "tcp4", "192.0.2.1:1883": "tcp4", "127.0.0.1:1883": "tcp4",
		"[::]:1883": "tcp6", "[::1]:1883": "tcp6", "[2001:db8::1]:1883": "tcp6",
		":1883": "tcp", "localhost:1883": "tcp", "hub.example:1883": "tcp",
	} {
		if got := listenNetwork(addr); got != want {
			t.Errorf("listenNetwork(%q) = %s, want %s", addr, got, want)
		}
	}
}

// --listen 0.0.0.0:PORT takes IPv4 clients only, [::]:PORT IPv6 only, and
// :PORT both, for tcp, tls and ws listeners alike (in a namespace of the
// test's own, so that nothing listens on the host's addresses).
func TestListenFamilies(t *testing.T) {
	ns := netnstest.New(t)
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil || h.LinkSetUp(lo) != nil {
		t.Fatalf("loopback up: %v", err)
	}
	tests := []struct {
		host     string
		v4, v6   bool
		wantKind string
	}{
		{"0.0.0.0", true, false, KindTCP},
		{"[::]", false, true, KindTCP},
		{"", true, true, KindTCP},
		{"0.0.0.0", true, false, KindWS},
		{"[::]", false, true, KindWS},
	}
	for _, tt := range tests {
		var b *Broker
		inNS(t, ns, func() {
			b, err = New(Options{Listeners: []Listener{{Kind: tt.wantKind, Addr: tt.host + ":0"}}, AllowAnonymous: true})
		})
		if err != nil {
			t.Fatalf("listen %s: %v", tt.host, err)
		}
		stop := runBroker(t, b)
		_, port, _ := net.SplitHostPort(b.ls[0].Address())
		for _, c := range []struct {
			addr string
			want bool
		}{{"127.0.0.1", tt.v4}, {"::1", tt.v6}} {
			var derr error
			inNS(t, ns, func() {
				var conn net.Conn
				conn, derr = net.DialTimeout("tcp", net.JoinHostPort(c.addr, port), 2*time.Second)
				if derr == nil {
					conn.Close()
				}
			})
			if got := derr == nil; got != c.want {
				t.Errorf("%s listener on %q: a client to %s connects: %v, want %v (%v)", tt.wantKind, tt.host+":"+port, c.addr, got, c.want, derr)
			}
		}
		stop()
	}
}

// inNS runs f on a thread in ns; sockets made there stay in ns.
func inNS(t *testing.T, ns netns.NsHandle, f func()) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			panic("cannot return to the original namespace: " + err.Error())
		}
	}()
	f()
}
