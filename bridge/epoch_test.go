package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/vallum/vallum/internal/wire"
)

// A lost list is not an unban (epoch.go): each test plays a host that
// synced a list under one epoch, and a broker that holds something else.

const (
	epoch1 = "00112233445566aa"
	epoch2 = "99887766554433bb"
)

// logBuf is a log the test can read while the bridge writes it.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func record(epoch string) string {
	return string(wire.EncodeRecord(wire.Record{Epoch: epoch, Since: time.Now(), Keeper: "test"}))
}

func stateOf(expires time.Time) string {
	return string(wire.EncodeState(wire.State{At: time.Now(), Expires: expires}))
}

// writeEpochs writes the epoch file a host left at its last sync.
func writeEpochs(t *testing.T, known map[string]string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "bridge", "epochs")
	b, _ := json.Marshal(known)
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o640); err != nil {
		t.Fatal(err)
	}
	return path
}

func readEpochs(t *testing.T, path string) map[string]string {
	t.Helper()
	m := map[string]string{}
	b, err := os.ReadFile(path)
	if err == nil {
		err = json.Unmarshal(b, &m)
	}
	if err != nil {
		t.Fatalf("epoch file: %v", err)
	}
	return m
}

// syncedHost is a fake kernel as a host left it: three bans from the state
// and one from an event, all of the list, and one added by hand.
func syncedHost() *fakeBackend {
	f := newFake()
	f.put("bl", IPv4, "203.0.113.1/32", CommentState)
	f.put("bl", IPv4, "203.0.113.2/32", CommentState)
	f.put("bl", IPv4, "203.0.113.3/32", CommentEvent)
	f.put("bl", IPv4, "192.0.2.99/32", "")
	f.put("bl6", IPv6, "2001:db8::1/128", CommentState)
	return f
}

// resync starts a sync as a reconnect does, without SIGHUP's adoption.
func (r *running) resync(t *testing.T) {
	t.Helper()
	n := r.b.stats.Syncs.Load()
	if err := r.b.app.repair(context.Background(), true); err != nil {
		t.Fatalf("resync: %v", err)
	}
	r.waitSynced(t, n+1)
}

