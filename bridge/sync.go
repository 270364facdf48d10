package bridge

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/vallum/vallum/internal/wire"
)

// Comments vallum stores with the kernel entries it adds. Reconciliation
// removes only entries marked CommentState: an entry a person added by
// hand, or one from a legacy event that the broker keeps no state for, is
// never removed by a sync.
const (
	CommentState = "vallum"
	CommentEvent = "vallum-event"
)

// How a sync works, on every connection (the session may be new, resumed,
// or resumed with its queue redelivered out of order, as mochi does):
//
//  1. Subscribe to the events and the marker topic; publish marker A.
//  2. When A comes back, every message the broker redelivered from the
//     session is behind us. Open a window and (re)subscribe to the state
//     topics, which makes the broker send every retained ban; publish B.
//  3. Every state message between A and B is the broker's current state
//     or newer. When B comes back, the worker removes the entries marked
//     CommentState that the window did not hold; the adds were applied as
//     they came. The kernel set is diffed, never emptied.
//
// A marker's payload is A or B, the sync's number and a random nonce made
// for that sync: a third party that can publish on the marker topic (a
// broker that lets other logins do so) cannot close the window early
// without having read the marker, and a retained or replayed marker of an
// earlier sync or an earlier process is ignored.
type syncer struct {
	mu      sync.Mutex
	gen     int
	tag     string                               // the current sync's number and nonce
	open    bool                                 // between A and B
	present map[string]map[netip.Prefix]struct{} // per list root, in the window
	records map[string]recordSeen                // per list root, in the window
	start   time.Time                            // when the current sync began
	aSeen   chan struct{}
	bSeen   chan struct{}
	abandon chan struct{} // closed when a newer sync starts
}

// syncResult is what the window held, for the worker to reconcile against.
type syncResult struct {
	present map[string]map[netip.Prefix]struct{}
	records map[string]recordSeen
	start   time.Time
}

func (s *syncer) begin() (tag string, aSeen, bSeen, abandon chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	nonce := make([]byte, 12)
	_, _ = rand.Read(nonce) // never fails (crypto/rand)
	s.tag = strconv.Itoa(s.gen) + "-" + hex.EncodeToString(nonce)
	s.open, s.present, s.records, s.start = false, nil, nil, time.Now()
	if s.abandon != nil {
		close(s.abandon)
	}
	s.aSeen, s.bSeen, s.abandon = make(chan struct{}), make(chan struct{}), make(chan struct{})
	return s.tag, s.aSeen, s.bSeen, s.abandon
}

// marker handles a marker that came back, on the message goroutine. It
// returns the window's result when the marker is the current B.
func (s *syncer) marker(payload string) *syncResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.tag == "":
	case payload == "A"+s.tag && s.aSeen != nil && !s.open && s.present == nil:
		s.open, s.present, s.records = true, map[string]map[netip.Prefix]struct{}{}, map[string]recordSeen{}
		close(s.aSeen)
	case payload == "B"+s.tag && s.open:
		res := &syncResult{present: s.present, records: s.records, start: s.start}
		s.open, s.present, s.records = false, nil, nil
		close(s.bSeen)
		return res
	}
	return nil
}

// justOpened reports whether the window is open and holds nothing yet: the
// moment marker A came back.
func (s *syncer) justOpened() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open && len(s.present) == 0
}

// record notes a state message seen in the window: present or gone.
func (s *syncer) record(root string, p netip.Prefix, present bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.open {
		return
	}
	m := s.present[root]
	if m == nil {
		m = map[netip.Prefix]struct{}{}
		s.present[root] = m
	}
	if present {
		m[p] = struct{}{}
	} else {
		delete(m, p)
	}
}

// keeperRecord notes a keeper record seen in the window: the last one
// counts, and an empty one (deleted) is none. Outside the window a record
// changes nothing (it is read again at the next sync): it returns false.
func (s *syncer) keeperRecord(root string, payload []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.open {
		return false
	}
	var seen recordSeen
	if len(payload) > 0 {
		rec, err := wire.DecodeRecord(payload)
		if err != nil {
			seen.bad = err.Error()
		} else {
			seen.rec, seen.ok = rec, true
		}
	}
	s.records[root] = seen
	return true
}

// recordRefused notes that the broker refused this sync the record of root.
func (s *syncer) recordRefused(root string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.open {
		s.records[root] = recordSeen{refused: true}
	}
}

// startSync runs steps 1 and 2 for one connection.
func (b *Bridge) startSync(c mqtt.Client) {
	tag, aSeen, bSeen, abandon := b.dec.sync.begin()
	marker := wire.MarkerTopic(b.opts.ClientID)
	events := map[string]byte{marker: 1}
	state := map[string]byte{}
	records := map[string]string{} // record topic -> list root
	for _, l := range b.opts.Lists {
		// The keeper record comes with the state, before marker B; QoS 1,
		// as it is one message per list.
		state[wire.RecordTopic(l.Root)] = 1
		records[wire.RecordTopic(l.Root)] = l.Root
		for _, t := range wire.EventTopics(l.Root) {
			events[t] = b.opts.QoS
		}
		// State at QoS 0: a late joiner gets every retained ban at once,
		// while at QoS 1 mochi stops at 65,535 in flight and drops the
		// rest. Nothing is lost by it: the state is read again in full on
		// every connection, and the events carry live changes at QoS 1.
		state[wire.StateFilter(l.Root)] = 0
	}
	steps := []struct {
		subs     map[string]byte
		optional map[string]string
		mark     string
		seen     chan struct{}
	}{{events, nil, "A", aSeen}, {state, records, "B", bSeen}}
	_, conn := b.brokers.Current()
	stalled, stop := b.stalled()
	defer stop()
	if !b.subscribeAllow(c, abandon) { // before any ban can come (allow.go)
		return
	}
	for _, st := range steps {
		refused, ok := b.subscribe(c, st.subs, st.optional, abandon)
		if !ok {
			return
		}
		for _, f := range refused {
			b.dec.sync.recordRefused(st.optional[f])
			b.log.Warn("the broker refused the subscription to the list's keeper record: vallum cannot tell a list the broker lost from an unban of everything; let hosts read it",
				"topic", st.optional[f], "record", f, "broker", b.brokerName())
		}
		// The marker's PUBACK may come long after it was sent: while a
		// flood of retained bans is applied, paho reads nothing else. What
		// counts is the marker coming back, so only that is waited for.
		pub := c.Publish(marker, 1, false, st.mark+tag)
		select {
		case <-st.seen:
		case <-stalled: // a stuck broker, or one that refuses the marker
			b.giveUp(conn, st.mark, pub.Error())
			return
		case <-b.stop.ctx.Done():
			return
		case <-abandon: // a reconnect or SIGHUP started a newer sync
			return
		}
	}
	b.stats.Subscribed.Store(true)
	b.log.Info("subscribed and synced", "lists", len(b.opts.Lists))
}

