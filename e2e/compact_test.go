//go:build e2e

package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/vallum/vallum/internal/lab"
	"github.com/vallum/vallum/internal/wire"
)

// Issue 18, the hosts' side of the compact list: a bridge reads a list
// published as chunks, a manifest and per-ban state (the deltas). The
// TestCompactKeeper tests run the real keeper, on mosquitto and the
// embedded hub; the others run on mosquitto without a keeper, the test
// standing in for it so that it can shape the chunks (damaged, missing,
// rewritten, deltas older than their chunk entry).

// compactHub is the broker of a compact-list test. On the embedded broker
// only an admin may publish under vallum/, so the test publishes as one,
// and the hosts log in as a host user.
type compactHub struct {
	embedded bool
	h        *lab.Host
	dir      string
	proc     *lab.Proc
	creds    []string // a host's login flags
	adminPW  string
}

func (b *compactHub) name() string {
	if b.embedded {
		return "embedded"
	}
	return "mosquitto"
}

// eachCompactBroker runs body against mosquitto and the embedded hub, each
// with the list's real keeper (the hub's own, `vallum keeper` beside
// mosquitto), both without legacy state (the list is chunks and deltas);
// keeper false: against mosquitto alone, with no keeper, where the test
// stands in for it.
func eachCompactBroker(t *testing.T, keeper bool, body func(t *testing.T, l *lab.Lab, b *compactHub, dir string)) {
	kinds := []bool{false}
	if keeper {
		kinds = append(kinds, true)
	}
	for _, embedded := range kinds {
		b := &compactHub{embedded: embedded}
		t.Run(b.name(), func(t *testing.T) {
			l, dir := newLab(t)
			b.h, b.dir = addHost(t, l, "hub"), dir
			if !embedded {
				b.proc = must[*lab.Proc](t)(b.h.StartMosquitto(dir, hubPort, true))
				if keeper {
					k := must[*lab.Proc](t)(b.h.Start(dir, vallumBin, "keeper", "-h", "127.0.0.1", "-t", root, "--legacy-state=false",
						"--data-dir", filepath.Join(dir, "keeper-data"), "--client-id", "keeper-hub"))
					t.Cleanup(func() {
						if t.Failed() {
							t.Logf("keeper logged:\n%s", k.Output())
						}
						k.Stop()
					})
					if err := k.WaitLog("keeper read the lists", 30*time.Second); err != nil {
						t.Fatal(err)
					}
				}
			} else {
				// Hosts read the list's manifest and chunks.
				extra := fmt.Sprintf("    subscribe: ['%s', '%s#']\n", wire.ManifestTopic(root), wire.ChunkPrefix+root+"/")
				users, u := writeUsers(t, dir, map[string]string{"admin": "admin", "edge": "host"}, extra)
				b.creds = []string{"-u", "edge", "--password-file", u["edge"].pwFile}
				b.adminPW = "pw-of-admin"
				b.proc = must[*lab.Proc](t)(b.h.Start(dir, vallumBin, "broker", "--listen", fmt.Sprintf("0.0.0.0:%d", hubPort),
					"--users", users, "-t", root, "--legacy-state=false", "--data-dir", filepath.Join(dir, "hub-store")))
				if err := b.h.WaitPort(hubPort, 20*time.Second); err != nil {
					t.Fatalf("%v\n%s", err, b.proc.Output())
				}
			}
			t.Cleanup(func() {
				if t.Failed() && embedded {
					out := b.proc.Output()
					t.Logf("hub logged:\n%s", out[max(0, len(out)-4000):])
				}
				b.proc.Stop()
			})
			body(t, l, b, dir)
		})
	}
}

