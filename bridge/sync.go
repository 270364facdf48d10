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

	"github.com/vallum/vallum/internal/listread"
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
	tag     string                // the current sync's number and nonce
	open    bool                  // between A and B, or waiting for chunks after B
	waiting bool                  // B came, and the window waits for the chunks of a list
	present map[string]*seen      // per list root, in the window
	records map[string]recordSeen // per list root, in the window
	// closed: the records of the last window closed, for a first sync
	// until the worker trusts an epoch (decoder.chunksAlone).
	closed  map[string]recordSeen
	chunks  map[string]*chunked // per list root, in the window
	roots   []string            // the lists
	start   time.Time           // when the current sync began
	aSeen   chan struct{}
	bSeen   chan struct{}        // closed when the window closes with its result
	bBack   chan struct{}        // closed when B came back but the window waits for chunks
	abandon chan struct{}        // closed when a newer sync starts
	refs    *later               // where a closing window notes the chunks it took
	memo    map[string]deltaMemo // per list root, the last deltaCheck (window.go)
}

// syncResult is what the window held, for the worker to reconcile against.
type syncResult struct {
	present map[string]*seen
	records map[string]recordSeen
	partial map[string]partial // lists whose chunks the window did not read whole
	start   time.Time
}

// partial says why a sync did not read a list whole: it removes nothing.
type partial struct {
	why   string
	stale bool // a chunk read was rewritten during the sync: sync again at once
}

func (s *syncer) begin(roots []string) (tag string, aSeen, bSeen, bBack, abandon chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	nonce := make([]byte, 12)
	_, _ = rand.Read(nonce) // never fails (crypto/rand)
	s.tag = strconv.Itoa(s.gen) + "-" + hex.EncodeToString(nonce)
	s.open, s.waiting, s.present, s.records, s.chunks, s.start = false, false, nil, nil, nil, time.Now()
	s.memo = nil
	s.roots = roots
	if s.abandon != nil {
		close(s.abandon)
	}
	s.aSeen, s.bSeen, s.bBack, s.abandon = make(chan struct{}), make(chan struct{}), make(chan struct{}), make(chan struct{})
	return s.tag, s.aSeen, s.bSeen, s.bBack, s.abandon
}

// marker handles a marker that came back, on the message goroutine. It
// returns the window's result when the marker is the current B and the
// window holds every chunk its lists' manifests name; otherwise the window
// stays open for them (see chunkDone and expire).
func (s *syncer) marker(payload string) *syncResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.tag == "":
	case payload == "A"+s.tag && s.aSeen != nil && !s.open && s.present == nil:
		s.open, s.present, s.records, s.chunks = true, map[string]*seen{}, map[string]recordSeen{}, map[string]*chunked{}
		close(s.aSeen)
	case payload == "B"+s.tag && s.open && !s.waiting:
		if p := s.partials(); waitFor(p) {
			s.waiting = true
			close(s.bBack)
			return nil
		}
		return s.closeLocked()
	}
	return nil
}

// chunkDone returns the window's result once a window that waits after B
// holds every chunk it waited for.
func (s *syncer) chunkDone() *syncResult {
	if !s.waiting || waitFor(s.partials()) {
		return nil
	}
	return s.closeLocked()
}

// expire closes a window that still waits for chunks when the sync's time
// is up, with the lists it could not read whole marked partial. It returns
// nil when the window of sync tag is closed already.
func (s *syncer) expire(tag string) *syncResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tag != tag || !s.open || !s.waiting {
		return nil
	}
	return s.closeLocked()
}

// waitFor reports whether a list is partial for a reason the next manifest
// may mend (a chunk rewritten during the sync will not be read again).
func waitFor(p map[string]partial) bool {
	for _, why := range p {
		if !why.stale {
			return true
		}
	}
	return false
}

func (s *syncer) closeLocked() *syncResult {
	res := &syncResult{present: s.present, records: s.records, partial: s.partials(), start: s.start}
	s.closed = s.records
	if s.refs != nil {
		s.refs.took(s.chunks, res.partial)
	}
	s.open, s.waiting, s.present, s.records, s.chunks = false, false, nil, nil, nil
	close(s.bSeen)
	return res
}

// partials says which lists the window did not read whole: a manifest
// (of the record's epoch) whose chunks did not all come, or a list whose
// record says it is kept as chunks (a v2 epoch) and no manifest.
func (s *syncer) partials() map[string]partial {
	p := map[string]partial{}
	for _, root := range s.roots {
		var st listread.Status
		if ch := s.chunks[root]; ch != nil {
			st = ch.rd.Status()
		}
		rec := s.records[root]
		if st.Manifest && rec.ok && !listread.SameEpoch(st.Epoch, rec.rec.Epoch) {
			st = listread.Status{} // a manifest of another life of the list: not this one's
		}
		switch {
		case st.Stale:
			p[root] = partial{why: st.Why, stale: true}
		case st.Manifest && !st.Complete:
			p[root] = partial{why: st.Why}
		case !st.Manifest && rec.ok && wire.IsEpochV2(rec.rec.Epoch):
			p[root] = partial{why: "the keeper record says the list is kept as chunks (epoch " + rec.rec.Epoch + "), and no manifest came"}
		case st.Manifest:
			if why := s.deltaCheck(root, st); why != "" {
				p[root] = partial{why: why}
			}
		}
	}
	return p
}

