package mqttconn

import (
	"context"
	"crypto/tls"
	"errors"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// Client is who a client is at the broker, and how it connects.
type Client struct {
	ID, Username, Password string
	TLS                    *tls.Config
	ConnectTimeout         time.Duration
	// Reconnecting, when set, runs before each reconnection attempt,
	// before the brokers are turned.
	Reconnecting func()
}

// ClientOptions returns the paho options the bridge and the keeper share,
// on the brokers of l: a persistent session, MQTT 3.1.1, messages taken in
// order by one handler that must never block (OrderMatters with a blocking
// handler would stall the connection) and acknowledged by the caller once
// handled (AutoAckDisabled), and reconnections that start with the next
// broker. The caller sets its handlers: DefaultPublishHandler,
// OnConnectHandler and ConnectionLostHandler.
func (l *Brokers) ClientOptions(c Client) *mqtt.ClientOptions {
	co := mqtt.NewClientOptions().
		SetClientID(c.ID).
		SetUsername(c.Username).
		SetPassword(c.Password).
		SetTLSConfig(c.TLS).
		SetCustomOpenConnectionFn(l.Open).
		SetStore(l.store).
		SetCleanSession(false).
		SetProtocolVersion(mqtt311).
		SetOrderMatters(true).
		SetAutoAckDisabled(true).
		SetKeepAlive(30 * time.Second).
		SetPingTimeout(10 * time.Second).
		SetConnectTimeout(c.ConnectTimeout).
		SetAutoReconnect(true).
		SetMaxReconnectInterval(30 * time.Second).
		SetReconnectingHandler(func(_ mqtt.Client, co *mqtt.ClientOptions) {
			if c.Reconnecting != nil {
				c.Reconnecting()
			}
			l.rotate(co)
		})
	co.Servers = l.Order()
	return co
}

// mqtt311 is set explicitly. Otherwise paho, when a broker's CONNACK does
// not come in time, tries that broker again with MQTT 3.1 and then every
// next broker with 3.1 too, which NATS refuses: a stuck first node made the
// whole list fail.
const mqtt311 = 4

// Connect makes the first connection, retrying with backoff until ctx
// ends; retrying is told of each failure it retries. A refusal that
// retrying cannot fix (bad credentials, not authorised, bad client id) is
// returned at once, as paho gave it, so that a wrong password at start is a
// fatal error and not a silent loop. It returns nil once connected, and
// ctx.Err() when ctx ends first.
func Connect(ctx context.Context, c mqtt.Client, retrying func(err error, in time.Duration)) error {
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
			return err
		}
		retrying(err, delay)
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
