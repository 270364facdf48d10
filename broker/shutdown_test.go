package broker

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// A subscriber that stops reading (a stuck process, or an attacker) must
// not hold the hub's shutdown: mochi writes a DISCONNECT to it with no
// deadline, behind its writer blocked on the full socket. Seen in CI as a
// test binary that hung for 10 minutes in Server.Close.
func TestShutdownWithAClientThatStoppedReading(t *testing.T) {
	b, err := New(Options{Listeners: []Listener{local(KindTCP)}, AllowAnonymous: true, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	stop := runBroker(t, b)
	t.Cleanup(stop)
	u := url(t, b, KindTCP)

	subscribeAndStopReading(t, u, "flood/#", 0)

	// 400 messages of 64 KiB: 25 MiB, more than the sockets on both sides
	// can buffer, so the broker's writer to "stuck" blocks.
	pub := mustDial(t, u, withID("pub"))
	payload := strings.Repeat("x", 64<<10)
	const n = 400
	for i := 0; i < n; i++ {
		pub.pub(t, "flood/x", 1, false, payload)
	}
	var last, same int64
	deadline := time.Now().Add(10 * time.Second)
	for same < 5 { // the bytes sent stop growing: the writer is blocked
		if time.Now().After(deadline) {
			t.Fatal("the broker kept sending to a client that reads nothing for 10 s")
		}
		time.Sleep(100 * time.Millisecond)
		sent := atomic.LoadInt64(&b.srv.Info.BytesSent)
		if sent == last {
			same++
		} else {
			last, same = sent, 0
		}
	}
	if last >= n*int64(len(payload)) {
		t.Fatalf("the broker sent %d bytes, everything: the client was not stuck, the test proves nothing", last)
	}
	stop() // fails the test if Run does not return within 10 s
}

// subscribeAndStopReading connects a client that subscribes to filter,
// then reads nothing more once a message came: its handler blocks, so
// paho stops reading the connection, until the test ends.
func subscribeAndStopReading(t *testing.T, u, filter string, qos byte) {
	t.Helper()
	release := make(chan struct{})
	stuck := paho.NewClient(paho.NewClientOptions().AddBroker(u).SetClientID("stuck").SetProtocolVersion(4).
		SetOrderMatters(true).SetAutoReconnect(false).
		SetDefaultPublishHandler(func(paho.Client, paho.Message) { <-release }))
	if tok := stuck.Connect(); wait(t, tok, "connect") != nil {
		t.Fatal(tok.Error())
	}
	t.Cleanup(func() {
		close(release)
		stuck.Disconnect(0)
	})
	if tok := stuck.Subscribe(filter, qos, nil); wait(t, tok, "subscribe") != nil {
		t.Fatal(tok.Error())
	}
}
