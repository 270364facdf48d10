package broker

import (
	"runtime/debug"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// joinFreer returns the memory of a big late join to the system once the
// joiner has acknowledged every retained message it was sent. mochi sends
// each retained message as a copy of its own (packets.Packet.Copy), held
// until acknowledged: a host reading 1,000,000 bans as chunks held 49 MB
// more on the hub, and the runtime keeps such freed pages for minutes
// (the hub holding an imported million was at 289 MB after a join, the
// live heap 216 MB). A return is a whole collection: each waits ten times
// as long as the last took, as the keeper's (internal/keeper free.go).
type joinFreer struct {
	mqtt.HookBase
	mu      sync.Mutex
	sent    map[string]int // client id -> retained bytes sent at QoS 1 or 2 since its inflight was last empty
	next    time.Time      // when the next return may come
	freeing bool           // a return is under way
	free    func()         // debug.FreeOSMemory; something else in tests
}

const (
	// joinFreeBytes: a joiner sent this much retained payload makes the
	// hub return memory once it has acknowledged it all (about 170,000
	// bans as chunks; the hub of 100,000 holds less than 100 MB anyway).
	joinFreeBytes = 8 << 20
	joinFreePace  = 10
)

func newJoinFreer() *joinFreer {
	return &joinFreer{sent: map[string]int{}, free: debug.FreeOSMemory}
}

func (*joinFreer) ID() string { return "vallum-join-free" }

func (*joinFreer) Provides(b byte) bool {
	return b == mqtt.OnRetainPublished || b == mqtt.OnQosComplete || b == mqtt.OnDisconnect
}

func (f *joinFreer) OnRetainPublished(cl *mqtt.Client, pk packets.Packet) {
	if pk.FixedHeader.Qos == 0 {
		return // not held until acknowledged, and no acknowledgement
	}
	f.mu.Lock()
	f.sent[cl.ID] += len(pk.Payload)
	f.mu.Unlock()
}

// OnQosComplete returns memory when cl acknowledged the last of a big
// retained delivery; it runs in cl's own reading goroutine, and other
// clients' acknowledgements do not wait for the return.
func (f *joinFreer) OnQosComplete(cl *mqtt.Client, _ packets.Packet) {
	f.mu.Lock()
	n := f.sent[cl.ID]
	if n == 0 || cl.State.Inflight.Len() > 0 {
		f.mu.Unlock()
		return
	}
	delete(f.sent, cl.ID)
	began := time.Now()
	due := n >= joinFreeBytes && !began.Before(f.next) && !f.freeing
	f.freeing = f.freeing || due
	free := f.free
	f.mu.Unlock()
	if !due {
		return
	}
	free()
	end := time.Now()
	f.mu.Lock()
	f.freeing, f.next = false, end.Add(joinFreePace*end.Sub(began))
	f.mu.Unlock()
}

func (f *joinFreer) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	f.mu.Lock()
	delete(f.sent, cl.ID)
	f.mu.Unlock()
}
