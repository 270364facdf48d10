package broker

import (
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// A subscriber that stops reading (a stuck host, or an attacker with a
// host's login) must not stall the hub for everyone else. mochi writes to
// a client holding that client's lock, with no deadline, and every
// publisher whose message goes to it takes the same lock for a packet id:
// once the stuck client's socket was full, every publish to its topics
// hung, each publisher's connection with it (and, inside the hub, the
// keeper's own publishes). The hub closes a connection whose writes make
// no progress for write_stall.
func TestStuckSubscriberDoesNotStallOthers(t *testing.T) {
	for _, kind := range []string{KindTCP, KindWS} {
		t.Run(kind, func(t *testing.T) { stalledSubscriber(t, kind) })
	}
}

func stalledSubscriber(t *testing.T, kind string) {
	const stall = time.Second
	b, err := New(Options{Listeners: []Listener{local(kind)}, AllowAnonymous: true, Logger: testLogger(t),
		Limits: Limits{WriteStall: stall}})
	if err != nil {
		t.Fatal(err)
	}
	stop := runBroker(t, b)
	t.Cleanup(stop)
	u := url(t, b, kind)

	subscribeAndStopReading(t, u, "flood/#", 1)
	other := mustDial(t, u, withID("other"))
	other.sub(t, "flood/#", 1)

	// 25 MiB to a client that reads none of it: more than the sockets on
	// both sides buffer. Published without waiting: a publisher stuck
	// behind the stuck client must not stall the test itself.
	pub := mustDial(t, u, withID("pub"))
	payload := strings.Repeat("x", 64<<10)
	var toks []paho.Token
	for range 400 {
		toks = append(toks, pub.Publish("flood/x", 1, false, payload))
	}
	// Every publish is acknowledged, and the reader that keeps up gets
	// every message, within a few stalls: the stuck client was closed.
	deadline := time.Now().Add(20 * stall)
	for i, tok := range toks {
		if !tok.WaitTimeout(time.Until(deadline)) {
			t.Fatalf("publish %d of 400 not acknowledged after %v: the hub stalled behind a client that reads nothing", i+1, 20*stall)
		}
	}
	for i := range 400 {
		if m := other.next(t, time.Until(deadline)); m.topic != "flood/x" {
			t.Fatalf("message %d: %q", i, m.topic)
		}
	}
	if n := b.ref.counts()[refWriteStall]; n == 0 {
		t.Errorf("refusals %q: 0, want the stuck client counted", refWriteStall)
	}
}
