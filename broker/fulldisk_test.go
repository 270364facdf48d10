package broker

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/vallum/vallum/internal/tmpfs"
	"github.com/vallum/vallum/internal/wire"
)

// TestCutOnFullDisk: a list of 10,000 bans held by a cut; the disk fills
// but for room for a burst of 3,000 more, which is acknowledged, not for
// the cut that is to hold them. That cut deletes nothing: a host reads the
// 10,000 on the running hub and after a restart on the same data dir,
// still full. Once space comes back, the next cut holds the 13,000, and
// the generation before is deleted.
func TestCutOnFullDisk(t *testing.T) {
	dir := tmpfs.Mount(t, 8<<20)
	o := Options{Listeners: []Listener{local(KindTCP)}, DataDir: dir, Lists: []string{"blacklist"}}
	b1, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	stop1 := runBroker(t, b1)
	defer stop1()
	settled(t, b1)
	c := mustDial(t, url(t, b1, KindTCP))
	c.pub(t, "blacklist/add", 1, false, burstOf(1, 0, 5000))
	c.pub(t, "blacklist/add", 1, false, burstOf(2, 0, 5000))
	cutHolds(t, b1, 10000)
	first := manifestOf(t, b1)

	free := tmpfs.Fill(t, dir)
	defer free()
	room(t, dir, 256<<10) // for the burst, not for the cut's 300 KB of chunks
	c.pub(t, "blacklist/add", 1, false, burstOf(3, 0, 3000))
	eventually(t, "the burst was not taken", func() bool { return b1.keeper.k.Unflushed() })
	b1.keeper.k.Flush() // the cut, refused
	if st, _ := b1.StoreStats(); st.Refused == 0 {
		t.Fatalf("store stats %+v: the cut was not refused; the test needs a disk too full for it", st)
	}
	held(t, "on the running hub", b1, first.Gen)
	c.Disconnect(0)
	stop1()

	b2 := start(t, o)
	settled(t, b2)
	b2.keeper.k.Flush() // the journal's burst, replayed: refused again
	held(t, "after a restart", b2, first.Gen)

	free()
	cutHolds(t, b2, 13000)
	if got := len(hostReads(b2, "blacklist")); got != 13000 {
		t.Errorf("space back: a host reads %d bans, want 13,000", got)
	}
	m := manifestOf(t, b2)
	if n := len(b2.srv.Topics.Messages(wire.ChunksFilter("blacklist"))); n != len(m.CRC) {
		t.Errorf("space back: %d chunks retained, want the %d of the last cut", n, len(m.CRC))
	}
}

// cutHolds waits for a cut of n bans.
func cutHolds(t *testing.T, b *Broker, n int) {
	t.Helper()
	eventually(t, fmt.Sprintf("no cut holds %d bans", n), func() bool {
		pk, ok := b.srv.Topics.Retained.Get(wire.ManifestTopic("blacklist"))
		m, err := wire.DecodeManifest(pk.Payload)
		return ok && err == nil && m.Entries == n
	})
}

// room frees n bytes of a disk tmpfs.Fill filled.
func room(t *testing.T, dir string, n int64) {
	t.Helper()
	path := filepath.Join(dir, "filler")
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, max(0, st.Size()-n)); err != nil {
		t.Fatal(err)
	}
}

func manifestOf(t *testing.T, b *Broker) wire.Manifest {
	t.Helper()
	pk, _ := b.srv.Topics.Retained.Get(wire.ManifestTopic("blacklist"))
	m, err := wire.DecodeManifest(pk.Payload)
	if err != nil {
		t.Fatalf("manifest: %v", err)
	}
	return m
}

// held checks that a host reads the 10,000 bans of the first cut, and
// that its generation is still the manifest's.
func held(t *testing.T, when string, b *Broker, gen uint64) {
	t.Helper()
	got := hostReads(b, "blacklist")
	for _, n := range []int{1, 2} {
		for j := range 5000 {
			if p := netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.%d/32", n, j>>8, j&255)); !got[p] {
				t.Fatalf("%s: %s is not listed (a host reads %d bans), want the 10,000 of the first cut", when, p, len(got))
			}
		}
	}
	if m := manifestOf(t, b); m.Gen != gen {
		t.Errorf("%s: manifest of generation %x, want the first cut's %x", when, m.Gen, gen)
	}
}
