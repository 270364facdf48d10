package bridge

import (
	"context"
	"errors"
	"fmt"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// ErrRefused reports that the broker refused the connection for a reason a
// retry cannot fix: bad credentials, not authorised, bad client id.
var ErrRefused = errors.New("broker refused the connection")

// clientOptions builds the paho options. Messages are taken in order by one
// handler that never waits for the kernel (OrderMatters with a blocking
// handler would stall the connection) and acknowledged by the worker once
// the kernel has them (AutoAckDisabled).
func (b *Bridge) clientOptions() *mqtt.ClientOptions {
	o := b.opts
	co := mqtt.NewClientOptions().
		SetClientID(o.ClientID).
		SetUsername(o.Username).
		SetPassword(o.Password).
		SetTLSConfig(o.TLS).
		SetCustomOpenConnectionFn(b.brokers.open).
		SetCleanSession(false).
		SetProtocolVersion(mqtt311).
		SetOrderMatters(true).
		SetAutoAckDisabled(true).
		SetKeepAlive(30 * time.Second).
		SetPingTimeout(10 * time.Second).
		SetConnectTimeout(o.ConnectTimeout).
		SetAutoReconnect(true).
		SetMaxReconnectInterval(30 * time.Second).
		SetMessageChannelDepth(uint(o.QueueLen)).
		SetDefaultPublishHandler(b.onMessage).
		SetOnConnectHandler(b.onConnect).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			b.stats.Connected.Store(false)
			b.stats.Subscribed.Store(false)
			broker, _ := b.brokers.current()
			b.log.Warn("disconnected", "broker", broker, "err", err)
		}).
		SetReconnectingHandler(func(_ mqtt.Client, co *mqtt.ClientOptions) {
			b.stats.Reconnects.Add(1)
			b.brokers.rotate(co)
			b.log.Info("reconnecting", "brokers", urlList(co.Servers))
		})
	co.Servers = b.brokers.order()
	return co
}

// connect makes the first connection, retrying with backoff until ctx ends.
// A refusal that retrying cannot fix is returned at once, so that a wrong
// password at start is a fatal error and not a silent loop.
func (b *Bridge) connect(ctx context.Context, c mqtt.Client) error {
	delay := 500 * time.Millisecond
	for {
		tok := c.Connect()
		select {
		case <-tok.Done():
		case <-ctx.Done():
			// A CONNECT still in flight would otherwise complete after
			// we return and leave a client nobody disconnects: the
			// embedded broker's Close then waits for it forever.
			// Disconnect waits for the attempt (at most the connect
			// timeout) and ends it.
			c.Disconnect(0)
			return ctx.Err()
		}
		err := tok.Error()
		if err == nil {
			return nil
		}
		if refusedForGood(err) {
			broker, _ := b.brokers.current()
			return fmt.Errorf("%w: %s: %v", ErrRefused, broker, err)
		}
		b.log.Warn("cannot connect, retrying", "brokers", urlList(b.brokers.urls), "in", delay, "err", err)
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return ctx.Err()
		}
		delay = min(2*delay, 30*time.Second)
	}
}

func refusedForGood(err error) bool {
	return errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword) ||
		errors.Is(err, packets.ErrorRefusedNotAuthorised) ||
		errors.Is(err, packets.ErrorRefusedIDRejected) ||
		errors.Is(err, packets.ErrorRefusedBadProtocolVersion)
}

// onMessage runs on paho's router goroutine for every message, in order.
// It parses the message and queues its ops. When the queue is full it
// waits: that stops reading from the connection, and TCP and QoS 1 flow
// control slow the broker down, so memory stays bounded at any input rate
// and nothing is dropped. The worker empties a full queue in milliseconds,
// far within the keepalive.
func (b *Bridge) onMessage(_ mqtt.Client, m mqtt.Message) {
	b.stats.Messages.Add(1)
	it := b.dec.decode(m.Topic(), m.Payload(), m.Retained())
	it.ack = m.Ack
	// Bound the decoded ops waiting for the kernel, not only the number of
	// messages: a message can carry 70,000 addresses.
	it.weight = min(int64(len(it.ops)), b.opts.MaxPending)
	b.app.enqueue(it)
}

// onConnect subscribes on every connection (nothing resubscribes by
// itself) and starts a sync of the lists to the broker's state.
func (b *Bridge) onConnect(c mqtt.Client) {
	b.stats.Connected.Store(true)
	broker, _ := b.brokers.current()
	b.log.Info("connected", "broker", broker, "client", b.opts.ClientID)
	b.stop.spawn(func() { b.startSync(c) })
	if b.opts.ConfirmSync > 0 {
		b.brokers.confirming.Store(len(b.brokers.urls) > 1) // see eventComment
		b.stop.spawn(func() { b.confirmSync(c) })
	}
}
