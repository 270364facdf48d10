package keepermqtt

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// startBroker runs an in-process mochi on addr ("127.0.0.1:0" for any
// port) and returns it with its address. A new broker on the same address
// is a broker that lost every session and retained message.
func startBroker(t *testing.T, addr string) (*mochi.Server, string, func()) {
	t.Helper()
	caps := mochi.NewDefaultServerCapabilities()
	caps.MaximumInflight, caps.ReceiveMaximum = 65535, 65535
	srv := mochi.New(&mochi.Options{InlineClient: true, Capabilities: caps, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		t.Fatal(err)
	}
	tcp := listeners.NewTCP(listeners.Config{ID: "t", Address: addr})
	if err := srv.AddListener(tcp); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	stop := sync.OnceFunc(func() { srv.Close() })
	t.Cleanup(stop)
	return srv, tcp.Address(), stop
}

// fakeKeeper records what the adapter hands it. Settle publishes a record
// through the sink, as the real keeper does.
type fakeKeeper struct {
	sink interface{ Retain(string, []byte) error }

	mu       sync.Mutex
	retained []string // topic=payload, in order, since the last Settle
	settles  int
	live     []string
	calls    []string // "R", "S", "M", in order
}

func (k *fakeKeeper) Filters() []string {
	return []string{"bl", "bl/add", "bl/del", "bl/ban/#", "vallum/keeper/bl"}
}

func (k *fakeKeeper) Retained(topic string, payload []byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.retained = append(k.retained, topic+"="+string(payload))
	k.calls = append(k.calls, "R")
}

func (k *fakeKeeper) Settle() error {
	k.mu.Lock()
	k.settles++
	k.calls = append(k.calls, "S")
	k.mu.Unlock()
	return k.sink.Retain("vallum/keeper/bl", []byte(`{"epoch":"0123456789abcdef","since":1}`))
}

func (k *fakeKeeper) Message(topic string, payload []byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.live = append(k.live, topic+"="+string(payload))
	k.calls = append(k.calls, "M")
}

func (k *fakeKeeper) Unflushed() bool { return false }

func (k *fakeKeeper) Flush() {}

func (k *fakeKeeper) Run(ctx context.Context) error { <-ctx.Done(); return nil }

func (k *fakeKeeper) snapshot() (retained []string, settles int, live []string, calls []string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.retained), k.settles, slices.Clone(k.live), slices.Clone(k.calls)
}

// runAdapter runs an adapter with a fake keeper against addr until stop.
func runAdapter(t *testing.T, addr string) (k *fakeKeeper, stop func()) {
	return runAdapterSync(t, addr, 5*time.Second)
}

func runAdapterSync(t *testing.T, addr string, syncTimeout time.Duration) (k *fakeKeeper, stop func()) {
	t.Helper()
	u, _ := url.Parse("tcp://" + addr)
	a, err := New(Options{Brokers: []*url.URL{u}, ClientID: "keeper-test", SyncTimeout: syncTimeout})
	if err != nil {
		t.Fatal(err)
	}
	k = &fakeKeeper{sink: a}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, k) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return within 10 s of its context's end")
		}
	}
	t.Cleanup(stop)
	return k, stop
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func publish(t *testing.T, srv *mochi.Server, topic, payload string, retain bool) {
	t.Helper()
	if err := srv.Publish(topic, []byte(payload), retain, 1); err != nil {
		t.Fatal(err)
	}
}

// The keeper gets every retained message of its filters, then Settle, then
// the live messages, in that order; what it publishes reaches the broker.
func TestReadSettleLive(t *testing.T) {
	srv, addr, _ := startBroker(t, "127.0.0.1:0")
	for i := range 500 {
		publish(t, srv, fmt.Sprintf("bl/ban/198.18.%d.%d", i/256, i%256), "state", true)
	}
	publish(t, srv, "other/ban/192.0.2.1", "not mine", true)
	k, _ := runAdapter(t, addr)
	eventually(t, "Settle", func() bool { _, s, _, _ := k.snapshot(); return s == 1 })
	ret, _, _, calls := k.snapshot()
	if len(ret) != 500 {
		t.Fatalf("%d retained messages before Settle, want 500", len(ret))
	}
	if i := slices.Index(calls, "S"); i != 500 {
		t.Fatalf("Settle came after %d calls, want after the 500 retained", i)
	}
	for _, r := range ret {
		if strings.HasPrefix(r, "other/") {
			t.Fatalf("got %s, outside the filters", r)
		}
	}
	publish(t, srv, "bl/add", "203.0.113.7", false)
	eventually(t, "the live event", func() bool { _, _, live, _ := k.snapshot(); return slices.Contains(live, "bl/add=203.0.113.7") })
	// The record Settle published is retained on the broker.
	eventually(t, "the record on the broker", func() bool {
		return len(srv.Topics.Messages("vallum/keeper/bl")) == 1
	})
}

