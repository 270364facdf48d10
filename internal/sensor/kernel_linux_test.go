//go:build linux && !vallum_lean

package sensor

import (
	"context"
	"net"
	"net/netip"
	"runtime"
	"slices"
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

// kernelSensor makes a fresh namespace with vallum's nft rules and the
// sensor's, and a sensor (not running) on its group: its bans are kept.
func kernelSensor(t *testing.T) (netns.NsHandle, *Sensor, func() []netip.Prefix) {
	t.Helper()
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
	t.Cleanup(func() { b.Close() })
	spec := bridge.SetSpec{Name: "bl", Family: bridge.IPv4, Create: true}
	if _, err := b.Ensure(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	b.Sensor(nft.SensorRule{Group: 77, Rate: 1000})
	if err := b.EnsureRules(context.Background(), []bridge.SetSpec{spec}); err != nil {
		t.Fatalf("EnsureRules with the sensor: %v", err)
	}
	var mu sync.Mutex
	var banned []netip.Prefix
	s := New(Options{NetNS: int(ns), Group: 77, Detector: DetectorOptions{Ports: 10}, Ban: func(_ context.Context, a netip.Prefix) error {
		mu.Lock()
		banned = append(banned, a)
		mu.Unlock()
		return nil
	}})
	return ns, s, func() []netip.Prefix {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(banned)
	}
}

// TestKernelRuleAndReader: in a fresh namespace with vallum's nft rules
// and the sensor's, SYNs to closed ports are logged and read, a port
// something listens on is not, and the scanner is banned once.
func TestKernelRuleAndReader(t *testing.T) {
	ns, s, bans := kernelSensor(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
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
	if banned := bans(); len(banned) != 1 || banned[0] != netip.MustParsePrefix("127.0.0.1/32") {
		t.Errorf("banned %v, want 127.0.0.1 once", banned)
	}
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

// TestKernelUDP: UDP packets to closed ports are logged and read, one per
// new flow; packets to a bound UDP port are not, however many flows; a
// source that sends to 20 closed UDP ports is banned once.
func TestKernelUDP(t *testing.T) {
	ns, s, bans := kernelSensor(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	send := func(port int, n int) { // n packets, each from a new socket (a new flow)
		inNS(t, ns, func() {
			for range n {
				c, err := net.Dial("udp", "127.0.0.1:"+strconv.Itoa(port))
				if err != nil {
					t.Error(err)
					return
				}
				c.Write([]byte("probe"))
				c.Close()
			}
		})
	}
	deadline := time.Now().Add(10 * time.Second)
	probes := int64(0)
	for s.stats.Packets.Load() == 0 { // registration is asynchronous
		if time.Now().After(deadline) {
			t.Fatal("no logged UDP packet read in 10 s")
		}
		send(1, 1)
		probes++
		time.Sleep(20 * time.Millisecond)
	}
	base := s.stats.Packets.Load()
	late := probes - base // probes that may still be read
	inNS(t, ns, func() {
		pc, err := net.ListenPacket("udp", "127.0.0.1:2222")
		if err != nil {
			t.Error(err)
			return
		}
		defer pc.Close()
		send(2222, 30) // the bound port: never logged
		for p := 3000; p < 3020; p++ {
			send(p, 1)
		}
	})
	for s.stats.Packets.Load() < base+20 || s.stats.Bans.Load() < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("read %d logged UDP packets and %d bans in 10 s, want 20 and 1", s.stats.Packets.Load()-base, s.stats.Bans.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := s.stats.Packets.Load() - base; got < 20 || got > 20+late {
		t.Errorf("read %d logged UDP packets, want the 20 to closed ports and at most %d late probes (the bound port's 30 are not logged)", got, late)
	}
	if banned := bans(); len(banned) != 1 || banned[0] != netip.MustParsePrefix("127.0.0.1/32") {
		t.Errorf("banned %v, want 127.0.0.1 once", banned)
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
