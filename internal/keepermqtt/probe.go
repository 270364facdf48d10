package keepermqtt

import (
	"crypto/rand"
	"encoding/hex"
	"time"
)

// A broker can stop sending to the keeper for good while the connection
// stays up: mosquitto 2.0.11 (Debian 12's) miscounts its window of
// unacknowledged messages (its send quota; fixed in 2.0.13) when messages
// wait in a client's queue, as a burst whose acknowledgements the keeper
// holds makes them wait, and can leave one queued with nothing in flight.
// Then nothing ever comes again on that connection: no acknowledgement is
// due that would move the queue, and the keeper, all acknowledged, waits
// for input. Measured: a feed of 1,000 events of 1,000 bans stopped at
// 986,000 and 996,000, the rest queued on the broker for minutes.
//
// So the keeper checks that the broker still delivers: once its input
// pauses (probeIdle; at least every probeEvery while it is quiet), it
// publishes a probe to its marker topic. A broker sends one client's
// messages in order, so the probe comes back after whatever the broker
// holds for the keeper; if neither it nor anything else comes within the
// sync timeout, the adapter drops the connection, and the broker sends
// what it held again on the next one, from the persistent session (for
// mosquitto, with its window counted afresh).
const (
	probeIdle  = 2 * time.Second
	probeEvery = time.Minute
)

// probe is a probe on its way; nonce tells it from a read's marker.
type probe struct {
	nonce string
	sent  time.Time
}

// checkFlow sends a probe when one is due, and drops the connection of a
// broker that answered none within the sync timeout. Reads have their
// own check (checkStall).
func (w *worker) checkFlow() {
	if !w.settled || w.rd != nil {
		return
	}
	now, last := time.Now(), time.Unix(0, w.a.lastIn.Load())
	if w.probe != nil {
		if now.Sub(last) < w.a.o.SyncTimeout || now.Sub(w.probe.sent) < w.a.o.SyncTimeout {
			return
		}
		c := w.a.current()
		w.a.log.Error("the broker stopped sending to the keeper: nothing received within the sync timeout, not even its own probe; reconnecting",
			"broker", w.a.brokerName(), "timeout", w.a.o.SyncTimeout,
			"hint", "mosquitto before 2.0.13 loses count of its in-flight messages: upgrade it")
		w.probe = nil
		w.a.brokers.Drop(c)
		return
	}
	if now.Sub(last) < probeIdle {
		return // messages come: the broker sends
	}
	if !last.After(w.answered) && now.Sub(w.probed) < probeEvery {
		return // nothing came since the last probe came back
	}
	nonce := make([]byte, 8)
	rand.Read(nonce)
	w.probe, w.probed = &probe{nonce: "probe " + hex.EncodeToString(nonce), sent: now}, now
	w.a.cl.Publish(w.marker, 1, false, w.probe.nonce) // paho keeps it across a reconnection
}

// answer notes a marker that came back: the probe's answer, if it is.
func (w *worker) answer(payload []byte) {
	if w.probe != nil && string(payload) == w.probe.nonce {
		w.probe, w.answered = nil, time.Now()
	}
}
