package keeper

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/vallum/vallum/internal/wire"
)

// chunkTopics returns the retained chunk topics of root.
func (b *fakeBroker) chunkTopics(root string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for topic := range b.retained {
		if strings.HasPrefix(topic, wire.ChunkPrefix+root+"/") {
			out = append(out, topic)
		}
	}
	slices.Sort(out)
	return out
}

func (b *fakeBroker) manifest(t *testing.T, root string) wire.Manifest {
	t.Helper()
	b.mu.Lock()
	p := b.retained[wire.ManifestTopic(root)]
	b.mu.Unlock()
	m, err := wire.DecodeManifest(p)
	if err != nil {
		t.Fatalf("manifest of %s: %v (%q)", root, err, p)
	}
	return m
}

// needChunks skips a test of the compact list in a build without it.
func needChunks(t *testing.T) {
	t.Helper()
	if !chunksBuilt {
		t.Skip("the compact list is not in this build (the MIPS router builds)")
	}
}

// banN bans n addresses by legacy events, 1,000 a message.
func banN(b *fakeBroker, from, n int, tail string) {
	for i := from; i < from+n; i += 1000 {
		var sb strings.Builder
		for j := i; j < min(from+n, i+1000); j++ {
			fmt.Fprintf(&sb, "10.%d.%d.%d%s\n", j>>16&255, j>>8&255, j&255, tail)
		}
		b.client("blacklist/add", sb.String(), false)
	}
}

// TestCut: 10,500 bans. Once more than CutAfter changed, the keeper cuts:
// sorted chunks of at most 4,096 of one generation, the manifest naming
// them with the record's epoch, and (10 s later for the bans made lately)
// no per-ban state left; the list a host reads is the 10,500. A cut
// more deletes the chunks of the generation before.
func TestCut(t *testing.T) {
	needChunks(t)
	s := newKeeper(t, nil, Options{Name: "hub"})
	banN(s.b, 0, 10500, "")
	s.k.maintain()
	m := s.b.manifest(t, "blacklist")
	if m.Entries != 10500 || len(m.CRC) != 3 || m.Epoch != s.k.Epoch("blacklist") || !wire.IsEpochV2(m.Epoch) {
		t.Fatalf("manifest %+v, want 10,500 entries in 3 chunks, epoch %s in the v2 spelling", m, s.k.Epoch("blacklist"))
	}
	var last netip.Prefix
	for n := range 3 {
		c, err := wire.DecodeChunk([]byte(s.b.retained[wire.ChunkTopic("blacklist", m.Gen, n)]))
		if err != nil || len(c.Entries) > wire.MaxChunkEntries || c.Count != 3 || c.Index != n {
			t.Fatalf("chunk %d: %v, %d entries", n, err, len(c.Entries))
		}
		for _, e := range c.Entries {
			if last.IsValid() && cmpPrefix(e.Prefix, last) <= 0 {
				t.Fatalf("chunk %d: %s after %s", n, e.Prefix, last)
			}
			last = e.Prefix
		}
	}
	if n := len(s.b.rawStates("blacklist")); n != 10500 {
		t.Errorf("%d per-ban states right after the cut, want all 10,500 (made within 10 s)", n)
	}
	s.clk.add(statedFor + time.Second)
	s.k.maintain()
	if n := len(s.b.rawStates("blacklist")); n != 0 {
		t.Errorf("%d per-ban states 10 s after the cut, want none", n)
	}
	if got := s.b.states("blacklist"); len(got) != 10500 {
		t.Errorf("a host reads %d bans, want 10,500", len(got))
	}
	banN(s.b, 20000, 10001, "")
	s.k.maintain()
	m2 := s.b.manifest(t, "blacklist")
	if m2.Gen == m.Gen || m2.Entries != 20501 || len(s.b.chunkTopics("blacklist")) != len(m2.CRC) {
		t.Errorf("after 10,001 bans more: manifest gen %x of %d entries, %d chunks retained; want a new generation of 20,501, the old one deleted",
			m2.Gen, m2.Entries, len(s.b.chunkTopics("blacklist")))
	}
}

