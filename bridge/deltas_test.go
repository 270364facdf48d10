package bridge

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/vallum/vallum/internal/wire"
)

// announce publishes manifest m again, announcing the per-ban states
// deltas (made after its cut) up to upto, as a keeper does.
func announce(t *testing.T, pub mqtt.Client, m wire.Manifest, upto time.Time, deltas ...wire.Entry) {
	t.Helper()
	d := wire.Deltas{Upto: upto.Truncate(time.Millisecond)}
	for _, e := range deltas {
		d.Add(e.Prefix, e.State.At.UnixMilli())
	}
	m.Deltas = &d
	publish(t, pub, wire.ManifestTopic("bl"), true, string(wire.EncodeManifest(m)))
}

func publishState(t *testing.T, pub mqtt.Client, e wire.Entry) {
	t.Helper()
	publish(t, pub, wire.StateTopic("bl", e.Prefix), true, string(wire.EncodeState(e.State)))
}

// TestCompactMissingDelta: the broker does not serve one of the per-ban
// states the manifest announces (a cluster's node that lags or lost it):
// the host removes nothing, not even what the list no longer holds, and
// says the list is partial; once the broker serves it and a manifest
// comes, the host syncs whole again and removes what the list lifted.
// A state younger than the announcement counts on neither side.
func TestCompactMissingDelta(t *testing.T) {
	_, url := startBroker(t, nil)
	pub := publisher(t, url)
	at := time.Now().Add(-time.Minute)
	m := publishList(t, pub, []wire.Entry{entry("203.0.113.1/32", wire.State{At: at}), entry("203.0.113.2/32", wire.State{At: at})}, 1)
	d1 := entry("198.51.100.1/32", wire.State{At: m.Cut.Add(time.Millisecond)})
	d2 := entry("2001:db8::/64", wire.State{At: m.Cut.Add(2 * time.Millisecond)})
	young := entry("198.51.100.3/32", wire.State{At: m.Cut.Add(time.Hour)}) // after upto
	publishState(t, pub, d1)
	publishState(t, pub, young)
	announce(t, pub, m, m.Cut.Add(time.Second), d1, d2)

	f := newFake()
	f.put("bl6", IPv6, "2001:db8::/64", CommentState) // the delta the broker does not serve
	f.put("bl", IPv4, "192.0.2.200/32", CommentState) // lifted: in no chunk and no state
	r := startBridge(t, url, f, func(o *Options) { o.SyncTimeout = 500 * time.Millisecond })
	r.waitSynced(t, 1)
	wantMembers(t, f, "bl", "192.0.2.200", "198.51.100.1", "198.51.100.3", "203.0.113.1", "203.0.113.2")
	wantMembers(t, f, "bl6", "2001:db8::/64")
	if why := r.b.stats.ListsLost()["bl"]; !strings.Contains(why, "per-ban states made since the cut: read 1, the manifest") {
		t.Errorf("a missing delta: the list is reported as %q, want partial", why)
	}

	// The broker serves it again; the keeper's next manifest (the same
	// announcement) makes the host sync again, whole.
	publishState(t, pub, d2)
	announce(t, pub, m, m.Cut.Add(time.Second), d2, d1)
	r.waitSynced(t, 2)
	wantMembers(t, f, "bl", "198.51.100.1", "198.51.100.3", "203.0.113.1", "203.0.113.2")
	wantMembers(t, f, "bl6", "2001:db8::/64")
	if why := r.b.stats.ListsLost()["bl"]; why != "" {
		t.Errorf("the whole list read: still reported as %q", why)
	}
}

