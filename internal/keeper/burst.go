package keeper

import (
	"time"

	"github.com/vallum/vallum/internal/wire"
)

// The burst path. An event message of many lines (a feed, `vallum import`,
// a scripted mass ban) made one retained state per line, which the next
// cut folded into chunks and deleted: two retained publishes per ban
// (100,000 bans took 89 to 101 s to the cut on NATS). The list's cutter
// takes the add lines of such a message straight into its view, marked
// fBurst, and cuts as soon as the burst pauses: the chunks are the bans'
// only retained form. Hosts online apply the event itself, as they always
// do; late joiners read the chunks.
//
// What makes such a ban survive is the cut, not a per-ban state: over an
// MQTT client (keepermqtt) the adapter acknowledges the burst's messages
// only once the cut that holds them is on the broker (Unflushed, Flush),
// so a keeper killed before that gets them again from its session. Inside
// the hub, mochi acknowledges a message before the keeper sees it (as for
// every event), so the hub journals each burst message before the PUBACK
// (broker/journal.go) and gives the keeper, at start, the journal's
// bursts to take again (Replay, replay.go); it drops an entry once a cut
// holding it is stored, which it learns from Options.Flushed and Bursts.

const (
	// DefaultBurstLines: an event message with at least this many add
	// lines is a burst (the wire's number, which hosts count too).
	DefaultBurstLines = wire.BurstLines
	// burstQuiet: a burst is cut once no burst line came for this long,
	// so that the messages of one import make one cut, not one each.
	burstQuiet = 200 * time.Millisecond
	// burstWait bounds how long a burst waits for its cut while more
	// keep coming, unless the cuts cost more (burstRest).
	burstWait = time.Second
	// burstRest: while a burst goes on, the keeper rests this many times
	// its last cut's cost (building and publishing it) before the next,
	// so that cuts of a growing list take at most a fifth of its time.
	// Each cut holds the keeper's lock, which the hub's event path waits
	// for: cut every second, a 1,000,000-ban import stalled the hub
	// (each cut of the growing list longer than the last, a publish not
	// acknowledged within 15 s).
	burstRest = 4
)

const fBurst = fChunk << 1 // the view holds it for the next cut only (a burst)

// burstableLocked reports whether list i takes bursts: this keeper cuts
// its chunks, and hosts read them (a v2 epoch; with legacy state every
// ban keeps its per-ban state).
func (k *Keeper) burstableLocked(i int) bool {
	l := k.lists[i]
	return chunksBuilt && k.cutter(l) && wire.IsEpochV2(l.rec.Epoch)
}

// burstLocked takes one ban of a burst into the view (and the copy) for
// the next cut. A per-ban state the broker holds of an earlier version
// stays until that cut deletes it (foldedLocked): hosts keep the later.
func (k *Keeper) burstLocked(i int, topic string, s wire.State, now time.Time) {
	old, known := k.bans[topic]
	e := k.entryLocked(i, s)
	e.flags = fBurst | old.flags&(fState|fChunk)
	k.bans[topic] = e
	l := &k.lists[i].ch
	if l.burst == 0 {
		l.burstFirst = now
	}
	l.burst++
	l.burstLast = now
	l.changes++
	if k.copy != nil { // the hub has none: no JSON per ban for nothing
		k.copy.set(copyBan+topic, wire.EncodeState(s))
	}
	if e.exp != 0 && (!known || old.exp != e.exp) {
		k.scheduleLocked(topic, e.exp)
	}
}

// burstDue returns when the list's burst is to be cut, after a cut that
// cost cost; zero: no burst. A burst that paused (for burstQuiet, or the
// last cut's cost if more) is cut then; one that goes on, burstWait after
// its first ban, but no sooner than burstRest times the last cut's cost
// after it.
func (c *chunkSet) burstDue(cost time.Duration) time.Time {
	if c.burst == 0 {
		return time.Time{}
	}
	paused := c.burstLast.Add(max(burstQuiet, cost))
	going := c.burstFirst.Add(burstWait)
	if rest := c.cutAt.Add(cost * (1 + burstRest)); rest.After(going) {
		going = rest
	}
	if going.Before(paused) {
		return going
	}
	return paused
}

// unburstLocked publishes a per-ban state for each ban of list i's burst:
// the keeper no longer cuts the list (another keeper's record won), and
// the bans must not wait for a cut that will not come.
func (k *Keeper) unburstLocked(i int) []retain {
	var out []retain
	for topic, e := range k.bans {
		if int(e.list) != i || e.flags&fBurst == 0 {
			continue
		}
		e.flags = e.flags&^fBurst | fState
		k.bans[topic] = e
		out = append(out, k.sentLocked(topic, wire.EncodeState(k.stateOf(e))))
	}
	k.lists[i].ch.burst = 0
	return out
}

// Unflushed reports whether the keeper holds bans of a burst that no cut
// has published yet: an adapter acknowledges no message after it until
// Flush.
func (k *Keeper) Unflushed() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, l := range k.lists {
		if l.ch.burst > 0 {
			return true
		}
	}
	return false
}

// Flush cuts now every list with a burst pending and publishes the cut
// (through the Sink, before it returns). It waits for a cut of Run in
// progress: once it returns, every burst taken before it is in a cut
// handed to the Sink.
func (k *Keeper) Flush() {
	k.cutMu.Lock()
	defer k.cutMu.Unlock()
	began, now := time.Now(), k.now()
	var out []retain
	var due []int
	var held []flushed
	k.mu.Lock()
	for i, l := range k.lists {
		switch {
		case l.ch.burst == 0:
		case k.cutter(l):
			due = append(due, i)
		default:
			out = append(out, k.unburstLocked(i)...)
			held = append(held, flushed{i, l.ch.bursts})
		}
	}
	k.mu.Unlock()
	for _, i := range due {
		out = append(out, k.cutOutside(i, now, &held)...)
	}
	k.flushed(held, k.publish(out))
	k.freeAfter(out)
	if len(due) > 0 {
		k.costed(began)
	}
}

// flushed is what a cut or an unburst of list holds: the list's burst
// messages up to upto (chunkSet.bursts).
type flushed struct {
	list int
	upto uint64
}

// Bursts returns how many messages of list root sent bans to the view for
// a cut so far (0 for a list not kept). Once Options.Flushed says root's
// cuts hold up to that many, every such message taken before the call is
// on the broker: its journal entry may go (broker/journal.go).
func (k *Keeper) Bursts(root string) uint64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	if l := k.named(root); l != nil {
		return l.ch.bursts
	}
	return 0
}

// flushed tells Options.Flushed what the cuts and unbursts just published
// hold, when every publish worked (err nil): a cut the broker refused
// holds nothing yet.
func (k *Keeper) flushed(held []flushed, err error) {
	if k.o.Flushed == nil || err != nil {
		return
	}
	for _, h := range held {
		k.o.Flushed(k.lists[h.list].root, h.upto)
	}
}

// costed notes the cost of the cuts made since began, published.
func (k *Keeper) costed(began time.Time) {
	k.mu.Lock()
	k.cutCost = time.Since(began)
	k.mu.Unlock()
}

// woken wakes Run: a burst is to be cut.
func (k *Keeper) woken() {
	select {
	case k.wake <- struct{}{}:
	default:
	}
}