// TestRewriteOnUnban: an unban of a ban a chunk holds rewrites that chunk
// and the manifest, at most once a second per chunk: three unbans within
// a second, one rewrite at once and one a second later; a host then reads
// none of the three. An expired ban rewrites nothing.
func TestRewriteOnUnban(t *testing.T) {
	needChunks(t)
	s := newKeeper(t, nil, Options{})
	banN(s.b, 0, 100, "")
	s.b.client("blacklist/add", "192.0.2.1 timeout 60", false)
	s.clk.add(statedFor + time.Second)
	s.k.maintain()
	s.k.cut(t) // the list's cut, as at start
	topic := wire.ChunkTopic("blacklist", s.b.manifest(t, "blacklist").Gen, 0)
	writes := func() int { return len(s.b.sentTo(topic)) }
	before := writes()
	for _, a := range []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"} {
		s.b.client("blacklist/del", a, false)
		s.k.maintain()
	}
	if n := writes() - before; n != 1 {
		t.Errorf("%d rewrites of the chunk for three unbans within a second, want 1", n)
	}
	s.clk.add(rewriteEvery)
	s.k.maintain()
	if n := writes() - before; n != 2 {
		t.Errorf("%d rewrites a second later, want 2", n)
	}
	got := s.b.states("blacklist")
	for _, a := range []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"} {
		if _, ok := got["blacklist/ban/"+a]; ok {
			t.Errorf("%s still read after its unban", a)
		}
	}
	if len(got) != 98 {
		t.Errorf("a host reads %d bans, want 98", len(got))
	}
	s.clk.add(time.Minute)
	before = writes()
	s.k.expire()
	s.k.maintain()
	if n := writes() - before; n != 0 {
		t.Errorf("%d rewrites for an expiry, want none", n)
	}
	if _, ok := s.b.states("blacklist")["blacklist/ban/192.0.2.1"]; ok {
		t.Error("an expired ban is read")
	}
}

// heldChunks returns how many chunks of list 0 the keeper holds a copy of.
func (k *Keeper) heldChunks(t *testing.T) int {
	t.Helper()
	k.mu.Lock()
	defer k.mu.Unlock()
	n := 0
	for _, p := range k.lists[0].ch.data {
		if p != nil {
			n++
		}
	}
	return n
}

// TestChunksHeldOnce: on a broker that hands back its retained messages
// (the embedded one), the keeper drops its copy of each chunk once the
// broker holds it, and an unban still rewrites the chunk from the
// broker's; a chunk the broker no longer holds as the manifest says is not
// rewritten from a guess: the keeper says so and cuts the list again from
// its view. Over the network it keeps its copies.
func TestChunksHeldOnce(t *testing.T) {
	needChunks(t)
	s := newKeeper(t, nil, Options{})
	banN(s.b, 0, 5000, "")
	s.clk.add(statedFor + time.Second)
	s.k.cut(t)
	if n := s.k.heldChunks(t); n != 2 {
		t.Fatalf("right after the cut the keeper holds %d of 2 chunks, want both (not yet released)", n)
	}
	s.k.maintain()
	if n := s.k.heldChunks(t); n != 0 {
		t.Fatalf("the keeper holds %d chunks the broker holds too, want none", n)
	}
	s.b.client("blacklist/del", "10.0.0.1", false)
	s.b.client("blacklist/del", "10.0.19.135", false) // in chunk 1
	s.k.maintain()
	got := s.b.states("blacklist")
	if _, ok := got["blacklist/ban/10.0.0.1"]; ok || len(got) != 4998 {
		t.Errorf("after two unbans a host reads %d bans (10.0.0.1: %v), want 4,998 without it", len(got), ok)
	}
	if n := s.k.heldChunks(t); n != 0 {
		t.Errorf("the keeper holds %d rewritten chunks after the next maintain, want none", n)
	}

	// Chunk 0 overwritten behind the keeper's back (its manifest's checksum
	// no longer matches): an unban in it is not rewritten from a guess.
	m := s.b.manifest(t, "blacklist")
	s.b.mu.Lock()
	s.b.retained[wire.ChunkTopic("blacklist", m.Gen, 0)] = []byte("junk")
	s.b.mu.Unlock()
	s.clk.add(rewriteEvery)
	s.b.client("blacklist/del", "10.0.0.2", false)
	s.k.maintain()
	if len(s.logs.lines("could not rewrite")) == 0 {
		t.Error("no error for a chunk the broker no longer holds")
	}
	s.k.maintain() // cuts the list again from its view
	if got := s.b.states("blacklist"); len(got) != 4997 {
		t.Errorf("after the list was cut again a host reads %d bans, want 4,997", len(got))
	}

	net := newKeeper(t, newFakeBroker(false), Options{})
	banN(net.b, 0, 5000, "")
	net.b.deliver()
	net.clk.add(statedFor + time.Second)
	net.k.cut(t)
	net.b.deliver()
	net.k.maintain()
	if n := net.k.heldChunks(t); n != 2 || len(net.k.lists[0].ch.data) != 2 {
		t.Errorf("over the network the keeper holds %d of %d chunks, want both of 2", n, len(net.k.lists[0].ch.data))
	}
}

