// Package retained reads every retained message a broker holds under a
// filter, and knows when it has them all: `vallum list` and the test lab
// read the ban states this way.
package retained

import (
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

// Stop says why a read ended short of the end.
type Stop int

// Why a read stops short.
const (
	TimedOut Stop = iota + 1 // Timing.Limit passed
	Closed                   // the connection was lost
	Stalled                  // nothing came for Timing.Stall, and not the marker
	Empty                    // no marker, and no message at all for Timing.Stall: an empty filter or a slow broker
)

// Error is a read that did not reach the end; N messages had come.
type Error struct {
	Stop Stop
	N    int
}

func (e *Error) Error() string {
	why := "the broker stopped sending"
	switch e.Stop {
	case TimedOut:
		why = "not complete in time"
	case Closed:
		why = "connection closed"
	case Empty:
		why = "nothing came"
	}
	return fmt.Sprintf("retained read: %s after %d messages", why, e.N)
}

// Reader follows one read.
type Reader struct {
	cl   mqtt.Client
	back chan struct{} // the marker came back; nil: no marker

	mu    sync.Mutex
	n     int
	since time.Time // the SUBACK
	last  time.Time // the latest message; zero until one comes
}

// Subscribe subscribes cl to filter at qos and hands every message to got
// (on paho's goroutine). The broker sends the retained messages as the
// subscription is made; to know that all have come, Subscribe then
// publishes a marker to itself on the topic marker and Wait waits for it: a
// broker delivers one client's messages in order, so every message sent
// before the marker has arrived when it does. Where marker is "" or the
// broker refuses it, Wait ends at the first pause instead (see Marked).
func Subscribe(cl mqtt.Client, filter string, qos byte, marker string, got mqtt.MessageHandler) (*Reader, error) {
	r := &Reader{cl: cl}
	if marker != "" {
		back := make(chan struct{}, 1)
		if granted(cl.Subscribe(marker, 1, func(mqtt.Client, mqtt.Message) {
			select {
			case back <- struct{}{}:
			default:
			}
		})) {
			r.back = back
		}
	}
	err := wait(cl.Subscribe(filter, qos, func(c mqtt.Client, m mqtt.Message) {
		got(c, m)
		r.mu.Lock()
		r.n++
		r.last = time.Now()
		r.mu.Unlock()
	}))
	if err != nil {
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

// Marked reports whether the read ends at the marker rather than at a pause.
func (r *Reader) Marked() bool { return r.back != nil }

// Wait waits for the marker to come back or, without one, for a pause in
// the messages. An *Error says why it ended short.
func (r *Reader) Wait(tm Timing) error {
	deadline := time.After(tm.Limit)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-r.back:
			return nil
		case <-deadline:
			n, _, _ := r.progress()
			return &Error{TimedOut, n}
		case <-tick.C:
		}
		n, idle, some := r.progress()
		switch {
		case !r.cl.IsConnectionOpen():
			return &Error{Closed, n}
		case r.back == nil && some && idle > tm.Quiet:
			return nil
		case r.back == nil && idle > tm.Stall:
			return &Error{Empty, n}
		case idle > tm.Stall:
			return &Error{Stalled, n}
		}
	}
}

// progress returns the messages so far, and how long the broker has sent
// none (since the SUBACK when none came yet).
func (r *Reader) progress() (n int, idle time.Duration, some bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last.IsZero() {
		return 0, time.Since(r.since), false
	}
	return r.n, time.Since(r.last), true
}

// granted reports whether the broker granted a subscription.
func granted(tok mqtt.Token) bool {
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
