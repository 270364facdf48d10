package bridge

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"

	"github.com/vallum/vallum/internal/datadir"
	"github.com/vallum/vallum/internal/listread"
	"github.com/vallum/vallum/internal/wire"
)

// A lost list is not an unban. A broker restarted without its store, or a
// fresh broker the hosts were pointed at, holds no state: a sync that
// trusted it would remove every shared ban from every host at once. So the
// bridge reads each list's keeper record (wire.Record) in every sync, and
// remembers the epoch of the last sync it trusted, in Options.EpochFile so
// that a restart still knows it. A sync removes what the state no longer
// holds only when the record is there with that epoch. When the record is
// missing, not valid, or carries another epoch, the bridge removes nothing,
// says so at ERROR once per sync, in vallum_list_state_lost and /healthz,
// and keeps its bans until the keeper restores the list with its epoch: it
// looks again after lostRetry, and at once when the record comes back live.
//
// A new epoch is adopted only by a decision: a list never seen with a
// record adopts the first it sees (a new host, or the first keeper of an
// existing list), and a list found lost adopts what the broker holds (a
// new epoch, or no record at all) at the first sync after a SIGHUP
// (`systemctl reload vallum`). Not a restart: a crash loop would decide for
// the operator. Not a timer: a list lost at night would be emptied on every
// host by morning. A forged record of another epoch (or an empty one) can
// stop removals, as a missing one does, but not cause any.

// recordSeen is what a sync's window held of one list's keeper record.
type recordSeen struct {
	rec     wire.Record
	ok      bool   // a valid record is the last one that came
	bad     string // why the last record that came is not valid
	refused bool   // the broker refused the subscription to the record
}

// verdict is what a sync may do with a list.
type verdict uint8

const (
	untracked verdict = iota // no record now nor ever: the state is trusted, as before records
	trusted                  // the record's epoch is the one of the last trusted sync
	lost                     // remove nothing: the broker's list is not the one followed
)

// epochs keeps the epoch of each list's last trusted sync. The worker
// judges; SIGHUP asks for an adoption.
type epochs struct {
	path string // "": in memory only
	log  *slog.Logger

	mu    sync.Mutex
	known map[string]string // list root -> epoch
	lost  map[string]bool   // found lost at its last sync
	adopt map[string]bool   // lost at a SIGHUP: adopt at the next sync
}

func newEpochs(path string, log *slog.Logger) *epochs {
	e := &epochs{path: path, log: log, known: map[string]string{}, lost: map[string]bool{}, adopt: map[string]bool{}}
	if path == "" {
		return e
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return e
	}
	if err == nil {
		err = json.Unmarshal(b, &e.known)
	}
	for root, ep := range e.known {
		if !wire.ValidEpoch(ep) {
			delete(e.known, root)
			err = errors.Join(err, fmt.Errorf("list %q: bad epoch %q", wire.Clip(root), wire.Clip(ep)))
		}
	}
	if err != nil {
		// Starting as a new host is the lesser harm: the lists adopt the
		// next record they see, which is the list's unless the broker
		// lost it at the very same time.
		log.Error("cannot read the list epochs: each list adopts the keeper record it finds next", "file", path, "err", err)
	}
	return e
}

// judge decides what the sync that read seen may do with list root, and
// adopts an epoch when it may. adopted reports a SIGHUP adoption.
func (e *epochs) judge(root string, seen recordSeen) (v verdict, adopted bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	known, had := e.known[root]
	adopt := e.adopt[root]
	delete(e.adopt, root)
	switch {
	case seen.ok && (!had || listread.SameEpoch(seen.rec.Epoch, known)):
		if !had || seen.rec.Epoch != known { // a keeper that turned to chunks alone writes it as v2
			e.known[root] = seen.rec.Epoch
			e.saveLocked()
		}
		v = trusted
	case !seen.ok && !had:
		v = untracked
	case adopt && seen.ok:
		e.known[root] = seen.rec.Epoch
		e.saveLocked()
		v, adopted = trusted, true
	case adopt:
		delete(e.known, root)
		e.saveLocked()
		v, adopted = untracked, true
	default:
		v = lost
	}
	e.lost[root] = v == lost
	return v, adopted
}

// epoch returns the epoch of the last trusted sync of root, if any.
func (e *epochs) epoch(root string) (string, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	ep, ok := e.known[root]
	return ep, ok
}

// isLost reports whether the last sync found root lost.
func (e *epochs) isLost(root string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.lost[root]
}

// requestAdopt makes the next sync of every list now lost adopt what the
// broker holds; it returns those lists.
func (e *epochs) requestAdopt() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var roots []string
	for root, l := range e.lost {
		if l {
			e.adopt[root] = true
			roots = append(roots, root)
		}
	}
	return roots
}

func (e *epochs) saveLocked() {
	if e.path == "" {
		return
	}
	b, _ := json.Marshal(e.known) // a map of strings cannot fail
	if err := datadir.WriteAtomic(e.path, append(b, '\n'), 0o640); err != nil {
		e.log.Error("cannot save the list epochs: after a restart, vallum will take the next keeper record it sees for the list's", "err", err)
	}
}
