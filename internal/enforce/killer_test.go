package enforce

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestPrefixSet(t *testing.T) {
	s := newPrefixSet([]netip.Prefix{
		netip.MustParsePrefix("198.51.100.7/32"),
		netip.MustParsePrefix("203.0.113.0/24"),
		netip.MustParsePrefix("2001:db8::7/128"),
		netip.MustParsePrefix("2001:db8:1::/48"),
	})
	for _, tc := range []struct {
		addr string
		want bool
	}{
		{"198.51.100.7", true},
		{"198.51.100.8", false},
		{"203.0.113.200", true},
		{"203.0.114.1", false},
		{"::ffff:198.51.100.7", true}, // an IPv4 peer of an IPv6 socket
		{"2001:db8::7", true},
		{"2001:db8::8", false},
		{"2001:db8:1:ffff::1", true},
		{"2001:db8:2::1", false},
		{"::ffff:203.0.114.1", false},
	} {
		if got := s.contains(netip.MustParseAddr(tc.addr)); got != tc.want {
			t.Errorf("contains(%s) = %v, want %v", tc.addr, got, tc.want)
		}
	}
	if s.contains(netip.Addr{}) {
		t.Error("contains(zero Addr) = true")
	}
}

// fakeWalker records each walk: which of probe the match accepted.
type fakeWalker struct {
	mu     sync.Mutex
	probe  []netip.Addr
	walks  [][]netip.Addr
	err    error // returned by every walk
	closed int
}

func (f *fakeWalker) walk(match func(netip.Addr) bool) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var hit []netip.Addr
	for _, a := range f.probe {
		if match(a) {
			hit = append(hit, a)
		}
	}
	f.walks = append(f.walks, hit)
	return len(hit), f.err
}

func (f *fakeWalker) Close() error {
	f.mu.Lock()
	f.closed++
	f.mu.Unlock()
	return nil
}

func (f *fakeWalker) snapshot() [][]netip.Addr {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]netip.Addr(nil), f.walks...)
}

func addrs(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

func prefixes(s ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range s {
		out = append(out, netip.MustParsePrefix(p))
	}
	return out
}

// syncBuf is a log the killer's goroutine writes while the test reads.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitLog waits until the log holds want.
func (s *syncBuf) waitLog(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(s.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("log = %q, want %q", s.String(), want)
		}
		time.Sleep(time.Millisecond)
	}
}

func newTestKiller(o Options, socks, ct *fakeWalker) (*Killer, *syncBuf) {
	log := new(syncBuf)
	o.Logger = slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	k := newKiller(o, func(kind string) (walker, error) {
		if kind == "sockets" {
			return socks, nil
		}
		return ct, nil
	})
	return k, log
}

func runKiller(t *testing.T, k *Killer) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { k.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func waitWalks(t *testing.T, f *fakeWalker, n int) [][]netip.Addr {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if w := f.snapshot(); len(w) >= n {
			return w
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("%d walks, want %d", len(f.snapshot()), n)
	return nil
}

// TestBansQueuedMeanwhileShareOneWalk: bans handed over while no walk runs
// are cut in one walk of each table, which matches every one of them and
// nothing else.
func TestBansQueuedMeanwhileShareOneWalk(t *testing.T) {
	probe := addrs("198.51.100.7", "203.0.113.9", "2001:db8::7", "192.0.2.1")
	socks, ct := &fakeWalker{probe: probe}, &fakeWalker{probe: probe}
	k, log := newTestKiller(Options{}, socks, ct)
	k.Ban(prefixes("198.51.100.7/32"))
	k.Ban(prefixes("203.0.113.0/24", "2001:db8::7/128"))
	runKiller(t, k)
	for name, f := range map[string]*fakeWalker{"sockets": socks, "conntrack": ct} {
		w := waitWalks(t, f, 1)
		if len(w) != 1 || len(w[0]) != 3 {
			t.Errorf("%s walks = %v, want one matching the three banned", name, w)
		}
	}
	log.waitLog(t, "prefixes=3 sockets=3 conntrack=3")
	k.Ban(prefixes("192.0.2.1/32"))
	if w := waitWalks(t, ct, 2); len(w[1]) != 1 || w[1][0] != probe[3] {
		t.Errorf("second walk matched %v, want only the new ban", w[1])
	}
}

// TestPendingBounded: bans beyond MaxPending are dropped and said so; the
// others are cut.
func TestPendingBounded(t *testing.T) {
	probe := addrs("10.0.0.1", "10.0.0.2", "10.0.0.3")
	socks, ct := &fakeWalker{probe: probe}, &fakeWalker{probe: probe}
	k, log := newTestKiller(Options{MaxPending: 2}, socks, ct)
	k.Ban(prefixes("10.0.0.1/32", "10.0.0.2/32", "10.0.0.3/32"))
	runKiller(t, k)
	if w := waitWalks(t, ct, 1); len(w[0]) != 2 {
		t.Errorf("walk matched %v, want the first 2", w[0])
	}
	log.waitLog(t, "skipped=1")
}

// TestUnsupportedToldOnce: a kernel that cannot close sockets is told once;
// conntrack entries are still deleted at every walk.
func TestUnsupportedToldOnce(t *testing.T) {
	socks, ct := &fakeWalker{err: errUnsupported}, &fakeWalker{probe: addrs("10.0.0.1")}
	k, log := newTestKiller(Options{}, socks, ct)
	runKiller(t, k)
	for i := range 3 {
		k.Ban(prefixes("10.0.0.1/32"))
		waitWalks(t, ct, i+1)
	}
	log.waitLog(t, "prefixes=1 sockets=0 conntrack=1")
	if n := len(socks.snapshot()); n != 1 {
		t.Errorf("socket walks = %d, want 1 (then no more)", n)
	}
	if n := strings.Count(log.String(), "cannot be closed") + strings.Count(log.String(), "are not closed"); n != 1 {
		t.Errorf("told %d times, want once: %s", n, log)
	}
}

// TestErrorReopens: after a failed walk the socket is closed and a new one
// opened for the next walk; the same error again is not logged again.
func TestErrorReopens(t *testing.T) {
	socks, ct := &fakeWalker{}, &fakeWalker{err: errors.New("boom")}
	k, log := newTestKiller(Options{}, socks, ct)
	runKiller(t, k)
	k.Ban(prefixes("10.0.0.1/32"))
	waitWalks(t, ct, 1)
	k.Ban(prefixes("10.0.0.2/32"))
	waitWalks(t, ct, 2)
	k.Ban(prefixes("10.0.0.3/32"))
	waitWalks(t, ct, 3)
	deadline := time.Now().Add(5 * time.Second)
	for strings.Count(log.String(), `msg="cut connections`) < 3 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // the third walk's line comes after its error, if any
	}
	ct.mu.Lock()
	closed := ct.closed
	ct.mu.Unlock()
	if closed < 1 {
		t.Error("the failed conntrack socket was not closed")
	}
	log.waitLog(t, "boom")
	if n := strings.Count(log.String(), "boom"); n != 1 {
		t.Errorf("the same error logged %d times, want once:\n%s", n, log)
	}
}