// TestCleanupLeavesNoTrace: the keeper's deletions of the per-ban states
// its cut holds, coming back, are no client's touch, and once all came back
// the keeper keeps no memory of them (a million after a cut of a million).
func TestCleanupLeavesNoTrace(t *testing.T) {
	needChunks(t)
	s := newKeeper(t, nil, Options{})
	banN(s.b, 0, 5000, "")
	s.clk.add(statedFor + time.Second)
	s.k.cut(t)
	if n := len(s.b.rawStates("blacklist")); n != 0 {
		t.Fatalf("%d per-ban states after the cut, want none", n)
	}
	s.k.mu.Lock()
	touched, cleaning := len(s.k.touched), len(s.k.cleaning)
	s.k.mu.Unlock()
	if touched != 0 || cleaning != 0 {
		t.Errorf("after the cut's deletions came back: %d topics touched, %d awaited; want none", touched, cleaning)
	}
}

// cut makes the keeper cut its lists now, as Settle does.
func (k *Keeper) cut(t *testing.T) {
	t.Helper()
	k.mu.Lock()
	var out []retain
	for i := range k.lists {
		out = append(out, k.cutLocked(i, k.now())...)
	}
	k.mu.Unlock()
	if err := k.publish(out); err != nil {
		t.Fatal(err)
	}
}

// TestLegacyState: with legacy state, the record's epoch is in the old
// spelling and every ban keeps its per-ban state after a cut. Turned off,
// the keeper respells the epoch (v2, which the previous release refuses)
// and deletes the per-ban state the chunks hold; turned on again, it puts
// back the state of every ban before the record says the old spelling.
func TestLegacyState(t *testing.T) {
	needChunks(t)
	b := newFakeBroker(true)
	s := newKeeper(t, b, Options{LegacyState: true})
	banN(b, 0, 50, "")
	s.clk.add(statedFor + time.Second)
	s.k.cut(t)
	if e := b.record(t, "blacklist").Epoch; wire.IsEpochV2(e) || len(b.rawStates("blacklist")) != 50 {
		t.Fatalf("legacy: epoch %s, %d per-ban states; want the old spelling and 50", e, len(b.rawStates("blacklist")))
	}
	old := s.k.Epoch("blacklist")
	_ = s.k.Close()

	s2 := newKeeper(t, b, Options{})
	s2.clk.add(statedFor + time.Second)
	s2.k.maintain()
	if e := b.record(t, "blacklist").Epoch; e != wire.EpochV2(old) {
		t.Errorf("legacy off: record epoch %s, want %s", e, wire.EpochV2(old))
	}
	if n := len(b.rawStates("blacklist")); n != 0 || len(b.states("blacklist")) != 50 {
		t.Errorf("legacy off: %d per-ban states, %d bans read; want 0 and 50", n, len(b.states("blacklist")))
	}
	_ = s2.k.Close()

	n := len(b.sent)
	newKeeper(t, b, Options{LegacyState: true})
	if e := b.record(t, "blacklist").Epoch; e != old || len(b.rawStates("blacklist")) != 50 {
		t.Errorf("legacy on again: epoch %s, %d per-ban states; want %s and 50", e, len(b.rawStates("blacklist")), old)
	}
	states, record := 0, -1
	for _, m := range b.sent[n:] {
		switch {
		case strings.HasPrefix(m.topic, "blacklist/ban/") && m.payload != "":
			states++
		case m.topic == wire.RecordTopic("blacklist") && record < 0:
			record = states
		}
	}
	if record != 50 {
		t.Errorf("the record in the old spelling came after %d of the 50 states, want after all", record)
	}
}

