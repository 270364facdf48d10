package mqttconn

import (
	"slices"
	"testing"

	"github.com/eclipse/paho.mqtt.golang/packets"
)

// What paho resumes after a dial is what the store held at the dial: a
// packet the new connection's OnConnect stores meanwhile is that
// connection's to send, not a leftover to send again.
func TestResumeStoreListsWhatTheDialFound(t *testing.T) {
	s := newResumeStore()
	s.Open()
	pub := func() packets.ControlPacket { return packets.NewControlPacket(packets.Publish) }
	s.Put("o.1", pub())
	s.Put("o.2", pub())
	s.dialled()
	s.Put("o.3", pub()) // the OnConnect of the new connection
	s.Del("o.1")        // acknowledged meanwhile
	got := s.All()
	slices.Sort(got)
	if !slices.Equal(got, []string{"o.2"}) {
		t.Errorf("All() after the dial = %v, want [o.2]: held at the dial and still held", got)
	}
	if s.Get("o.3") == nil {
		t.Error("Get(o.3) = nil: the new packet must stay in the store until acknowledged")
	}
	s.dialled() // the next connection resumes it
	if got := s.All(); len(got) != 2 {
		t.Errorf("All() after the next dial = %v, want o.2 and o.3", got)
	}
}