// subscribe subscribes to every filter in one SUBSCRIBE. It tries again
// at once a few times, because mochi refuses a SUBSCRIBE whose packet id
// equals one of a message it has in flight to us and a new attempt takes a
// new id; then, as a refusal by the broker's ACL can be fixed while vallum
// runs, every minute at most, until it is connected no more or a newer
// sync starts. Meanwhile /healthz says it is not subscribed.
//
// The filters in optional may be refused: they are returned, and the rest
// goes on (a broker whose ACL predates the keeper record refuses it).
func (b *Bridge) subscribe(c mqtt.Client, filters map[string]byte, optional map[string]string, abandon chan struct{}) (refused []string, ok bool) {
	delay := time.Second
	for try := 1; c.IsConnectionOpen(); try++ {
		refused, err := b.subscribeOnce(c, filters, optional)
		if err == nil {
			return refused, true
		}
		if errors.Is(err, errSubackLate) {
			// Not refused, only not answered yet (paho reads nothing while
			// a flood is applied): go on, the marker tells the rest.
			b.log.Warn("subscription not acknowledged yet; going on", "broker", b.brokerName())
			return nil, true
		}
		if try < 5 {
			continue
		}
		b.stats.Subscribed.Store(false)
		b.log.Error("subscribe failed, retrying: check the broker's ACL for this user", "broker", b.brokerName(), "in", delay, "err", err)
		select {
		case <-time.After(delay):
		case <-abandon:
			return nil, false
		case <-b.stop.ctx.Done():
			return nil, false
		}
		delay = min(2*delay, time.Minute)
	}
	return nil, false
}

var errSubackLate = errors.New("subscribe not acknowledged in time")

func (b *Bridge) subscribeOnce(c mqtt.Client, filters map[string]byte, optional map[string]string) ([]string, error) {
	tok := c.SubscribeMultiple(filters, nil)
	if !tok.WaitTimeout(b.opts.ConnectTimeout) {
		return nil, errSubackLate
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	var refused []string
	for f, code := range tok.(*mqtt.SubscribeToken).Result() {
		if code < 0x80 {
			continue
		}
		// 0x80 is MQTT 3.1.1's refusal, 0x87 "not authorised" a broker's
		// that answers in MQTT 5 codes. Any other failure, such as mochi's
		// 0x91 (packet id in use, which it sends to MQTT 3.1.1 clients
		// too), refuses the whole SUBSCRIBE: retry it.
		if _, ok := optional[f]; ok && (code == 0x80 || code == 0x87) {
			refused = append(refused, f)
			continue
		}
		return nil, fmt.Errorf("broker refused the subscription to %s (code %#x)", f, code)
	}
	return refused, nil
}

// later is the next sync the bridge asked itself for (see syncLater).
type later struct {
	mu    sync.Mutex
	timer *time.Timer
	at    time.Time
	live  time.Time // when a live record last started one
}

// syncLater syncs again in d, unless a sync is due sooner already: to
// judge event entries that were too recent (d = eventSettle), to look
// again at a list found lost (its keeper may restore it any moment), or
// at once when its record comes back live.
func (s *shared) syncLater(d time.Duration, why string) {
	l := &s.later
	l.mu.Lock()
	defer l.mu.Unlock()
	at := time.Now().Add(d)
	if l.timer != nil && !l.at.After(at) {
		return
	}
	if l.timer != nil {
		l.timer.Stop()
	}
	l.at = at
	var t *time.Timer
	t = time.AfterFunc(d, func() {
		l.mu.Lock()
		if l.timer == t { // not replaced by a sooner one meanwhile
			l.timer = nil
		}
		l.mu.Unlock()
		s.stop.spawn(func() {
			c := s.client.Load()
			if c == nil || !(*c).IsConnectionOpen() {
				return // the next connection syncs anyway
			}
			s.log.Info("syncing again: "+why, "broker", s.brokerName())
			s.newSync(*c)
		})
	})
	l.timer = t
}

// syncLive syncs at once for a lost list's record that came back live, at
// most once every recentFor (see decoder.recordLive).
func (s *shared) syncLive() {
	l := &s.later
	l.mu.Lock()
	if time.Since(l.live) < recentFor {
		l.mu.Unlock()
		return
	}
	l.live = time.Now()
	l.mu.Unlock()
	s.syncLater(0, "the keeper record of a list found lost is back")
}

// lostRetry is how long after a sync that found a list lost the bridge
// looks again, doubling at each such sync up to lostRetryMax.
const (
	lostRetry    = 30 * time.Second
	lostRetryMax = 10 * time.Minute
)
