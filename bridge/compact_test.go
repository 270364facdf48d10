package bridge

import (
	"fmt"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/vallum/vallum/internal/wire"
)

const testEpoch = "0123456789abcdef"

// publishList publishes a keeper record and list bl as chunks of per
// (entries sorted) with their manifest; skip leaves chunks out (missing on
// the broker). It returns the manifest.
func publishList(t testing.TB, pub mqtt.Client, entries []wire.Entry, per int, skip ...int) wire.Manifest {
	t.Helper()
	cut := time.Now().Truncate(time.Millisecond)
	gen := uint64(cut.UnixMilli())
	count := (len(entries) + per - 1) / per
	m := wire.Manifest{Epoch: testEpoch, Gen: gen, Cut: cut, Entries: len(entries)}
	send := func(topic string, b []byte) {
		if tok := pub.Publish(topic, 1, true, b); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %s: %v", topic, tok.Error())
		}
	}
	send(wire.RecordTopic("bl"), wire.EncodeRecord(wire.Record{Epoch: testEpoch, Since: cut}))
	for k := range count {
		b := wire.EncodeChunk(wire.Chunk{Root: "bl", Gen: gen, Index: k, Count: count, Entries: entries[k*per : min(len(entries), (k+1)*per)]})
		m.CRC = append(m.CRC, wire.ChunkCRC(b))
		skipped := false
		for _, s := range skip {
			skipped = skipped || s == k
		}
		if !skipped {
			send(wire.ChunkTopic("bl", gen, k), b)
		}
	}
	send(wire.ManifestTopic("bl"), wire.EncodeManifest(m))
	return m
}

func entry(p string, s wire.State) wire.Entry {
	return wire.Entry{Prefix: netip.MustParsePrefix(p), State: s}
}

// TestCompactSyncMerges: a late joiner reads a list as chunks and per-ban
// state: chunk entries are applied, an expired one is not, a state newer
// than its chunk entry wins (its timeout), an older one loses (even
// expired), and what vallum had applied that the list no longer holds is
// removed.
func TestCompactSyncMerges(t *testing.T) {
	_, url := startBroker(t, nil)
	pub := publisher(t, url)
	now := time.Now()
	at := now.Add(-time.Minute)
	hour := time.Unix(now.Add(time.Hour).Unix(), 0)
	publishList(t, pub, []wire.Entry{
		entry("203.0.113.1/32", wire.State{At: at, Expires: hour}),
		entry("203.0.113.2/32", wire.State{At: at, Expires: hour}),
		entry("203.0.113.3/32", wire.State{At: at, Expires: hour}),
		entry("203.0.113.4/32", wire.State{At: at.Add(-time.Hour), Expires: now.Add(-time.Second)}), // expired
		entry("203.0.113.5/32", wire.State{At: at}),                                                 // permanent
		entry("2001:db8::/48", wire.State{At: at, Expires: hour}),
	}, 2)
	publish(t, pub, "bl/ban/203.0.113.2", true, string(wire.EncodeState(wire.State{At: now, Expires: now.Add(5 * time.Hour)})))
	publish(t, pub, "bl/ban/203.0.113.3", true, string(wire.EncodeState(wire.State{At: at.Add(-time.Hour), Expires: now.Add(-time.Minute)})))
	publish(t, pub, "bl/ban/203.0.113.9", true, string(wire.EncodeState(wire.State{At: now})))

	f := newFake()
	f.put("bl", IPv4, "192.0.2.200/32", CommentState) // applied earlier, no longer listed
	f.put("bl", IPv4, "203.0.113.4/32", CommentState) // expired meanwhile
	r := startBridge(t, url, f, nil)
	r.waitSynced(t, 1)
	wantMembers(t, f, "bl", "203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.5", "203.0.113.9")
	wantMembers(t, f, "bl6", "2001:db8::/48")
	if e, _ := f.entry("bl", "203.0.113.2/32"); e.Timeout < 5*3600-10 {
		t.Errorf("203.0.113.2: timeout %d, want its newer state's 5 h", e.Timeout)
	}
	if e, _ := f.entry("bl", "203.0.113.3/32"); e.Timeout < 3500 || e.Timeout > 3600 {
		t.Errorf("203.0.113.3: timeout %d, want its chunk entry's hour (its state is older)", e.Timeout)
	}
	if e, _ := f.entry("bl", "203.0.113.5/32"); e.Timeout != 0 || e.Comment != CommentState {
		t.Errorf("203.0.113.5: %+v, want permanent, marked as state", e)
	}
	if r.b.stats.ListsLost()["bl"] != "" {
		t.Errorf("list reported lost: %s", r.b.stats.ListsLost()["bl"])
	}
}

