package keepermqtt

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/vallum/vallum/internal/wire"
)

// worker is the one goroutine that calls the keeper's Filters, Retained,
// Settle and Message.
type worker struct {
	a      *Adapter
	k      Keeper
	marker string        // this client's marker topic
	first  chan struct{} // closed at the first Settle

	settled bool
	rd      *read           // the read in progress; nil when none
	begun   bool            // the read's first retained message or marker came
	held    []held          // live messages that came during a read
	events  map[string]bool // the filters without wildcards outside vallum/: event topics

	// unacked: the acknowledgements held for the keeper's Flush (a
	// burst), since firstHeld; lastHeld: the last message held.
	unacked             []func()
	firstHeld, lastHeld time.Time
	flushCost           time.Duration // the last Flush's
}

// read is one read of the retained messages, ended by the marker that
// carries its nonce. The nonce matters: with a persistent session, the
// marker of a read that a killed keeper never saw come back can wait in
// the session and would end the next read before the lists came.
type read struct {
	nonce string
	conn  *sessConn
	start time.Time
	n     int // retained messages read
}

type held struct {
	topic   string
	payload []byte
	stale   bool // a value the read has superseded
}

func newWorker(a *Adapter, k Keeper) *worker {
	w := &worker{a: a, k: k, marker: wire.MarkerTopic(a.o.ClientID), first: make(chan struct{}), events: map[string]bool{}}
	for _, f := range k.Filters() {
		if !strings.ContainsAny(f, "+#") && !strings.HasPrefix(f, wire.Namespace+"/") {
			w.events[f] = true
		}
	}
	return w
}

func (w *worker) run(ctx context.Context) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	flush := time.NewTimer(time.Hour)
	defer flush.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-w.a.fatal:
			return err
		case <-tick.C:
			w.checkStall()
		case <-flush.C:
			w.flush()
		case <-w.a.in.ready:
			for _, e := range w.a.in.take() {
				if err := w.handle(e); err != nil {
					return err
				}
			}
		}
		if len(w.unacked) > 0 {
			now := time.Now()
			flush.Reset(max(0, w.flushDue(now).Sub(now)))
		}
	}
}

func (w *worker) handle(e event) error {
	if e.msg == nil {
		w.connected(e.conn)
		return nil
	}
	m := e.msg
	switch {
	case m.Topic() == w.marker:
		m.Ack()
		if w.rd != nil && string(m.Payload()) == w.rd.nonce {
			w.begun = true
			return w.settle()
		}
	case w.settled:
		w.k.Message(m.Topic(), m.Payload())
		w.ackLive(m.Ack)
	case m.Retained():
		w.k.Retained(m.Topic(), m.Payload())
		if w.rd != nil {
			w.rd.n++
		}
		w.begun = true
		w.supersede(m.Topic())
		m.Ack()
	default:
		// Live, during a read: handed to Message after Settle. It is
		// acknowledged now, as the retained messages are: the broker
		// sends the rest of the read only while its window of
		// unacknowledged messages has room (mosquitto's default is 20).
		// A keeper killed before Settle loses these few events; the
		// state it reads again at its next start.
		if w.begun || w.isEvent(m.Topic()) {
			w.held = append(w.held, held{topic: m.Topic(), payload: m.Payload()})
		}
		m.Ack()
	}
	return nil
}

// A value (a ban's state, a record) that comes before the read's first
// retained message is older than the read, which holds the topic's value
// as the subscription was made, or its absence: it is dropped. At a
// restart these are the session's old messages, the keeper's own echoes
// among them, which the keeper of the new process cannot tell from a
// client's states. Events are kept: each one counts. A broker sends one
// client's messages in order, so a value that comes after the read began
// is newer than the read; on a broker that does not (a retained copy of
// the topic comes after it), the retained copy supersedes it.
// Reports (wire.ReportTopic) are events too: each one counts.
func (w *worker) isEvent(topic string) bool {
	return w.events[topic] || strings.HasPrefix(topic, wire.ReportPrefix)
}

// supersede marks the held values of topic stale: a retained copy of it
// came after them.
func (w *worker) supersede(topic string) {
	if w.isEvent(topic) {
		return // a retained event is junk, not a value: the events stand
	}
	for i := range w.held {
		if w.held[i].topic == topic {
			w.held[i].stale = true
		}
	}
}

// connected starts a read unless the broker kept the session of a keeper
// that has read the lists already: then its subscriptions are there and
// the events of the gap come from the session.
func (w *worker) connected(c *sessConn) {
	if w.settled && c.sessionPresent() {
		return
	}
	if w.settled {
		w.a.log.Warn("the broker did not keep the keeper's session (restarted without it?): reading the lists again",
			"broker", c.broker)
	}
	w.settled = false
	w.startRead(c)
}