// justOpened reports whether the window is open and holds nothing yet: the
// moment marker A came back.
func (s *syncer) justOpened() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open && len(s.present) == 0
}

// record notes a state message seen in the window, a ban or not, at
// version at (Unix milliseconds): it reports false when the window read a
// later version of p already, which must not be undone (last writer wins).
// Outside the window it changes nothing and returns true.
func (s *syncer) record(root string, p netip.Prefix, at int64, present, state bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.open {
		return true
	}
	w := s.present[root]
	if w == nil {
		w = newSeen(0)
		s.present[root] = w
	}
	return w.take(p, at, present, state)
}

// stateGone notes in the window that the per-ban state of p was deleted,
// on a list where that is no unban (see decoder.stateOps).
func (s *syncer) stateGone(root string, p netip.Prefix) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.open && s.present[root] != nil {
		s.present[root].stateGone(p)
	}
}

// seed notes in the window a ban whose state came live moments ago, at
// version at: as record, except that a read of the same version in the
// window applies it again (take).
func (s *syncer) seed(root string, p netip.Prefix, at int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.open {
		return
	}
	w := s.present[root]
	if w == nil {
		w = newSeen(0)
		s.present[root] = w
	}
	w.seed(p, at)
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
	roots := make([]string, len(b.opts.Lists))
	for i, l := range b.opts.Lists {
		roots[i] = l.Root
	}
	tag, aSeen, bSeen, bBack, abandon := b.dec.sync.begin(roots)
	marker := wire.MarkerTopic(b.opts.ClientID)
	events := map[string]byte{marker: 1}
	// The record and the compact list first, in a SUBSCRIBE of their own,
	// then the per-ban state: a broker sends the retained messages of one
	// SUBSCRIBE's filters in the order it lists them (a map's: any), and
	// those of the next after them. The chunks hold the whole list; the
	// per-ban states a keeper has just folded into them (it deletes them
	// a moment after its cut: mosquitto held 397,362 of them, joined
	// during a burst of a million) then change nothing in the kernel,
	// and the sets are whole before they are read.
	compact, state := map[string]byte{}, map[string]byte{}
	optional := map[string]string{} // filter -> list root
	var chunks []string
	for _, l := range b.opts.Lists {
		// The keeper record comes with the compact list, before the state
		// and marker B; QoS 1, as it is one message per list.
		compact[wire.RecordTopic(l.Root)] = 1
		optional[wire.RecordTopic(l.Root)] = l.Root
		for _, t := range wire.EventTopics(l.Root) {
			events[t] = b.opts.QoS
		}
		// State at QoS 0: a late joiner gets every retained ban at once,
		// while at QoS 1 mochi stops at 65,535 in flight and drops the
		// rest. Nothing is lost by it: the state is read again in full on
		// every connection, and the events carry live changes at QoS 1.
		state[wire.StateFilter(l.Root)] = 0
		// The compact list (window.go): its manifest and chunks in the
		// SUBSCRIBE before the state's, at QoS 1 (a few hundred
		// messages). A broker
		// whose ACL predates them may refuse them: the per-ban state is
		// then read alone, as from a keeper that writes no chunks.
		compact[wire.ManifestTopic(l.Root)] = 1
		compact[wire.ChunksFilter(l.Root)] = 1
		optional[wire.ManifestTopic(l.Root)] = l.Root
		optional[wire.ChunksFilter(l.Root)] = l.Root
		chunks = append(chunks, wire.ChunksFilter(l.Root))
	}
	steps := []struct {
		subs     []map[string]byte // one SUBSCRIBE each, in turn
		optional map[string]string
		mark     string
		seen     chan struct{}
		back     chan struct{}
	}{{[]map[string]byte{events}, nil, "A", aSeen, nil}, {[]map[string]byte{compact, state}, optional, "B", bSeen, bBack}}
	_, conn := b.brokers.Current()
	stalled, stop := b.stalled()
	defer stop()
	if !b.subscribeAllow(c, abandon) { // before any ban can come (allow.go)
		return
	}
	for _, st := range steps {
		for _, subs := range st.subs {
			refused, ok := b.subscribe(c, subs, st.optional, abandon)
			if !ok {
				return
			}
			b.refusedOptional(st.optional, refused)
		}
		// The marker's PUBACK may come long after it was sent: while a
		// flood of retained bans is applied, paho reads nothing else. What
		// counts is the marker coming back, so only that is waited for.
		pub := c.Publish(marker, 1, false, st.mark+tag)
		select {
		case <-st.seen:
		case <-st.back: // B came; the window waits for the chunks of a list
			if !b.awaitChunks(tag, bSeen, abandon) {
				return
			}
		case <-stalled: // a stuck broker, or one that refuses the marker
			b.giveUp(conn, st.mark, pub.Error())
			return
		case <-b.stop.ctx.Done():
			return
		case <-abandon: // a reconnect or SIGHUP started a newer sync
			return
		}
	}
	b.unsubscribeChunks(c, tag, chunks)
	b.stats.Subscribed.Store(true)
	b.log.Info("subscribed and synced", "lists", len(b.opts.Lists))
}

