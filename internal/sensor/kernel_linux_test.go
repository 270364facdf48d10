//go:build linux && !vallum_lean

package sensor

import (
	"context"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/vallum/vallum/bridge"
	"github.com/vallum/vallum/bridge/nft"
	"github.com/vallum/vallum/internal/netnstest"
)

// TestKernelRuleAndReader: in a fresh namespace with vallum's nft rules
// and the sensor's, SYNs to closed ports are logged and read, a port
// something listens on is not, and the scanner is banned once.
func TestKernelRuleAndReader(t *testing.T) {
	ns := netnstest.New(t)
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil || h.LinkSetUp(lo) != nil {
		t.Fatalf("lo up: %v", err)
	}
	b, err := nft.New(nft.Options{NetNS: int(ns)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	spec := bridge.SetSpec{Name: "bl", Family: bridge.IPv4, Create: true}
	if _, err := b.Ensure(ctx, spec); err != nil {
		t.Fatal(err)
	}
	b.Sensor(nft.SensorRule{Group: 77, Rate: 1000})
	if err := b.EnsureRules(ctx, []bridge.SetSpec{spec}); err != nil {
		t.Fatalf("EnsureRules with the sensor: %v", err)
	}
	var mu sync.Mutex
	var banned []netip.Addr
	s := New(Options{NetNS: int(ns), Group: 77, Detector: DetectorOptions{Ports: 10}, Ban: func(_ context.Context, a netip.Addr) error {
		mu.Lock()
		banned = append(banned, a)
		mu.Unlock()
		return nil
	}})
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	// Registration is asynchronous: probe closed ports until one is read.
	deadline := time.Now().Add(10 * time.Second)
	for s.stats.Packets.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no logged SYN read in 10 s")
		}
		inNS(t, ns, func() { net.DialTimeout("tcp", "127.0.0.1:1", time.Second) })
		time.Sleep(20 * time.Millisecond)
	}
	base := s.stats.Packets.Load()
	inNS(t, ns, func() {
		ln, err := net.Listen("tcp", "127.0.0.1:2222")
		if err != nil {
			t.Error(err)
			return
		}
		defer ln.Close()
		for range 5 { // the open port, five times: never counted
			if c, err := net.DialTimeout("tcp", "127.0.0.1:2222", time.Second); err == nil {
				c.Close()
			}
		}
		for p := 3000; p < 3020; p++ {
			if c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(p), time.Second); err == nil {
				c.Close()
				t.Errorf("port %d is open", p)
			}
		}
	})
	for s.stats.Packets.Load() < base+20 || s.stats.Bans.Load() < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("read %d logged SYNs and %d bans in 10 s, want 20 and 1", s.stats.Packets.Load()-base, s.stats.Bans.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := s.stats.Packets.Load() - base; got != 20 {
		t.Errorf("read %d logged SYNs, want the 20 to closed ports (the open port's are not logged)", got)
	}
	mu.Lock()
	if len(banned) != 1 || banned[0] != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("banned %v, want 127.0.0.1 once", banned)
	}
	mu.Unlock()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("Run did not return 5 s after its context ended")
	}
}

// inNS runs f on a thread in ns; the thread is dropped afterwards rather
// than returned to the pool in the wrong namespace.
func inNS(t *testing.T, ns netns.NsHandle, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if err := netns.Set(ns); err != nil {
			t.Error(err)
			return
		}
		f()
	}()
	<-done
}
