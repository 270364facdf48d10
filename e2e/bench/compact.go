package main

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/vallum/vallum/internal/lab"
	"github.com/vallum/vallum/internal/wire"
)

// compactJoin measures a real vallum bridge late-joining a list of n bans
// kept as the compact list (docs/compact-list.md: chunks of 4,096, a
// manifest, per-ban state for the changes since the cut), from the
// embedded hub (`vallum broker -t`) or from mosquitto, into its kernel
// set: the time from vallum's start until the set holds them all. For the
// hub it also returns the hub's resident memory holding the list, after
// the late join.
//
// With keeper, the list's real keeper makes it (the hub's own; `vallum
// keeper` beside mosquitto; both without legacy state) from n bans
// published as per-ban state, and vallum joins once it has cut them. Without,
// the benchmark stands in for the keeper (as the prototype did) and
// publishes n bans as chunks and compactDeltas as per-ban state: the hub's
// memory then counts no keeper's copy of the list.
//
// With settle, vallum joins once the keeper is done with the burst (see
// keeperQuiet); without, as soon as it has cut 99 % of it, while it still
// deletes the per-ban states it folded in and publishes again those a
// deletion raced.
func compactJoin(l *lab.Lab, dir, bin string, a *addrs, o cjoin, n int, timeout time.Duration) (time.Duration, int64, error) {
	embedded, keeper, settle := o.embedded, o.keeper, o.settle
	name := "cjoin-mosquitto"
	if embedded {
		name = "cjoin-hub"
	}
	h, err := l.AddHost(name)
	if err != nil {
		return 0, 0, err
	}
	var hub *lab.Proc
	legacy := fmt.Sprintf("--legacy-state=%v", !keeper) // a stand-in list needs no more than the per-ban state it has
	if embedded {
		// On loopback only: anonymous clients are admins, as a router's
		// local tools are.
		hub, err = h.Start(dir, bin, "broker", "--listen", fmt.Sprintf("127.0.0.1:%d", port), "-t", list, legacy,
			"--data-dir", filepath.Join(dir, name+"-store"), "--metrics", fmt.Sprintf("127.0.0.1:%d", cjoinHubMetrics))
		if err == nil {
			err = h.WaitPort(port, 20*time.Second)
		}
	} else if _, err = h.StartMosquitto(dir, port, false); err == nil && keeper {
		var k *lab.Proc
		k, err = h.Start(dir, bin, "keeper", "-h", "127.0.0.1", "-t", list, legacy, "--data-dir", filepath.Join(dir, name+"-keeper"))
		if err == nil {
			err = k.WaitLog("keeper read the lists", 30*time.Second)
		}
	}
	if err != nil {
		return 0, 0, err
	}
	pub, err := connect(h, port, "bench-compact")
	if err != nil {
		return 0, 0, err
	}
	defer pub.Disconnect(100)
	want := n
	if keeper {
		// Feeding a keeper a million events takes minutes: not the
		// measurement, so not bound by its time limit.
		err = feedKeeper(pub, a, n, o.events, time.Now().Add(15*time.Minute))
		if err == nil && settle {
			err = keeperQuiet(pub, time.Now().Add(5*time.Minute))
		}
	} else {
		deadline := time.Now().Add(timeout)
		var epoch string
		if epoch, err = listEpoch(pub, embedded, deadline); err == nil {
			err = publishCompact(pub, a, n, epoch, deadline)
		}
		want += compactDeltas
	}
	if err != nil {
		return 0, 0, err
	}
	w, err := newWatcher(h)
	if err != nil {
		return 0, 0, err
	}
	defer w.close()
	before := joinMetrics(h, hub != nil, cjoinHubMetrics)
	start := time.Now()
	v, err := h.StartVallumNoWait(dir, bin, "-h", "127.0.0.1", "-t", list, "--data-dir", filepath.Join(dir, name+"-vallum"),
		"--metrics", fmt.Sprintf("127.0.0.1:%d", cjoinHostMetrics))
	if err != nil {
		return 0, 0, err
	}
	end, got, err := w.waitSize(list, want, start.Add(timeout), 5*time.Millisecond)
	if err != nil {
		return 0, 0, fmt.Errorf("compact late join: %d of %d: %w\n%s", got, want, err, v.Output())
	}
	if err := v.WaitLog("msg=synced", timeout); err != nil {
		return 0, 0, err
	}
	synced := time.Since(start)
	after, host := joinMetrics(h, hub != nil, cjoinHubMetrics), joinMetrics(h, true, cjoinHostMetrics)
	fmt.Fprintf(os.Stderr, "bench: %s: the set held all %d after %.2f s, synced after %.2f s (the first sync's end: %s); the host read %.0f messages; %s\n",
		name, want, end.Sub(start).Seconds(), synced.Seconds(), syncLine(v.Output()), host["vallum_mqtt_messages_total"], hubLine(before, after))
	fmt.Fprintf(os.Stderr, "bench: %s: the host's log:\n%s", name, logLines(v.Output(), "sync", "WARN", "ERROR"))
	if hub != nil {
		fmt.Fprintf(os.Stderr, "bench: %s: the hub's cuts:\n%s", name, logLines(hub.Output(), "msg=cut"))
	}
	var rss int64
	if hub != nil {
		rss, err = hub.RSS()
	}
	return end.Sub(start), rss, err
}

