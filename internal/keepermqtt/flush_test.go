package keepermqtt

import (
	"log/slog"
	"testing"
)

// burstKeeper holds a burst (Unflushed) from its first message until
// Flush, as internal/keeper does with event messages of many lines.
type burstKeeper struct {
	fakeKeeper
	pending bool
	flushes int
}

func (k *burstKeeper) Message(topic string, payload []byte) { k.pending = true }
func (k *burstKeeper) Unflushed() bool                      { return k.pending }
func (k *burstKeeper) Flush()                               { k.pending = false; k.flushes++ }

// A keeper that holds the acknowledgements of a burst as many as the
// broker lets it have unacknowledged (maxUnacked; mosquitto's
// max_inflight_messages) cuts and acknowledges them right away: the broker
// sends nothing more until it does. Before, the flush took itself for a
// stale timer (the time it compared was read a moment before the due time
// it compared with) and the worker spun, holding 1,000 acknowledgements
// for good: a keeper fed 1,000 bursts on mosquitto stopped at 986,000 bans.
func TestFlushAtTheBrokersWindow(t *testing.T) {
	a := &Adapter{log: slog.New(slog.DiscardHandler), acks: make(chan pending, 2*maxUnacked), done: make(chan struct{})}
	k := &burstKeeper{}
	w := newWorker(a, k)
	acked := 0
	for range maxUnacked {
		w.k.Message("bl/add", nil)
		w.ackLive(func() { acked++ })
	}
	if k.flushes != 1 || len(w.unacked) != 0 {
		t.Fatalf("after %d burst messages held: %d flushes, %d acknowledgements still held; want 1 flush, none held",
			maxUnacked, k.flushes, len(w.unacked))
	}
	for len(a.acks) > 0 {
		(<-a.acks).ack()
	}
	if acked != maxUnacked {
		t.Errorf("%d acknowledged, want %d", acked, maxUnacked)
	}
}