// TestLostListKeepsBans: the host synced under epoch 1; the broker now
// holds one of its bans and, in turn, no record, a forged record with
// another epoch, an empty retained record, or garbage. Each time the sync
// removes nothing, logs an ERROR naming the list and what to do, and says
// so in the metric and /healthz; the ban the broker still holds is applied.
// Once the record of epoch 1 is back, live, a sync starts and removes
// what the list no longer holds, events' bans included, and the list is
// well again.
func TestLostListKeepsBans(t *testing.T) {
	for _, tt := range []struct {
		name   string
		record *string // nil: never published
		want   string  // in the ERROR line
	}{
		{"no record", nil, "the broker has no keeper record"},
		{"forged epoch", ptr(record(epoch2)), "has epoch " + epoch2 + ", not " + epoch1},
		{"empty retained record", ptr(""), "the broker has no keeper record"},
		{"garbage record", ptr(`{"epoch":"x"}`), "keeper record is not valid"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, url := startBroker(t, nil)
			pub := publisher(t, url)
			publish(t, pub, "bl/ban/203.0.113.1", true, stateOf(time.Time{}))
			publish(t, pub, "bl/ban/203.0.113.4", true, stateOf(time.Time{})) // banned while away
			if tt.record != nil {
				publish(t, pub, wire.RecordTopic("bl"), true, record(epoch1))
				publish(t, pub, wire.RecordTopic("bl"), true, *tt.record) // replaces it
			}
			f := syncedHost()
			var log logBuf
			path := writeEpochs(t, map[string]string{"bl": epoch1})
			r := startBridge(t, url, f, func(o *Options) {
				o.EpochFile = path
				o.Logger = slog.New(slog.NewTextHandler(&log, nil))
			})
			r.waitSynced(t, 1)
			wantMembers(t, f, "bl", "192.0.2.99", "203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.4")
			wantMembers(t, f, "bl6", "2001:db8::1")
			if why := r.b.stats.ListsLost()["bl"]; !strings.Contains(why, tt.want) {
				t.Errorf("lost = %q, want it to say %q", why, tt.want)
			}
			line := "level=ERROR msg=\"list bl: "
			if got := log.String(); !strings.Contains(got, line) || !strings.Contains(got, "keeping 3 bans it no longer lists") ||
				!strings.Contains(got, "restore the list's keeper") || !strings.Contains(got, tt.want) {
				t.Errorf("log lacks the ERROR line for the lost list (%q, keeping 3, what to do):\n%s", tt.want, got)
			}
			if got := readEpochs(t, path); got["bl"] != epoch1 {
				t.Errorf("epoch file = %v, want bl still %s", got, epoch1)
			}

			// The keeper restores the list: its record, live, starts a sync.
			publish(t, pub, wire.RecordTopic("bl"), true, record(epoch1))
			wantMembers(t, f, "bl", "192.0.2.99", "203.0.113.1", "203.0.113.4")
			wantMembers(t, f, "bl6")
			if why := r.b.stats.ListsLost()["bl"]; why != "" {
				t.Errorf("lost = %q after the record came back, want \"\"", why)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// TestLiveRecordChangeWaitsForSync: a record deleted or changed while the
// host is connected changes nothing until the next sync, which then keeps
// every ban.
func TestLiveRecordChangeWaitsForSync(t *testing.T) {
	_, url := startBroker(t, nil)
	pub := publisher(t, url)
	publish(t, pub, wire.RecordTopic("bl"), true, record(epoch1))
	publish(t, pub, "bl/ban/203.0.113.1", true, stateOf(time.Time{}))
	f := newFake()
	r := startBridge(t, url, f, nil)
	r.waitSynced(t, 1)
	wantMembers(t, f, "bl", "203.0.113.1")
	if lost, ok := r.b.stats.ListsLost()["bl"]; !ok || lost != "" {
		t.Fatalf("lost = %q, %v after the first sync, want \"\", true", lost, ok)
	}

	// An entry of vallum's the list no longer holds: a trusted sync would
	// remove it.
	f.put("bl", IPv4, "203.0.113.2/32", CommentState)
	publish(t, pub, wire.RecordTopic("bl"), true, "") // deleted, live
	publish(t, pub, "bl/add", false, "203.0.113.7")   // a fence: the deletion came before it
	wantMembers(t, f, "bl", "203.0.113.1", "203.0.113.2", "203.0.113.7")
	if lost := r.b.stats.ListsLost()["bl"]; lost != "" {
		t.Errorf("lost = %q right after a live deletion, want \"\" until the next sync", lost)
	}
	r.resync(t)
	wantMembers(t, f, "bl", "203.0.113.1", "203.0.113.2", "203.0.113.7")
	if lost := r.b.stats.ListsLost()["bl"]; !strings.Contains(lost, "no keeper record") {
		t.Errorf("lost = %q after the sync, want no keeper record", lost)
	}
}

// TestSIGHUPAdoptsTheBrokersList: a list found lost is taken as the broker
// holds it at the first sync after SIGHUP (Resync), and only then: its new
// epoch is kept in the file, so a restart trusts it. A list never seen
// with a record adopts the first record it sees.
func TestSIGHUPAdoptsTheBrokersList(t *testing.T) {
	_, url := startBroker(t, nil)
	pub := publisher(t, url)
	publish(t, pub, wire.RecordTopic("bl"), true, record(epoch2)) // a fresh keeper
	publish(t, pub, "bl/ban/203.0.113.1", true, stateOf(time.Time{}))
	path := writeEpochs(t, map[string]string{"bl": epoch1})
	f := syncedHost()
	r := startBridge(t, url, f, func(o *Options) {
		o.EpochFile = path
		o.Lists = append(o.Lists, List{Root: "wl"})
	})
	r.waitSynced(t, 1)
	r.resync(t) // a reconnect is no decision
	wantMembers(t, f, "bl", "192.0.2.99", "203.0.113.1", "203.0.113.2", "203.0.113.3")
	if lost := r.b.stats.ListsLost()["bl"]; lost == "" {
		t.Fatal("list bl not found lost")
	}

	n := r.b.stats.Syncs.Load()
	if err := r.b.Resync(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.waitSynced(t, n+1)
	wantMembers(t, f, "bl", "192.0.2.99", "203.0.113.1")
	wantMembers(t, f, "bl6")
	if lost := r.b.stats.ListsLost()["bl"]; lost != "" {
		t.Errorf("lost = %q after SIGHUP, want \"\"", lost)
	}
	if got := readEpochs(t, path); got["bl"] != epoch2 {
		t.Errorf("epoch file = %v, want bl %s", got, epoch2)
	}

	// A list never seen with a record adopts the first one, and a SIGHUP
	// with nothing lost adopts nothing.
	publish(t, pub, wire.RecordTopic("wl"), true, record(epoch1))
	if err := r.b.Resync(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.waitSynced(t, n+2)
	if got := readEpochs(t, path); got["bl"] != epoch2 || got["wl"] != epoch1 {
		t.Errorf("epoch file = %v, want bl %s and wl %s", got, epoch2, epoch1)
	}
	publish(t, pub, wire.RecordTopic("wl"), true, record(epoch2))
	if err := r.b.Resync(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.waitSynced(t, n+3)
	if got := readEpochs(t, path); got["wl"] != epoch1 {
		t.Errorf("epoch file = %v: a SIGHUP adopted wl's new epoch before a sync found it lost", got)
	}
}

// TestRecordRefusedByTheBroker: a broker whose ACL refuses the keeper
// record still serves the sync; a list never seen with a record syncs as
// before records, and one seen before keeps its bans.
func TestRecordRefusedByTheBroker(t *testing.T) {
	for _, known := range []bool{false, true} {
		t.Run(map[bool]string{false: "never seen", true: "seen before"}[known], func(t *testing.T) {
			_, url := startBroker(t, &noRecordHook{})
			pub := publisher(t, url)
			publish(t, pub, "bl/ban/203.0.113.1", true, stateOf(time.Time{}))
			epochs := map[string]string{}
			if known {
				epochs["bl"] = epoch1
			}
			path := writeEpochs(t, epochs)
			f := syncedHost()
			r := startBridge(t, url, f, func(o *Options) { o.EpochFile = path })
			r.waitSynced(t, 1)
			if known {
				wantMembers(t, f, "bl", "192.0.2.99", "203.0.113.1", "203.0.113.2", "203.0.113.3")
				if lost := r.b.stats.ListsLost()["bl"]; !strings.Contains(lost, "refused") {
					t.Errorf("lost = %q, want the refusal", lost)
				}
				return
			}
			wantMembers(t, f, "bl", "192.0.2.99", "203.0.113.1", "203.0.113.3") // events' bans stay, as before
		})
	}
}

// noRecordHook lets everything through but the keeper records.
type noRecordHook struct{ mochi.HookBase }

func (h *noRecordHook) ID() string { return "no-record" }
func (h *noRecordHook) Provides(b byte) bool {
	return b == mochi.OnConnectAuthenticate || b == mochi.OnACLCheck
}
func (h *noRecordHook) OnConnectAuthenticate(*mochi.Client, packets.Packet) bool { return true }
func (h *noRecordHook) OnACLCheck(_ *mochi.Client, topic string, _ bool) bool {
	return !strings.HasPrefix(topic, wire.RecordPrefix)
}

// TestListWinsOverLateEvents: mochi redelivers a session's queue sorted
// by the second, so an unban's del may come before its ban's add, and the
// add leaves an event's entry that the list does not hold. On a list with
// a keeper record, a sync removes it, once it is older than eventSettle:
// the sync right after it keeps it (its state may not be published yet)
// and a follow-up sync removes it. A ban whose state the keeper published
// stays, and so does an entry made by hand. Without a record, events'
// entries stay, as before.
func TestListWinsOverLateEvents(t *testing.T) {
	const settle = 2 * time.Second
	for _, withRecord := range []bool{true, false} {
		t.Run(map[bool]string{true: "record", false: "no record"}[withRecord], func(t *testing.T) {
			_, url := startBroker(t, nil)
			pub := publisher(t, url)
			if withRecord {
				publish(t, pub, wire.RecordTopic("bl"), true, record(epoch1))
			}
			f := newFake()
			f.put("bl", IPv4, "192.0.2.99/32", "")
			r := startBridge(t, url, f, func(o *Options) { o.eventSettle = settle })
			r.waitSynced(t, 1)

			publish(t, pub, "bl/ban/203.0.113.2", true, stateOf(time.Time{})) // the keeper's state of a ban
			publish(t, pub, "bl/add", false, "203.0.113.2")
			publish(t, pub, "bl/del", false, "203.0.113.1") // redelivered out of order
			publish(t, pub, "bl/add", false, "203.0.113.1")
			wantMembers(t, f, "bl", "192.0.2.99", "203.0.113.1", "203.0.113.2")
			applied := time.Now()
			r.resync(t)
			if got := f.members("bl"); len(got) != 3 {
				t.Fatalf("set bl = %v right after the sync, want the young event's entry kept", got)
			}
			if !withRecord {
				eventually(t, func() bool { return time.Since(applied) > settle+time.Second }, "the event to age")
				r.resync(t)
				wantMembers(t, f, "bl", "192.0.2.99", "203.0.113.1", "203.0.113.2")
				return
			}
			wantMembers(t, f, "bl", "192.0.2.99", "203.0.113.2")
			if n := r.b.stats.Syncs.Load(); n < 3 {
				t.Errorf("%d syncs, want a follow-up sync to have removed the entry", n)
			}
		})
	}
}

// TestBurstWaitsForTheCut: the adds of a message of many lines (a feed's
// import) become chunks only at the keeper's next cut, which may come a
// minute later: a sync after eventSettle keeps them while the list does not
// hold them yet, and still removes an ordinary event's add the list does
// not hold. (Without it, a host that synced during a 1,000,000-line import
// lost the bans the keeper had not cut yet: TestImportMillion.)
func TestBurstWaitsForTheCut(t *testing.T) {
	const settle = time.Second
	_, url := startBroker(t, nil)
	pub := publisher(t, url)
	publish(t, pub, wire.RecordTopic("bl"), true, record(epoch1))
	f := newFake()
	r := startBridge(t, url, f, func(o *Options) { o.eventSettle = settle })
	r.waitSynced(t, 1)
	var feed strings.Builder
	var want []string
	for i := range wire.BurstLines {
		a := fmt.Sprintf("10.0.%d.%d", i>>8, i&255)
		feed.WriteString(a + "\n")
		want = append(want, a)
	}
	publish(t, pub, "bl/add", false, feed.String())
	publish(t, pub, "bl/add", false, "203.0.113.1")
	wantMembers(t, f, "bl", append(want, "203.0.113.1")...)
	applied := time.Now()
	eventually(t, func() bool { return time.Since(applied) > settle+time.Second }, "the events to age")
	r.resync(t)
	wantMembers(t, f, "bl", want...)
}

// TestOfflineRedeliveryListWins: the case on an in-process mochi.
// While the host is stopped, 20 addresses are banned and unbanned by
// events and 20 others banned (their state published, as the keeper
// does). mochi redelivers the queued events sorted by the second; after
// the restart the host holds the 20 bans and none of the lifted ones.
func TestOfflineRedeliveryListWins(t *testing.T) {
	_, url := startBroker(t, nil)
	pub := publisher(t, url)
	publish(t, pub, wire.RecordTopic("bl"), true, record(epoch1))
	f := newFake()
	fast := func(o *Options) { o.eventSettle = time.Second }
	r := startBridge(t, url, f, fast)
	r.waitSynced(t, 1)
	r.shutdown(t)

	var kept []string
	for i := range 20 {
		lifted, ban := fmt.Sprintf("198.51.100.%d", i+1), fmt.Sprintf("198.51.100.%d", i+101)
		publish(t, pub, "bl/add", false, lifted)
		publish(t, pub, "bl/del", false, lifted)
		publish(t, pub, "bl/ban/"+ban, true, stateOf(time.Time{}))
		publish(t, pub, "bl/add", false, ban)
		kept = append(kept, ban)
	}
	r = startBridge(t, url, f, fast)
	r.waitSynced(t, 1)
	wantMembers(t, f, "bl", kept...)
}

// TestJudge: the rules of epoch.go, one sync at a time.
func TestJudge(t *testing.T) {
	ok := func(ep string) recordSeen { return recordSeen{rec: wire.Record{Epoch: ep}, ok: true} }
	e := newEpochs("", slog.New(slog.DiscardHandler))
	steps := []struct {
		name  string
		seen  recordSeen
		adopt bool // SIGHUP before this sync
		want  verdict
	}{
		{"no record, never seen one", recordSeen{}, false, untracked},
		{"first record is adopted", ok(epoch1), false, trusted},
		{"same epoch", ok(epoch1), false, trusted},
		{"SIGHUP with nothing lost adopts nothing", ok(epoch2), true, lost},
		{"another epoch", ok(epoch2), false, lost},
		{"no record", recordSeen{}, false, lost},
		{"refused", recordSeen{refused: true}, false, lost},
		{"SIGHUP adopts the new epoch", ok(epoch2), true, trusted},
		{"the old epoch is now another", ok(epoch1), false, lost},
		{"SIGHUP with no record forgets the epoch", recordSeen{}, true, untracked},
		{"and the next record is adopted", ok(epoch1), false, trusted},
		{"its keeper turns to chunks alone: the v2 spelling is the same list", ok(wire.EpochV2(epoch1)), false, trusted},
		{"and back", ok(epoch1), false, trusted},
		{"another epoch in the v2 spelling", ok(wire.EpochV2(epoch2)), false, lost},
	}
	for _, s := range steps {
		if s.adopt {
			e.requestAdopt()
		}
		if got, _ := e.judge("bl", s.seen); got != s.want {
			t.Errorf("%s: verdict %d, want %d", s.name, got, s.want)
		}
	}
}

// TestEpochFileDamaged: a file that does not parse is reported, and the
// lists adopt the next record they see.
func TestEpochFileDamaged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "epochs")
	if err := os.WriteFile(path, []byte(`{"bl":"not-an-epoch"}`), 0o640); err != nil {
		t.Fatal(err)
	}
	var log logBuf
	e := newEpochs(path, slog.New(slog.NewTextHandler(&log, nil)))
	if !strings.Contains(log.String(), "level=ERROR") || !strings.Contains(log.String(), path) {
		t.Errorf("log = %q, want an ERROR naming the file", log.String())
	}
	if v, _ := e.judge("bl", recordSeen{rec: wire.Record{Epoch: epoch1}, ok: true}); v != trusted {
		t.Errorf("verdict %d, want trusted", v)
	}
	if got := readEpochs(t, path); got["bl"] != epoch1 {
		t.Errorf("epoch file = %v, want bl %s", got, epoch1)
	}
}
