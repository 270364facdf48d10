// Package retained reads every retained message a broker holds under a
// filter, and knows when it has them all: `vallum list` and the test lab
// read the ban states this way.
package retained

import (
	"errors"
	"fmt"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// Timing bounds a read.
type Timing struct {
	Stall time.Duration // no message for this long (since the SUBACK when none came): not the end
	Quiet time.Duration // without a marker: a pause this long after a message ends the read
	Limit time.Duration // the whole read
}

// The errors of a read that ended short of the end.
var (
	TimedOut = errors.New("retained read: not complete in time")                // Timing.Limit passed
	Closed   = errors.New("retained read: connection closed")                   // the connection was lost
	Stalled  = errors.New("retained read: the broker stopped sending")          // nothing came for Timing.Stall, and not the marker
	Empty    = errors.New("retained read: nothing came and there is no marker") // an empty filter or a slow broker
)

// Reader follows one read.
type Reader struct {
	// Marked: the read ends at the marker; false: at the first pause.
	Marked bool

	cl   mqtt.Client
	got  mqtt.MessageHandler
	back chan struct{} // the marker came back; nil: no marker

	mu    sync.Mutex
	since time.Time // the SUBACK
	last  time.Time // the latest message; zero until one comes
}

// Subscribe subscribes cl to filter at qos and hands every message to got
// (on paho's goroutine). The broker sends the retained messages as the
// subscription is made; to know that all have come, Subscribe then
// publishes a marker to itself on the topic marker and Wait waits for it: a
// broker delivers one client's messages in order, so every message sent
// before the marker has arrived when it does. Where marker is "" or the
// broker refuses it, Wait ends at the first pause instead (Marked false).
func Subscribe(cl mqtt.Client, filter string, qos byte, marker string, got mqtt.MessageHandler) (*Reader, error) {
	return SubscribeAll(cl, map[string]byte{filter: qos}, marker, got)
}

// SubscribeAll is Subscribe to several filters in one SUBSCRIBE, each at
// its QoS (a list's per-ban state, manifest and chunks).
func SubscribeAll(cl mqtt.Client, filters map[string]byte, marker string, got mqtt.MessageHandler) (*Reader, error) {
	r := &Reader{cl: cl, got: got}
	if marker != "" {
		back := make(chan struct{}, 1)
		if Granted(cl.Subscribe(marker, 1, func(mqtt.Client, mqtt.Message) {
			select {
			case back <- struct{}{}:
			default:
			}
		})) {
			r.back, r.Marked = back, true
		}
	}
	if err := wait(cl.SubscribeMultiple(filters, r.onMessage)); err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	r.mu.Lock()
	r.since = time.Now() // the messages come after the SUBACK: count from here
	r.mu.Unlock()
	if r.back != nil {
		// Its PUBACK comes after the flood of messages, which may take
		// long: what counts is the marker coming back (or the connection
		// lost).
		cl.Publish(marker, 1, false, "end")
	}
	return r, nil
}

func (r *Reader) onMessage(c mqtt.Client, m mqtt.Message) {
	r.got(c, m)
	r.mu.Lock()
	r.last = time.Now()
	r.mu.Unlock()
}

// Wait waits for the marker to come back or, without one, for a pause in
// the messages. TimedOut, Closed, Stalled or Empty say why it ended short.
func (r *Reader) Wait(tm Timing) error {
	deadline := time.After(tm.Limit)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-r.back:
			return nil
		case <-deadline:
			return TimedOut
		case <-tick.C:
		}
		// How long the broker has sent nothing: since the SUBACK when
		// nothing came yet.
		r.mu.Lock()
		some, idle := !r.last.IsZero(), time.Since(r.last)
		if !some {
			idle = time.Since(r.since)
		}
		r.mu.Unlock()
		switch {
		case !r.cl.IsConnectionOpen():
			return Closed
		case r.back == nil && some && idle > tm.Quiet:
			return nil
		case r.back == nil && idle > tm.Stall:
			return Empty
		case idle > tm.Stall:
			return Stalled
		}
	}
}

// Granted reports whether the broker granted a subscription (a refusal is
// no error to paho: it is a 0x80 in the SUBACK).
func Granted(tok mqtt.Token) bool {
	if wait(tok) != nil {
		return false
	}
	st, ok := tok.(*mqtt.SubscribeToken)
	if !ok {
		return false
	}
	for _, code := range st.Result() {
		if code == 0x80 {
			return false
		}
	}
	return true
}

func wait(t mqtt.Token) error {
	if !t.WaitTimeout(15 * time.Second) {
		return fmt.Errorf("timed out")
	}
	return t.Error()
}
