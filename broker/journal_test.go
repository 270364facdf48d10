package broker

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/hooks/storage"

	"github.com/vallum/vallum/internal/datadir"
	"github.com/vallum/vallum/internal/listread"
	"github.com/vallum/vallum/internal/store"
	"github.com/vallum/vallum/internal/tmpfs"
	"github.com/vallum/vallum/internal/wire"
)

// burstOf is an event payload of n addresses 10.B.x.y, from from on.
func burstOf(b, from, n int) string {
	var sb strings.Builder
	for j := from; j < from+n; j++ {
		fmt.Fprintf(&sb, "10.%d.%d.%d timeout 3600\n", b, j>>8&255, j&255)
	}
	return sb.String()
}

// killedCopy copies the store of the running broker's data dir to a new
// data dir: what a SIGKILL leaves on disk now (every write of the store
// is in the file before the PUBACK).
func killedCopy(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(datadir.Dir(dir).Store())
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	d := datadir.Dir(out)
	if err := os.MkdirAll(d.Broker(), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(d.Store(), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return out
}

// storedList reads the list root as a store file holds it (no broker
// running on it): its compact list's entries and its journal's entries.
func storedList(t *testing.T, dir, root string) (listed, journaled int) {
	t.Helper()
	kv, err := store.Open(datadir.Dir(dir).Store(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	if v, ok, _ := kv.Get(retainedKey(wire.ManifestTopic(root))); ok {
		var m storage.Message
		if err := m.UnmarshalBinary(v); err == nil {
			if man, err := wire.DecodeManifest(m.Payload); err == nil {
				listed = man.Entries
			}
		}
	}
	_ = kv.Scan(journalPrefix, func(string, []byte) error { journaled++; return nil })
	return listed, journaled
}

// hostReads is the list root as a host joining b reads it: the compact
// list, then the per-ban states over it (last writer wins), unexpired.
func hostReads(b *Broker, root string) map[netip.Prefix]bool {
	got := map[netip.Prefix]wire.State{}
	r := listread.New(root, func(e wire.Entry) { got[e.Prefix] = e.State })
	for _, pk := range b.srv.Topics.Messages(wire.ChunksFilter(root)) {
		_ = r.Chunk(pk.TopicName, pk.Payload)
	}
	if pk, ok := b.srv.Topics.Retained.Get(wire.ManifestTopic(root)); ok {
		_ = r.Manifest(pk.Payload)
	}
	for _, pk := range b.srv.Topics.Messages(wire.StateFilter(root)) {
		t, err := wire.ParseTopic(root, pk.TopicName)
		if s, derr := wire.DecodeState(pk.Payload); err == nil && derr == nil && !s.At.Before(got[t.Prefix].At) {
			got[t.Prefix] = s
		}
	}
	out := map[netip.Prefix]bool{}
	for p, s := range got {
		if s.Expires.IsZero() || s.Expires.After(time.Now()) {
			out[p] = true
		}
	}
	return out
}

// eventually waits up to 20 s for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after 20 s: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// settled waits for b's keeper to settle (its first cut): events before
// it are not bursts, their bans are made per-ban states at once.
func settled(t *testing.T, b *Broker) {
	t.Helper()
	eventually(t, "the keeper did not settle", func() bool {
		_, ok := b.srv.Topics.Retained.Get(wire.ManifestTopic("blacklist"))
		return ok
	})
}

// TestJournalKilledBeforeCut: a hub killed right after acknowledging two
// bursts (its store as a SIGKILL leaves it, before the cut) comes back
// with every ban of them in the list a late host reads, but the ban a
// client lifted after the burst (a del event) and the one it lifted by
// deleting the state stay lifted; once the cut that holds them is in the
// store, the journal is empty again.
func TestJournalKilledBeforeCut(t *testing.T) {
	dir := t.TempDir()
	o := Options{Listeners: []Listener{local(KindTCP)}, DataDir: dir, Lists: []string{"blacklist"}}
	b1 := start(t, o)
	settled(t, b1)
	pub := mustDial(t, url(t, b1, KindTCP))
	pub.pub(t, "blacklist/add", 1, false, burstOf(1, 0, 600))
	pub.pub(t, "blacklist/add", 1, false, burstOf(2, 0, 400))
	pub.pub(t, "blacklist/del", 1, false, "10.1.0.5")
	pub.pub(t, "blacklist/ban/10.2.0.7", 1, true, "")
	killed := killedCopy(t, dir)

	listed, journaled := storedList(t, killed, "blacklist")
	if listed > 0 || journaled != 4 {
		t.Fatalf("killed store: %d bans listed, %d journal entries; want no cut yet and the 4 messages journaled", listed, journaled)
	}
	// The hub that went on cuts, then empties its journal.
	eventually(t, "the running hub's journal is not emptied after its cut", func() bool {
		held, _, _ := b1.store.journal.stats()
		return held == 0
	})

	b2 := start(t, Options{Listeners: o.Listeners, DataDir: killed, Lists: o.Lists})
	var got map[netip.Prefix]bool
	eventually(t, "the restarted hub does not list the 998 bans", func() bool {
		got = hostReads(b2, "blacklist")
		return len(got) >= 998
	})
	for _, p := range []string{"10.1.0.5", "10.2.0.7"} {
		if got[netip.MustParsePrefix(p+"/32")] {
			t.Errorf("%s is banned after the restart: its unban came after the burst", p)
		}
	}
	if len(got) != 998 {
		t.Errorf("a late host reads %d bans, want 998", len(got))
	}
	if _, _, replayed := b2.store.journal.stats(); replayed != 998 {
		t.Errorf("%d bans replayed, want 998", replayed)
	}
	eventually(t, "the restarted hub's journal is not emptied after its cut", func() bool {
		held, _, _ := b2.store.journal.stats()
		return held == 0
	})
}

// TestJournalDamaged: a flipped byte in a journal entry and a torn tail
// cost the bans of those entries, not the others, nor the hub: it starts,
// logs the damage and counts it.
func TestJournalDamaged(t *testing.T) {
	dir := t.TempDir()
	o := Options{Listeners: []Listener{local(KindTCP)}, DataDir: dir, Lists: []string{"blacklist"}}
	b1 := start(t, o)
	settled(t, b1)
	pub := mustDial(t, url(t, b1, KindTCP))
	for i := range 3 {
		pub.pub(t, "blacklist/add", 1, false, burstOf(i+1, 0, 300))
	}
	killed := killedCopy(t, dir)
	path := datadir.Dir(killed).Store()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	first := bytes.Index(raw, []byte(journalKey(0)))
	third := bytes.Index(raw, []byte(journalKey(2)))
	if first < 0 || third < 0 {
		t.Fatalf("journal entries not in the killed store (first at %d, third at %d)", first, third)
	}
	raw[first+len(journalKey(0))+100] ^= 0x20 // a flipped bit in the first burst
	raw = raw[:third+len(journalKey(2))+1000] // the third cut short: a torn tail
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}

	logs := &logBuffer{}
	b2 := start(t, Options{Listeners: o.Listeners, DataDir: killed, Lists: o.Lists,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	var got map[netip.Prefix]bool
	eventually(t, "the second burst is not listed after the restart", func() bool {
		got = hostReads(b2, "blacklist")
		return got[netip.MustParsePrefix("10.2.0.9/32")]
	})
	if len(got) != 300 || !got[netip.MustParsePrefix("10.2.0.9/32")] {
		t.Errorf("a late host reads %d bans (10.2.0.9: %v), want the second burst's 300", len(got), got[netip.MustParsePrefix("10.2.0.9/32")])
	}
	st, _ := b2.StoreStats()
	if st.Loaded.Records < 2 {
		t.Errorf("store counts %d damaged records, want the flipped one and the tail", st.Loaded.Records)
	}
	if l := logs.String(); !strings.Contains(l, "level=WARN") || !strings.Contains(l, "level=ERROR") {
		t.Errorf("no ERROR (flipped byte) and WARN (tail) in the log:\n%.2000s", l)
	}
	if _, err := os.Stat(filepath.Dir(path)); err != nil {
		t.Fatal(err)
	}
}

// TestJournalFullDisk: a burst that the journal cannot write (a full
// disk) is refused, never acknowledged and lost; the burst acknowledged
// before the disk filled is in the list after the hub is killed and
// started again (on a copy of its store, with room), whether its cut
// reached the disk or not.
func TestJournalFullDisk(t *testing.T) {
	dir := tmpfs.Mount(t, 4<<20)
	o := Options{Listeners: []Listener{local(KindTCP)}, DataDir: dir, Lists: []string{"blacklist"}}
	b1 := start(t, o)
	settled(t, b1)
	c := mustDial(t, url(t, b1, KindTCP))
	c.pub(t, "blacklist/add", 1, false, burstOf(1, 0, 300))
	free := tmpfs.Fill(t, dir)
	defer free()
	tok := c.Publish("blacklist/add", 1, false, burstOf(2, 0, 300))
	if tok.WaitTimeout(5*time.Second) && tok.Error() == nil {
		t.Fatal("a burst was acknowledged on a full disk")
	}
	if st, _ := b1.StoreStats(); st.Refused == 0 {
		t.Errorf("store stats %+v: no refusal counted", st)
	}
	killed := killedCopy(t, dir)

	b2 := start(t, Options{Listeners: o.Listeners, DataDir: killed, Lists: o.Lists})
	var got map[netip.Prefix]bool
	eventually(t, "the burst acknowledged is not listed after the restart", func() bool {
		got = hostReads(b2, "blacklist")
		return len(got) >= 300
	})
	for j := range 300 {
		if !got[netip.MustParsePrefix(fmt.Sprintf("10.1.%d.%d/32", j>>8, j&255))] {
			t.Fatalf("10.1.%d.%d, of the burst acknowledged, is not listed after the restart", j>>8, j&255)
		}
	}
	if len(got) != 300 {
		t.Errorf("a late host reads %d bans, want the 300 of the burst acknowledged", len(got))
	}
}

// TestJournalImportBench measures what the journal costs an import of
// 1,000,000 bans into the hub, as `vallum import` sends them (event
// messages of up to 1 MiB, 32,000 lines, QoS 1, all in flight): the time
// to the last PUBACK (when the import returns) and to the cut that holds
// them all, and the store file, with the journal and without. It reports
// figures, it does not time-assert. Opt-in, it takes a minute:
// VALLUM_STORE_BENCH=1 go test -run JournalImportBench -v ./broker/
func TestJournalImportBench(t *testing.T) {
	if os.Getenv("VALLUM_STORE_BENCH") == "" {
		t.Skip("set VALLUM_STORE_BENCH=1 to run")
	}
	const n, per = 1_000_000, 32_000
	var msgs []string
	for i := 0; i < n; i += per {
		var sb strings.Builder
		for j := i; j < min(n, i+per); j++ {
			fmt.Fprintf(&sb, "100.%d.%d.%d timeout 86400\n", 64+j>>16, byte(j>>8), byte(j))
		}
		msgs = append(msgs, sb.String())
	}
	for _, round := range []string{"journal", "none", "journal", "none"} {
		t.Run(round, func(t *testing.T) {
			o := Options{Listeners: []Listener{local(KindTCP)}, DataDir: t.TempDir(), Lists: []string{"blacklist"}, Logger: quietLogger()}
			b, err := New(o)
			if err != nil {
				t.Fatal(err)
			}
			if round == "none" {
				b.store.journal = nil // as before it: nothing journaled
			}
			defer runBroker(t, b)()
			settled(t, b)
			c := mustDial(t, url(t, b, KindTCP))
			t0 := time.Now()
			var toks []paho.Token
			for _, m := range msgs {
				toks = append(toks, c.Publish("blacklist/add", 1, false, m))
			}
			for _, tok := range toks {
				if err := wait(t, tok, "publish"); err != nil {
					t.Fatal(err)
				}
			}
			acked := time.Since(t0)
			deadline := time.Now().Add(3 * time.Minute)
			for {
				pk, ok := b.srv.Topics.Retained.Get(wire.ManifestTopic("blacklist"))
				m, err := wire.DecodeManifest(pk.Payload)
				if ok && err == nil && m.Entries == n {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no cut of the %d bans after 3 minutes (%d)", n, m.Entries)
				}
				time.Sleep(10 * time.Millisecond)
			}
			cut := time.Since(t0)
			st, _ := b.StoreStats()
			held := 0
			if b.store.journal != nil {
				held, _, _ = b.store.journal.stats()
			}
			t.Logf("%s: %d bans in %d messages: last PUBACK after %v, all cut after %v; store file %.1f MB (%.1f live), journal entries held %d",
				round, n, len(msgs), acked.Round(time.Millisecond), cut.Round(time.Millisecond),
				float64(st.FileBytes)/(1<<20), float64(st.LiveBytes)/(1<<20), held)
		})
	}
}