// TestCompactPartialRemovesNothing: a manifest naming a chunk the broker
// does not hold: the sync applies what it read, removes nothing, and says
// the list is partial (/healthz).
func TestCompactPartialRemovesNothing(t *testing.T) {
	_, url := startBroker(t, nil)
	pub := publisher(t, url)
	at := time.Now()
	publishList(t, pub, []wire.Entry{
		entry("203.0.113.1/32", wire.State{At: at}), entry("203.0.113.2/32", wire.State{At: at}),
		entry("203.0.113.3/32", wire.State{At: at}), entry("203.0.113.4/32", wire.State{At: at}),
	}, 2, 1)
	f := newFake()
	f.put("bl", IPv4, "203.0.113.3/32", CommentState) // in the missing chunk
	f.put("bl", IPv4, "192.0.2.200/32", CommentState) // in no chunk: still, the list is not whole
	r := startBridge(t, url, f, func(o *Options) { o.SyncTimeout = 500 * time.Millisecond })
	r.waitSynced(t, 1)
	wantMembers(t, f, "bl", "192.0.2.200", "203.0.113.1", "203.0.113.2", "203.0.113.3")
	if why := r.b.stats.ListsLost()["bl"]; why == "" {
		t.Error("a partial list is not reported")
	}
}

// BenchmarkCompactSync: the bridge's own cost of a late join of 1,000,000
// bans as chunks, through mochi and paho into the recording backend (no
// kernel).
func BenchmarkCompactSync(b *testing.B) {
	const n = 1_000_000
	at := time.Now()
	es := make([]wire.Entry, n)
	for i := range es {
		a := netip.AddrFrom4([4]byte{20, byte(i >> 16), byte(i >> 8), byte(i)})
		es[i] = wire.Entry{Prefix: netip.PrefixFrom(a, 32), State: wire.State{At: at, Expires: at.Add(time.Hour)}}
	}
	_, url := startBroker(b, nil)
	pub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID("bench-pub"))
	if tok := pub.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		b.Fatal(tok.Error())
	}
	publishList(b, pub, es, wire.MaxChunkEntries)
	es = nil
	b.ResetTimer()
	for i := range b.N {
		f := newFake()
		start := time.Now()
		r := startBridge(b, url, f, func(o *Options) { o.ClientID = fmt.Sprintf("bench-%d-%d", i, time.Now().UnixNano()) })
		for r.b.stats.Syncs.Load() < 1 && time.Since(start) < time.Minute {
			time.Sleep(time.Millisecond)
		}
		if got := f.count("bl"); got != n {
			b.Fatalf("run %d: %d of %d", i, got, n)
		}
		b.ReportMetric(time.Since(start).Seconds(), "s/sync")
		r.shutdown(b)
	}
}

// TestCompactCleanupIsNoUnban: on a list kept as chunks alone (a v2
// epoch), the keeper deletes the per-ban states its chunks hold after a
// cut, and the broker hands each deletion to the live hosts: a host keeps
// those bans. An unban comes with its del event, which removes it. (With
// legacy state an empty state is an unban, as before chunks.)
func TestCompactCleanupIsNoUnban(t *testing.T) {
	_, url := startBroker(t, nil)
	pub := publisher(t, url)
	at := time.Now()
	publishList(t, pub, []wire.Entry{entry("203.0.113.1/32", wire.State{At: at}), entry("203.0.113.2/32", wire.State{At: at})}, 2)
	publish(t, pub, "bl/ban/203.0.113.3", true, string(wire.EncodeState(wire.State{At: at}))) // a delta
	// Its keeper keeps no per-ban state for every ban: the record says so.
	publish(t, pub, wire.RecordTopic("bl"), true, string(wire.EncodeRecord(wire.Record{Epoch: wire.EpochV2(testEpoch), Since: at})))
	// No sync again for the cut just after this one: the host keeps its
	// bans by itself.
	w := raceWindow
	raceWindow = 0
	t.Cleanup(func() { raceWindow = w })
	f := newFake()
	r := startBridge(t, url, f, nil)
	r.waitSynced(t, 1)
	wantMembers(t, f, "bl", "203.0.113.1", "203.0.113.2", "203.0.113.3")
	publish(t, pub, "bl/del", false, "203.0.113.2") // an unban
	wantMembers(t, f, "bl", "203.0.113.1", "203.0.113.3")
	// A cut folds the delta in; the keeper deletes its state. An event
	// after it tells when the host has read the deletion.
	publishList(t, pub, []wire.Entry{entry("203.0.113.1/32", wire.State{At: at}), entry("203.0.113.3/32", wire.State{At: at})}, 2)
	publish(t, pub, "bl/ban/203.0.113.3", true, "")
	publish(t, pub, "bl/add", false, "203.0.113.4")
	wantMembers(t, f, "bl", "203.0.113.1", "203.0.113.3", "203.0.113.4")
}