// manifest returns the list's manifest as the broker holds it, waiting up
// to wait for one.
func (b *compactHub) manifest(t *testing.T, wait time.Duration) (wire.Manifest, bool) {
	t.Helper()
	got := make(chan []byte, 1)
	o := mqtt.NewClientOptions().SetClientID(fmt.Sprintf("e2e-manifest-%d", time.Now().UnixNano()))
	if b.embedded {
		o.SetUsername("admin").SetPassword(b.adminPW)
	}
	c := must[mqtt.Client](t)(b.h.Connect(hubPort, o))
	defer c.Disconnect(100)
	c.Subscribe(wire.ManifestTopic(root), 1, func(_ mqtt.Client, m mqtt.Message) {
		select {
		case got <- m.Payload():
		default:
		}
	})
	select {
	case p := <-got:
		m, err := wire.DecodeManifest(p)
		return m, err == nil
	case <-time.After(wait):
		return wire.Manifest{}, false
	}
}

func (b *compactHub) publisher(t *testing.T) *lab.Publisher {
	t.Helper()
	if !b.embedded {
		return must[*lab.Publisher](t)(b.h.NewPublisher(hubPort))
	}
	return must[*lab.Publisher](t)(b.h.NewPublisherAs(hubPort, "admin", b.adminPW))
}

func (b *compactHub) publish(t *testing.T, f func(p *lab.Publisher)) {
	t.Helper()
	p := b.publisher(t)
	f(p)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}

// epoch returns the list's epoch: the embedded hub's keeper's, read from
// its record; on mosquitto, which runs no keeper here, the test writes the
// record a keeper would.
func (b *compactHub) epoch(t *testing.T) string {
	t.Helper()
	if !b.embedded {
		e := wire.NewEpoch()
		b.publish(t, func(p *lab.Publisher) {
			p.Publish(wire.RecordTopic(root), true, wire.EncodeRecord(wire.Record{Epoch: e, Since: time.Now(), Keeper: "e2e"}))
		})
		return e
	}
	got := make(chan []byte, 1)
	c := must[mqtt.Client](t)(b.h.Connect(hubPort, mqtt.NewClientOptions().SetUsername("admin").SetPassword(b.adminPW).SetClientID(fmt.Sprintf("e2e-record-%d", time.Now().UnixNano()))))
	defer c.Disconnect(100)
	c.Subscribe(wire.RecordTopic(root), 1, func(_ mqtt.Client, m mqtt.Message) {
		select {
		case got <- m.Payload():
		default:
		}
	})
	select {
	case p := <-got:
		rec, err := wire.DecodeRecord(p)
		if err != nil {
			t.Fatalf("the hub's keeper record: %v", err)
		}
		return rec.Epoch
	case <-time.After(30 * time.Second):
		t.Fatalf("the hub's keeper wrote no record in 30 s\n%s", b.proc.Output())
	}
	return ""
}

// bridge starts vallum on h against the hub, not waiting.
func (b *compactHub) bridge(t *testing.T, h *lab.Host, dir string, args ...string) *lab.Proc {
	t.Helper()
	args = append(append([]string{"-h", b.h.Addr4, "-t", root}, b.creds...), args...)
	p := must[*lab.Proc](t)(h.StartVallumNoWait(dir, vallumBin, args...))
	t.Cleanup(func() { p.Stop() })
	return p
}

// bulk is ban i of a compact list: 20.0.0.0 on, outside every range the
// lab or the guard uses, room for millions.
func bulk(i int) netip.Prefix {
	v := uint32(20<<24) + uint32(i)
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), 32)
}

// bulkEntries returns bans from..to-1 as a keeper cuts them, at at: every
// tenth permanent, the rest expiring within two hours.
func bulkEntries(from, to int, at time.Time) []wire.Entry {
	es := make([]wire.Entry, 0, to-from)
	for i := from; i < to; i++ {
		s := wire.State{At: at, Origin: "keeper", Reason: "sshd"}
		if i%10 != 0 {
			s.Expires = time.Unix(at.Add(time.Hour+time.Duration(i%3600)*time.Second).Unix(), 0)
		}
		es = append(es, wire.Entry{Prefix: bulk(i), State: s})
	}
	return es
}