// cjoin says how compactJoin runs: on the embedded hub or mosquitto,
// the list made by its real keeper or by the benchmark, joined once the
// keeper settled or mid-burst, the million fed as events or per-ban state.
type cjoin struct{ embedded, keeper, settle, events bool }

// feedKeeper publishes n bans to the keeper, and waits until it has cut
// them into chunks: the changes since its last cut are under its bound
// (10,000 or 1 % of the list). As per-ban state, one retained message a
// ban, as `vallum ban` makes them (the keeper deletes each once a cut
// holds it, a while after: the broker holds those of the last seconds);
// with events, as `ROOT/add` messages of 1,000 lines, as `vallum import`
// and feeds send them (the keeper's burst path: no per-ban state).
func feedKeeper(c mqtt.Client, a *addrs, n int, events bool, deadline time.Time) error {
	as := a.take(n)
	now := time.Now()
	state := wire.EncodeState(wire.State{At: now, Expires: now.Add(24 * time.Hour), Reason: "bench"})
	var err error
	if events {
		const per = 1000
		err = publishAll(c, (n+per-1)/per, 64, deadline, func(i int) (string, []byte, bool) {
			var b strings.Builder
			for _, a := range as[i*per : min(n, (i+1)*per)] {
				b.WriteString(a.String())
				b.WriteString(" timeout 86400\n")
			}
			return list + "/add", []byte(b.String()), false
		})
	} else {
		err = publishAll(c, n, window, deadline, func(i int) (string, []byte, bool) {
			return wire.StateTopic(list, netip.PrefixFrom(as[i], 32)), state, true
		})
	}
	if err != nil {
		return fmt.Errorf("feed: %w", err)
	}
	got := make(chan []byte, 16)
	c.Subscribe(wire.ManifestTopic(list), 1, func(_ mqtt.Client, m mqtt.Message) {
		select {
		case got <- m.Payload():
		default:
		}
	})
	defer c.Unsubscribe(wire.ManifestTopic(list))
	entries := 0
	for entries < n-max(10_000, n/100) {
		select {
		case p := <-got:
			if m, err := wire.DecodeManifest(p); err == nil {
				entries = m.Entries
			}
		case <-time.After(time.Until(deadline)):
			return fmt.Errorf("the keeper cut %d of %d bans", entries, n)
		}
	}
	return nil
}