// startRead subscribes to the keeper's filters and to the marker topic,
// then publishes a marker with a fresh nonce. The broker sends the
// retained messages of each subscription before the SUBACK's successors,
// and one client's messages in order, so the marker comes back after them
// all.
func (w *worker) startRead(c *sessConn) {
	nonce := make([]byte, 8)
	rand.Read(nonce)
	w.rd = &read{nonce: hex.EncodeToString(nonce), conn: c, start: time.Now()}
	w.a.lastIn.Store(time.Now().UnixNano())
	filters := map[string]byte{w.marker: 1}
	for _, f := range w.k.Filters() {
		filters[f] = 1
	}
	// The new read supersedes every value held from an earlier one.
	w.begun = false
	for i := range w.held {
		w.held[i].stale = w.held[i].stale || !w.isEvent(w.held[i].topic)
	}
	cl, marker, payload := w.a.cl, w.marker, w.rd.nonce
	go func() { // off the worker: the retained messages come before the SUBACK is seen
		tok := cl.SubscribeMultiple(filters, nil)
		if !tok.WaitTimeout(w.a.o.SyncTimeout) || tok.Error() != nil {
			return // the stall check or the reconnection starts the read again
		}
		for f, code := range tok.(*mqtt.SubscribeToken).Result() {
			if code == 0x80 && f == wire.AllowFilter { // an ACL that predates it: keep the lists all the same
				w.a.log.Warn("the broker refused the keeper the shared allowlist: the hosts still follow it, but the states it covers stay on the broker; let the keeper's login read vallum/allow/#")
				continue
			}
			if code == 0x80 {
				w.a.failed(fmt.Errorf("the broker refused the keeper's subscription to %s: its login must read LIST/#, and read and write %s, %s, %s and %s (README, vallum keeper; contrib/mosquitto/vallum.acl); on NATS, max_ack_pending times %d subscriptions must stay under 65,535 (contrib/nats/nats.conf)",
					f, wire.RecordPrefix+"LIST", wire.ManifestPrefix+"LIST", wire.ChunkPrefix+"LIST/+/+", marker, len(filters)))
				return
			}
		}
		cl.Publish(marker, 1, false, payload)
	}()
}

// settle ends a read: the keeper has every retained message.
func (w *worker) settle() error {
	if err := w.k.Settle(); err != nil {
		return fmt.Errorf("keeper: %w", err)
	}
	w.a.log.Info("keeper read the lists", "broker", w.rd.conn.broker, "retained", w.rd.n,
		"live", len(w.held), "took", time.Since(w.rd.start).Round(time.Millisecond))
	w.settled, w.rd = true, nil
	for _, h := range w.held {
		if !h.stale {
			w.k.Message(h.topic, h.payload)
		}
	}
	w.held = nil
	select {
	case <-w.first:
	default:
		close(w.first)
	}
	return nil
}

// checkStall drops the connection of a read that received nothing for
// the sync timeout (a broker that never sends the marker back, one that
// stopped sending): paho connects again, to the next broker if any.
func (w *worker) checkStall() {
	if w.rd == nil {
		return
	}
	idle := time.Since(time.Unix(0, w.a.lastIn.Load()))
	if idle < w.a.o.SyncTimeout {
		return
	}
	w.a.log.Error("keeper read stalled: nothing received within the sync timeout; reconnecting",
		"broker", w.rd.conn.broker, "timeout", w.a.o.SyncTimeout,
		"hint", "the broker must let this client publish and subscribe to "+w.marker)
	w.a.lastIn.Store(time.Now().UnixNano())
	w.a.brokers.Drop(w.rd.conn)
}

// A burst (internal/keeper burst.go) is on the broker only once the
// keeper's cut is: the messages that brought it are acknowledged after
// that cut, or a keeper killed meanwhile would lose them. The worker
// holds their acknowledgements, and those of every message after them (in
// order), until the messages pause for flushQuiet or the last Flush's cost
// (one cut for the messages of one import, not one each) or flushWait
// passed (or flushRest
// times the last Flush's cost, if more: the cuts of a growing list then
// take at most a fifth of the time), or the broker's window of
// unacknowledged messages may be full (maxUnacked).
const (
	flushQuiet = 50 * time.Millisecond
	flushWait  = time.Second
	flushRest  = 4
	maxUnacked = 1000
)

// ackLive acknowledges a live message once the broker has what the
// keeper made of it.
func (w *worker) ackLive(ack func()) {
	if len(w.unacked) == 0 && !w.k.Unflushed() {
		w.a.ackAfter(ack)
		return
	}
	now := time.Now()
	if len(w.unacked) == 0 {
		w.firstHeld = now
	}
	w.unacked, w.lastHeld = append(w.unacked, ack), now
	if len(w.unacked) >= maxUnacked {
		w.flush()
	}
}

// flushDue is when the held acknowledgements are to be sent, seen at now:
// now itself once the broker's window may be full. One reading of the
// clock for both sides of the comparison: with a second one, a flush at
// the window took itself for a stale timer, always, and the keeper held
// the window's acknowledgements for good, the broker sending nothing more.
func (w *worker) flushDue(now time.Time) time.Time {
	if len(w.unacked) >= maxUnacked {
		return now
	}
	due := w.lastHeld.Add(max(flushQuiet, w.flushCost))
	if last := w.firstHeld.Add(max(flushWait, flushRest*w.flushCost)); last.Before(due) {
		return last
	}
	return due
}

// flush has the keeper publish its bursts, then acknowledges the messages
// held, after the cut's publishes (the acker keeps their order).
func (w *worker) flush() {
	if len(w.unacked) == 0 {
		return
	}
	began := time.Now()
	if began.Before(w.flushDue(began)) {
		return // a stale timer; the loop arms it again
	}
	w.k.Flush()
	w.flushCost = time.Since(began)
	if w.k.Unflushed() { // not cut (the list's chunks changed meanwhile): later
		w.firstHeld = time.Now()
		return
	}
	for _, ack := range w.unacked {
		w.a.ackAfter(ack)
	}
	w.unacked = nil
}
