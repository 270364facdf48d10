package broker

import (
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestJoinReturnsMemory: a client that subscribed to more than
// joinFreeBytes of retained messages at QoS 1 makes the broker return
// memory once, when it has acknowledged the last; one that read a small
// retained message, or the same big set at QoS 0, makes none.
func TestJoinReturnsMemory(t *testing.T) {
	b := start(t, Options{Listeners: []Listener{local(KindTCP)}, AllowAnonymous: true})
	var returns atomic.Int32
	b.joins.mu.Lock()
	b.joins.free = func() { returns.Add(1) }
	b.joins.mu.Unlock()

	pub := mustDial(t, url(t, b, KindTCP))
	chunk := strings.Repeat("x", 512<<10)
	const n = joinFreeBytes/(512<<10) + 2
	for i := range n {
		pub.pub(t, "big/"+strconv.Itoa(i), 1, true, chunk)
	}
	pub.pub(t, "small/1", 1, true, "x")

	read := func(filter string, qos byte, count int) {
		c := mustDial(t, url(t, b, KindTCP))
		c.sub(t, filter, qos)
		for range count {
			c.next(t, 10*time.Second)
		}
	}
	read("small/#", 1, 1)
	read("big/#", 0, n)
	time.Sleep(200 * time.Millisecond) // a return would come now: the last ack is in
	if got := returns.Load(); got != 0 {
		t.Fatalf("%d returns of memory after a small join and a QoS 0 one, want none", got)
	}
	read("big/#", 1, n)
	deadline := time.Now().Add(10 * time.Second)
	for returns.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := returns.Load(); got != 1 {
		t.Errorf("%d returns of memory once a joiner acknowledged %d MiB of retained messages, want 1", got, n/2)
	}
}
