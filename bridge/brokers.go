package bridge

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/vallum/vallum/internal/wire"
)

// DefaultSyncTimeout is how long a sync may go without receiving anything
// before the bridge gives up on the broker and connects to the next one.
// Measured on a NATS cluster: the first MQTT client after a node restart
// received nothing for two to three minutes, while the next client got
// everything at once. A late join of 100,000 bans from NATS never pauses
// for more than a few seconds.
const DefaultSyncTimeout = time.Minute

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
	broker, _ := s.brokers.Current()
	s.log.Error("sync stalled: nothing received within the sync timeout; reconnecting"+s.nextHint(),
		"broker", broker, "step", step, "timeout", s.opts.SyncTimeout,
		"hint", "the broker must let this client publish and subscribe to "+wire.MarkerPrefix+s.opts.ClientID,
		"publish_err", pubErr)
	s.brokers.Drop(conn)
}

func (s *shared) nextHint() string {
	if len(s.brokers.URLs()) > 1 {
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
	name, _ := s.brokers.Current()
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
	_, conn := b.brokers.Current()
	syncs := b.stats.Syncs.Load()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for b.stats.Syncs.Load() == syncs {
		select {
		case <-tick.C:
		case <-b.stop.ctx.Done():
			return
		}
		if _, now := b.brokers.Current(); now != conn || !c.IsConnectionOpen() {
			return
		}
	}
	select {
	case <-time.After(b.opts.ConfirmSync):
	case <-b.stop.ctx.Done():
		return
	}
	if _, now := b.brokers.Current(); now == conn && c.IsConnectionOpen() {
		b.log.Info("confirming the sync", "broker", b.brokerName())
		b.startSync(c)
		b.confirming.Store(false)
	}
}