func bulkAddrs(from, to int, except ...int) []string {
	skip := map[int]bool{}
	for _, i := range except {
		skip[i] = true
	}
	out := make([]string, 0, to-from)
	for i := from; i < to; i++ {
		if !skip[i] {
			out = append(out, bulk(i).Addr().String())
		}
	}
	return out
}

// TestCompactLateJoin: a list of 100,000 bans as chunks (1,000,000 with
// VALLUM_E2E_FULL=1), with expired entries in the chunks, and per-ban
// state: 1,000 new bans, 500 newer than their chunk entry (a longer
// timeout) and 500 older (expired: the chunk's entry wins). A late joiner
// ends with exactly the list, the newer timeouts, and a restart keeps it
// (nothing removed).
func TestCompactLateJoin(t *testing.T) {
	n := 100_000
	if os.Getenv("VALLUM_E2E_FULL") != "" {
		n = 1_000_000
	}
	const expired, fresh, deltas = 100, 1000, 500
	eachCompactBroker(t, false, func(t *testing.T, l *lab.Lab, b *compactHub, dir string) {
		host := addHost(t, l, "host")
		epoch := b.epoch(t)
		cut := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
		entries := bulkEntries(0, n, cut)
		for i := range expired { // expired since the cut: no reader may add them
			entries = append(entries, wire.Entry{Prefix: bulk(n + i), State: wire.State{At: cut.Add(-2 * time.Hour), Expires: cut.Add(-time.Hour)}})
		}
		c := lab.MakeCompact(root, epoch, uint64(cut.UnixMilli()), cut, entries, wire.MaxChunkEntries)
		now := time.Now()
		longer := time.Unix(now.Add(5*time.Hour).Unix(), 0)
		start := time.Now()
		b.publish(t, func(p *lab.Publisher) {
			c.Publish(p)
			for i := range fresh {
				p.Publish(wire.StateTopic(root, bulk(n+expired+i)), true, wire.EncodeState(wire.State{At: now, Origin: "e2e"}))
			}
			for i := range deltas {
				p.Publish(wire.StateTopic(root, bulk(i)), true, wire.EncodeState(wire.State{At: now, Expires: longer, Origin: "e2e"}))
				p.Publish(wire.StateTopic(root, bulk(deltas+i)), true, wire.EncodeState(wire.State{At: cut.Add(-time.Hour), Expires: now.Add(-time.Minute)}))
			}
		})
		t.Logf("%s: published %d chunks (%d entries) and %d states in %v", b.name(), len(c.Chunks), len(entries), fresh+2*deltas, time.Since(start).Round(time.Millisecond))

		want := append(bulkAddrs(0, n), bulkAddrs(n+expired, n+expired+fresh)...)
		start = time.Now()
		v := b.bridge(t, host, dir)
		if err := v.WaitLog("subscribed and synced", 120*time.Second); err != nil {
			t.Fatal(err)
		}
		err := lab.Eventually(120*time.Second, func() (bool, string) {
			k, err := host.SetCount(root)
			return k == len(want), fmt.Sprintf("%d entries (%v)", k, err)
		})
		if err != nil {
			t.Fatalf("late join: %v", err)
		}
		t.Logf("%s: late join of %d bans from %d chunks took %.2f s from vallum start to a full set", b.name(), len(want), len(c.Chunks), time.Since(start).Seconds())
		waitSet(t, host, 30*time.Second, want)
		ms := must[[]lab.Member](t)(host.Members(root))
		newer := map[string]bool{}
		for i := range deltas {
			newer[bulk(i).Addr().String()] = true
		}
		checked := 0
		for _, m := range ms {
			if newer[m.Prefix] && m.Timeout < int(4*time.Hour/time.Second) {
				t.Errorf("%s: timeout %d s, want about 5 h (its state is newer than its chunk entry)", m.Prefix, m.Timeout)
			}
			if newer[m.Prefix] {
				checked++
			}
		}
		if checked != deltas {
			t.Errorf("checked %d of %d newer states", checked, deltas)
		}
		if strings.Contains(v.Output(), "level=ERROR") {
			t.Errorf("errors logged:\n%s", v.Output())
		}
		stopBridge(t, v)
		v = b.bridge(t, host, dir)
		if err := v.WaitLog(fmt.Sprintf("active=%d removed=0", len(want)), 120*time.Second); err != nil {
			t.Error(err)
		}
	})
}