// TestLegacyAuto: the daemon's default. A list whose record is in the
// old spelling (the previous release's, or kept with legacy state) keeps
// it and per-ban state for every ban through cuts, and says so; a new list
// begins v2 and its cut deletes the per-ban states its chunks hold.
func TestLegacyAuto(t *testing.T) {
	needChunks(t)
	b := newFakeBroker(true)
	s := newKeeper(t, b, Options{LegacyState: true})
	banN(b, 0, 50, "")
	old := s.k.Epoch("blacklist")
	_ = s.k.Close()

	s2 := newKeeper(t, b, Options{LegacyAuto: true})
	s2.clk.add(statedFor + time.Second)
	s2.k.cut(t)
	s2.clk.add(statedFor + time.Second)
	s2.k.maintain()
	if e := b.record(t, "blacklist").Epoch; e != old || len(b.rawStates("blacklist")) != 50 {
		t.Errorf("an existing list in the old spelling: epoch %s, %d per-ban states; want %s and 50", e, len(b.rawStates("blacklist")), old)
	}
	if len(s2.logs.lines("--legacy-state=false")) == 0 {
		t.Error("no warning that the list keeps legacy state")
	}
	_ = s2.k.Close()

	fresh := newKeeper(t, nil, Options{LegacyAuto: true})
	banN(fresh.b, 0, 50, "")
	fresh.clk.add(statedFor + time.Second)
	fresh.k.cut(t)
	if e := fresh.b.record(t, "blacklist").Epoch; !wire.IsEpochV2(e) || len(fresh.b.rawStates("blacklist")) != 0 || len(fresh.b.states("blacklist")) != 50 {
		t.Errorf("a new list: epoch %s, %d per-ban states, %d bans read; want v2, none, 50", e, len(fresh.b.rawStates("blacklist")), len(fresh.b.states("blacklist")))
	}
}

// TestDamagedChunk: a chunk on the broker whose byte was changed is not
// believed: the keeper says so at ERROR and publishes the list again as
// chunks from what it holds (its copy), not one message per ban.
func TestDamagedChunk(t *testing.T) {
	needChunks(t)
	path := copyPath(t)
	b := newFakeBroker(true)
	s := newKeeper(t, b, Options{Copy: path})
	banN(b, 0, 5000, "")
	s.clk.add(statedFor + time.Second)
	s.k.maintain()
	s.k.cut(t)
	s.k.maintain()
	m := b.manifest(t, "blacklist")
	_ = s.k.Close()
	topic := wire.ChunkTopic("blacklist", m.Gen, 1)
	p := []byte(b.retained[topic])
	p[40] ^= 1
	b.retained[topic] = p
	n := len(b.sent)

	s2 := newKeeper(t, b, Options{Copy: path})
	if l := s2.logs.lines("level=ERROR"); len(l) != 1 || !strings.Contains(l[0], "not believed") {
		t.Errorf("ERROR lines %q, want one saying the chunks are not believed", l)
	}
	if got := b.states("blacklist"); len(got) != 5000 {
		t.Errorf("a host reads %d bans after the republish, want 5,000", len(got))
	}
	states := 0
	for _, m := range b.sent[n:] {
		if strings.HasPrefix(m.topic, "blacklist/ban/") && m.payload != "" {
			states++
		}
	}
	if states != 0 {
		t.Errorf("republished as %d per-ban states, want chunks only", states)
	}
}

// The view holds one entry per ban: 24 bytes without a pointer, so that a
// million cost the map's slots and nothing for the collector to scan.
func TestEntrySize(t *testing.T) {
	if n := unsafe.Sizeof(entry{}); n != 24 {
		t.Errorf("entry is %d bytes, want 24", n)
	}
}

// TestRecentStatesSwept: the keeper's maps of client states published
// lately are rebuilt statedFor after a burst, not a minute after.
func TestRecentStatesSwept(t *testing.T) {
	needChunks(t)
	s := newKeeper(t, nil, Options{})
	now := s.clk.now()
	for i := range 20_000 {
		topic := wire.StateTopic("blacklist", netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 32))
		s.b.client(topic, state(now, now.Add(time.Hour), "", "web1"), true)
	}
	s.k.maintain() // sweeps what a minute made; nothing is that old yet
	s.clk.add(statedFor + time.Second)
	s.k.maintain()
	s.k.mu.Lock()
	stated, touched := len(s.k.stated), len(s.k.touched)
	s.k.mu.Unlock()
	if stated != 0 || touched != 0 {
		t.Errorf("%d stated and %d touched topics kept %v after the burst, want none", stated, touched, statedFor+time.Second)
	}
}
