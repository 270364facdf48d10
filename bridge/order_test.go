package bridge

import (
	"testing"
	"time"

	"github.com/vallum/vallum/internal/wire"
)

// A NATS cluster delivers each topic on its own: the events of a ban and
// its unban, made a moment apart, can come after both states, in either
// order. The states keep their order and decide.
func TestLateEventsDoNotUndoTheState(t *testing.T) {
	_, url := startBroker(t, nil)
	f := newFake()
	r := startBridge(t, url, f, nil)
	r.waitSynced(t, 1)
	pub := publisher(t, url)
	state := string(wire.EncodeState(wire.State{At: time.Now()}))
	// Banned then lifted; its add event comes last.
	publish(t, pub, "bl/ban/203.0.113.1", true, state)
	publish(t, pub, "bl/ban/203.0.113.1", true, "")
	publish(t, pub, "bl/del", false, "203.0.113.1")
	publish(t, pub, "bl/add", false, "203.0.113.1")
	// Lifted then banned again; its del event comes last.
	publish(t, pub, "bl/ban/203.0.113.2", true, "")
	publish(t, pub, "bl/ban/203.0.113.2", true, state)
	publish(t, pub, "bl/add", false, "203.0.113.2")
	publish(t, pub, "bl/del", false, "203.0.113.2")
	// An event with no state (a vallumd-style publisher) still applies.
	publish(t, pub, "bl/add", false, "203.0.113.3")
	wantMembers(t, f, "bl", "203.0.113.2", "203.0.113.3")
	if e, _ := f.entry("bl", "203.0.113.2/32"); e.Comment != CommentState {
		t.Errorf("203.0.113.2 comment %q, want %q: a sync could not remove it after an unban", e.Comment, CommentState)
	}
}
