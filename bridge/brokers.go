package bridge

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/vallum/vallum/bridge/mqttconn"
	"github.com/vallum/vallum/internal/wire"
)

// DefaultSyncTimeout is how long a sync may go without receiving anything
// before the bridge gives up on the broker and connects to the next one.
// Measured on a NATS cluster: the first MQTT client after a node restart
// received nothing for two to three minutes, while the next client got
// everything at once. A late join of 100,000 bans from NATS never pauses
// for more than a few seconds.
const DefaultSyncTimeout = time.Minute

// brokerList is the brokers a bridge may use, in the order given, and the
// one its connection is on. paho tries its servers in order on every
// (re)connection; turning the list before each reconnect makes it start
// with the broker after the one it was on, so that a broker that is down
// or stuck is tried last, not first.
type brokerList struct {
	urls []*url.URL // as configured

	mu   sync.Mutex
	cur  int      // index of the broker last connected to; -1: none yet
	conn net.Conn // the connection paho uses now, to drop it

	confirming atomic.Bool // from a connection until its confirming sync is done
}

func newBrokerList(urls []*url.URL) *brokerList {
	return &brokerList{urls: urls, cur: -1}
}

// open is paho's OpenConnectionFunc: it dials as mqttconn does and notes
// which broker and connection this is. paho dials the brokers one after
// another and keeps the first whose handshake succeeds, so the last one
// dialled is the one in use once connected.
func (l *brokerList) open(uri *url.URL, o mqtt.ClientOptions) (net.Conn, error) {
	c, err := mqttconn.Open(uri, o)
	if err != nil {
		return nil, err
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

// current returns the broker of the connection, and the connection.
func (l *brokerList) current() (string, net.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cur < 0 {
		return l.urls[0].Redacted(), nil
	}
	return l.urls[l.cur].Redacted(), l.conn
}

// order returns the brokers to try next: the one after the current one
// first, the current one last.
func (l *brokerList) order() []*url.URL {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(l.urls)
	out := make([]*url.URL, 0, n)
	for i := range n {
		out = append(out, l.urls[(l.cur+1+i)%n])
	}
	return out
}

// rotate is paho's ReconnectHandler: it runs before every reconnection
// attempt, on the goroutine that then reads o.Servers. It first waits a
// random part of reconnectJitter: paho's backoff is the same for every
// host (none, then 1 s doubling to 30 s), so the hosts of a broker that
// restarted would otherwise all come back in the same instant, every time.
func (l *brokerList) rotate(o *mqtt.ClientOptions) {
	time.Sleep(rand.N(reconnectJitter))
	o.Servers = l.order()
}

// reconnectJitter spreads reconnections; it delays a failover by half of
// it on average.
const reconnectJitter = time.Second

// drop ends conn when it is still the connection in use. paho then
// sees the connection lost and reconnects, through rotate, to the next
// broker; the persistent session goes with it.
func (l *brokerList) drop(conn net.Conn) {
	l.mu.Lock()
	same := conn != nil && conn == l.conn
	l.mu.Unlock()
	if same {
		// A read deadline in the past, not Close: paho takes a read of a
		// closed connection for its own disconnect and would not reconnect.
		conn.SetReadDeadline(time.Unix(1, 0))
	}
}

// stalled returns a channel that is closed when the bridge has received no
// message for Options.SyncTimeout while the worker was idle, or when the
// wait has lasted ten times that in all (a broker that sends live events
// but never the sync's markers). stop ends the watch.
func (s *shared) stalled() (ch <-chan struct{}, stop func()) {
	out, quit := make(chan struct{}), make(chan struct{})
	limit := s.opts.SyncTimeout
	go func() {
		tick := time.NewTicker(min(limit/4, time.Second))
		defer tick.Stop()
		start, last, seen := time.Now(), time.Now(), s.stats.Messages.Load()
		for {
			select {
			case <-quit:
				return
			case now := <-tick.C:
				if n := s.stats.Messages.Load(); n != seen || s.stats.QueueDepth.Load() > 0 {
					seen, last = n, now
				}
				if now.Sub(last) >= limit || now.Sub(start) >= 10*limit {
					close(out)
					return
				}
			}
		}
	}()
	var once sync.Once
	return out, func() { once.Do(func() { close(quit) }) }
}

// giveUp ends a sync that stalled: it drops the connection so that paho
// connects again, to the next broker when there are several. A broker
// that never sends a client's own marker back (its ACL forbids the marker
// topic) lands here too, which the log line says.
func (s *shared) giveUp(conn net.Conn, step string, pubErr error) {
	broker, _ := s.brokers.current()
	s.log.Error("sync stalled: nothing received within the sync timeout; reconnecting"+s.nextHint(),
		"broker", broker, "step", step, "timeout", s.opts.SyncTimeout,
		"hint", "the broker must let this client publish and subscribe to "+wire.MarkerPrefix+s.opts.ClientID,
		"publish_err", pubErr)
	s.brokers.drop(conn)
}

func (s *shared) nextHint() string {
	if len(s.brokers.urls) > 1 {
		return " to the next broker"
	}
	return ""
}

// brokerURLs returns Broker and Brokers, in that order, parsed.
func (o Options) brokerURLs() ([]*url.URL, error) {
	var urls []*url.URL
	var errs []error
	for _, s := range append([]string{o.Broker}, o.Brokers...) {
		if s == "" {
			continue
		}
		u, err := url.Parse(s)
		if err != nil || u.Scheme == "" {
			errs = append(errs, fmt.Errorf("broker %q: want a URL such as tcp://host:1883", s))
			continue
		}
		urls = append(urls, u)
	}
	if len(urls) == 0 && len(errs) == 0 {
		errs = append(errs, errors.New("no broker URL"))
	}
	return urls, errors.Join(errs...)
}

// urlList is the brokers for a log line.
func urlList(urls []*url.URL) string {
	s := make([]string, len(urls))
	for i, u := range urls {
		s[i] = u.Redacted()
	}
	return strings.Join(s, ",")
}

// brokerName is the broker of the connection, for log lines.
func (s *shared) brokerName() string {
	name, _ := s.brokers.current()
	return name
}

// confirmSync syncs once more, ConfirmSync after the first sync of this
// connection has completed, if the connection is still the same. Measured
// on a NATS cluster: just after a node was killed, the node its hosts moved
// to served a copy of the retained state seconds old, in which bans made
// meanwhile were missing and lifted ones were still there; a sync to it
// removed the first and put back the second. The second read, once the
// cluster has settled, puts both right.
func (b *Bridge) confirmSync(c mqtt.Client) {
	if b.opts.ConfirmSync <= 0 {
		return
	}
	_, conn := b.brokers.current()
	syncs := b.stats.Syncs.Load()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for b.stats.Syncs.Load() == syncs {
		select {
		case <-tick.C:
		case <-b.stop.ctx.Done():
			return
		}
		if _, now := b.brokers.current(); now != conn || !c.IsConnectionOpen() {
			return
		}
	}
	select {
	case <-time.After(b.opts.ConfirmSync):
	case <-b.stop.ctx.Done():
		return
	}
	if _, now := b.brokers.current(); now == conn && c.IsConnectionOpen() {
		b.log.Info("confirming the sync", "broker", b.brokerName())
		b.startSync(c)
		b.brokers.confirming.Store(false)
	}
}

// mqtt311 is set explicitly. Otherwise paho, when a broker's CONNACK does
// not come in time, tries that broker again with MQTT 3.1 and then every
// next broker with 3.1 too, which NATS refuses: a stuck first node made the
// whole list fail.
const mqtt311 = 4
