//go:build !vallum_small && !vallum_noimport

package main

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/vallum/vallum/internal/wire"
)

// partialList is list "greylist" (no keeper keeps it on the test broker)
// as a keeper writes it: a v2 record, one chunk of 192.0.2.1 and
// 192.0.2.2 (bans of feed.txt), and a manifest that announces two per-ban
// states made since the cut: 192.0.2.2 banned again by hand (for good)
// and 198.51.100.9. lagging: the broker does not serve the first, as a
// clustered broker's node that lags or lost it.
type partialList struct {
	c     mqtt.Client
	state map[string][]byte // topic -> payload of the per-ban states
}

func newPartialList(t *testing.T, port string) *partialList {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://127.0.0.1:" + port).
		SetClientID("partial-pub").SetUsername("admin").SetPassword("pw-admin"))
	if err := wait(c.Connect(), "connect"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Disconnect(250) })
	const root = "greylist"
	cut := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	gen, epoch := uint64(cut.UnixMilli()), wire.EpochV2(wire.NewEpoch())
	feedBan := wire.State{At: cut.Add(-time.Second), Expires: cut.Add(time.Hour), Origin: "import:feed.txt"}
	chunk := wire.EncodeChunk(wire.Chunk{Root: root, Gen: gen, Count: 1, Entries: []wire.Entry{
		{Prefix: netip.MustParsePrefix("192.0.2.1/32"), State: feedBan},
		{Prefix: netip.MustParsePrefix("192.0.2.2/32"), State: feedBan}}})
	l := &partialList{c: c, state: map[string][]byte{}}
	var sum wire.DeltaSum
	for i, a := range []string{"192.0.2.2", "198.51.100.9"} {
		p := netip.MustParsePrefix(a + "/32")
		st := wire.State{At: cut.Add(time.Duration(500+i) * time.Millisecond), Origin: "cli", Reason: "by hand"}
		l.state[wire.StateTopic(root, p)] = wire.EncodeState(st)
		sum.Add(p, st.At.UnixMilli())
	}
	man := wire.EncodeManifest(wire.Manifest{Epoch: epoch, Gen: gen, Cut: cut, Entries: 2, CRC: []uint32{wire.ChunkCRC(chunk)},
		Deltas: &wire.Deltas{Upto: cut.Add(time.Second), DeltaSum: sum}})
	l.publish(t, wire.RecordTopic(root), wire.EncodeRecord(wire.Record{Epoch: epoch, Since: cut}))
	l.publish(t, wire.ChunkTopic(root, gen, 0), chunk)
	l.publish(t, wire.ManifestTopic(root), man)
	for topic, payload := range l.state {
		l.publish(t, topic, payload)
	}
	return l
}

func (l *partialList) publish(t *testing.T, topic string, payload []byte) {
	t.Helper()
	if err := wait(l.c.Publish(topic, 1, true, payload), "publish "+topic); err != nil {
		t.Fatal(err)
	}
}

// serve makes the broker serve the per-ban state of 192.0.2.2 (on) or not.
func (l *partialList) serve(t *testing.T, on bool) {
	t.Helper()
	topic := "greylist/ban/192.0.2.2"
	if on {
		l.publish(t, topic, l.state[topic])
	} else {
		l.publish(t, topic, nil)
	}
}

// events gathers the events published on greylist from now on.
func (l *partialList) events(t *testing.T) func() []string {
	t.Helper()
	got := make(chan string, 100)
	h := func(_ mqtt.Client, m mqtt.Message) { got <- m.Topic() + " " + string(m.Payload()) }
	for _, f := range []string{"greylist/add", "greylist/del", "greylist/fence"} {
		if err := wait(l.c.Subscribe(f, 1, h), "subscribe"); err != nil {
			t.Fatal(err)
		}
	}
	return func() []string {
		// Published after the command returned: what it sent comes first.
		if err := wait(l.c.Publish("greylist/fence", 1, false, "fence"), "fence"); err != nil {
			t.Fatal(err)
		}
		var ev []string
		for deadline := time.After(10 * time.Second); ; {
			select {
			case e := <-got:
				if e == "greylist/fence fence" {
					return ev
				}
				ev = append(ev, e)
			case <-deadline:
				t.Fatalf("the fence did not come back in 10 s (events %q)", ev)
			}
		}
	}
}

// TestListPartialDeltas: a broker that does not serve a per-ban state the
// manifest announces serves the list in part: vallum list says so and
// exits non-zero, printing nothing (a ban re-made by hand would show at
// the older version its chunk holds), or prints what it read with a
// warning under --partial-ok; once the state is served again, the list
// is whole.
func TestListPartialDeltas(t *testing.T) {
	port := listBroker(t)
	l := newPartialList(t, port)
	l.serve(t, false)
	out, err := runCLI(t, port, "list", "greylist")
	if err == nil || !strings.Contains(err.Error(), "per-ban states made since the cut: read 1") || strings.Contains(out, "192.0.2.1 ") {
		t.Errorf("vallum list of a partial list: err %v, output:\n%s\nwant a failure naming the per-ban states, no list", err, out)
	}
	out, err = runCLI(t, port, "list", "greylist", "--partial-ok")
	if err != nil || !strings.Contains(out, "--partial-ok") || !strings.Contains(out, "\n3 active bans") {
		t.Errorf("vallum list --partial-ok: err %v, output:\n%s\nwant a warning and the 3 bans read", err, out)
	}

	l.serve(t, true)
	out, err = runCLI(t, port, "list", "greylist")
	if err != nil || !strings.Contains(out, "\n3 active bans") {
		t.Errorf("vallum list of the whole list: err %v, output:\n%s", err, out)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "192.0.2.2 ") && !strings.Contains(line, "by hand") {
			t.Errorf("192.0.2.2 listed at its chunk's version: %q", line)
		}
	}
}

// TestImportSyncPartial: `vallum import --sync` of a feed that no longer
// holds 192.0.2.2 reads a list whose per-ban state of 192.0.2.2 (banned
// again by hand since) the broker does not serve: the chunk's version says
// the feed banned it, and --sync would lift the ban made by hand. The
// import publishes nothing and fails; with the list whole, it lifts
// nothing.
func TestImportSyncPartial(t *testing.T) {
	port := listBroker(t)
	l := newPartialList(t, port)
	feed := writeFile(t, "feed.txt", "192.0.2.1\n")
	l.serve(t, false)
	events := l.events(t)
	out, err := runCLI(t, port, "import", "greylist", feed, "--sync", "--timeout", "1h")
	if err == nil || !strings.Contains(err.Error(), "nothing published") {
		t.Errorf("import --sync of a partial list: err %v, want a failure saying nothing was published:\n%s", err, out)
	}
	if ev := events(); len(ev) > 0 {
		t.Errorf("import --sync of a partial list published %q", ev)
	}

	l.serve(t, true)
	out, err = runCLI(t, port, "import", "greylist", feed, "--sync", "--timeout", "1h")
	if err != nil || !strings.Contains(out, "0 to lift") {
		t.Errorf("import --sync of the whole list: err %v, want nothing lifted:\n%s", err, out)
	}
	if ev := events(); len(ev) > 0 {
		t.Errorf("import --sync of the whole list published %q", ev)
	}
}
