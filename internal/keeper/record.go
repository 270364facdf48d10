package keeper

import (
	"cmp"
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/vallum/vallum/internal/wire"
)

// readRecord takes the record of a list read before its epoch is decided.
func (k *Keeper) readRecord(l *list, payload []byte) {
	if len(payload) == 0 {
		return
	}
	rec, err := wire.DecodeRecord(payload)
	if err != nil {
		k.quiet.warn("bad_record", "keeper record does not parse: publishing ours over it", "list", l.root, "err", err)
	}
	k.mu.Lock()
	if l.junk = err != nil; !l.junk {
		l.read = &rec
	}
	k.mu.Unlock()
}

// Settle is called once every retained message was read (the adapter's
// sync marker came back): the keeper decides each list's epoch, restores
// a list the broker lost from its copy, moves or clears the states it
// found misspelt or refused, and publishes the record. It returns the
// error of a record it could not publish.
func (k *Keeper) Settle() error {
	now := k.now()
	var out []retain
	k.mu.Lock()
	if !k.reading {
		k.rereadLocked() // nothing was read: none of what is tracked is on the broker (but see rereadLocked)
	}
	k.reading = false
	for i, l := range k.lists {
		out = append(out, k.settleLocked(i, l, now)...)
	}
	for _, f := range k.fixes {
		out = append(out, k.respellLocked(f)...)
	}
	k.fixes = nil
	var cuts []int
	for i := range k.lists {
		o, cut := k.settledLocked(i, now)
		out = append(out, o...)
		if cut {
			cuts = append(cuts, i)
		}
		k.lists[i].ch.rescan = true // the deltas to announce, from the view read (deltas.go)
	}
	k.mu.Unlock()
	err := k.publish(out)
	if len(cuts) > 0 { // as maintain cuts: one the broker refuses deletes nothing
		k.cutMu.Lock()
		var cut []retain
		var held []flushed
		for _, i := range cuts {
			cut = append(cut, k.cutOutside(i, now, &held)...)
		}
		err = cmp.Or(err, k.publish(cut))
		k.cutMu.Unlock()
		out = append(out, cut...)
	}
	k.freeAfter(out)
	return err
}

// settleLocked decides the epoch of list i: the record on the broker if
// there is one; else the broker lost the list, and the keeper's copy
// restores it under the same epoch; else a new epoch begins (a new list,
// or a keeper without a copy).
func (k *Keeper) settleLocked(i int, l *list, now time.Time) []retain {
	var out []retain
	adopted := false
	switch {
	case l.read != nil:
		if l.rec.Epoch != "" && l.rec.Epoch != l.read.Epoch {
			k.log.Warn("list epoch changed on the broker: following it", "list", l.root, "was", l.rec.Epoch, "epoch", l.read.Epoch)
		}
		l.rec = *l.read
		k.copy.setRecord(l.root, l.rec)
		var damaged bool
		if chunksBuilt {
			adopted, damaged = k.foldReadLocked(i) // before forgetting what the read did not see
		}
		if damaged && k.copy != nil {
			// What the damaged chunks held is not known to be lifted:
			// the copy puts back what it holds, in the cut after Settle.
			k.restoreLocked(i, now)
		} else {
			k.forgetLocked(i)
		}
	case k.copy != nil && l.rec.Epoch != "":
		l.rec.Keeper = k.o.Name // restoring it, this keeper cuts
		n, restored, kept := k.restoreLocked(i, now)
		out = append(n, k.recordLocked(l))
		level := slog.LevelWarn
		if restored > 0 {
			level = slog.LevelError
		}
		k.log.Log(context.Background(), level, "keeper record missing: the broker lost the list; restored every unexpired ban from the keeper's copy",
			"list", l.root, "restored", restored, "already_there", kept, "epoch", l.rec.Epoch)
	default:
		if n := k.forgetLocked(i); n > 0 && l.rec.Epoch != "" {
			k.log.Error("keeper record missing: the broker lost the list and the keeper keeps no copy; a new epoch begins, so hosts keep their bans",
				"list", l.root, "lost", n)
		}
		l.rec = wire.Record{Epoch: k.spell(wire.NewEpoch(), false), Since: now, Keeper: k.o.Name}
		k.copy.setRecord(l.root, l.rec)
		out = append(out, k.recordLocked(l))
		k.log.Info("list epoch begins", "list", l.root, "epoch", l.rec.Epoch)
	}
	l.read, l.junk, l.settled = nil, false, true
	if !adopted { // no chunks of this epoch on the broker
		l.ch = chunkSet{changes: l.ch.changes, cutAt: cmp.Or(l.ch.cutAt, now), other: l.ch.other}
	}
	return out
}

// spell returns epoch in the spelling of the keeper's LegacyState: v2
// without it, unless LegacyAuto keeps the old spelling of an existing
// list's epoch.
func (k *Keeper) spell(epoch string, existing bool) string {
	old := !wire.IsEpochV2(epoch)
	epoch = strings.TrimPrefix(epoch, wire.EpochV2(""))
	if k.o.LegacyState || k.o.LegacyAuto && existing && old {
		return epoch
	}
	return wire.EpochV2(epoch)
}

