package keeper

import (
	"testing"
	"time"

	"github.com/vallum/vallum/internal/wire"
)

// readDeltas is what a host reads of the per-ban states the manifest of
// root announces: the retained states it covers.
func (b *fakeBroker) readDeltas(t *testing.T, root string) (wire.Manifest, wire.DeltaSum) {
	t.Helper()
	m := b.manifest(t, root)
	var d wire.DeltaSum
	for topic, s := range b.rawStates(root) {
		p, err := wire.ParseTopic(root, topic)
		if err != nil {
			t.Fatal(err)
		}
		if m.Covers(s.At.UnixMilli()) {
			d.Add(p.Prefix, s.At.UnixMilli())
		}
	}
	return m, d
}

// TestDeltasAnnounced: the manifest announces the per-ban states made
// since the cut once they are deltaMargin old, and what it announces is
// what a host reads on the broker, after bans by state and by event, an
// unban, an expiry, a cut and its cleanup, with and without legacy
// state; it is rewritten at most once a second, and not when nothing
// changed.
func TestDeltasAnnounced(t *testing.T) {
	needChunks(t)
	for _, legacy := range []bool{false, true} {
		s := newKeeper(t, nil, Options{LegacyState: legacy})
		banN(s.b, 0, 50, "")
		s.clk.add(statedFor + time.Second)
		s.k.maintain()
		s.k.cut(t)
		match := func(what string, want int) {
			t.Helper()
			m, read := s.b.readDeltas(t, "blacklist")
			if m.Deltas == nil || m.Deltas.DeltaSum != read || read.Count != want {
				t.Errorf("legacy %v, %s: the manifest announces %+v, a host reads %+v, want %d", legacy, what, m.Deltas, read, want)
			}
		}
		match("right after the cut", 0)
		manifests := func() int { return len(s.b.sentTo(wire.ManifestTopic("blacklist"))) }
		before := manifests()
		s.clk.add(time.Millisecond) // a state of the cut's millisecond may be in it: no delta

		s.b.client("blacklist/ban/192.0.2.1", state(s.clk.now(), time.Time{}, "", "cli"), true) // vallum ban
		s.b.client("blacklist/add", "192.0.2.1", false)
		s.b.client("blacklist/add", "192.0.2.2 timeout 5", false) // a legacy event
		s.k.maintain()
		if manifests() != before {
			t.Errorf("legacy %v: the manifest rewritten for states under %s old", legacy, deltaMargin)
		}
		s.clk.add(deltaMargin + time.Millisecond)
		s.k.maintain()
		match("two bans", 2)
		s.k.maintain()
		if n := manifests() - before; n != 1 {
			t.Errorf("legacy %v: %d manifests for two bans, want 1", legacy, n)
		}

		s.b.client("blacklist/ban/192.0.2.1", "", true) // vallum unban
		s.b.client("blacklist/del", "192.0.2.1", false)
		s.k.maintain()
		if n := manifests() - before; n != 1 {
			t.Errorf("legacy %v: %d manifests within a second, want 1", legacy, n)
		}
		s.clk.add(deltasEvery)
		s.k.maintain()
		match("an unban", 1)
		s.clk.add(5 * time.Second)
		s.k.expire()
		s.clk.add(deltasEvery)
		s.k.maintain()
		match("an expiry", 0)

		s.b.client("blacklist/add", "192.0.2.3", false)
		s.clk.add(deltaMargin + deltasEvery)
		s.k.maintain()
		match("a ban", 1)
		s.k.cut(t) // its state folded into a chunk: no delta any more
		match("a cut", 0)
		s.clk.add(statedFor + time.Second)
		s.k.maintain()
		match("the cut's cleanup", 0)
	}
}
