package bridge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"runtime/debug"
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
	aSeen   chan struct{}
	bSeen   chan struct{}
	abandon chan struct{} // closed when a newer sync starts
}

// syncResult is what the window held, for the worker to reconcile against.
type syncResult struct {
	present map[string]map[netip.Prefix]struct{}
}

func (s *syncer) begin() (tag string, aSeen, bSeen, abandon chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	nonce := make([]byte, 12)
	_, _ = rand.Read(nonce) // never fails (crypto/rand)
	s.tag = strconv.Itoa(s.gen) + "-" + hex.EncodeToString(nonce)
	s.open, s.present = false, nil
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
		s.open, s.present = true, map[string]map[netip.Prefix]struct{}{}
		close(s.aSeen)
	case payload == "B"+s.tag && s.open:
		res := &syncResult{present: s.present}
		s.open, s.present = false, nil
		close(s.bSeen)
		return res
	}
	return nil
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

// startSync runs steps 1 and 2 for one connection.
func (b *Bridge) startSync(c mqtt.Client) {
	tag, aSeen, bSeen, abandon := b.sync.begin()
	marker := wire.MarkerTopic(b.opts.ClientID)
	events := map[string]byte{marker: 1}
	state := map[string]byte{}
	for _, l := range b.opts.Lists {
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
		subs map[string]byte
		mark string
		seen chan struct{}
	}{{events, "A", aSeen}, {state, "B", bSeen}}
	_, conn := b.brokers.current()
	stalled, stop := b.stalled()
	defer stop()
	for _, st := range steps {
		if !b.subscribe(c, st.subs, abandon) {
			return
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
		case <-b.stopCtx.Done():
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
func (b *Bridge) subscribe(c mqtt.Client, filters map[string]byte, abandon chan struct{}) bool {
	delay := time.Second
	for try := 1; c.IsConnectionOpen(); try++ {
		err := b.subscribeOnce(c, filters)
		if err == nil {
			return true
		}
		if errors.Is(err, errSubackLate) {
			// Not refused, only not answered yet (paho reads nothing while
			// a flood is applied): go on, the marker tells the rest.
			b.log.Warn("subscription not acknowledged yet; going on", "broker", b.brokerName())
			return true
		}
		if try < 5 {
			continue
		}
		b.stats.Subscribed.Store(false)
		b.log.Error("subscribe failed, retrying: check the broker's ACL for this user", "broker", b.brokerName(), "in", delay, "err", err)
		select {
		case <-time.After(delay):
		case <-abandon:
			return false
		case <-b.stopCtx.Done():
			return false
		}
		delay = min(2*delay, time.Minute)
	}
	return false
}

var errSubackLate = errors.New("subscribe not acknowledged in time")

func (b *Bridge) subscribeOnce(c mqtt.Client, filters map[string]byte) error {
	tok := c.SubscribeMultiple(filters, nil)
	if !tok.WaitTimeout(b.opts.ConnectTimeout) {
		return errSubackLate
	}
	if err := tok.Error(); err != nil {
		return err
	}
	for f, code := range tok.(*mqtt.SubscribeToken).Result() {
		if code == 0x80 {
			return fmt.Errorf("broker refused the subscription to %s", f)
		}
	}
	return nil
}

// reconcile is step 3, on the worker, after every op queued before B.
func (b *Bridge) reconcile(ctx context.Context, res *syncResult) {
	type done struct {
		root            string
		active, removed int
	}
	var lists []done
	for _, l := range b.opts.Lists {
		present := res.present[l.Root]
		removed := 0
		for _, set := range []string{l.Set4, l.Set6} {
			removed += b.removeStale(ctx, set, present)
		}
		lists = append(lists, done{l.Root, len(present), removed})
	}
	if total(res.present) > bigSync {
		// A late join of many bans left a heap the size of the whole list
		// (messages, the window, the kernel listing); give it back to the
		// system now rather than keep it for the next sync.
		res.present = nil
		debug.FreeOSMemory()
	}
	b.stats.Syncs.Add(1)
	for _, d := range lists {
		b.log.Info("synced", "topic", d.root, "active", d.active, "removed", d.removed)
	}
}

// bigSync is the number of bans above which a sync returns its memory.
const bigSync = 10000

func total(m map[string]map[netip.Prefix]struct{}) int {
	n := 0
	for _, s := range m {
		n += len(s)
	}
	return n
}

func (b *Bridge) removeStale(ctx context.Context, set string, present map[netip.Prefix]struct{}) int {
	if !b.comments.get(set) {
		b.log.Warn("set has no comment support: vallum cannot tell its own entries and removes none at sync", "set", set)
		return 0
	}
	entries, err := b.be.List(ctx, set)
	if err != nil {
		b.log.Error("sync: cannot list set", "set", set, "err", err)
		return 0
	}
	b.own.load(set, entries)
	var ops []Op
	for _, e := range entries {
		if _, ok := present[e.Prefix]; !ok && e.Comment == CommentState {
			ops = append(ops, Op{Action: Del, Prefix: e.Prefix, Timeout: wire.DefaultTimeout})
		}
	}
	if len(ops) > 0 {
		b.applySet(ctx, set, ops)
	}
	return len(ops)
}
