//go:build e2e

package e2e

import (
	"fmt"
	"maps"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vallum/vallum/internal/lab"
	"github.com/vallum/vallum/internal/wire"
)

// Issue 18, the compact list: the keeper publishes each list as retained
// chunks and a manifest (docs/compact-list.md), and keeps per-ban state
// only for what changed since the chunks were cut, without legacy state.
// These tests read the broker as a third-party client would, and count
// its retained messages; the hosts' side is the bridge's.

// chunkHub starts a hub without legacy state: the embedded broker, or
// mosquitto (persistence on) with a standalone keeper. restart restarts
// the keeper (the hub, for the embedded broker) keeping what it stored.
func chunkHub(t *testing.T, embedded bool) (b *hub, restart func()) {
	t.Helper()
	l, dir := newLab(t)
	return chunkHubIn(t, l, dir, embedded)
}

// chunkHubIn is chunkHub in lab l.
func chunkHubIn(t *testing.T, l *lab.Lab, dir string, embedded bool) (b *hub, restart func()) {
	t.Helper()
	b = &hub{embedded: embedded, h: addHost(t, l, "hub"), dir: dir}
	if embedded {
		data := filepath.Join(dir, "hub-store")
		args := []string{"broker", "--listen", fmt.Sprintf("0.0.0.0:%d", hubPort), "--allow-anonymous", "-t", root,
			"--data-dir", data, "--legacy-state=false"}
		start := func() {
			b.proc = must[*lab.Proc](t)(b.h.Start(dir, vallumBin, args...))
			if err := b.h.WaitPort(hubPort, 20*time.Second); err != nil {
				t.Fatalf("%v\n%s", err, b.proc.Output())
			}
			t.Cleanup(func() { b.proc.Kill() })
		}
		start()
		return b, func() { b.stop(t); start() }
	}
	b.start(t, true)
	kh := addHost(t, l, "k1")
	k := startKeeper(t, kh, b, dir, "k1", "--legacy-state=false")
	return b, func() {
		if err := k.Stop(); err != nil {
			t.Errorf("keeper on SIGTERM: %v", err)
		}
		k = startKeeper(t, kh, b, dir, "k1", "--legacy-state=false")
	}
}

// compact is a list as a third-party client reads it from the broker.
type compact struct {
	man    *wire.Manifest
	chunks int             // retained chunks, of any generation
	states int             // retained per-ban states
	other  int             // other retained messages of the list (events are not retained)
	list   map[string]int  // ban -> how many times it is read: chunks of the manifest, then states
	held   map[string]bool // bans with a retained per-ban state, live or not
	bad    []string        // what does not read
}

func readCompact(t *testing.T, b *hub) compact { return readCompactAt(t, b, hubPort) }

// readCompactAt is readCompact through the broker's port port.
func readCompactAt(t *testing.T, b *hub, port int) compact {
	t.Helper()
	got := map[string]string{}
	// As a host may read them (not #: the embedded broker refuses it).
	for _, f := range []string{wire.RecordTopic(root), wire.ManifestTopic(root), wire.ChunksFilter(root), root + "/#"} {
		m, err := b.h.RetainedState(port, f, time.Second)
		if err != nil {
			t.Fatalf("broker's retained %s: %v", f, err)
		}
		maps.Copy(got, m)
	}
	c := compact{list: map[string]int{}, held: map[string]bool{}}
	if p, ok := got[wire.ManifestTopic(root)]; ok {
		m, err := wire.DecodeManifest([]byte(p))
		if err != nil {
			c.bad = append(c.bad, "manifest: "+err.Error())
		}
		c.man = &m
	}
	if r, err := wire.DecodeRecord([]byte(got[wire.RecordTopic(root)])); err != nil || c.man != nil && r.Epoch != c.man.Epoch {
		c.bad = append(c.bad, fmt.Sprintf("record %q (%v) is not of the manifest's epoch", got[wire.RecordTopic(root)], err))
	}
	now := time.Now()
	for topic, p := range got {
		switch {
		case strings.HasPrefix(topic, wire.ChunkPrefix+root+"/"):
			c.chunks++
			gen, n, ok := wire.ParseChunkTopic(root, topic)
			if !ok || c.man == nil || gen != c.man.Gen {
				continue // another generation: not read
			}
			ch, err := wire.DecodeChunk([]byte(p))
			if err != nil || n >= len(c.man.CRC) || wire.ChunkCRC([]byte(p)) != c.man.CRC[n] {
				c.bad = append(c.bad, fmt.Sprintf("chunk %d: %v, or not the manifest's", n, err))
				continue
			}
			for _, e := range ch.Entries {
				if _, live := e.State.Remaining(now); live {
					c.list[wire.FormatPrefix(e.Prefix)]++
				}
			}
		case strings.HasPrefix(topic, root+"/ban/"):
			c.states++
			ban := strings.TrimPrefix(topic, root+"/ban/")
			c.held[ban] = true
			st, err := wire.DecodeState([]byte(p))
			if _, live := st.Remaining(now); err == nil && live {
				c.list[ban] = max(1, c.list[ban]) // the later of chunk and state: one ban
			}
		case topic != wire.RecordTopic(root) && topic != wire.ManifestTopic(root) && strings.Contains(topic, root):
			c.other++
		}
	}
	return c
}

