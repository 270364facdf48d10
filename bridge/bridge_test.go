package bridge

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/vallum/vallum/internal/guard"
	"github.com/vallum/vallum/internal/mochiclose"
	"github.com/vallum/vallum/internal/wire"
)

// startBroker runs a real mochi broker on 127.0.0.1:0 for the test.
func startBroker(t testing.TB, hook mochi.Hook) (*mochi.Server, string) {
	t.Helper()
	// Inflight limits as the broker package sets them: mochi's defaults drop
	// QoS 1 messages to a subscriber with 8,192 unacknowledged.
	caps := mochi.NewDefaultServerCapabilities()
	caps.MaximumInflight, caps.ReceiveMaximum = 65535, 65535
	srv := mochi.New(&mochi.Options{InlineClient: true, Capabilities: caps, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if hook == nil {
		hook = new(auth.AllowHook)
	}
	if err := srv.AddHook(hook, nil); err != nil {
		t.Fatal(err)
	}
	tcp := listeners.NewTCP(listeners.Config{ID: "t", Address: "127.0.0.1:0"})
	if err := srv.AddListener(tcp); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mochiclose.Close(srv, mochiclose.Grace) })
	return srv, "tcp://" + tcp.Address()
}

type running struct {
	b    *Bridge
	stop context.CancelFunc
	done chan error
}

// startBridge runs a bridge on list "bl" (sets bl and bl6) until the test ends.
func startBridge(t testing.TB, url string, be Backend, mod func(*Options)) *running {
	t.Helper()
	o := Options{Lists: []List{{Root: "bl"}}, Broker: url, ClientID: "bridge-" + t.Name(), QoS: 1, Create: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if mod != nil {
		mod(&o)
	}
	b, err := New(o, be)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{b: b, stop: cancel, done: make(chan error, 1)}
	go func() { r.done <- b.Run(ctx) }()
	t.Cleanup(func() { r.shutdown(t) })
	return r
}

func (r *running) shutdown(t testing.TB) {
	r.stop()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Run returned %v, want nil on shutdown", err)
		}
		r.done <- nil
	case <-time.After(10 * time.Second):
		buf := make([]byte, 1<<20)
		t.Errorf("Run did not return within 10 s of cancel; goroutines:\n%s", buf[:runtime.Stack(buf, true)])
	}
}

func (r *running) waitSynced(t *testing.T, n int64) {
	t.Helper()
	eventually(t, func() bool { return r.b.stats.Syncs.Load() >= n }, "bridge sync %d", n)
}

func publisher(t *testing.T, url string) mqtt.Client {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID("pub-" + t.Name()))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publisher connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(50) })
	return c
}

