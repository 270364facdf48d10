package keeper

import (
	"time"

	"github.com/vallum/vallum/internal/wire"
)

// The manifest announces the per-ban states made since the cut (the
// deltas, wire.Deltas): how many, and a digest of them. A host whose read
// of the list does not match reads it partially, and removes nothing: a
// clustered broker's node that lags or lost one retained state would
// otherwise make it remove that ban.

const (
	// deltaMargin: the manifest announces the states at least this old,
	// so that a state a host reads but the keeper has not read yet (on
	// its way, or made on a clock a moment behind) does not make the
	// host's read differ: a state younger than the announcement is
	// counted by neither.
	deltaMargin = 2 * time.Second
	// deltasEvery: the manifest is rewritten for its deltas at most this
	// often (every host gets it), and only when they changed.
	deltasEvery = time.Second
)

// noteDeltaLocked notes that list i holds a state of topic at version at
// (Unix milliseconds) now: one to announce once it is deltaMargin old, if
// it is newer than the cut. Before the keeper settled, or the list's
// first cut, the candidates are made at once from the view (rescan).
func (k *Keeper) noteDeltaLocked(i int, topic string, at int64) {
	c := &k.lists[i].ch
	if !k.lists[i].settled || c.man == nil || at <= c.man.Cut.UnixMilli() {
		return
	}
	if c.deltas == nil {
		c.deltas = map[string]struct{}{}
	}
	c.deltas[topic] = struct{}{}
}

// deltasLocked returns the states of list i the broker holds, as the view
// knows them, with cut < at <= upto. It looks at the candidates only (a
// few thousand at most: a cut comes after 10,000 changes), after a
// rescan of the view when the cut, an adoption or a read changed them.
func (k *Keeper) deltasLocked(i int, upto time.Time) wire.Deltas {
	l := k.lists[i]
	cut := l.ch.man.Cut.UnixMilli()
	if l.ch.rescan {
		l.ch.deltas = map[string]struct{}{}
		for topic, e := range k.bans {
			if int(e.list) == i && e.at > cut {
				l.ch.deltas[topic] = struct{}{}
			}
		}
		l.ch.rescan = false
	}
	d := wire.Deltas{Upto: upto}
	for topic := range l.ch.deltas {
		e, ok := k.bans[topic]
		if !ok || e.at <= cut { // gone: a new state of it is noted again
			delete(l.ch.deltas, topic)
			continue
		}
		if e.flags&fState == 0 || e.at > upto.UnixMilli() {
			continue // no state on the broker (it may come back), or too young
		}
		if t, err := wire.ParseTopic(l.root, topic); err == nil {
			d.Add(t.Prefix, e.at)
		}
	}
	return d
}

// announceLocked puts the deltas of list i in its manifest when they
// changed, at most every deltasEvery, and reports whether it did. Only
// the list's cutter announces, as only it writes the manifest.
func (k *Keeper) announceLocked(i int, now time.Time) bool {
	l := k.lists[i]
	if !k.cutter(l) || l.ch.man == nil || now.Sub(l.ch.deltasAt) < deltasEvery {
		return false
	}
	d := k.deltasLocked(i, now.Add(-deltaMargin))
	if old := l.ch.man.Deltas; old != nil && old.DeltaSum == d.DeltaSum {
		return false // the same set: the announcement stands as it is
	}
	l.ch.man.Deltas, l.ch.deltasAt = &d, now
	return true
}