// awaitChunks waits, after marker B, for the chunks of a list that were
// missing or damaged at B: a keeper rewriting them publishes a manifest
// naming the new ones in a moment. When the sync's time is up the window
// closes without them, and removes nothing from those lists.
func (b *Bridge) awaitChunks(tag string, done, abandon chan struct{}) bool {
	b.log.Warn("sync: chunks of a list are missing or damaged, or its per-ban states are not those its manifest announces; waiting for the next manifest", "within", b.opts.SyncTimeout)
	t := time.NewTimer(b.opts.SyncTimeout)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		if res := b.dec.sync.expire(tag); res != nil {
			b.app.enqueue(item{sync: res})
		}
		return true
	case <-abandon:
	case <-b.stop.ctx.Done():
	}
	return false
}

// unsubscribeChunks ends the subscription to the chunks once the sync has
// read them: hosts stay subscribed to the manifest only, or every cut of
// the list would reach every host (window.go). A newer sync subscribes
// again; when the broker refuses, the chunks that come are not read.
func (b *Bridge) unsubscribeChunks(c mqtt.Client, tag string, filters []string) {
	b.dec.sync.mu.Lock()
	current := b.dec.sync.tag == tag
	b.dec.sync.mu.Unlock()
	if !current || len(filters) == 0 {
		return
	}
	tok := c.Unsubscribe(filters...)
	if b.await(tok) && tok.Error() != nil {
		b.log.Warn("cannot unsubscribe from the lists' chunks: the rewrites of the lists will keep coming", "err", tok.Error())
	}
}

// refusedOptional logs the optional subscriptions the broker refused.
func (b *Bridge) refusedOptional(optional map[string]string, refused []string) {
	for _, f := range refused {
		root := optional[f]
		if f == wire.RecordTopic(root) {
			b.dec.sync.recordRefused(root)
			b.log.Warn("the broker refused the subscription to the list's keeper record: vallum cannot tell a list the broker lost from an unban of everything; let hosts read it",
				"topic", root, "record", f, "broker", b.brokerName())
			continue
		}
		b.log.Warn("the broker refused the subscription to the list's compact form: this host reads the per-ban state alone; let hosts read "+
			wire.ManifestTopic(root)+" and "+wire.ChunkPrefix+root+"/#", "topic", root, "filter", f, "broker", b.brokerName())
	}
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
	delay, idInUse := time.Second, 0
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
		if errors.Is(err, errIDInUse) && idInUse < maxIDInUse {
			// The chunks of the compact list's SUBSCRIBE are in flight to
			// us: wait a moment for our PUBACKs to free their ids.
			idInUse++
			try--
			select {
			case <-time.After(idInUseWait):
				continue
			case <-abandon:
			case <-b.stop.ctx.Done():
			}
			return nil, false
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

// errIDInUse is mochi's refusal of a SUBSCRIBE whose packet id is one of
// its own messages in flight to us (0x91): the SUBSCRIBE of the per-ban
// state comes while the chunks of the one before flow, at QoS 1, their
// ids counted from 1 as ours are. Tried again every idInUseWait, up to
// maxIDInUse times (10 s), before the usual retries.
var errIDInUse = errors.New("packet id in use")

const (
	idInUseWait = 20 * time.Millisecond
	maxIDInUse  = 500
)

// await waits for tok for at most Options.ConnectTimeout, and not at all
// once the bridge stops: the broker's answer never comes on a connection
// being closed, and Run must return at once (seen under qemu: 10 s).
func (b *Bridge) await(tok mqtt.Token) bool {
	t := time.NewTimer(b.opts.ConnectTimeout)
	defer t.Stop()
	select {
	case <-tok.Done():
		return true
	case <-t.C:
	case <-b.stop.ctx.Done():
	}
	return false
}

func (b *Bridge) subscribeOnce(c mqtt.Client, filters map[string]byte, optional map[string]string) ([]string, error) {
	tok := c.SubscribeMultiple(filters, nil)
	if !b.await(tok) {
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
		if code == 0x91 {
			return nil, fmt.Errorf("broker refused the subscription to %s (code %#x): %w", f, code, errIDInUse)
		}
		return nil, fmt.Errorf("broker refused the subscription to %s (code %#x)", f, code)
	}
	return refused, nil
}

// later is the next sync the bridge asked itself for (see syncLater).
type later struct {
	mu       sync.Mutex
	timer    *time.Timer
	at       time.Time
	live     time.Time // when a live record last started one
	refs     chunkRefs // what the last sync took of the lists' chunks (window.go)
	manifest time.Time // when a live manifest last started one
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