// smallList publishes a list of n bans in chunks of 4,096 and returns it.
func smallList(t *testing.T, b *compactHub, n int) lab.Compact {
	t.Helper()
	epoch := b.epoch(t)
	cut := time.Now().Truncate(time.Millisecond)
	c := lab.MakeCompact(root, epoch, uint64(cut.UnixMilli()), cut, bulkEntries(0, n, cut), wire.MaxChunkEntries)
	b.publish(t, c.Publish)
	return c
}

// rewrite returns c with ban i left out of its chunk, as the keeper
// rewrites a chunk after an unban: same generation, new checksum.
func rewrite(c lab.Compact, n, i int) lab.Compact {
	es := bulkEntries(0, n, c.Manifest.Cut)
	es = append(es[:i:i], es[i+1:]...)
	out := lab.MakeCompact(root, c.Manifest.Epoch, c.Gen, c.Manifest.Cut, es, wire.MaxChunkEntries)
	return out
}

// TestCompactUnbanRewrite: a host synced just before an unban's chunk
// rewrite (it read the chunk that still held the ban, and no event or
// state of the unban reached it) drops the ban when the rewrite comes; a
// late joiner after the rewrite never has it.
func TestCompactUnbanRewrite(t *testing.T) {
	const n, lifted = 10_000, 5_000
	eachCompactBroker(t, false, func(t *testing.T, l *lab.Lab, b *compactHub, dir string) {
		early, late := addHost(t, l, "early"), addHost(t, l, "late")
		c := smallList(t, b, n)
		v := b.bridge(t, early, dir)
		if err := v.WaitLog("subscribed and synced", 60*time.Second); err != nil {
			t.Fatal(err)
		}
		waitSet(t, early, 30*time.Second, bulkAddrs(0, n))
		// After the sync that confirms the first (15 s on): no later sync
		// would drop the ban by itself.
		if err := v.WaitLog("confirming the sync", 60*time.Second); err != nil {
			t.Fatal(err)
		}
		err := lab.Eventually(60*time.Second, func() (bool, string) {
			k := strings.Count(v.Output(), "msg=synced")
			return k >= 2, fmt.Sprintf("%d syncs", k)
		})
		if err != nil {
			t.Fatal(err)
		}
		r := rewrite(c, n, lifted)
		changed := 0
		b.publish(t, func(p *lab.Publisher) {
			for k := range r.Chunks {
				if r.Manifest.CRC[k] != c.Manifest.CRC[k] {
					p.Publish(r.Topic(k), true, r.Chunks[k])
					changed++
				}
			}
			p.Publish(wire.ManifestTopic(root), true, wire.EncodeManifest(r.Manifest))
		})
		want := bulkAddrs(0, n, lifted)
		waitSet(t, early, 30*time.Second, want)
		t.Logf("%s: %d chunks rewritten; the early host dropped the lifted ban", b.name(), changed)
		lv := b.bridge(t, late, dir)
		if err := lv.WaitLog("subscribed and synced", 60*time.Second); err != nil {
			t.Fatal(err)
		}
		waitSet(t, late, 30*time.Second, want)
	})
}

// damage flips a byte inside a chunk's entries and keeps its trailer, so
// that the manifest's checksum still names it: only decoding tells.
func damage(chunk []byte) []byte {
	b := append([]byte(nil), chunk...)
	b[len(b)/2] ^= 0xff
	return b
}