// Events published while the keeper is stopped wait in its session and
// come as live messages at its next start, after its read.
func TestStoppedKeeperLosesNoEvent(t *testing.T) {
	srv, addr, _ := startBroker(t, "127.0.0.1:0")
	k, stop := runAdapter(t, addr)
	eventually(t, "Settle", func() bool { _, s, _, _ := k.snapshot(); return s == 1 })
	stop()
	for i := range 50 {
		publish(t, srv, "bl/add", fmt.Sprintf("203.0.113.%d", i), false)
	}
	k2, _ := runAdapter(t, addr)
	eventually(t, "the 50 events of the gap", func() bool { _, _, live, _ := k2.snapshot(); return len(live) >= 50 })
	_, settles, live, calls := k2.snapshot()
	if settles != 1 || calls[slices.Index(calls, "S")+1] != "M" {
		t.Fatalf("calls %v: want the read, one Settle, then the events", calls)
	}
	for i := range 50 {
		if !slices.Contains(live, fmt.Sprintf("bl/add=203.0.113.%d", i)) {
			t.Errorf("event %d of the gap lost", i)
		}
	}
}

// A broker that comes back without the keeper's session (restarted
// without persistence) makes the keeper read the lists again and Settle
// again: that is where it finds a lost list and restores it.
func TestLostSessionReadsAgain(t *testing.T) {
	srv, addr, closeSrv := startBroker(t, "127.0.0.1:0")
	publish(t, srv, "bl/ban/198.18.0.1", "state", true)
	k, _ := runAdapter(t, addr)
	eventually(t, "Settle", func() bool { _, s, _, _ := k.snapshot(); return s == 1 })
	closeSrv()
	srv2, _, _ := startBroker(t, addr)
	publish(t, srv2, "bl/ban/198.18.0.2", "state", true)
	eventually(t, "a second Settle", func() bool { _, s, _, _ := k.snapshot(); return s == 2 })
	ret, _, _, _ := k.snapshot()
	if !slices.Contains(ret, "bl/ban/198.18.0.2=state") {
		t.Fatalf("the second read missed the new broker's state: %v", ret)
	}
	// And the session is live again: an event reaches the keeper.
	publish(t, srv2, "bl/del", "198.18.0.2", false)
	eventually(t, "a live event on the new broker", func() bool {
		_, _, live, _ := k.snapshot()
		return slices.Contains(live, "bl/del=198.18.0.2")
	})
}

// A marker that does not carry the read's nonce (another client's, or one
// left in the session by a keeper killed mid-read) does not end the read.
func TestForeignMarkerDoesNotEndRead(t *testing.T) {
	srv, addr, _ := startBroker(t, "127.0.0.1:0")
	// Held back until the test lets it go: the read cannot end before.
	gate := make(chan struct{})
	hook := &gateHook{topic: "vallum/sync/keeper-test", gate: gate}
	if err := srv.AddHook(hook, nil); err != nil {
		t.Fatal(err)
	}
	k, _ := runAdapter(t, addr)
	eventually(t, "the read's marker held back", func() bool { return hook.held() })
	publish(t, srv, "vallum/sync/keeper-test", "end", false) // a forged marker
	time.Sleep(200 * time.Millisecond)                       // room for a wrong Settle to happen
	if _, s, _, _ := k.snapshot(); s != 0 {
		t.Fatal("a marker without the read's nonce ended the read")
	}
	close(gate)
	eventually(t, "Settle on the real marker", func() bool { _, s, _, _ := k.snapshot(); return s == 1 })
}

