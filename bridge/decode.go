package bridge

import (
	"errors"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vallum/vallum/internal/guard"
	"github.com/vallum/vallum/internal/listread"
	"github.com/vallum/vallum/internal/wire"
)

// decoder is the decoding side: paho's message goroutine owns it and
// calls decode for every message, in order. The sync window alone is
// reached by other goroutines too (a sync begins it), behind its lock.
type decoder struct {
	*shared
	sync   syncer // the current sync's window (sync.go)
	skew   skewWarn
	recent recentState
}

// decode turns one MQTT message into queued ops. It never fails: what it
// cannot use is refused, counted and logged, and the rest goes on.
func (d *decoder) decode(topic string, payload []byte, retained bool) item {
	if strings.HasPrefix(topic, wire.MarkerPrefix) {
		res := d.sync.marker(string(payload))
		d.allowSettle()        // when that opened a sync's window
		d.recent.seed(&d.sync) // likewise
		return item{sync: res}
	}
	if it, ok := d.compact(topic, payload); ok {
		return it // before the payload limit: chunks have their own (wire.MaxChunkPayload)
	}
	if len(payload) > d.opts.MaxPayload {
		d.refuse.refuse("payload_too_large", topic, "topic", wire.Clip(topic), "bytes", len(payload), "limit", d.opts.MaxPayload)
		return item{}
	}
	if strings.HasPrefix(topic, wire.AllowPrefix) {
		return d.allowMessage(topic, payload)
	}
	if root, ok := strings.CutPrefix(topic, wire.RecordPrefix); ok { // subscribed for our lists only
		if !d.sync.keeperRecord(root, payload) { // only a sync's window counts (epoch.go)
			d.recordLive(root, payload)
		}
		return item{}
	}
	for _, l := range d.opts.Lists {
		t, err := wire.ParseTopic(l.Root, topic)
		if err != nil {
			if strings.HasPrefix(topic, l.Root+"/") {
				d.refuse.refuse("bad_topic", topic, "topic", wire.Clip(topic), "err", err)
				return item{}
			}
			continue
		}
		if t.Kind == wire.KindState {
			if !canonical(topic[len(l.Root)+len(wire.LevelState)+2:], t.Prefix) {
				// One spelling per ban: `vallum unban` lifts the canonical
				// topic only, and a ban under another would come back.
				d.refuse.refuse("non_canonical", topic, "topic", wire.Clip(topic), "want", wire.StateTopic(l.Root, t.Prefix))
				return item{}
			}
			return item{ops: d.stateOps(l, t, payload, retained)}
		}
		if retained {
			// A retained event is replayed on every subscribe and would
			// undo later unbans: only state is kept by the broker.
			d.refuse.refuse("retained_event", topic, "topic", wire.Clip(topic))
			return item{}
		}
		return item{ops: d.eventOps(l, t.Kind, payload)}
	}
	d.refuse.refuse("bad_topic", topic, "topic", wire.Clip(topic))
	return item{}
}

// compact decodes the messages of the lists' compact form (window.go): a
// manifest or a chunk of one of our lists. ok is false for other topics.
func (d *decoder) compact(topic string, payload []byte) (it item, ok bool) {
	root, man := strings.CutPrefix(topic, wire.ManifestPrefix)
	chunk := strings.HasPrefix(topic, wire.ChunkPrefix)
	if !man && !chunk {
		return item{}, false
	}
	for _, l := range d.opts.Lists {
		if man && root == l.Root || chunk && isChunkOf(l.Root, topic) {
			var room int
			it.ops, room = d.chunkOps(l, topic, payload, man)
			if room > 0 {
				it.room = map[string]int{l.Set4: room}
			}
			d.sync.mu.Lock()
			it.sync = d.sync.chunkDone()
			d.sync.mu.Unlock()
			return it, true
		}
	}
	d.refuse.refuse("bad_topic", topic, "topic", wire.Clip(topic))
	return item{}, true
}

func isChunkOf(root, topic string) bool {
	_, _, ok := wire.ParseChunkTopic(root, topic)
	return ok
}