// settledLocked ends Settle for list i: a list whose chunks are not on the
// broker (none cut yet, lost, damaged, or the record names a keeper that
// is gone) is taken over by this keeper; the cutter respells the epoch to
// its LegacyState, and reports that it cuts (Settle, after the lock).
func (k *Keeper) settledLocked(i int, now time.Time) (out []retain, cut bool) {
	l := k.lists[i]
	if !chunksBuilt {
		return nil, false
	}
	if !k.cutter(l) && l.ch.man == nil {
		k.log.Info("no chunks of the list on the broker: this keeper cuts them", "list", l.root, "record_keeper", l.rec.Keeper)
		l.rec.Keeper = k.o.Name
		k.copy.setRecord(l.root, l.rec)
		out = append(out, k.recordLocked(l))
	}
	if !k.cutter(l) {
		return out, false
	}
	if !k.o.LegacyState && !wire.IsEpochV2(k.spell(l.rec.Epoch, true)) {
		k.log.Warn("list kept as per-ban state for every ban besides its chunks: its record is in the previous release's spelling, "+
			"whose hosts would take the deletions after a cut for unbans; once every host runs this release, restart the keeper with --legacy-state=false",
			"list", l.root, "epoch", l.rec.Epoch)
	}
	if spelt := k.spell(l.rec.Epoch, true); spelt != l.rec.Epoch {
		if !wire.IsEpochV2(spelt) { // per-ban state for every ban before the record says so
			out = append(out, k.legacyStatesLocked(i)...)
		}
		k.log.Warn("list epoch respelt: --legacy-state changed", "list", l.root, "was", l.rec.Epoch, "epoch", spelt)
		l.rec.Epoch = spelt
		k.copy.setRecord(l.root, l.rec)
		out = append(out, k.recordLocked(l))
	}
	return out, true
}

// legacyStatesLocked publishes the per-ban state of every ban of list i
// that only a chunk holds.
func (k *Keeper) legacyStatesLocked(i int) []retain {
	var out []retain
	for topic, e := range k.bans {
		if int(e.list) == i && e.flags&fState == 0 {
			e.flags |= fState
			k.bans[topic] = e
			out = append(out, k.sentLocked(topic, wire.EncodeState(k.stateOf(e))))
		}
	}
	return out
}

// forgetLocked drops the states of list i that the last read did not see:
// lifted while the keeper was away. It returns how many.
func (k *Keeper) forgetLocked(i int) int {
	n := 0
	for topic, e := range k.bans {
		if int(e.list) == i && e.gen != k.gen {
			k.dropLocked(topic)
			n++
		}
	}
	return n
}

// restoreLocked republishes, from the copy, every unexpired state of list
// i that the last read did not see, with its own At, Expires, Reason and
// Origin. It returns the messages and how many states the broker held.
func (k *Keeper) restoreLocked(i int, now time.Time) (out []retain, restored, kept int) {
	for topic, e := range k.bans {
		if int(e.list) != i {
			continue
		}
		if e.gen == k.gen {
			kept++
			continue
		}
		s, ok := k.copy.ban(topic)
		if _, live := s.Remaining(now); !ok || !live {
			k.dropLocked(topic)
			continue
		}
		// The cut after Settle publishes it, in a chunk; a list that
		// keeps legacy state has its per-ban state too.
		e.gen, e.flags = k.gen, fChunk
		if !wire.IsEpochV2(k.spell(k.lists[i].rec.Epoch, true)) {
			e.flags = fState
			out = append(out, k.sentLocked(topic, wire.EncodeState(s)))
		}
		k.bans[topic] = e
		restored++
	}
	return out, restored, kept
}

// recordLocked returns the record of l to publish.
func (k *Keeper) recordLocked(l *list) retain {
	return k.sentLocked(wire.RecordTopic(l.root), wire.EncodeRecord(l.rec))
}

// record takes a live message on a list's record topic. Two keepers of a
// list converge on the smaller epoch: each adopts a smaller one it reads
// and publishes its own over a larger one. A deleted or broken record is
// published again.
func (k *Keeper) record(i int, payload []byte) {
	l := k.lists[i]
	topic := wire.RecordTopic(l.root)
	k.mu.Lock()
	if k.echoLocked(topic, payload) {
		k.mu.Unlock()
		return
	}
	if !l.settled || k.reading { // not settled yet: what the broker holds
		k.mu.Unlock()
		k.readRecord(l, payload)
		return
	}
	var out []retain
	rec, err := wire.DecodeRecord(payload)
	switch {
	case err != nil: // deleted (an empty payload) or broken
		k.quiet.warn("bad_record", "keeper record deleted or broken: publishing it again", "list", l.root, "err", err)
		out = append(out, k.recordLocked(l))
	case rec.Epoch != l.rec.Epoch || rec.Keeper != l.rec.Keeper:
		// The smaller epoch wins, then the smaller keeper name (the
		// list's cutter): adopted, or ours published over it.
		k.log.Info("another keeper's record", "list", l.root, "ours", l.rec.Epoch, "theirs", rec.Epoch, "keeper", rec.Keeper)
		if cmp.Or(strings.Compare(rec.Epoch, l.rec.Epoch), strings.Compare(rec.Keeper, l.rec.Keeper)) < 0 {
			if rec.Epoch != l.rec.Epoch {
				l.ch.man = nil // ours is of the epoch lost: the winner's next manifest is adopted
			}
			l.rec = rec
			k.copy.setRecord(l.root, rec)
		} else {
			out = append(out, k.recordLocked(l))
		}
	}
	k.mu.Unlock()
	_ = k.publish(out)
}

// Epoch returns the epoch of list root; "" before Settle or for a list
// the keeper does not keep.
func (k *Keeper) Epoch(root string) string {
	k.mu.Lock()
	defer k.mu.Unlock()
	if l := k.named(root); l != nil {
		return l.rec.Epoch
	}
	return ""
}

// named returns the list of root, or nil for a list the keeper does not
// keep. The lists never change after New, so any lock will do.
func (k *Keeper) named(root string) *list {
	for _, l := range k.lists {
		if l.root == root {
			return l
		}
	}
	return nil
}
