package broker

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/vallum/vallum/internal/wire"
)

// TestHostIndex: online, offline (the will), forgotten (an empty retained
// status), out of sync (not synced, or silent past staleAfter), junk
// ignored, and the cap counted, not grown past.
func TestHostIndex(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	x := newHostIndex([]string{"bl", "wl"})
	x.now = func() time.Time { return now }
	x.maxLen = 4
	status := func(id string, s wire.HostStatus) { x.feed(wire.HostTopic(id), wire.EncodeHostStatus(s), true) }

	status("a", wire.HostStatus{Online: true, Synced: true, Entries: map[string]int{"bl": 10}})
	status("b", wire.HostStatus{Online: true, Synced: true, Entries: map[string]int{"bl": 7, "wl": 1}})
	status("c", wire.HostStatus{Online: true, Synced: false, Entries: map[string]int{"bl": 0}})
	status("d", wire.HostStatus{Online: true, Synced: true})
	status("d", wire.HostStatus{Online: false}) // its will
	x.feed(wire.HostTopic("e"), []byte("not json"), true)
	x.feed(wire.HostPrefix+"x/y", wire.EncodeHostStatus(wire.HostStatus{Online: true}), true)
	want := HostsStats{Online: 3, Offline: 1, OutOfSync: 1, Lists: []ListHosts{
		{List: "bl", Hosts: 3, Min: 0, Max: 10}, {List: "wl", Hosts: 1, Min: 1, Max: 1}}}
	if diff := cmp.Diff(want, x.stats()); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}

	// The cap: a fifth host is counted, not tracked; a known one updates.
	status("f", wire.HostStatus{Online: true, Synced: true})
	status("c", wire.HostStatus{Online: true, Synced: true, Entries: map[string]int{"bl": 3}})
	if s := x.stats(); s.Online != 3 || s.Untracked != 1 || s.OutOfSync != 0 || s.Lists[0].Min != 3 {
		t.Errorf("past the cap: %+v, want 3 online, 1 untracked, none out of sync, bl min 3", s)
	}
	// An empty retained status forgets d: f now fits.
	x.feed(wire.HostTopic("d"), nil, true)
	status("f", wire.HostStatus{Online: true, Synced: true})
	if s := x.stats(); s.Online != 4 || s.Offline != 0 {
		t.Errorf("after d was deleted: %+v, want 4 online, 0 offline", s)
	}

	// Silent past staleAfter: out of sync though its status says synced.
	now = now.Add(staleAfter - time.Second)
	status("a", wire.HostStatus{Online: true, Synced: true, Entries: map[string]int{"bl": 10}})
	now = now.Add(2 * time.Second)
	if s := x.stats(); s.OutOfSync != 3 {
		t.Errorf("after %v of silence: %d out of sync, want 3 (b, c, f; not a)", staleAfter, s.OutOfSync)
	}
	// A retained status loaded at start is as old as its At.
	x.feed(wire.HostTopic("b"), wire.EncodeHostStatus(wire.HostStatus{Online: true, Synced: true, At: now.Unix() - 3600}), false)
	x.feed(wire.HostTopic("c"), wire.EncodeHostStatus(wire.HostStatus{Online: true, Synced: true, At: now.Unix() - 10}), false)
	if s := x.stats(); s.OutOfSync != 2 {
		t.Errorf("loaded statuses: %d out of sync, want 2 (b an hour old, f)", s.OutOfSync)
	}
}

// TestHubHostsRestart: the hub, without --web, counts its hosts from the
// statuses it carries live, and, after a restart on the same store, from
// the retained ones it loads.
func TestHubHostsRestart(t *testing.T) {
	if !webBuilt {
		t.Skip("the router builds have no hosts' status")
	}
	o := Options{Listeners: []Listener{local(KindTCP)}, DataDir: t.TempDir(), Logger: testLogger(t), Lists: []string{"bl"}}
	b1, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	stop1 := runBroker(t, b1)
	c := mustDial(t, url(t, b1, KindTCP))
	c.pub(t, wire.HostTopic("vallum-a"), 1, true, `{"online":true,"synced":true,"entries":{"bl":4}}`)
	c.pub(t, wire.HostTopic("vallum-b"), 1, true, `{"online":false}`)
	want := HostsStats{Online: 1, Offline: 1, Lists: []ListHosts{{List: "bl", Hosts: 1, Min: 4, Max: 4}}}
	waitHosts(t, b1, "live", want)
	c.Disconnect(50)
	stop1()
	waitHosts(t, start(t, o), "after a restart", want)
}

// waitHosts waits up to 5 s for b's hosts to be want: the inline
// subscription gets a status as its PUBACK goes, Run loads the retained.
func waitHosts(t *testing.T, b *Broker, what string, want HostsStats) {
	t.Helper()
	var got HostsStats
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if got, _ = b.Hosts(); cmp.Equal(got, want) {
			return
		}
	}
	t.Errorf("%s (-want +got):\n%s", what, cmp.Diff(want, got))
}