// TestCompactDamagedChunk: a chunk damaged on the broker is refused; the
// sync waits for the next manifest within its timeout, then says so at
// ERROR and removes nothing (the host keeps the bans of that chunk);
// `vallum list` fails naming it. The chunk mended, the host syncs again
// at once.
func TestCompactDamagedChunk(t *testing.T) {
	const n = 10_000
	eachCompactBroker(t, false, func(t *testing.T, l *lab.Lab, b *compactHub, dir string) {
		host := addHost(t, l, "host")
		c := smallList(t, b, n)
		v := b.bridge(t, host, dir, "--sync-timeout", "3s")
		if err := v.WaitLog(fmt.Sprintf("active=%d removed=0", n), 60*time.Second); err != nil {
			t.Fatal(err)
		}
		stopBridge(t, v)
		b.publish(t, func(p *lab.Publisher) { p.Publish(c.Topic(1), true, damage(c.Chunks[1])) })

		v = b.bridge(t, host, dir, "--sync-timeout", "3s")
		if err := v.WaitLog("the sync read only part of the list's chunks", 60*time.Second); err != nil {
			t.Fatal(err)
		}
		out := v.Output()
		if !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "refused as damaged") || !strings.Contains(out, "reason=bad_chunk") {
			t.Errorf("want an ERROR naming the damaged chunk and a bad_chunk refusal:\n%s", out)
		}
		waitSet(t, host, 10*time.Second, bulkAddrs(0, n))

		args := append([]string{"list", root, "-h", b.h.Addr4}, b.creds...)
		lo, err := host.Exec(vallumBin, args...)
		if err == nil || !strings.Contains(lo, "refused as damaged") {
			t.Errorf("vallum list on a damaged chunk: err %v, output %q; want a failure naming it", err, lo)
		}

		// Mended, with a rewrite lifting a ban: the host syncs again and
		// removes it.
		r := rewrite(c, n, 100)
		b.publish(t, r.Publish)
		waitSet(t, host, 30*time.Second, bulkAddrs(0, n, 100))
		lo, err = host.Exec(vallumBin, args...)
		if err != nil || !strings.Contains(lo, fmt.Sprintf("\n%d active bans", n-1)) {
			t.Errorf("vallum list on the mended list: err %v, output ends %q", err, lo[max(0, len(lo)-80):])
		}
	})
}

// TestCompactMissingChunk: a manifest naming a chunk the broker does not
// hold is partial state: a host that had the list keeps every ban of it,
// and says so at ERROR.
func TestCompactMissingChunk(t *testing.T) {
	const n = 10_000
	eachCompactBroker(t, false, func(t *testing.T, l *lab.Lab, b *compactHub, dir string) {
		host := addHost(t, l, "host")
		c := smallList(t, b, n)
		v := b.bridge(t, host, dir, "--sync-timeout", "3s")
		if err := v.WaitLog(fmt.Sprintf("active=%d removed=0", n), 60*time.Second); err != nil {
			t.Fatal(err)
		}
		stopBridge(t, v)
		b.publish(t, func(p *lab.Publisher) { p.Publish(c.Topic(2), true, nil) })
		v = b.bridge(t, host, dir, "--sync-timeout", "3s")
		if err := v.WaitLog("the sync read only part of the list's chunks", 60*time.Second); err != nil {
			t.Fatal(err)
		}
		if out := v.Output(); !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "chunks 2 missing") {
			t.Errorf("want an ERROR naming the missing chunk:\n%s", out)
		}
		waitSet(t, host, 10*time.Second, bulkAddrs(0, n))
		if strings.Contains(v.Output(), "removed=") && !strings.Contains(v.Output(), "removed=0") {
			t.Errorf("a partial sync removed bans:\n%s", v.Output())
		}
	})
}

