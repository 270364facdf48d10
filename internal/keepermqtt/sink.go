package keepermqtt

import (
	"context"
	"errors"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// ackWindow bounds the publishes and acknowledgements waiting for the
// broker: paho has 65,535 message ids, and a broker's window is finite.
const ackWindow = 4096

// pending is a publish to wait for, or an acknowledgement to send once
// every publish queued before it is done.
type pending struct {
	tok   mqtt.Token
	topic string
	ack   func()
}

// errStopped is Retain's error once the adapter has stopped.
var errStopped = errors.New("keeper: stopped")

// syncWithin bounds Sync's wait. A broker that refuses a publish may not
// say so: the hub out of disk disconnects an MQTT 3.1.1 client (paho)
// at each, and paho sends it again at each reconnection.
var syncWithin = 30 * time.Second

// Sync waits until the broker acknowledged every publish made before it
// (keeper.Syncer): a cut's chunks and manifest, before the keeper deletes
// the generation before. paho sends again what a lost connection left
// unacknowledged in no order, so that, without it, the deletions could
// land first, and the chunks never (the hub out of disk): the list gone.
// It fails if a publish failed or a connection was made since the last
// Sync (paho then completes the tokens of what it sends again as if the
// broker had acknowledged it; the keeper calls Sync before a cut's
// publishes too, as a mark), or the broker did not acknowledge them
// within syncWithin.
func (a *Adapter) Sync() error {
	limit := time.NewTimer(syncWithin)
	defer limit.Stop()
	all := make(chan struct{})
	select {
	case a.acks <- pending{ack: func() { close(all) }}: // after everything queued
	case <-a.done:
		return errStopped
	case <-limit.C:
		return errNotAcked
	}
	select {
	case <-all:
	case <-a.done:
		return errStopped
	case <-limit.C:
		return errNotAcked
	}
	failed, dials := a.pubFailed.Load(), a.dials.Load()
	if a.synced.Swap(failed) != failed || a.syncedDials.Swap(dials) != dials {
		return errPubFailed
	}
	return nil
}

var (
	errNotAcked  = errors.New("keeper: the broker did not acknowledge the publishes (refused them?)")
	errPubFailed = errors.New("keeper: a publish failed, or the connection was lost")
)

// Retain publishes a retained message at QoS 1; an empty payload deletes
// the retained message. It does not wait for the broker: the message a
// publish answers is acknowledged after it (see ackAfter). While the
// connection is down paho keeps the publish and sends it on reconnection.
func (a *Adapter) Retain(topic string, payload []byte) error {
	tok := a.cl.Publish(topic, 1, true, payload)
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			return err
		}
	default:
	}
	select {
	case a.acks <- pending{tok: tok, topic: topic}:
		return nil
	case <-a.done:
		return errStopped
	}
}

// ackAfter acknowledges a message once the broker has acknowledged every
// publish made so far, the keeper's answers to that message among them: a
// keeper killed before that gets the message again.
func (a *Adapter) ackAfter(ack func()) {
	select {
	case a.acks <- pending{ack: ack}:
	case <-a.done:
	}
}

// acker waits for the publishes in the order they were made and sends
// each acknowledgement when the publishes before it are done.
func (a *Adapter) acker(ctx context.Context) {
	defer a.ackers.Done()
	for {
		var p pending
		select {
		case p = <-a.acks:
		case <-ctx.Done():
			return
		}
		if p.tok != nil {
			select {
			case <-p.tok.Done():
			case <-ctx.Done():
				return
			}
			if err := p.tok.Error(); err != nil {
				// Not on the broker: the keeper's own copy still holds
				// it, and the next read after a reconnection puts it
				// right. Loud, since hosts miss it until then.
				a.log.Error("keeper publish failed", "topic", p.topic, "err", err)
				a.pubFailed.Add(1)
			}
		}
		if p.ack != nil {
			p.ack()
		}
	}
}

// finishWithin is how long a stopping keeper waits for the broker to
// acknowledge what it published, before it disconnects regardless: what
// is left is sent again from the session at the next start.
const finishWithin = 3 * time.Second

// finish lets the acker send what completes within finishWithin, then
// disconnects.
func (a *Adapter) finish(stopAcks context.CancelFunc) {
	limit := time.NewTimer(finishWithin)
	defer limit.Stop()
	all := make(chan struct{})
	select {
	case a.acks <- pending{ack: func() { close(all) }}: // after everything queued
		select {
		case <-all:
		case <-limit.C:
		}
	case <-limit.C:
	}
	stopAcks()
	a.ackers.Wait()
	a.cl.Disconnect(250)
}
