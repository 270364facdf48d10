package bridge

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"

	"github.com/vallum/vallum/internal/guard"
	"github.com/vallum/vallum/internal/wire"
)

func allowPayload(comment string) string {
	return string(wire.EncodeAllow(wire.Allow{At: time.Now(), Comment: comment, Origin: "test"}))
}

func statePayload() string {
	return string(wire.EncodeState(wire.State{At: time.Now(), Expires: time.Now().Add(time.Hour)}))
}

// An allow entry lifts the bans of vallum's it covers at once, leaves an
// entry made by hand alone, and refuses every later ban it covers, by
// event or by state; once deleted, bans apply again.
func TestAllowLiftsAndRefuses(t *testing.T) {
	if !allowFull {
		t.Skip("the MIPS router builds do not lift (allow_small.go)")
	}
	_, url := startBroker(t, nil)
	f := newFake()
	f.create("bl", IPv4)
	f.create("bl6", IPv6)
	f.put("bl", IPv4, "198.51.100.9/32", "") // by hand
	r := startBridge(t, url, f, nil)
	r.waitSynced(t, 1)
	pub := publisher(t, url)
	publish(t, pub, "bl/add", false, "198.51.100.7\n198.51.100.0/28\n203.0.113.1\n192.0.2.0/23")
	publish(t, pub, "bl/ban/2001:db8::7", true, statePayload())
	wantMembers(t, f, "bl", "192.0.2.0/23", "198.51.100.0/28", "198.51.100.7", "198.51.100.9", "203.0.113.1")
	wantMembers(t, f, "bl6", "2001:db8::7")

	publish(t, pub, "vallum/allow/198.51.100.0/24", true, allowPayload("office"))
	publish(t, pub, "vallum/allow/192.0.2.77", true, allowPayload("partner")) // inside a banned /23
	publish(t, pub, "vallum/allow/2001:db8::/48", true, allowPayload("v6 office"))
	wantMembers(t, f, "bl", "198.51.100.9", "203.0.113.1")
	wantMembers(t, f, "bl6")

	publish(t, pub, "bl/add", false, "198.51.100.20\n192.0.2.0/24\n203.0.113.2")
	publish(t, pub, "bl/ban/198.51.100.21", true, statePayload())
	publish(t, pub, "bl/ban/2001:db8::8", true, statePayload())
	publish(t, pub, "bl/add", false, "203.0.113.3") // a fence
	wantMembers(t, f, "bl", "198.51.100.9", "203.0.113.1", "203.0.113.2", "203.0.113.3")
	wantMembers(t, f, "bl6")
	if got := r.b.stats.Snapshot().Refused["allowlisted"]; got != 4 {
		t.Errorf("refused allowlisted = %d, want 4 (2 event lines, 2 states)", got)
	}

	publish(t, pub, "vallum/allow/198.51.100.0/24", true, "") // deleted
	publish(t, pub, "bl/add", false, "198.51.100.20")
	wantMembers(t, f, "bl", "198.51.100.20", "198.51.100.9", "203.0.113.1", "203.0.113.2", "203.0.113.3")
}

// Topics and payloads of the allowlist that are not valid change nothing,
// and are counted.
func TestAllowRefusesBadEntries(t *testing.T) {
	_, url := startBroker(t, nil)
	f := newFake()
	r := startBridge(t, url, f, nil)
	r.waitSynced(t, 1)
	pub := publisher(t, url)
	bad := map[string]string{
		"vallum/allow/198.51.100.7/32": allowPayload("x"), // not canonical
		"vallum/allow/198.51.100.1/24": allowPayload("x"), // host bits
		"vallum/allow/office":          allowPayload("x"),
	}
	if allowFull { // the MIPS builds take any payload (allow_small.go)
		bad["vallum/allow/198.51.100.8"] = "not json"
		bad["vallum/allow/198.51.100.9"] = `{"comment":"no at"}`
		bad["vallum/allow/198.51.100.10/31"] = "\xff\xfe"
	}
	for topic, payload := range bad {
		publish(t, pub, topic, false, payload)
	}
	publish(t, pub, "bl/add", false, "198.51.100.7\n198.51.100.1\n198.51.100.8\n198.51.100.9\n198.51.100.10")
	wantMembers(t, f, "bl", "198.51.100.1", "198.51.100.10", "198.51.100.7", "198.51.100.8", "198.51.100.9")
	if got := r.b.stats.Snapshot().Refused["bad_allow"]; got != int64(len(bad)) {
		t.Errorf("refused bad_allow = %d, want %d", got, len(bad))
	}
}