// TestCompactKeeper: the list's real keeper, without legacy state, turns
// 100,000 bans made by events (1,000,000 with VALLUM_E2E_FULL=1) into
// chunks and deltas; a late joiner gets every one. 11,000 more make the
// keeper cut again while the host is live (it deletes the per-ban states
// the chunks now hold, which the broker hands to the host): the host keeps
// them all. A ban then lifted by a del event leaves the early host at
// once, and a host that joins after the keeper rewrote its chunk never has
// it.
func TestCompactKeeper(t *testing.T) {
	n := 100_000
	if os.Getenv("VALLUM_E2E_FULL") != "" {
		n = 1_000_000
	}
	const per = 1000
	eachCompactBroker(t, true, func(t *testing.T, l *lab.Lab, b *compactHub, dir string) {
		n := n // grows below, per broker
		early, late := addHost(t, l, "early"), addHost(t, l, "late")
		start := time.Now()
		b.publish(t, func(p *lab.Publisher) {
			for k := 0; k < n; k += per {
				var sb strings.Builder
				for i := k; i < min(n, k+per); i++ {
					sb.WriteString(bulk(i).Addr().String())
					if i%10 != 0 {
						sb.WriteString(" timeout 7200")
					}
					sb.WriteByte('\n')
				}
				p.Publish(root+"/add", false, []byte(sb.String()))
			}
		})
		// The keeper cuts each time 10,000 bans changed: the rest are
		// deltas, per-ban state.
		var m wire.Manifest
		err := lab.Eventually(300*time.Second, func() (bool, string) {
			var ok bool
			m, ok = b.manifest(t, 2*time.Second)
			return ok && m.Entries >= n-10_000 && wire.IsEpochV2(m.Epoch), fmt.Sprintf("manifest %v: %d entries, epoch %s", ok, m.Entries, m.Epoch)
		})
		if err != nil {
			t.Fatalf("the keeper's cut: %v", err)
		}
		t.Logf("%s: %d bans as events, cut by the keeper into %d chunks (%d entries) in %.1f s", b.name(), n, len(m.CRC), m.Entries, time.Since(start).Seconds())

		start = time.Now()
		v := b.bridge(t, early, dir)
		err = lab.Eventually(180*time.Second, func() (bool, string) {
			k, err := early.SetCount(root)
			return k == n, fmt.Sprintf("%d entries (%v)", k, err)
		})
		if err != nil {
			t.Fatalf("late join: %v", err)
		}
		t.Logf("%s: late join of %d from the keeper's chunks and deltas took %.2f s", b.name(), n, time.Since(start).Seconds())
		if err := v.WaitLog(fmt.Sprintf("active=%d removed=0", n), 60*time.Second); err != nil {
			t.Fatal(err)
		}
		waitSet(t, early, 30*time.Second, bulkAddrs(0, n))

		// 11,000 more bans while the host is live: the keeper cuts again
		// and deletes the per-ban states the new chunks hold, which the
		// broker hands to the host: it keeps every ban.
		const more = 11_000
		b.publish(t, func(p *lab.Publisher) {
			for k := n; k < n+more; k += per {
				var sb strings.Builder
				for i := k; i < min(n+more, k+per); i++ {
					sb.WriteString(bulk(i).Addr().String() + "\n")
				}
				p.Publish(root+"/add", false, []byte(sb.String()))
			}
		})
		err = lab.Eventually(120*time.Second, func() (bool, string) {
			now, ok := b.manifest(t, 2*time.Second)
			if ok {
				m = now
			}
			return ok && now.Entries >= n+more-max(10_000, n/100), fmt.Sprintf("manifest: %d entries", now.Entries)
		})
		if err != nil {
			t.Fatalf("the keeper's cut with the host live: %v", err)
		}
		n += more
		waitSet(t, early, 30*time.Second, bulkAddrs(0, n))

		const lifted = 5 // in the first chunk
		pub := b.publisher(t)
		pub.Publish(root+"/del", false, []byte(bulk(lifted).Addr().String()))
		if err := pub.Close(); err != nil {
			t.Fatal(err)
		}
		want := bulkAddrs(0, n, lifted)
		waitSet(t, early, 30*time.Second, want)
		err = lab.Eventually(30*time.Second, func() (bool, string) {
			now, ok := b.manifest(t, 2*time.Second)
			return ok && (now.Gen != m.Gen || now.CRC[0] != m.CRC[0]), "the keeper did not rewrite the chunk"
		})
		if err != nil {
			t.Fatal(err)
		}
		lv := b.bridge(t, late, dir)
		if err := lv.WaitLog(fmt.Sprintf("active=%d removed=0", n-1), 120*time.Second); err != nil {
			t.Fatal(err)
		}
		waitSet(t, late, 30*time.Second, want)
		for name, p := range map[string]*lab.Proc{"early": v, "late": lv} {
			if strings.Contains(p.Output(), "level=ERROR") {
				t.Errorf("%s host logged errors:\n%s", name, p.Output())
			}
		}
	})
}

