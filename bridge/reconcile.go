package bridge

import (
	"context"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/vallum/vallum/internal/wire"
)

// reconcile is step 3, on the worker, after every op queued before B.
// What it may remove depends on the list's keeper record (epoch.go): on a
// list the broker lost, nothing.
func (a *applier) reconcile(ctx context.Context, res *syncResult) {
	var logs []func()
	young, again, lostN := false, false, 0
	for _, l := range a.opts.Lists {
		present := res.present[l.Root]
		seen := res.records[l.Root]
		v, adopted := a.epochs.judge(l.Root, seen)
		part, isPartial := res.partial[l.Root]
		remove := v
		if isPartial {
			remove = lost // partial state is never taken for the whole list
		}
		var sw sweep
		for _, set := range []string{l.Set4, l.Set6} {
			sw.add(a.removeStale(ctx, set, present, remove, res.start))
		}
		young = young || sw.young > 0
		a.stats.SetListLost(l.Root, "")
		switch {
		case v != lost && isPartial && part.stale:
			again = true
			logs = append(logs, func() {
				a.log.Info("the list's chunks were rewritten while this sync read them; syncing again", "topic", l.Root, "kept", sw.stale)
			})
		case v != lost && isPartial:
			lostN++
			a.stats.SetListLost(l.Root, "partial: "+part.why)
			logs = append(logs, func() { a.logPartial(l.Root, part.why, sw.stale) })
		}
		if v == lost {
			lostN++
			why := lostWhy(seen, a.epochs, l.Root)
			a.stats.SetListLost(l.Root, why)
			logs = append(logs, func() { a.logLost(l.Root, why, sw.stale) })
		}
		if adopted {
			epoch := seen.rec.Epoch
			if !seen.ok {
				epoch = "none: no keeper record"
			}
			logs = append(logs, func() {
				a.log.Warn("list adopted on SIGHUP: the broker's list is taken as it is", "topic", l.Root, "epoch", epoch, "removed", sw.removed)
			})
		}
		root, n := l.Root, present.len()
		logs = append(logs, func() { a.log.Info("synced", "topic", root, "active", n, "removed", sw.removed) })
	}
	if presenceBuilt {
		a.stats.noteSync()
	}
	if total(res.present) > bigSync {
		// A late join of many bans left a heap the size of the whole list
		// (messages, the window, the kernel listing); give it back to the
		// system now rather than keep it for the next sync.
		res.present = nil
		debug.FreeOSMemory()
	}
	a.stats.Syncs.Add(1)
	for _, f := range logs {
		f()
	}
	if again {
		a.syncLater(0, "the list's chunks changed during the last sync")
	}
	if young {
		a.syncLater(a.opts.eventSettle+time.Second, "events applied just before the last sync are not in the list yet")
	}
	a.dropAllow(lostN > 0) // the allowlist read at this sync (allow.go)
	if lostN == 0 {
		a.lostStreak = 0
	} else {
		a.lostStreak = min(a.lostStreak+1, 10)
		a.syncLater(min(lostRetry<<(a.lostStreak-1), lostRetryMax), "a list was found lost")
	}
}

// bigSync is the number of bans above which a sync returns its memory.
const bigSync = 10000

func total(m map[string]*seen) int {
	n := 0
	for _, s := range m {
		n += s.len()
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
func (a *applier) removeStale(ctx context.Context, set string, present *seen, v verdict, start time.Time) sweep {
	var sw sweep
	if !a.comments.get(set) {
		a.log.Warn("set has no comment support: vallum cannot tell its own entries and removes none at sync", "set", set)
		return sw
	}
	entries, err := a.be.List(ctx, set)
	if err != nil {
		a.log.Error("sync: cannot list set", "set", set, "err", err)
		return sw
	}
	a.own.load(set, entries)
	var ops []Op
	for _, e := range entries {
		event := e.Comment == CommentEvent
		if present.has(e.Prefix) || !event && e.Comment != CommentState || event && v == untracked {
			continue // an untracked list's events may have no state
		}
		sw.stale++
		switch {
		case v == lost:
			continue
		case event && a.events.since(set, e.Prefix, start.Add(-a.opts.eventSettle)):
			sw.young++
			continue
		}
		ops = append(ops, Op{Action: Del, Prefix: e.Prefix, Timeout: wire.DefaultTimeout})
	}
	if len(ops) > 0 {
		a.applySet(ctx, set, ops)
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

// logPartial says that a sync read part of a list's chunks, and kept what
// they may have held.
func (a *applier) logPartial(root, why string, kept int) {
	a.log.Error(fmt.Sprintf("list %s: the sync read only part of the list's chunks or per-ban states (%s); keeping %d bans it did not read, "+
		"removing none; a new manifest from the list's keeper makes this host sync again", root, why, kept),
		"topic", root, "kept", kept)
}

func (a *applier) logLost(root, why string, kept int) {
	known, _ := a.epochs.epoch(root)
	a.log.Error(fmt.Sprintf("list %s: %s; keeping %d bans it no longer lists; run or restore the list's keeper "+
		"(it restores the list with its epoch), or send SIGHUP (systemctl reload vallum) to take the broker's list as it is", root, why, kept),
		"topic", root, "kept", kept, "epoch", known)
}