// TestCompactUnbanRightAfterBan: on a list kept as chunks alone, `vallum
// ban` then `vallum unban` a moment later (state then event, each): the
// unban's del event lifts the ban. It was taken for the echo of the ban's
// own live state, and the ban stayed.
func TestCompactUnbanRightAfterBan(t *testing.T) {
	_, url := startBroker(t, nil)
	pub := publisher(t, url)
	at := time.Now()
	publishList(t, pub, []wire.Entry{entry("203.0.113.1/32", wire.State{At: at})}, 1)
	publish(t, pub, wire.RecordTopic("bl"), true, string(wire.EncodeRecord(wire.Record{Epoch: wire.EpochV2(testEpoch), Since: at})))
	f := newFake()
	r := startBridge(t, url, f, nil)
	r.waitSynced(t, 1)
	publish(t, pub, "bl/ban/203.0.113.9", true, string(wire.EncodeState(wire.State{At: time.Now()})))
	publish(t, pub, "bl/add", false, "203.0.113.9")
	wantMembers(t, f, "bl", "203.0.113.1", "203.0.113.9")
	publish(t, pub, "bl/ban/203.0.113.9", true, "")
	publish(t, pub, "bl/del", false, "203.0.113.9")
	wantMembers(t, f, "bl", "203.0.113.1")
}

// TestCompactChunkAndItsStateApplyOnce: a host that joins in the seconds
// after a cut reads each ban twice, in its chunk and in the per-ban state
// it was cut from (the keeper deletes that state a little later): each is
// one add to the kernel (vallum_adds_total counts the list once), while a
// newer state of a ban still wins over its chunk entry.
func TestCompactChunkAndItsStateApplyOnce(t *testing.T) {
	_, url := startBroker(t, nil)
	pub := publisher(t, url)
	at := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	hour := time.Unix(time.Now().Add(time.Hour).Unix(), 0)
	st := wire.State{At: at, Expires: hour}
	publishList(t, pub, []wire.Entry{
		entry("203.0.113.1/32", st), entry("203.0.113.2/32", st), entry("203.0.113.3/32", st), entry("2001:db8::/48", st),
	}, 2)
	for _, a := range []string{"203.0.113.1", "203.0.113.2", "2001:db8::/48"} {
		publish(t, pub, "bl/ban/"+a, true, string(wire.EncodeState(st)))
	}
	newer := wire.State{At: at.Add(time.Second), Expires: hour.Add(time.Hour)}
	publish(t, pub, "bl/ban/203.0.113.3", true, string(wire.EncodeState(newer)))
	f := newFake()
	r := startBridge(t, url, f, nil)
	r.waitSynced(t, 1)
	wantMembers(t, f, "bl", "203.0.113.1", "203.0.113.2", "203.0.113.3")
	wantMembers(t, f, "bl6", "2001:db8::/48")
	adds := r.b.stats.Snapshot().Adds
	// 203.0.113.3 is two versions: its chunk entry, then its newer state
	// (or the state alone, when it comes first).
	if adds["bl"] < 3 || adds["bl"] > 4 || adds["bl6"] != 1 {
		t.Errorf("adds %v, want 3 or 4 on bl (each ban once, 203.0.113.3 at most twice) and 1 on bl6", adds)
	}
	if e, _ := f.entry("bl", "203.0.113.3/32"); e.Timeout < 2*3600-10 {
		t.Errorf("203.0.113.3: timeout %d, want its newer state's 2 h", e.Timeout)
	}
}

// cutOf encodes bans as one generation of list bl, in chunks of per: the
// chunks' topics and payloads, and the manifest.
func cutOf(gen uint64, cut time.Time, entries []wire.Entry, per int) (topics []string, chunks [][]byte, manifest []byte) {
	count := (len(entries) + per - 1) / per
	m := wire.Manifest{Epoch: wire.EpochV2(testEpoch), Gen: gen, Cut: cut, Entries: len(entries), Deltas: &wire.Deltas{Upto: cut}}
	for k := range count {
		b := wire.EncodeChunk(wire.Chunk{Root: "bl", Gen: gen, Index: k, Count: count, Entries: entries[k*per : min(len(entries), (k+1)*per)]})
		topics, chunks = append(topics, wire.ChunkTopic("bl", gen, k)), append(chunks, b)
		m.CRC = append(m.CRC, wire.ChunkCRC(b))
	}
	return topics, chunks, wire.EncodeManifest(m)
}

