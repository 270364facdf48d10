package mqttconn

import (
	"math/rand/v2"
	"net"
	"net/url"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// Brokers is the brokers a client may use, in the order given, and the one
// its connection is on. paho tries its servers in order on every
// (re)connection; turning the list before each reconnect makes it start
// with the broker after the one it was on, so that a broker that is down
// or stuck is tried last, not first. The bridge and the keeper share it.
type Brokers struct {
	urls []*url.URL // as configured
	wrap func(c net.Conn, uri *url.URL) net.Conn

	mu    sync.Mutex
	cur   int      // index of the broker last connected to; -1: none yet
	conn  net.Conn // the connection paho uses now, to drop it
	store *resumeStore
}

// NewBrokers returns the brokers of urls, none connected yet. wrap, when
// not nil, wraps each connection Open makes (the keeper reads the CONNACK
// through it); Current and Drop then deal in what it returns.
func NewBrokers(urls []*url.URL, wrap func(c net.Conn, uri *url.URL) net.Conn) *Brokers {
	return &Brokers{urls: urls, wrap: wrap, cur: -1, store: newResumeStore()}
}

// URLs returns the brokers as configured.
func (l *Brokers) URLs() []*url.URL { return l.urls }

// Open is paho's OpenConnectionFunc: it dials as Open does and notes which
// broker and connection this is. paho dials the brokers one after another
// and keeps the first whose handshake succeeds, so the last one dialled is
// the one in use once connected.
func (l *Brokers) Open(uri *url.URL, o mqtt.ClientOptions) (net.Conn, error) {
	l.store.dialled() // before paho's resume lists it (see resumeStore)
	c, err := Open(uri, o)
	if err != nil {
		return nil, err
	}
	if l.wrap != nil {
		c = l.wrap(c, uri)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.conn = c
	for i, u := range l.urls {
		if u.String() == uri.String() {
			l.cur = i
		}
	}
	return c, nil
}

// Current returns the broker of the connection (redacted, for log lines;
// the first broker before any connection), and the connection (nil then).
func (l *Brokers) Current() (string, net.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cur < 0 {
		return l.urls[0].Redacted(), nil
	}
	return l.urls[l.cur].Redacted(), l.conn
}

// Order returns the brokers to try next: the one after the current one
// first, the current one last.
func (l *Brokers) Order() []*url.URL {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(l.urls)
	out := make([]*url.URL, 0, n)
	for i := range n {
		out = append(out, l.urls[(l.cur+1+i)%n])
	}
	return out
}

// rotate runs before every reconnection attempt, from paho's
// ReconnectHandler (see ClientOptions), on the goroutine that then reads
// o.Servers. It first waits a random part of reconnectJitter: paho's
// backoff is the same for every host (none, then 1 s doubling to 30 s), so
// the hosts of a broker that restarted would otherwise all come back in
// the same instant, every time.
func (l *Brokers) rotate(o *mqtt.ClientOptions) {
	time.Sleep(rand.N(reconnectJitter))
	o.Servers = l.Order()
}

// reconnectJitter spreads reconnections; it delays a failover by half of
// it on average.
const reconnectJitter = time.Second

// Drop ends conn when it is still the connection in use. paho then sees
// the connection lost and reconnects, through rotate, to the next broker;
// the persistent session goes with it.
func (l *Brokers) Drop(conn net.Conn) {
	l.mu.Lock()
	same := conn != nil && conn == l.conn
	l.mu.Unlock()
	if same {
		// A read deadline in the past, not Close: paho takes a read of a
		// closed connection for its own disconnect and would not reconnect.
		conn.SetReadDeadline(time.Unix(1, 0))
	}
}