func (c compact) String() string {
	n := 0
	if c.man != nil {
		n = len(c.man.CRC)
	}
	return fmt.Sprintf("%d bans read; manifest of %d chunks; retained: %d chunks, %d per-ban states, %d other; errors %v",
		len(c.list), n, c.chunks, c.states, c.other, c.bad)
}

// TestKeeperChunks: 10,500 bans made by legacy events. The keeper cuts
// the list once 10,000 changed: after it, the broker holds the chunks of
// one generation, their manifest and per-ban state for the bans made since
// only (and those made in the seconds before the cut, until they are 10 s
// old). The keeper (the hub) restarted cuts again: the broker then holds
// the list as chunks alone. Every ban is read once, from the chunks or a
// state, and nothing else.
func TestKeeperChunks(t *testing.T) {
	const n = 10500
	for _, embedded := range []bool{true, false} {
		t.Run(map[bool]string{true: "embedded", false: "mosquitto"}[embedded], func(t *testing.T) {
			b, restart := chunkHub(t, embedded)
			pub := b.publisher(t)
			for i := 0; i < n; i += 500 {
				legacy(pub, "add", eventLines(addrs(i, i+500), ""))
			}
			if err := pub.Close(); err != nil {
				t.Fatal(err)
			}
			want := addrs(0, n)
			check := func(maxStates int) {
				t.Helper()
				var c compact
				err := lab.Eventually(90*time.Second, func() (bool, string) {
					c = readCompact(t, b)
					ok := len(c.bad) == 0 && c.man != nil && len(c.list) == n && c.states <= maxStates &&
						c.chunks == len(c.man.CRC) && c.chunks == (c.man.Entries+wire.MaxChunkEntries-1)/wire.MaxChunkEntries
					for _, a := range want {
						ok = ok && c.list[a] == 1
					}
					return ok, c.String()
				})
				if err != nil {
					t.Fatalf("want %d bans, at most %d per-ban states, the chunks of one generation: %v", n, maxStates, err)
				}
				t.Logf("%s", c)
			}
			// The cut at 10,001 changes; the ~500 made after it stay state.
			check(n - 10000 + 200)
			restart()
			check(0)
		})
	}
}

// TestKeeperChunksExpire: 100,000 bans with 2 s timeouts, made by legacy
// events, expire: within a bounded time the broker holds for the list no
// per-ban state and no live ban, only its record, its manifest and the
// chunks it names (at most 25: an expired ban needs no rewrite, readers
// drop it, and the next cut sheds it).
func TestKeeperChunksExpire(t *testing.T) {
	const n = 100000
	for _, embedded := range []bool{true, false} {
		t.Run(map[bool]string{true: "embedded", false: "mosquitto"}[embedded], func(t *testing.T) {
			b, _ := chunkHub(t, embedded)
			pub := b.publisher(t)
			for i := 0; i < n; i += 1000 {
				legacy(pub, "add", eventLines(addrs(i, i+1000), " timeout 2"))
			}
			if err := pub.Close(); err != nil {
				t.Fatal(err)
			}
			var c compact
			err := lab.Eventually(120*time.Second, func() (bool, string) {
				c = readCompact(t, b)
				return len(c.bad) == 0 && c.man != nil && len(c.list) == 0 && c.states == 0 && c.other == 0 &&
					c.chunks == len(c.man.CRC) && c.chunks <= (n+wire.MaxChunkEntries-1)/wire.MaxChunkEntries, c.String()
			})
			if err != nil {
				t.Fatalf("after %d bans expired, want no live ban, no per-ban state, the chunks of one generation: %v", n, err)
			}
			t.Logf("%s", c)
		})
	}
}