// TestCompactLiftedDelta: a delta lifted while the host was away (its
// state deleted, and the keeper's manifest no longer announcing it) is
// removed, and the list is whole: no ERROR for an unban. A delta of
// another version than announced (banned again since) is not the one
// announced: the read is partial until the keeper announces the new one.
func TestCompactLiftedDelta(t *testing.T) {
	_, url := startBroker(t, nil)
	pub := publisher(t, url)
	at := time.Now().Add(-time.Minute)
	m := publishList(t, pub, []wire.Entry{entry("203.0.113.1/32", wire.State{At: at})}, 1)
	d1 := entry("198.51.100.1/32", wire.State{At: m.Cut.Add(time.Millisecond)})
	publishState(t, pub, d1)
	announce(t, pub, m, m.Cut.Add(time.Second), d1) // d2 lifted: no longer announced
	f := newFake()
	f.put("bl", IPv4, "198.51.100.2/32", CommentState) // d2, applied before it was lifted
	r := startBridge(t, url, f, func(o *Options) { o.SyncTimeout = 500 * time.Millisecond })
	r.waitSynced(t, 1)
	wantMembers(t, f, "bl", "198.51.100.1", "203.0.113.1")
	if why := r.b.stats.ListsLost()["bl"]; why != "" {
		t.Errorf("a lifted delta: the list is reported as %q", why)
	}

	// d1 banned again, at a version the manifest does not announce yet.
	again := entry("198.51.100.1/32", wire.State{At: m.Cut.Add(3 * time.Millisecond)})
	publishState(t, pub, again)
	f.put("bl", IPv4, "192.0.2.200/32", CommentState)
	r.b.newSync(*r.b.client.Load())
	r.waitSynced(t, 2)
	if why := r.b.stats.ListsLost()["bl"]; !strings.Contains(why, "per-ban states made since the cut") {
		t.Errorf("another version than announced: the list is reported as %q, want partial", why)
	}
	wantMembers(t, f, "bl", "192.0.2.200", "198.51.100.1", "203.0.113.1")
	announce(t, pub, m, m.Cut.Add(time.Second), again)
	r.waitSynced(t, 3)
	wantMembers(t, f, "bl", "198.51.100.1", "203.0.113.1")
}

// TestSeenDeltas: what the window counts as a per-ban state read: a state,
// whether a chunk entry of its version comes before or after it, and not
// once deleted; never a chunk entry alone.
func TestSeenDeltas(t *testing.T) {
	all := func(int64) bool { return true }
	p, q, r := netip.MustParsePrefix("198.51.100.1/32"), netip.MustParsePrefix("2001:db8::/64"), netip.MustParsePrefix("198.51.100.2/32")
	s := newSeen(0)
	s.take(p, 10, true, true)
	s.take(p, 10, true, false) // its chunk entry, after it
	s.take(q, 20, true, false) // a chunk entry, then its state
	s.take(q, 20, false, true) // expired: still a state on the broker
	s.take(r, 30, true, false) // a chunk entry alone
	var want wire.DeltaSum
	want.Add(p, 10)
	want.Add(q, 20)
	if got := s.deltas(all); got != want {
		t.Fatalf("deltas %+v, want %+v", got, want)
	}
	if !s.has(p) || s.has(q) || !s.has(r) {
		t.Error("the state flag changed what is banned")
	}
	s.stateGone(q)
	s.take(p, 11, false, false) // unbanned: newer, no state
	if got := s.deltas(all); got.Count != 0 {
		t.Errorf("deleted states still counted: %+v", got)
	}
	if s.take(p, 10, true, true) {
		t.Error("an older state taken over a newer read")
	}
}

// BenchmarkSeenDeltas: the count a sync makes of the per-ban states it
// read, over a window of 1,000,000 bans (chunk entries) and 10,000 states.
func BenchmarkSeenDeltas(b *testing.B) {
	s := newSeen(1_000_000)
	for i := range 1_000_000 {
		a := netip.AddrFrom4([4]byte{20, byte(i >> 16), byte(i >> 8), byte(i)})
		s.take(netip.PrefixFrom(a, 32), int64(1000+i), true, i%100 == 0)
	}
	b.ResetTimer()
	for range b.N {
		if d := s.deltas(func(at int64) bool { return at > 0 }); d.Count != 10_000 {
			b.Fatal(d.Count)
		}
	}
}
