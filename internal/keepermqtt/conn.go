package keepermqtt

import (
	"math/rand/v2"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/vallum/vallum/bridge/mqttconn"
)

// sessConn is one connection to a broker. It reads the CONNACK as paho
// reads it, for its session-present flag: paho hands that flag out for the
// first connection only, and a keeper must know after every reconnection
// whether the broker still holds its session (and so its subscriptions and
// the events queued on them) or lost it (and so, likely, the lists too).
type sessConn struct {
	net.Conn
	broker string // redacted URL, for the log

	seen    int     // bytes of the CONNACK read so far
	hdr     [4]byte // fixed header, remaining length, flags, return code
	present atomic.Bool
}

func (c *sessConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.seen < len(c.hdr) && n > 0 { // paho's reader goroutine only: no lock
		k := copy(c.hdr[c.seen:], p[:n])
		c.seen += k
		if c.seen == len(c.hdr) {
			// 0x20: CONNACK, 2 bytes long; bit 0 of the flags: session present.
			c.present.Store(c.hdr[0] == 0x20 && c.hdr[1] == 2 && c.hdr[2]&1 == 1)
		}
	}
	return n, err
}

// sessionPresent reports whether the broker kept the session.
func (c *sessConn) sessionPresent() bool { return c.present.Load() }

// brokers is the brokers in the order given, and the connection in use.
// It does what bridge's brokerList does: after a lost connection the
// broker after the current one is tried first.
type brokers struct {
	urls []*url.URL

	mu   sync.Mutex
	cur  int // index of the broker of the last connection; -1: none yet
	conn *sessConn
}

func newBrokers(urls []*url.URL) *brokers { return &brokers{urls: urls, cur: -1} }

// open is paho's OpenConnectionFunc. paho dials the brokers in turn and
// keeps the first whose handshake succeeds: the last one dialled is the
// one in use once connected.
func (b *brokers) open(uri *url.URL, o mqtt.ClientOptions) (net.Conn, error) {
	c, err := mqttconn.Open(uri, o)
	if err != nil {
		return nil, err
	}
	sc := &sessConn{Conn: c, broker: uri.Redacted()}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.conn = sc
	for i, u := range b.urls {
		if u.String() == uri.String() {
			b.cur = i
		}
	}
	return sc, nil
}

func (b *brokers) current() *sessConn {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.conn
}

// order returns the brokers to try next: the one after the current one
// first, the current one last.
func (b *brokers) order() []*url.URL {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(b.urls)
	out := make([]*url.URL, 0, n)
	for i := range n {
		out = append(out, b.urls[(b.cur+1+i)%n])
	}
	return out
}

// rotate is paho's ReconnectHandler. The random wait spreads the
// reconnections of clients of a broker that restarted, as the bridge does.
func (b *brokers) rotate(o *mqtt.ClientOptions) {
	time.Sleep(rand.N(time.Second))
	o.Servers = b.order()
}

// drop ends c when it is still the connection in use: paho sees the
// connection lost and reconnects, to the next broker when there are
// several. A read deadline in the past, not Close: paho takes a read of a
// closed connection for its own disconnect and would not reconnect.
func (b *brokers) drop(c *sessConn) {
	if c != nil && c == b.current() {
		c.SetReadDeadline(time.Unix(1, 0))
	}
}
