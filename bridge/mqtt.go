package bridge

import (
	"context"
	"errors"
	"fmt"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/vallum/vallum/bridge/mqttconn"
)

// ErrRefused reports that the broker refused the connection for a reason a
// retry cannot fix: bad credentials, not authorised, bad client id.
var ErrRefused = errors.New("broker refused the connection")

// clientOptions builds the paho options: those of every vallum client
// (mqttconn.ClientOptions), and the bridge's handlers. Messages are
// acknowledged by the worker once the kernel has them.
func (b *Bridge) clientOptions() *mqtt.ClientOptions {
	o := b.opts
	co := b.brokers.ClientOptions(mqttconn.Client{
		ID: o.ClientID, Username: o.Username, Password: o.Password, TLS: o.TLS,
		ConnectTimeout: o.ConnectTimeout,
		Reconnecting: func() {
			b.stats.Reconnects.Add(1)
			b.log.Info("reconnecting", "brokers", urlList(b.brokers.Order()))
		},
	})
	if presenceBuilt {
		b.setWill(co)
	}
	co.SetMessageChannelDepth(uint(o.QueueLen)).
		SetDefaultPublishHandler(b.onMessage).
		SetOnConnectHandler(b.onConnect).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			b.stats.Connected.Store(false)
			b.stats.Subscribed.Store(false)
			broker, _ := b.brokers.Current()
			b.log.Warn("disconnected", "broker", broker, "err", err)
		})
	return co
}

// connect makes the first connection (see mqttconn.Connect): a refusal
// that retrying cannot fix is returned as ErrRefused.
func (b *Bridge) connect(ctx context.Context, c mqtt.Client) error {
	err := mqttconn.Connect(ctx, c, func(err error, in time.Duration) {
		b.log.Warn("cannot connect, retrying", "brokers", urlList(b.brokers.URLs()), "in", in, "err", err)
	})
	if err != nil && ctx.Err() == nil {
		broker, _ := b.brokers.Current()
		return fmt.Errorf("%w: %s: %v", ErrRefused, broker, err)
	}
	return err
}

// onMessage runs on paho's router goroutine for every message, in order.
// It parses the message and queues its ops. When the queue is full it
// waits: that stops reading from the connection, and TCP and QoS 1 flow
// control slow the broker down, so memory stays bounded at any input rate
// and nothing is dropped. The worker empties a full queue in milliseconds,
// far within the keepalive.
func (b *Bridge) onMessage(_ mqtt.Client, m mqtt.Message) {
	b.stats.Messages.Add(1)
	gen := b.opts.Guard.Gen() // before decode checks its adds (see Guard.Gen)
	it := b.dec.decode(m.Topic(), m.Payload(), m.Retained())
	it.ack, it.gen = m.Ack, gen
	// Bound the decoded ops waiting for the kernel, not only the number of
	// messages: a message can carry 70,000 addresses.
	it.weight = min(int64(len(it.ops)), b.opts.MaxPending)
	b.app.enqueue(it)
}

// onConnect subscribes on every connection (nothing resubscribes by
// itself) and starts a sync of the lists to the broker's state.
func (b *Bridge) onConnect(c mqtt.Client) {
	b.stats.Connected.Store(true)
	if presenceBuilt {
		b.connects.Add(1)
	}
	broker, _ := b.brokers.Current()
	b.log.Info("connected", "broker", broker, "client", b.opts.ClientID)
	b.stop.spawn(func() { b.startSync(c) })
	if b.opts.ConfirmSync > 0 {
		b.confirming.Store(len(b.brokers.URLs()) > 1) // see eventComment
		b.stop.spawn(func() { b.confirmSync(c) })
	}
}