// canonical reports whether s spells p as wire.FormatPrefix does, without
// allocating: it runs for every retained ban of a late join.
func canonical(s string, p netip.Prefix) bool {
	var buf [64]byte
	b := p.Addr().AppendTo(buf[:0])
	if !p.IsSingleIP() {
		b = strconv.AppendInt(append(b, '/'), int64(p.Bits()), 10)
	}
	return string(b) == s
}

func (d *decoder) eventOps(l List, k wire.Kind, payload []byte) []setOp {
	lines, errs := wire.ParsePayload(payload)
	for _, err := range errs {
		d.refuse.refuse("bad_line", err.Error(), "topic", l.Root, "err", err)
	}
	ops := make([]setOp, 0, len(lines))
	burst := len(lines) >= wire.BurstLines
	for _, ln := range lines {
		if d.recent.has(ln.Prefix) {
			continue // its state came moments ago, and was applied: it decides
		}
		op := Op{Action: Add, Prefix: ln.Prefix, Timeout: ln.Timeout, Comment: d.eventComment(), Burst: burst}
		if k == wire.KindDel {
			op = Op{Action: Del, Prefix: ln.Prefix, Timeout: wire.DefaultTimeout}
		} else if !d.allowed(l.Root, ln.Prefix) {
			continue
		}
		ops = append(ops, setOp{set: l.setFor(ln.Prefix), op: op})
	}
	return ops
}

// stateOps turns a retained state message into an add with the remaining
// timeout, or a del when it is empty (an unban) or already expired.
func (d *decoder) stateOps(l List, t wire.Topic, payload []byte, retained bool) []setOp {
	del := func() []setOp {
		return []setOp{{set: l.setFor(t.Prefix), op: Op{Action: Del, Prefix: t.Prefix, Timeout: wire.DefaultTimeout}}}
	}
	d.recent.stateSeen = true
	now := time.Now()
	if len(payload) == 0 && d.chunksAlone(l.Root) {
		// On a list kept as chunks alone an empty state is not an unban:
		// its keeper deletes the per-ban state its chunks now hold after
		// each cut, and the broker hands every deletion to the
		// subscribers. An unban comes with its del event (vallum unban, a
		// legacy del), and a sync reads the rewritten chunk. That del
		// event must not be taken for the echo of the ban's own state
		// (recentState): forget the ban's state, or an unban within 10 s
		// of its ban was dropped (TestHUPResync).
		delete(d.recent.at, t.Prefix)
		d.sync.stateGone(l.Root, t.Prefix) // not a per-ban state read any more (deltaCheck)
		return nil
	}
	if len(payload) == 0 {
		if !retained { // a snapshot copy races no event: only live states are marked
			d.recent.mark(l.Root, t.Prefix, now, now.UnixMilli(), false)
		}
		d.sync.record(l.Root, t.Prefix, now.UnixMilli(), false, false) // an unban now: newer than any read
		return del()
	}
	st, err := wire.DecodeState(payload)
	if err != nil {
		d.refuse.refuse("bad_state", t.Prefix.String(), "topic", l.Root, "prefix", t.Prefix, "err", err)
		return nil
	}
	if !retained {
		d.recent.mark(l.Root, t.Prefix, now, st.At.UnixMilli(), true)
	}
	d.skew.check(st.At, now, d.log)
	left, active := st.Remaining(now)
	if !d.sync.record(l.Root, t.Prefix, st.At.UnixMilli(), active, true) {
		return nil // the window read a later version (a chunk entry): it stands
	}
	if !active {
		return del()
	}
	if !d.allowed(l.Root, t.Prefix) {
		return nil
	}
	return []setOp{{set: l.setFor(t.Prefix), op: Op{Action: Add, Prefix: t.Prefix, Timeout: left, Comment: CommentState}}}
}

// allowed runs an add through the guard, refusing (and counting) it there;
// root names the list (the set, when the worker checks again: self.go).
func (s *shared) allowed(root string, p netip.Prefix) bool {
	err := s.opts.Guard.Check(p)
	if err == nil {
		return true
	}
	reason := "allowlisted"
	if errors.Is(err, guard.ErrTooBroad) {
		reason = "too_broad"
	}
	s.refuse.refuse(reason, p.String(), "topic", root, "prefix", p, "err", err)
	return false
}

