package keeper

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vallum/vallum/internal/wire"
)

// burstMessage returns an event payload of the addresses 10.x.y.z from
// `from` on, n of them, after meta's line if it has one.
func burstMessage(meta *wire.Meta, from, n int, tail string) string {
	var sb strings.Builder
	if meta != nil {
		sb.WriteString(wire.MetaLine(*meta))
	}
	for j := from; j < from+n; j++ {
		fmt.Fprintf(&sb, "10.%d.%d.%d%s\n", j>>16&255, j>>8&255, j&255, tail)
	}
	return sb.String()
}

// stateSends counts the keeper's publishes of per-ban states (not their
// deletions).
func (b *fakeBroker) stateSends(root string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, m := range b.sent {
		if strings.HasPrefix(m.topic, root+"/ban/") && m.payload != "" {
			n++
		}
	}
	return n
}

// TestBurst: 20,000 bans in messages of 1,000 lines with the feed's meta
// line become chunks and nothing else: no per-ban state is ever published,
// and until the cut the keeper says it holds bans no retained message
// carries (Unflushed). After Flush a host reads all 20,000 with the
// feed's reason, origin and expiry; a line the bridges refuse (too broad,
// allowlisted) is in no chunk.
func TestBurst(t *testing.T) {
	needChunks(t)
	s := newKeeper(t, nil, Options{Name: "hub", BurstLines: 256,
		Limits: Limits{Allow: []netip.Prefix{netip.MustParsePrefix("10.0.1.7/32")}}})
	s.k.cut(t) // the list's first cut, as at start
	meta := &wire.Meta{Reason: "drop", Origin: "import:drop.txt"}
	for i := 0; i < 20000; i += 1000 {
		s.b.client("blacklist/add", burstMessage(meta, i, 1000, " timeout 3600")+"10.0.0.0/4\n", false)
	}
	if !s.k.Unflushed() {
		t.Fatal("Unflushed false after a burst, before any cut")
	}
	if n := len(s.b.rawStates("blacklist")); n != 0 {
		t.Fatalf("%d per-ban states on the broker before the cut, want none", n)
	}
	s.k.Flush()
	if s.k.Unflushed() {
		t.Error("Unflushed true after Flush")
	}
	got := s.b.states("blacklist")
	if len(got) != 19999 {
		t.Errorf("a host reads %d bans, want 19,999 (20,000 less the allowlisted one)", len(got))
	}
	if _, ok := got["blacklist/ban/10.0.1.7"]; ok {
		t.Error("the allowlisted 10.0.1.7 is in the list")
	}
	st := got["blacklist/ban/10.0.77.32"]
	if st.Reason != "drop" || st.Origin != "import:drop.txt" || st.Expires.Sub(st.At) != time.Hour {
		t.Errorf("10.0.77.32: %+v, want reason drop, origin import:drop.txt, an hour", st)
	}
	if n := s.b.stateSends("blacklist"); n != 0 {
		t.Errorf("the keeper published %d per-ban states for a burst, want none", n)
	}
	if m := s.b.manifest(t, "blacklist"); m.Entries != 19999 {
		t.Errorf("manifest of %d entries, want 19,999", m.Entries)
	}
}

// TestBurstSmallMessage: a message under BurstLines takes the per-ban
// path, with its meta line's reason and origin, and a meta line naming the
// keeper's own origin is not believed.
func TestBurstSmallMessage(t *testing.T) {
	needChunks(t)
	s := newKeeper(t, nil, Options{Name: "hub", BurstLines: 256})
	s.k.cut(t)
	s.b.client("blacklist/add", burstMessage(&wire.Meta{Reason: "r", Origin: "import:x"}, 0, 255, ""), false)
	s.b.client("blacklist/add", burstMessage(&wire.Meta{Origin: Origin}, 1000, 1, ""), false)
	if s.k.Unflushed() {
		t.Error("Unflushed after messages under BurstLines")
	}
	raw := s.b.rawStates("blacklist")
	if len(raw) != 256 {
		t.Fatalf("%d per-ban states, want 256", len(raw))
	}
	if st := raw["blacklist/ban/10.0.0.9"]; st.Reason != "r" || st.Origin != "import:x" {
		t.Errorf("10.0.0.9: %+v, want reason r, origin import:x", st)
	}
	if st := raw["blacklist/ban/10.0.3.232"]; st.Origin != Origin {
		t.Errorf("10.0.3.232: origin %q, want the keeper's", st.Origin)
	}
}