// gateHook holds the first client publish to topic until gate is closed.
type gateHook struct {
	mochi.HookBase
	topic string
	gate  chan struct{}
	mu    sync.Mutex
	saw   bool
}

func (h *gateHook) ID() string { return "gate" }

func (h *gateHook) Provides(b byte) bool { return b == mochi.OnPublish }

func (h *gateHook) OnPublish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.TopicName != h.topic || cl.Net.Inline {
		return pk, nil
	}
	h.mu.Lock()
	h.saw = true
	h.mu.Unlock()
	<-h.gate
	return pk, nil
}

func (h *gateHook) held() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.saw
}

// States that waited in the session of a stopped keeper are older than
// what its read at the next start finds: they are not handed to Message
// after Settle, where the keeper would take them, its own old echoes
// among them, for a client's newer states. (Seen on mosquitto: a keeper
// killed mid-stream and restarted published a lifted ban again.)
func TestSessionStatesOlderThanTheRead(t *testing.T) {
	srv, addr, _ := startBroker(t, "127.0.0.1:0")
	k, stop := runAdapter(t, addr)
	eventually(t, "Settle", func() bool { _, s, _, _ := k.snapshot(); return s == 1 })
	stop()
	publish(t, srv, "bl/ban/198.18.0.9", "lifted later", true)
	publish(t, srv, "bl/ban/198.18.0.9", "", true)
	publish(t, srv, "bl/ban/198.18.0.10", "v1", true)
	publish(t, srv, "bl/ban/198.18.0.10", "v2", true)
	publish(t, srv, "bl/add", "203.0.113.1", false)
	k2, _ := runAdapter(t, addr)
	eventually(t, "the event of the gap", func() bool { _, _, live, _ := k2.snapshot(); return len(live) > 0 })
	publish(t, srv, "bl/ban/198.18.0.11", "new", true)
	eventually(t, "a state made after the read", func() bool {
		_, _, live, _ := k2.snapshot()
		return slices.Contains(live, "bl/ban/198.18.0.11=new")
	})
	ret, _, live, _ := k2.snapshot()
	if !slices.Contains(ret, "bl/ban/198.18.0.10=v2") || slices.Contains(ret, "bl/ban/198.18.0.9=lifted later") {
		t.Errorf("read %v: want 198.18.0.10=v2 and no 198.18.0.9", ret)
	}
	live = slices.DeleteFunc(live, func(s string) bool { return strings.HasPrefix(s, "vallum/keeper/") }) // Settle's own record
	if want := []string{"bl/add=203.0.113.1", "bl/ban/198.18.0.11=new"}; !slices.Equal(live, want) {
		t.Errorf("live messages %v, want %v: the session's old states must not come after the read", live, want)
	}
}

// A read whose marker never comes back (a broker that lost it, an ACL that
// drops it) is given up after the sync timeout: the adapter reconnects and
// reads again, and the old marker, should it come at last, ends nothing.
func TestStalledReadReconnects(t *testing.T) {
	srv, addr, _ := startBroker(t, "127.0.0.1:0")
	drop := &dropFirstHook{topic: "vallum/sync/keeper-test"}
	if err := srv.AddHook(drop, nil); err != nil {
		t.Fatal(err)
	}
	k, _ := runAdapterSync(t, addr, time.Second)
	eventually(t, "Settle after a reconnection", func() bool { _, s, _, _ := k.snapshot(); return s == 1 })
	if n := drop.count(); n != 1 {
		t.Fatalf("%d markers dropped, want the first one", n)
	}
}

// dropFirstHook drops the first publish to topic, unacknowledged.
type dropFirstHook struct {
	mochi.HookBase
	topic string
	mu    sync.Mutex
	n     int
}

func (h *dropFirstHook) ID() string { return "drop-first" }

func (h *dropFirstHook) Provides(b byte) bool { return b == mochi.OnPublish }

func (h *dropFirstHook) OnPublish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if pk.TopicName == h.topic && !cl.Net.Inline && h.n == 0 {
		h.n++
		return pk, packets.ErrRejectPacket
	}
	return pk, nil
}

func (h *dropFirstHook) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n
}
