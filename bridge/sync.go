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
	tag, aSeen, bSeen, abandon := b.sync.begin()
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
	_, conn := b.brokers.current()
	stalled, stop := b.stalled()
	defer stop()
	for _, st := range steps {
		refused, ok := b.subscribe(c, st.subs, st.optional, abandon)
		if !ok {
			return
		}
		for _, f := range refused {
			b.sync.recordRefused(st.optional[f])
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
		case <-b.stopCtx.Done():
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

// reconcile is step 3, on the worker, after every op queued before B.
// What it may remove depends on the list's keeper record (epoch.go): on a
// list the broker lost, nothing.
func (b *Bridge) reconcile(ctx context.Context, res *syncResult) {
	var logs []func()
	young, lostN := false, 0
	for _, l := range b.opts.Lists {
		present := res.present[l.Root]
		seen := res.records[l.Root]
		v, adopted := b.epochs.judge(l.Root, seen)
		var sw sweep
		for _, set := range []string{l.Set4, l.Set6} {
			sw.add(b.removeStale(ctx, set, present, v, res.start))
		}
		young = young || sw.young > 0
		b.stats.SetListLost(l.Root, "")
		if v == lost {
			lostN++
			why := lostWhy(seen, b.epochs, l.Root)
			b.stats.SetListLost(l.Root, why)
			logs = append(logs, func() { b.logLost(l.Root, why, sw.stale) })
		}
		if adopted {
			epoch := seen.rec.Epoch
			if !seen.ok {
				epoch = "none: no keeper record"
			}
			logs = append(logs, func() {
				b.log.Warn("list adopted on SIGHUP: the broker's list is taken as it is", "topic", l.Root, "epoch", epoch, "removed", sw.removed)
			})
		}
		root, n := l.Root, len(present)
		logs = append(logs, func() { b.log.Info("synced", "topic", root, "active", n, "removed", sw.removed) })
	}
	if total(res.present) > bigSync {
		// A late join of many bans left a heap the size of the whole list
		// (messages, the window, the kernel listing); give it back to the
		// system now rather than keep it for the next sync.
		res.present = nil
		debug.FreeOSMemory()
	}
	b.stats.Syncs.Add(1)
	for _, f := range logs {
		f()
	}
	if young {
		b.syncLater(b.opts.eventSettle+time.Second, "events applied just before the last sync are not in the list yet")
	}
	if lostN == 0 {
		b.lostStreak = 0
	} else {
		b.lostStreak = min(b.lostStreak+1, 10)
		b.syncLater(min(lostRetry<<(b.lostStreak-1), lostRetryMax), "a list was found lost")
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

// sweep counts what removeStale did with the entries of vallum's that the
// state does not hold.
type sweep struct {
	removed int // removed from the kernel
	stale   int // not in the state, removed or not
	young   int // made by events too recent to judge: kept for a later sync
}

func (s *sweep) add(o sweep) {
	s.removed += o.removed
	s.stale += o.stale
	s.young += o.young
}

// removeStale removes vallum's entries of set that the state does not
// hold, as far as v allows: on an untracked list, those marked as state;
// on a trusted list, those made by events too, except events applied
// within eventSettle before the sync began (their state may not have been
// published yet); on a lost list, none.
//
// The list wins over events on a trusted list: its keeper turns every
// event into state, and an event the state does not hold is one that came
// late or out of order (mochi redelivers a session's queue sorted by the
// second, so a del may come before its add, and the add would stay for
// good).
func (b *Bridge) removeStale(ctx context.Context, set string, present map[netip.Prefix]struct{}, v verdict, start time.Time) sweep {
	var sw sweep
	if !b.comments.get(set) {
		b.log.Warn("set has no comment support: vallum cannot tell its own entries and removes none at sync", "set", set)
		return sw
	}
	entries, err := b.be.List(ctx, set)
	if err != nil {
		b.log.Error("sync: cannot list set", "set", set, "err", err)
		return sw
	}
	b.own.load(set, entries)
	var ops []Op
	for _, e := range entries {
		event := e.Comment == CommentEvent
		if _, ok := present[e.Prefix]; ok || !event && e.Comment != CommentState || event && v == untracked {
			continue // an untracked list's events may have no state
		}
		sw.stale++
		switch {
		case v == lost:
			continue
		case event && b.events.since(set, e.Prefix, start.Add(-b.opts.eventSettle)):
			sw.young++
			continue
		}
		ops = append(ops, Op{Action: Del, Prefix: e.Prefix, Timeout: wire.DefaultTimeout})
	}
	if len(ops) > 0 {
		b.applySet(ctx, set, ops)
	}
	sw.removed = len(ops)
	return sw
}

// lostWhy says why a list is found lost, for the log and /healthz.
func lostWhy(seen recordSeen, e *epochs, root string) string {
	known, _ := e.epoch(root)
	switch {
	case seen.refused:
		return "the broker refused this host its keeper record"
	case seen.bad != "":
		return "the broker's keeper record is not valid (" + wire.Clip(seen.bad) + ")"
	case !seen.ok:
		return "the broker has no keeper record (it lost its state?)"
	}
	return fmt.Sprintf("the broker's keeper record has epoch %s, not %s as at the last sync (a new list?)", seen.rec.Epoch, known)
}

func (b *Bridge) logLost(root, why string, kept int) {
	known, _ := b.epochs.epoch(root)
	b.log.Error(fmt.Sprintf("list %s: %s; keeping %d bans it no longer lists; run or restore the list's keeper "+
		"(it restores the list with its epoch), or send SIGHUP (systemctl reload vallum) to take the broker's list as it is", root, why, kept),
		"topic", root, "kept", kept, "epoch", known)
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
func (b *Bridge) syncLater(d time.Duration, why string) {
	l := &b.later
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
		b.spawn(func() {
			c := b.client.Load()
			if c == nil || !(*c).IsConnectionOpen() {
				return // the next connection syncs anyway
			}
			b.log.Info("syncing again: "+why, "broker", b.brokerName())
			b.startSync(*c)
		})
	})
	l.timer = t
}

// lostRetry is how long after a sync that found a list lost the bridge
// looks again, doubling at each such sync up to lostRetryMax.
const (
	lostRetry    = 30 * time.Second
	lostRetryMax = 10 * time.Minute
)

// recordLive starts a sync at once when a lost list's record comes back
// live with the epoch of its last trusted sync (its keeper restored it),
// at most once every recentFor: a record replayed in a loop costs no more.
func (b *Bridge) recordLive(root string, payload []byte) {
	rec, err := wire.DecodeRecord(payload)
	known, ok := b.epochs.epoch(root)
	if err != nil || !ok || rec.Epoch != known || !b.epochs.isLost(root) {
		return
	}
	l := &b.later
	l.mu.Lock()
	if time.Since(l.live) < recentFor {
		l.mu.Unlock()
		return
	}
	l.live = time.Now()
	l.mu.Unlock()
	b.syncLater(0, "the keeper record of a list found lost is back")
}