// keeperQuiet waits until the list's per-ban state and manifest have
// been still for quietFor: the keeper has taken the burst, and deleted
// the per-ban states its cuts folded in (statedFor, 10 s, after each cut).
func keeperQuiet(c mqtt.Client, deadline time.Time) error {
	const quietFor = 12 * time.Second
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	note := func(mqtt.Client, mqtt.Message) { last.Store(time.Now().UnixNano()) }
	filters := map[string]byte{wire.StateFilter(list): 0, wire.ManifestTopic(list): 0}
	if t := c.SubscribeMultiple(filters, note); !t.WaitTimeout(time.Until(deadline)) || t.Error() != nil {
		return fmt.Errorf("subscribe: %v", t.Error())
	}
	defer c.Unsubscribe(wire.StateFilter(list), wire.ManifestTopic(list))
	for time.Since(time.Unix(0, last.Load())) < quietFor {
		if time.Now().After(deadline) {
			return fmt.Errorf("the keeper's list did not settle: a change every %v or less", quietFor)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return nil
}

// compactDeltas is how many bans the benchmark publishes as per-ban state
// after the cut, as a keeper leaves the changes since its last cut.
const compactDeltas = 1000

// listEpoch returns the epoch the manifest must carry: the hub's keeper's
// (read from its record); on mosquitto, which runs no keeper here, one the
// benchmark writes as a keeper would.
func listEpoch(c mqtt.Client, embedded bool, deadline time.Time) (string, error) {
	if !embedded {
		e := wire.NewEpoch()
		rec := wire.EncodeRecord(wire.Record{Epoch: e, Since: time.Now(), Keeper: "bench"})
		t := c.Publish(wire.RecordTopic(list), 1, true, rec)
		if !t.WaitTimeout(time.Until(deadline)) || t.Error() != nil {
			return "", fmt.Errorf("keeper record: %v", t.Error())
		}
		return e, nil
	}
	got := make(chan []byte, 1)
	c.Subscribe(wire.RecordTopic(list), 1, func(_ mqtt.Client, m mqtt.Message) {
		select {
		case got <- m.Payload():
		default:
		}
	})
	defer c.Unsubscribe(wire.RecordTopic(list))
	select {
	case p := <-got:
		rec, err := wire.DecodeRecord(p)
		return rec.Epoch, err
	case <-time.After(time.Until(deadline)):
		return "", fmt.Errorf("the hub's keeper wrote no record")
	}
}

// publishCompact publishes n bans as chunks and a manifest, then
// compactDeltas more as per-ban state.
func publishCompact(c mqtt.Client, a *addrs, n int, epoch string, deadline time.Time) error {
	as := a.take(n + compactDeltas)
	now := time.Now().Truncate(time.Millisecond)
	st := wire.State{At: now, Expires: now.Add(24 * time.Hour), Reason: "bench", Origin: "keeper"}
	entries := make([]wire.Entry, n)
	for i := range entries {
		entries[i] = wire.Entry{Prefix: netip.PrefixFrom(as[i], 32), State: st}
	}
	cp := lab.MakeCompact(list, epoch, uint64(now.UnixMilli()), now, entries, wire.MaxChunkEntries)
	entries = nil
	runtime.GC()
	manifest := wire.EncodeManifest(cp.Manifest)
	err := publishAll(c, len(cp.Chunks)+1, 64, deadline, func(i int) (string, []byte, bool) {
		if i == len(cp.Chunks) {
			return wire.ManifestTopic(list), manifest, true
		}
		return cp.Topic(i), cp.Chunks[i], true
	})
	if err != nil {
		return fmt.Errorf("chunks: %w", err)
	}
	delta := wire.EncodeState(wire.State{At: now.Add(time.Second), Expires: now.Add(24 * time.Hour), Reason: "bench"})
	err = publishAll(c, compactDeltas, window, deadline, func(i int) (string, []byte, bool) {
		return wire.StateTopic(list, netip.PrefixFrom(as[n+i], 32)), delta, true
	})
	if err != nil {
		return fmt.Errorf("deltas: %w", err)
	}
	return nil
}

// The metrics ports of the compact join: the hub's and the joining host's.
const cjoinHubMetrics, cjoinHostMetrics = 9109, 9110

// joinMetrics scrapes the metrics on port of h; nil when off or failing
// (they only explain a figure: what the broker held, what it dropped).
func joinMetrics(h *lab.Host, on bool, port int) map[string]float64 {
	if !on {
		return nil
	}
	m, err := h.Metrics(port)
	if err != nil {
		return nil
	}
	return m
}

// hubLine says what the hub held at the join and dropped during it.
func hubLine(before, after map[string]float64) string {
	if before == nil || after == nil {
		return "mosquitto"
	}
	return fmt.Sprintf("the hub held %.0f retained messages at the join (per-ban states, chunks, manifest, record) and dropped %.0f messages during it",
		before["vallum_broker_retained"], after["vallum_broker_messages_dropped_total"]-before["vallum_broker_messages_dropped_total"])
}

// logLines returns the lines of out that hold any of words, the last 30.
func logLines(out string, words ...string) string {
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		for _, w := range words {
			if strings.Contains(l, w) {
				keep = append(keep, "  "+l+"\n")
				break
			}
		}
	}
	return strings.Join(keep[max(0, len(keep)-30):], "")
}

// syncLine returns the first "synced" line of a host's log, its fields.
func syncLine(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "msg=synced") {
			if i := strings.Index(l, "topic="); i >= 0 {
				return l[i:]
			}
			return l
		}
	}
	return ""
}
