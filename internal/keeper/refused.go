package keeper

import (
	"time"
)

// cutRetry is how long after a cut the broker did not take (its disk
// full, its quota reached) the keeper tries again. Each try encodes the
// whole list: not at every wake.
var cutRetry = 10 * time.Second

// refusal is what a cut the broker did not take left of a list. Its
// chunks refused, the cut was not made: the list stays at its last
// generation, which nothing deleted, and what the cut was to hold (bursts,
// per-ban states) is held as before, for the next. Its manifest refused,
// the keeper holds the cut, and the deletions of the generation before
// and of the per-ban states it folded (clean) wait for a manifest that
// the broker takes: until then hosts read the generation before.
type refusal struct {
	retryAt time.Time
	logged  bool     // the refusal was logged; the next cut taken says so
	clean   []retain // the deletions of a cut whose manifest was refused
}

// Syncer is a Sink whose Retain does not wait for the broker (`vallum
// keeper` over MQTT): Sync waits for the broker to acknowledge what was
// published before it, and fails if it did not, or not soon. A cut's
// deletions go out only after it.
type Syncer interface {
	Sync() error
}

// publishAll publishes out in order and stops at the first publish that
// fails: what follows it must not land without it. It returns how many
// were published; with a Syncer, also those the broker may not have.
func (k *Keeper) publishAll(out []retain) (int, error) {
	s, syncs := k.sink.(Syncer)
	if syncs {
		_ = s.Sync() // a mark: what failed before, a reconnection before, is not out's
	}
	for n, r := range out {
		if err := k.sink.Retain(r.topic, r.payload); err != nil {
			return n, err
		}
	}
	if syncs {
		return len(out), s.Sync()
	}
	return len(out), nil
}

// unpublish deletes the chunks of a cut refused that landed before the
// refusal: a deletion is a tiny record, which a full disk still takes
// mostly. One it does not take is read at the next start, as a generation
// no manifest names, and deleted by the next cut.
func (k *Keeper) unpublish(chunks []retain) {
	for _, r := range chunks {
		_ = k.sink.Retain(r.topic, nil)
	}
}

// refusedCut notes that the broker did not take list i's cut, whose
// deletions are clean if it committed (man: its manifest was refused):
// the next try is cutRetry later. Logged once, however many tries and
// chunks: the broker's own metrics count each refusal.
func (k *Keeper) refusedCut(i int, now time.Time, man bool, clean []retain, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if man {
		// Never to come back: counted, it would make the echoes of the
		// deletions after the next manifest wait for one more
		// (cleanBackLocked), and taken for unbans meanwhile.
		k.lists[i].ch.manSent--
	}
	r := &k.lists[i].refused
	r.retryAt = now.Add(cutRetry)
	r.clean = append(r.clean, clean...)
	if !r.logged {
		r.logged = true
		k.log.Error("cut not taken by the broker (its disk full?): the list stays as the broker holds it, nothing of it deleted; trying again",
			"list", k.lists[i].root, "every", cutRetry, "err", err)
	}
}

// takenCut notes that the broker took a cut of list i; it returns the
// deletions a cut refused before left, which this one's make due too.
func (k *Keeper) takenCut(i int) []retain {
	k.mu.Lock()
	defer k.mu.Unlock()
	r := &k.lists[i].refused
	if r.logged {
		k.log.Info("cut taken by the broker again", "list", k.lists[i].root)
	}
	clean := r.clean
	*r = refusal{}
	return clean
}

// cleanRefused publishes again the manifest of list i whose cut the broker
// took but not its manifest, once cutRetry passed, and returns the
// deletions that cut left once the broker took it.
func (k *Keeper) cleanRefused(i int, now time.Time) []retain {
	k.mu.Lock()
	l := k.lists[i]
	if len(l.refused.clean) == 0 || now.Before(l.refused.retryAt) || l.ch.manBytes == nil {
		k.mu.Unlock()
		return nil
	}
	man := k.sentManLocked(l)
	k.mu.Unlock()
	if _, err := k.publishAll([]retain{man}); err != nil {
		k.refusedCut(i, now, true, nil, err)
		return nil
	}
	return k.takenCut(i)
}

// latest returns the later of a and b.
func latest(a, b time.Time) time.Time {
	if a.Before(b) {
		return b
	}
	return a
}