// recorder is a fake backend that remembers every add it was asked for.
type recorder struct {
	*fakeBackend
	mu   sync.Mutex
	adds []netip.Prefix
}

func (r *recorder) Apply(ctx context.Context, set string, ops []Op) error {
	r.mu.Lock()
	for _, op := range ops {
		if op.Action == Add {
			r.adds = append(r.adds, op.Prefix)
		}
	}
	r.mu.Unlock()
	return r.fakeBackend.Apply(ctx, set, ops)
}

func (r *recorder) added(p netip.Prefix) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Contains(r.adds, p)
}

// A late joiner reads the allowlist before any ban: a ban covered by an
// entry, whose state the broker still holds (no keeper here to clear it),
// never reaches the kernel, not even for a moment, start after start.
func TestAllowLateJoinerBeforeAnyBan(t *testing.T) {
	_, url := startBroker(t, nil)
	pub := publisher(t, url)
	// The bans first, so that the broker holds their states before the
	// allow entry: what a broker without keeper would serve.
	for i := range 50 {
		publish(t, pub, wire.StateTopic("bl", netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), 32)), true, statePayload())
	}
	publish(t, pub, "bl/ban/203.0.113.1", true, statePayload())
	publish(t, pub, "vallum/allow/198.51.100.0/24", true, allowPayload("office"))
	for i := range 10 {
		rec := &recorder{fakeBackend: newFake()}
		r := startBridge(t, url, rec, func(o *Options) {
			o.ClientID = "late-" + string(rune('a'+i))
			o.Guard = guard.New(nil, 0, 0)
		})
		r.waitSynced(t, 1)
		wantMembers(t, rec.fakeBackend, "bl", "203.0.113.1")
		for j := range 50 {
			if p := netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(j)}), 32); rec.added(p) {
				t.Fatalf("start %d: %s was added to the kernel set before the allowlist was known", i, p)
			}
		}
		r.shutdown(t)
	}
}