func publish(t *testing.T, c mqtt.Client, topic string, retained bool, payload string) {
	t.Helper()
	if tok := c.Publish(topic, 1, retained, payload); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// eventually polls cond until it holds or 10 s pass.
func eventually(t *testing.T, cond func() bool, what string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for "+what, args...)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func wantMembers(t *testing.T, f *fakeBackend, set string, want ...string) {
	t.Helper()
	slices.Sort(want)
	deadline := time.Now().Add(10 * time.Second)
	for !slices.Equal(f.members(set), want) {
		if time.Now().After(deadline) {
			t.Fatalf("set %s = %v after 10 s, want %v", set, f.members(set), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestEventsUserFlow(t *testing.T) {
	_, url := startBroker(t, nil)
	f := newFake()
	r := startBridge(t, url, f, nil)
	r.waitSynced(t, 1)
	pub := publisher(t, url)
	publish(t, pub, "bl/add", false, "203.0.113.7")
	publish(t, pub, "bl/add", false, "2001:db8::7 timeout 600")
	publish(t, pub, "bl/add", false, "198.51.100.0/24\n203.0.113.9 timeout 3600\nnot-an-address")
	publish(t, pub, "bl", false, "192.0.2.55")
	publish(t, pub, "bl/del", false, "203.0.113.7")
	wantMembers(t, f, "bl", "192.0.2.55", "198.51.100.0/24", "203.0.113.9")
	wantMembers(t, f, "bl6", "2001:db8::7")
	if e, _ := f.entry("bl", "203.0.113.9/32"); e.Timeout != 3600 || e.Comment != CommentEvent {
		t.Errorf("entry 203.0.113.9 = %+v, want timeout 3600 and comment %q", e, CommentEvent)
	}
	if got := r.b.stats.Snapshot().Refused["bad_line"]; got != 1 {
		t.Errorf("refused bad_line = %d, want 1", got)
	}
}

func TestOrderOfAddAndDel(t *testing.T) {
	_, url := startBroker(t, nil)
	f := newFake()
	r := startBridge(t, url, f, nil)
	r.waitSynced(t, 1)
	pub := publisher(t, url)
	const n = 2000 // interleaved add/del of one address, and a second that ends added
	for i := range n {
		action := []string{"add", "del"}[i%2]
		pub.Publish("bl/"+action, 1, false, "192.0.2.1")
		pub.Publish("bl/"+[]string{"del", "add"}[i%2], 1, false, "192.0.2.2")
	}
	publish(t, pub, "bl/add", false, "192.0.2.3") // a fence: everything before it is in
	wantMembers(t, f, "bl", "192.0.2.2", "192.0.2.3")
	if f.applies >= n {
		t.Errorf("%d messages took %d backend calls, want batching", 2*n, f.applies)
	}
}

func TestGuardRefusesAndCounts(t *testing.T) {
	_, url := startBroker(t, nil)
	f := newFake()
	r := startBridge(t, url, f, func(o *Options) {
		o.Guard = guard.New([]netip.Prefix{netip.MustParsePrefix("198.51.100.10/32")}, 16, 48)
	})
	r.waitSynced(t, 1)
	pub := publisher(t, url)
	publish(t, pub, "bl/add", false, "0.0.0.0/0\n::/0\n127.0.0.1\n10.0.0.0/8\n198.51.100.0/24\n198.51.100.10\nfe80::1\n2001:db8::/32\n203.0.113.1")
	publish(t, pub, "bl/del", false, "127.0.0.1") // a delete of an allowed address is harmless and passes
	wantMembers(t, f, "bl", "203.0.113.1")
	wantMembers(t, f, "bl6")
	got := r.b.stats.Snapshot().Refused
	if got["too_broad"] != 4 || got["allowlisted"] != 4 {
		t.Errorf("refused = %v, want too_broad 4 (0/0, ::/0, /8, /32 v6) and allowlisted 4", got)
	}
}

func TestRetainedEventsAreIgnored(t *testing.T) {
	_, url := startBroker(t, nil)
	pub := publisher(t, url)
	// mochi acks a publish before it fans it out: wait for our own copy, or
	// a bridge subscribing meanwhile would rightly get it live too.
	fanned := make(chan struct{}, 1)
	if tok := pub.Subscribe("bl/add", 1, func(mqtt.Client, mqtt.Message) { fanned <- struct{}{} }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	publish(t, pub, "bl/add", true, "192.0.2.9") // retained junk, replayed on every subscribe
	select {
	case <-fanned:
	case <-time.After(5 * time.Second):
		t.Fatal("own publish never came back")
	}
	pub.Unsubscribe("bl/add").WaitTimeout(5 * time.Second)
	f := newFake()
	r := startBridge(t, url, f, nil)
	r.waitSynced(t, 1)
	publish(t, pub, "bl/add", false, "192.0.2.10")
	wantMembers(t, f, "bl", "192.0.2.10")
	if got := r.b.stats.Snapshot().Refused["retained_event"]; got != 1 {
		t.Errorf("refused retained_event = %d, want 1", got)
	}
}

func TestLateJoinSyncsStateAndRemovesStale(t *testing.T) {
	_, url := startBroker(t, nil)
	pub := publisher(t, url)
	now := time.Now()
	ban := func(p string, expires time.Time) {
		publish(t, pub, "bl/ban/"+p, true, string(wire.EncodeState(wire.State{At: now, Expires: expires, Reason: "test"})))
	}
	ban("203.0.113.1", now.Add(time.Hour))
	ban("203.0.113.2", time.Time{})
	ban("2001:db8::2", now.Add(time.Hour))
	ban("203.0.113.3", now.Add(-time.Minute)) // expired: must not be applied
	ban("203.0.113.4", now.Add(time.Hour))
	publish(t, pub, "bl/ban/203.0.113.4", true, "") // unbanned

	f := newFake()
	f.put("bl", IPv4, "192.0.2.200/32", CommentState)    // applied by vallum earlier, since unbanned
	f.put("bl", IPv4, "192.0.2.201/32", "")              // added by hand: kept
	f.put("bl", IPv4, "192.0.2.202/32", CommentEvent)    // from a legacy event: kept
	f.put("bl", IPv4, "203.0.113.3/32", CommentState)    // expired meanwhile
	f.put("bl6", IPv6, "2001:db8::99/128", CommentState) // stale v6
	r := startBridge(t, url, f, nil)
	r.waitSynced(t, 1)
	wantMembers(t, f, "bl", "192.0.2.201", "192.0.2.202", "203.0.113.1", "203.0.113.2")
	wantMembers(t, f, "bl6", "2001:db8::2")
	if e, _ := f.entry("bl", "203.0.113.1/32"); e.Timeout < 3590 || e.Timeout > 3600 || e.Comment != CommentState {
		t.Errorf("entry 203.0.113.1 = %+v, want about 3600 s left and comment %q", e, CommentState)
	}
	if e, _ := f.entry("bl", "203.0.113.2/32"); e.Timeout != 0 {
		t.Errorf("permanent ban has timeout %d, want 0", e.Timeout)
	}
}

func TestBadCredentialsAreFatal(t *testing.T) {
	_, url := startBroker(t, &denyHook{})
	b, err := New(Options{Lists: []List{{Root: "bl"}}, Broker: url, ClientID: "x", QoS: 1, Create: true}, newFake())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Run(ctx); !errors.Is(err, ErrRefused) {
		t.Fatalf("Run against a broker that refuses us = %v, want ErrRefused", err)
	}
}

func TestMissingSetWithoutCreateIsFatal(t *testing.T) {
	_, url := startBroker(t, nil)
	b, err := New(Options{Lists: []List{{Root: "bl"}}, Broker: url, ClientID: "x", QoS: 1}, newFake())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Run(context.Background()); !errors.Is(err, ErrNoSet) {
		t.Fatalf("Run with a missing set and no create = %v, want ErrNoSet", err)
	}
}

func TestOptionsValidate(t *testing.T) {
	err := Options{Lists: []List{{Root: "a/#"}, {Root: "x", Set4: "s", Set6: "s"}}, QoS: 3}.Validate()
	for _, want := range []string{"a/#", `set "s" is used`, "no broker URL", "no client id", "qos 3"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to mention %q", err, want)
		}
	}
}

type denyHook struct{ mochi.HookBase }

func (h *denyHook) ID() string { return "deny" }
func (h *denyHook) Provides(b byte) bool {
	return b == mochi.OnConnectAuthenticate || b == mochi.OnACLCheck
}
func (h *denyHook) OnConnectAuthenticate(*mochi.Client, packets.Packet) bool { return false }
func (h *denyHook) OnACLCheck(*mochi.Client, string, bool) bool              { return false }