// TestCompactKeeperTampered: the chunks the real keeper cut, then one
// damaged on the broker (its trailer still the manifest's checksum) and,
// in turn, one deleted: a host that had the list syncs again and removes
// nothing, and says at ERROR that it read part of the list.
func TestCompactKeeperTampered(t *testing.T) {
	const n = 20_000
	eachCompactBroker(t, true, func(t *testing.T, l *lab.Lab, b *compactHub, dir string) {
		host := addHost(t, l, "host")
		b.publish(t, func(p *lab.Publisher) {
			for k := 0; k < n; k += 1000 {
				var sb strings.Builder
				for i := k; i < k+1000; i++ {
					sb.WriteString(bulk(i).Addr().String() + "\n")
				}
				p.Publish(root+"/add", false, []byte(sb.String()))
			}
		})
		var m wire.Manifest
		err := lab.Eventually(120*time.Second, func() (bool, string) {
			var ok bool
			m, ok = b.manifest(t, 2*time.Second)
			// Events of 1,000 lines are bursts, each cut (a burst's cut
			// may come before the last): the chunks tampered with are
			// the last cut's, which holds them all.
			return ok && m.Entries == n, fmt.Sprintf("manifest %v: %d entries", ok, m.Entries)
		})
		if err != nil {
			t.Fatalf("the keeper's cut: %v", err)
		}
		v := b.bridge(t, host, dir, "--sync-timeout", "3s")
		if err := v.WaitLog(fmt.Sprintf("active=%d removed=0", n), 120*time.Second); err != nil {
			t.Fatal(err)
		}
		stopBridge(t, v)
		chunk := wire.ChunkTopic(root, m.Gen, 1)
		got, err := b.retained(t, chunk)
		if err != nil {
			t.Fatal(err)
		}
		for _, tamper := range []struct {
			name    string
			payload []byte
			why     string
		}{{"damaged", damage(got), "refused as damaged"}, {"deleted", nil, "chunks 1 missing"}} {
			b.publish(t, func(p *lab.Publisher) { p.Publish(chunk, true, tamper.payload) })
			v = b.bridge(t, host, dir, "--sync-timeout", "3s")
			if err := v.WaitLog("the sync read only part of the list's chunks", 60*time.Second); err != nil {
				t.Fatalf("%s chunk: %v", tamper.name, err)
			}
			if out := v.Output(); !strings.Contains(out, "level=ERROR") || !strings.Contains(out, tamper.why) {
				t.Errorf("%s chunk: want an ERROR saying %q:\n%s", tamper.name, tamper.why, out)
			}
			waitSet(t, host, 10*time.Second, bulkAddrs(0, n))
			stopBridge(t, v)
		}
	})
}

// retained returns the retained payload of topic.
func (b *compactHub) retained(t *testing.T, topic string) ([]byte, error) {
	t.Helper()
	got := make(chan []byte, 1)
	o := mqtt.NewClientOptions().SetClientID(fmt.Sprintf("e2e-retained-%d", time.Now().UnixNano()))
	if b.embedded {
		o.SetUsername("admin").SetPassword(b.adminPW)
	}
	c := must[mqtt.Client](t)(b.h.Connect(hubPort, o))
	defer c.Disconnect(100)
	c.Subscribe(topic, 1, func(_ mqtt.Client, m mqtt.Message) {
		select {
		case got <- m.Payload():
		default:
		}
	})
	select {
	case p := <-got:
		return p, nil
	case <-time.After(10 * time.Second):
		return nil, fmt.Errorf("no retained message on %s", topic)
	}
}