// TestCompactCutDuringSync: the keeper cuts while a host syncs (a burst):
// the window read generation 1 and the per-ban state of a ban not cut
// yet; generation 2 then comes live, holding that ban, and its state is
// deleted (the keeper's cleanup); the broker then sends generation 1's
// manifest again (mochi's retained copy, taken before the cut). The sync
// ends whole at B, at once: generation 2's bans, the ban of the deleted
// state among them, and what only generation 1 held is not in the window
// (lifted since: the reconciliation removes it). Before, the window ended
// stale, or whole on generation 1 without the ban, until the next sync.
func TestCompactCutDuringSync(t *testing.T) {
	b := newTestBridge(t, slog.New(slog.DiscardHandler))
	d := b.dec
	tag, _, _, _, _ := d.sync.begin([]string{"bl"})
	if it := d.decode(wire.MarkerTopic("x"), []byte("A"+tag), false); it.sync != nil {
		t.Fatal("marker A closed the window")
	}
	now := time.Now().Truncate(time.Millisecond)
	at := now.Add(-time.Minute)
	ban := func(p string) wire.Entry { return entry(p, wire.State{At: at, Expires: now.Add(time.Hour)}) }
	g1 := []wire.Entry{ban("203.0.113.1/32"), ban("203.0.113.2/32"), ban("203.0.113.3/32")}                        // .3 lifted before the next cut
	g2 := []wire.Entry{ban("203.0.113.1/32"), ban("203.0.113.2/32"), ban("203.0.113.4/32"), ban("203.0.113.5/32")} // .4 was per-ban state, .5 a burst's
	d.decode(wire.RecordTopic("bl"), wire.EncodeRecord(wire.Record{Epoch: wire.EpochV2(testEpoch), Since: at}), true)
	t1, c1, m1 := cutOf(1, now.Add(-time.Second), g1, 2)
	d.decode(wire.ManifestTopic("bl"), m1, true)
	for k := range t1 {
		d.decode(t1[k], c1[k], true)
	}
	d.decode("bl/ban/203.0.113.4", wire.EncodeState(g2[2].State), true)
	t2, c2, m2 := cutOf(2, now, g2, 2)
	for k := range t2 {
		d.decode(t2[k], c2[k], false)
	}
	d.decode(wire.ManifestTopic("bl"), m2, false)
	d.decode("bl/ban/203.0.113.4", nil, false) // folded into generation 2: deleted
	d.decode(wire.ManifestTopic("bl"), m1, true)
	it := d.decode(wire.MarkerTopic("x"), []byte("B"+tag), false)
	if it.sync == nil {
		t.Fatal("marker B did not close the window: it waits for chunks")
	}
	if p, ok := it.sync.partial["bl"]; ok {
		t.Fatalf("the sync read the list partially: %+v", p)
	}
	w := it.sync.present["bl"]
	for _, e := range g2 {
		if !w.has(e.Prefix) {
			t.Errorf("%s: not in the window, want generation 2's bans", e.Prefix)
		}
	}
	if w.has(netip.MustParsePrefix("203.0.113.3/32")) {
		t.Error("203.0.113.3, held by generation 1 alone: in the window")
	}
}

// TestCompactCleanupAfterFirstWindow: a host's first sync of a list kept
// as chunks alone (a v2 record): the keeper's deletion of a per-ban state
// its cut folded in that comes after the window closed, before the worker
// took the window's result (and trusts its epoch), is no unban either.
// Before, during a burst, the host took such deletions for unbans and
// lost those bans (24 of 60,000 in TestCompactJoinMidBurst).
func TestCompactCleanupAfterFirstWindow(t *testing.T) {
	b := newTestBridge(t, slog.New(slog.DiscardHandler))
	d := b.dec
	tag, _, _, _, _ := d.sync.begin([]string{"bl"})
	d.decode(wire.MarkerTopic("x"), []byte("A"+tag), false)
	now := time.Now().Truncate(time.Millisecond)
	d.decode(wire.RecordTopic("bl"), wire.EncodeRecord(wire.Record{Epoch: wire.EpochV2(testEpoch), Since: now}), true)
	_, _, m := cutOf(1, now, nil, 2)
	d.decode(wire.ManifestTopic("bl"), m, true)
	d.decode("bl/ban/203.0.113.4", wire.EncodeState(wire.State{At: now.Add(-time.Minute)}), true)
	if it := d.decode(wire.MarkerTopic("x"), []byte("B"+tag), false); it.sync == nil {
		t.Fatal("marker B did not close the window")
	}
	if it := d.decode("bl/ban/203.0.113.4", nil, false); len(it.ops) != 0 {
		t.Errorf("the keeper's cleanup right after the first window = %+v, want no unban", it.ops)
	}
}