// setFor names the kernel set for p's family.
func (l List) setFor(p netip.Prefix) string {
	if p.Addr().Is4() {
		return l.Set4
	}
	return l.Set6
}

// skewWarn notices bans made in this host's future: one of the two clocks
// is off, and timeouts computed from expiry times are off by as much. A
// few seconds do no harm; more is logged, at most every ten minutes.
type skewWarn struct {
	mu   sync.Mutex
	last time.Time
}

const maxSkew = 10 * time.Second

func (s *skewWarn) check(at, now time.Time, log *slog.Logger) {
	ahead := at.Sub(now)
	if ahead <= maxSkew {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.last) < 10*time.Minute {
		return
	}
	s.last = now
	log.Warn("clock skew: a ban was made in this host's future; check NTP here and on the publisher", "ahead", ahead.Round(time.Second))
}

// recentState remembers the prefixes whose state (a ban or an unban)
// arrived live in the last few seconds. A ban comes as an event and a
// state, and a broker may deliver them in any order: mochi's keeper writes
// the state before the event reaches us, and a NATS cluster delivers each
// topic on its own, so that of a ban and its unban made a moment apart the
// events can come after the states and in either order. The states of one
// prefix share a topic and keep their order, and carry the ban itself: an
// event that comes after its prefix's state is ignored. (An event applied
// before its state is marked as state when the state comes, so that a sync
// can remove it after an unban.) Used on the message goroutine only.
//
// A sync's window starts with the bans whose state came live moments ago:
// a NATS node serves retained messages from a copy that lags the live ones
// by seconds under load, and a sync that trusted it alone would remove bans
// just made. (What this keeps that the state no longer holds, the
// confirming sync or the next one removes.)
type recentState struct {
	at        map[netip.Prefix]recent
	prune     time.Time
	stateSeen bool // the lists have state: vallum ban, or a keeper, feeds them
}

type recent struct {
	at   time.Time
	ver  int64 // the state's At, Unix milliseconds
	root string
	ban  bool // a ban, not an unban
}

const recentFor = 10 * time.Second

func (r *recentState) mark(root string, p netip.Prefix, now time.Time, ver int64, ban bool) {
	if r.at == nil {
		r.at = map[netip.Prefix]recent{}
	}
	r.at[p] = recent{now, ver, root, ban}
	if now.Sub(r.prune) > recentFor {
		for q, e := range r.at {
			if now.Sub(e.at) > recentFor {
				delete(r.at, q)
			}
		}
		r.prune = now
	}
}

// has reports whether a live state of p came within recentFor.
func (r *recentState) has(p netip.Prefix) bool {
	e, ok := r.at[p]
	return ok && time.Since(e.at) < recentFor
}

// seed records the recent live bans in s's window, if it just opened.
func (r *recentState) seed(s *syncer) {
	if !s.justOpened() {
		return
	}
	now := time.Now()
	for p, e := range r.at {
		if e.ban && now.Sub(e.at) < recentFor {
			s.seed(e.root, p, e.ver)
		}
	}
}

// eventComment is the comment of an event's add. With several brokers (a
// cluster), until the confirming sync of a connection, an event of a list
// that has state is marked as state:
// what a resumed session redelivers after a failover comes without the
// states that would order it (they are QoS 0, and were lost in the gap),
// and NATS delivers add and del events on their own, so a ban's add may
// come after its unban's del. Marked as state, a stale add is removed by
// the confirming sync. (A ban that only a legacy event made, on a list fed
// with state, is removed by that sync too: it is in no state. With one
// broker, whose session keeps the order, such bans stay.)
func (d *decoder) eventComment() string {
	if d.recent.stateSeen && d.confirming.Load() {
		return CommentState
	}
	return CommentEvent
}

// recordLive starts a sync at once when a lost list's record comes back
// live with the epoch of its last trusted sync (its keeper restored it),
// at most once every recentFor: a record replayed in a loop costs no more.
func (d *decoder) recordLive(root string, payload []byte) {
	rec, err := wire.DecodeRecord(payload)
	known, ok := d.epochs.epoch(root)
	if err != nil || !ok || !listread.SameEpoch(rec.Epoch, known) || !d.epochs.isLost(root) {
		return
	}
	d.syncLive()
}