// TestBurstCutWhenQuiet: Run's maintenance cuts a burst once no burst line
// came for burstQuiet, not before; an unban before the cut leaves the ban
// out of it.
func TestBurstCutWhenQuiet(t *testing.T) {
	needChunks(t)
	s := newKeeper(t, nil, Options{Name: "hub", BurstLines: 256})
	s.k.cut(t)
	s.b.client("blacklist/add", burstMessage(nil, 0, 500, ""), false)
	s.b.client("blacklist/del", "10.0.0.7", false)
	s.k.maintain()
	if !s.k.Unflushed() {
		t.Fatal("cut at once: want it after burstQuiet")
	}
	s.clk.add(burstQuiet)
	s.k.maintain()
	if s.k.Unflushed() {
		t.Fatal("no cut burstQuiet after the burst")
	}
	got := s.b.states("blacklist")
	if _, ok := got["blacklist/ban/10.0.0.7"]; ok || len(got) != 499 {
		t.Errorf("a host reads %d bans (10.0.0.7 among them: %v), want 499 without it", len(got), ok)
	}
}

// TestBurstLegacyState: a list that keeps legacy state keeps a per-ban
// state for every ban of a burst too (hosts of the previous release read
// only those).
func TestBurstLegacyState(t *testing.T) {
	needChunks(t)
	s := newKeeper(t, nil, Options{Name: "hub", BurstLines: 256, LegacyState: true})
	s.b.client("blacklist/add", burstMessage(nil, 0, 500, ""), false)
	if n := len(s.b.rawStates("blacklist")); n != 500 || s.k.Unflushed() {
		t.Errorf("%d per-ban states (unflushed %v), want 500", n, s.k.Unflushed())
	}
}

// TestCutBuiltOutside: a ban lifted, and one banned again, while a cut is
// built outside the lock (cutOutside): the new chunks hold what was read,
// so the lifted ban's chunk is rewritten at once (a host never reads it
// after that), and the ban made again stays the view's, for the next cut.
func TestCutBuiltOutside(t *testing.T) {
	needChunks(t)
	s := newKeeper(t, nil, Options{Name: "hub", BurstLines: 256})
	s.k.cut(t)
	s.b.client("blacklist/add", burstMessage(nil, 0, 5000, ""), false)
	s.k.mu.Lock()
	c := s.k.collectLocked(0, s.k.now())
	s.k.mu.Unlock()
	s.clk.add(time.Second)
	s.b.client("blacklist/del", "10.0.0.7", false)
	s.b.client("blacklist/add", "10.0.0.8 timeout 60", false)
	c.build()
	s.k.mu.Lock()
	out := s.k.commitLocked(c)
	s.k.mu.Unlock()
	if err := s.k.publish(out); err != nil {
		t.Fatal(err)
	}
	s.k.maintain() // the rewrite of the lifted ban's chunk
	got := s.b.states("blacklist")
	if _, ok := got["blacklist/ban/10.0.0.7"]; ok {
		t.Error("10.0.0.7, lifted while the cut was built, is still read")
	}
	if st := got["blacklist/ban/10.0.0.8"]; st.Expires.IsZero() || len(got) != 4999 {
		t.Errorf("10.0.0.8: %+v of %d bans; want the later ban, of 60 s, among 4,999", st, len(got))
	}
}
