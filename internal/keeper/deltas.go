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

// brokerStateLocked notes a state message of topic read from the broker
// (anyone's, the keeper's own coming back too): what the broker holds
// there now, as the hosts read it, whatever the keeper's view makes of
// it (another keeper's state of the same event, in doubt, is not the
// view's but is the broker's). A state newer than the cut is a delta to
// announce; a deletion, or an older state, is none.
func (k *Keeper) brokerStateLocked(i int, topic string, p parsed) {
	c := &k.lists[i].ch
	if !k.lists[i].settled || c.man == nil || p.canon != topic {
		return // the deltas are made from the view at Settle (rescan)
	}
	at := p.state.At.UnixMilli()
	if p.del || at <= c.man.Cut.UnixMilli() {
		delete(c.deltas, topic)
		return
	}
	if c.deltas == nil {
		c.deltas = map[string]int64{}
	}
	c.deltas[topic] = at
}

// deltasLocked returns the per-ban states of list i on the broker with
// cut < at <= upto. After a (re)read of the broker (Settle) they are made
// from the view, which then holds what was read; then state messages keep
// them (brokerStateLocked): a few thousand at most, as a cut comes after
// 10,000 changes.
func (k *Keeper) deltasLocked(i int, upto time.Time) wire.Deltas {
	l := k.lists[i]
	cut := l.ch.man.Cut.UnixMilli()
	if l.ch.rescan {
		l.ch.deltas = map[string]int64{}
		for topic, e := range k.bans {
			if int(e.list) == i && e.at > cut && e.flags&fState != 0 {
				l.ch.deltas[topic] = e.at
			}
		}
		l.ch.rescan = false
	}
	d := wire.Deltas{Upto: upto}
	for topic, at := range l.ch.deltas {
		if at <= cut { // folded into the chunks of a cut since
			delete(l.ch.deltas, topic)
			continue
		}
		if at > upto.UnixMilli() {
			continue // too young to announce
		}
		if t, err := wire.ParseTopic(l.root, topic); err == nil {
			d.Add(t.Prefix, at)
		}
	}
	return d
}

// announceLocked puts the deltas of list i in its manifest when they
// changed, at most every deltasEvery, and reports whether it did. Only
// the list's cutter announces, as only it writes the manifest.
func (k *Keeper) announceLocked(i int, now time.Time) bool {
	l := k.lists[i]
	if !k.cutter(l) || l.ch.man == nil || k.reading || now.Sub(l.ch.deltasAt) < deltasEvery {
		return false
	}
	d := k.deltasLocked(i, now.Add(-deltaMargin))
	if old := l.ch.man.Deltas; old != nil && old.DeltaSum == d.DeltaSum {
		return false // the same set: the announcement stands as it is
	}
	l.ch.man.Deltas, l.ch.deltasAt = &d, now
	return true
}
