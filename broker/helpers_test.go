package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/crypto/bcrypt"

	"github.com/vallum/vallum/bridge/mqttconn"
)

// testLogger shows the broker's logs with -v only.
func testLogger(t *testing.T) *slog.Logger {
	t.Helper()
	if !testing.Verbose() {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// start runs a broker with o until the test ends, and checks that it
// stops cleanly.
func start(t *testing.T, o Options) *Broker {
	t.Helper()
	if o.Logger == nil {
		o.Logger = testLogger(t)
	}
	b, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	stop := runBroker(t, b)
	t.Cleanup(stop)
	return b
}

// runBroker runs b and returns a function that stops it and waits.
func runBroker(t *testing.T, b *Broker) func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	var stopped bool
	return func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v, want nil on shutdown", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Run did not return 10 s after cancel")
		}
	}
}

func local(kind string) Listener { return Listener{Kind: kind, Addr: "127.0.0.1:0"} }

// url returns the paho URL of b's first listener of kind.
func url(t *testing.T, b *Broker, kind string) string {
	t.Helper()
	for _, a := range b.Addrs() {
		if strings.HasPrefix(a, kind+"://") {
			if kind == KindTLS {
				return "ssl://" + strings.TrimPrefix(a, "tls://")
			}
			return a
		}
	}
	t.Fatalf("no %s listener in %v", kind, b.Addrs())
	return ""
}

// writeUsers writes a users file where every user's password is its name.
func writeUsers(t *testing.T, body string, names ...string) string {
	t.Helper()
	for _, n := range names {
		h, err := bcrypt.GenerateFromPassword([]byte(n), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		body = strings.ReplaceAll(body, "HASH("+n+")", string(h))
	}
	p := filepath.Join(t.TempDir(), "users.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

type msg struct {
	topic   string
	payload string
	retain  bool
}

type client struct {
	paho.Client
	msgs chan msg
}

type clientOpt func(*paho.ClientOptions)

func withUser(name, pw string) clientOpt {
	return func(o *paho.ClientOptions) { o.SetUsername(name).SetPassword(pw) }
}

func withSession(id string) clientOpt {
	return func(o *paho.ClientOptions) { o.SetClientID(id).SetCleanSession(false) }
}

func withID(id string) clientOpt {
	return func(o *paho.ClientOptions) { o.SetClientID(id) }
}

func withTLS(c *tls.Config) clientOpt {
	return func(o *paho.ClientOptions) { o.SetTLSConfig(c) }
}

// viaMqttconn dials as vallum's bridge does: its own dialler, buffered.
func viaMqttconn(o *paho.ClientOptions) { o.SetCustomOpenConnectionFn(mqttconn.Open) }

// dial connects an MQTT 3.1.1 client; every message it receives goes to
// its msgs channel.
func dial(t *testing.T, url string, opts ...clientOpt) (*client, error) {
	t.Helper()
	c := &client{msgs: make(chan msg, 1000)}
	o := paho.NewClientOptions().AddBroker(url).SetProtocolVersion(4).
		SetConnectTimeout(5 * time.Second).SetAutoReconnect(false).SetOrderMatters(true).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
			c.msgs <- msg{m.Topic(), string(m.Payload()), m.Retained()}
		})
	for _, f := range opts {
		f(o)
	}
	c.Client = paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, errors.New("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Disconnect(50) })
	return c, nil
}

func mustDial(t *testing.T, url string, opts ...clientOpt) *client {
	t.Helper()
	c, err := dial(t, url, opts...)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	return c
}

func wait(t *testing.T, tok paho.Token, what string) error {
	t.Helper()
	if !tok.WaitTimeout(5 * time.Second) {
		t.Fatalf("%s: timed out", what)
	}
	return tok.Error()
}

func (c *client) sub(t *testing.T, filter string, qos byte) {
	t.Helper()
	tok := c.Subscribe(filter, qos, nil)
	if err := wait(t, tok, "subscribe "+filter); err != nil {
		t.Fatalf("subscribe %s: %v", filter, err)
	}
	if code := tok.(*paho.SubscribeToken).Result()[filter]; code >= 0x80 {
		t.Fatalf("subscribe %s: refused with code %#x", filter, code)
	}
}

func (c *client) pub(t *testing.T, topic string, qos byte, retain bool, payload string) {
	t.Helper()
	if err := wait(t, c.Publish(topic, qos, retain, payload), "publish "+topic); err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
}

// next returns the next message, failing the test after timeout.
func (c *client) next(t *testing.T, timeout time.Duration) msg {
	t.Helper()
	select {
	case m := <-c.msgs:
		return m
	case <-time.After(timeout):
		t.Fatalf("no message within %v", timeout)
	}
	return msg{}
}

// until returns the first message on topic, skipping others.
func (c *client) until(t *testing.T, topic string, timeout time.Duration) msg {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		select {
		case m := <-c.msgs:
			if m.topic == topic {
				return m
			}
		case <-time.After(time.Until(deadline)):
			t.Fatalf("no message on %s within %v", topic, timeout)
			return msg{}
		}
	}
}
