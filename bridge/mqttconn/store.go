package mqttconn

import (
	"sync"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// resumeStore is paho's memory store, except that what it lists for a
// resume (All) is only what it held when the connection was dialled.
//
// paho (1.5.1, eclipse-paho/paho.mqtt.golang#703) calls the OnConnect
// handler as soon as the connection is up and lists the store for its
// resume only after that. The bridge's OnConnect subscribes and publishes
// its sync marker at once, so resume found those new packets, sent them a
// second time and set their DUP bit while the writer was sending them: a
// data race under -race, and a SUBSCRIBE sent twice with one packet id,
// which mochi answers with 0x91. Packets stored after the dial belong to
// the new connection, which sends them itself.
type resumeStore struct {
	*mqtt.MemoryStore
	mu   sync.Mutex
	snap map[string]bool // keys held at the last dial; nil: all
}

func newResumeStore() *resumeStore { return &resumeStore{MemoryStore: mqtt.NewMemoryStore()} }

// dialled notes what the store holds as a connection is dialled.
func (s *resumeStore) dialled() {
	snap := map[string]bool{}
	for _, k := range s.MemoryStore.All() {
		snap[k] = true
	}
	s.mu.Lock()
	s.snap = snap
	s.mu.Unlock()
}

// All lists the keys held at the last dial that are still held.
func (s *resumeStore) All() []string {
	all := s.MemoryStore.All()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.snap == nil {
		return all
	}
	out := all[:0]
	for _, k := range all {
		if s.snap[k] {
			out = append(out, k)
		}
	}
	return out
}

var _ mqtt.Store = (*resumeStore)(nil)