// An entry deleted while the bridge was away is dropped at its next sync:
// the broker's allowlist is the allowlist.
func TestAllowDeletedWhileAwayIsDropped(t *testing.T) {
	_, url := startBroker(t, nil)
	pub := publisher(t, url)
	publish(t, pub, "vallum/allow/198.51.100.0/24", true, allowPayload("office"))
	f := newFake()
	g := guard.New(nil, 0, 0)
	r := startBridge(t, url, f, func(o *Options) { o.Guard = g })
	r.waitSynced(t, 1)
	if g.Check(netip.MustParsePrefix("198.51.100.7/32")) == nil {
		t.Fatal("the guard does not hold the allow entry read at the sync")
	}
	// What the bridge would hold had it missed a delete: an entry the
	// broker no longer has.
	r.b.dec.allow.set(netip.MustParsePrefix("192.0.2.0/24"), true)
	r.b.dec.allowChanged()
	if g.Check(netip.MustParsePrefix("192.0.2.1/32")) == nil {
		t.Fatal("the stale entry is not in the guard")
	}
	if err := r.b.Resync(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.waitSynced(t, 2)
	eventually(t, func() bool { return g.Check(netip.MustParsePrefix("192.0.2.1/32")) == nil }, "the stale entry dropped")
	if g.Check(netip.MustParsePrefix("198.51.100.7/32")) == nil {
		t.Error("the entry the broker holds was dropped too")
	}
	publish(t, pub, "bl/add", false, "192.0.2.1\n198.51.100.7")
	wantMembers(t, f, "bl", "192.0.2.1")
}

// denyAllow refuses every subscription to the allowlist, as a broker whose
// ACL predates it does.
type denyAllow struct{ auth.AllowHook }

func (h *denyAllow) ID() string { return "deny-allow" }
func (h *denyAllow) OnACLCheck(_ *mochi.Client, topic string, _ bool) bool {
	return !strings.HasPrefix(topic, wire.AllowPrefix)
}

// A broker that refuses the allowlist does not stop the sync.
func TestAllowRefusedSubscriptionStillSyncs(t *testing.T) {
	_, url := startBroker(t, &denyAllow{})
	pub := publisher(t, url)
	publish(t, pub, "bl/ban/203.0.113.1", true, statePayload())
	f := newFake()
	r := startBridge(t, url, f, nil)
	r.waitSynced(t, 1)
	wantMembers(t, f, "bl", "203.0.113.1")
}

// The allowlist read is kept in the data dir: a restarted host refuses
// the bans it covers before it has even connected, and its first sync
// drops what the broker no longer holds.
func TestAllowKeptAcrossRestarts(t *testing.T) {
	if !allowFull {
		t.Skip("the MIPS router builds keep no file (allow_small.go)")
	}
	_, url := startBroker(t, nil)
	pub := publisher(t, url)
	publish(t, pub, "vallum/allow/198.51.100.0/24", true, allowPayload("office"))
	publish(t, pub, "vallum/allow/2001:db8::/48", true, allowPayload("v6"))
	file := t.TempDir() + "/allow"
	r := startBridge(t, url, newFake(), func(o *Options) { o.AllowFile = file })
	r.waitSynced(t, 1)
	r.shutdown(t)
	if b, err := os.ReadFile(file); err != nil || string(b) != "198.51.100.0/24\n2001:db8::/48\n" && string(b) != "2001:db8::/48\n198.51.100.0/24\n" {
		t.Fatalf("allow file = %q, %v; want both entries", b, err)
	}

	publish(t, pub, "vallum/allow/198.51.100.0/24", true, "") // deleted while the host is down
	g := guard.New(nil, 0, 0)
	b, err := New(Options{Lists: []List{{Root: "bl"}}, Broker: url, ClientID: "restarted", Guard: g, AllowFile: file, Create: true, QoS: 1,
		Logger: slog.New(slog.DiscardHandler)}, newFake())
	if err != nil {
		t.Fatal(err)
	}
	if g.Check(netip.MustParsePrefix("198.51.100.7/32")) == nil || g.Check(netip.MustParsePrefix("2001:db8::1/128")) == nil {
		t.Fatal("before its first sync, the restarted bridge's guard lets covered bans through")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	defer func() { cancel(); <-done }()
	eventually(t, func() bool { return g.Check(netip.MustParsePrefix("198.51.100.7/32")) == nil }, "the entry deleted meanwhile dropped at the first sync")
	if g.Check(netip.MustParsePrefix("2001:db8::1/128")) == nil {
		t.Error("the entry still on the broker was dropped")
	}
	eventually(t, func() bool { b, _ := os.ReadFile(file); return string(b) == "2001:db8::/48\n" }, "the allow file rewritten")
}

// A broker that lost the list lost the allowlist with it: the host keeps
// the entries it knew, as it keeps its bans, until a sync finds the list
// again; then what the broker holds is the allowlist again.
func TestAllowKeptWhileTheListIsLost(t *testing.T) {
	_, url := startBroker(t, nil)
	pub := publisher(t, url)
	epochs := writeEpochs(t, map[string]string{"bl": epoch1}) // synced before; the broker holds no record now
	g := guard.New(nil, 0, 0)
	logs := &logBuf{}
	b, err := New(Options{Lists: []List{{Root: "bl"}}, Broker: url, ClientID: "lost", Guard: g, EpochFile: epochs,
		Create: true, QoS: 1, Logger: slog.New(slog.NewTextHandler(logs, nil))}, newFake())
	if err != nil {
		t.Fatal(err)
	}
	b.dec.allow.set(netip.MustParsePrefix("198.51.100.0/24"), true) // known from before, as from its file
	b.allowChanged()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	defer func() { cancel(); <-done }()
	eventually(t, func() bool { return b.stats.Syncs.Load() >= 1 }, "the first sync")
	if g.Check(netip.MustParsePrefix("198.51.100.7/32")) == nil {
		t.Fatal("the entry was dropped although the list was found lost")
	}
	if !strings.Contains(logs.String(), "keeping the shared allowlist entries it no longer holds") {
		t.Errorf("the kept entries are not logged:\n%s", logs.String())
	}
	publish(t, pub, wire.RecordTopic("bl"), true, record(epoch1)) // the keeper restored the list
	eventually(t, func() bool { return g.Check(netip.MustParsePrefix("198.51.100.7/32")) == nil }, "the entry dropped once the list is back")
}
