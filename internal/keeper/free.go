package keeper

import (
	"runtime/debug"
	"sync"
	"time"
)

// freer returns the memory of the keeper's big transient work to the
// system: the per-ban states a cleanup deleted (mochi held each in about
// 1.4 KB on the hub) and a cut's items and chunks. The Go runtime keeps
// freed pages for minutes and collects only as the heap grows again: a
// hub that took 100,000 bans stayed at 123 MB holding them as chunks,
// instead of about 50; a hub fed 100,000 bans as events stayed at 133 MB
// in a run whose last cut left 10,000 per-ban states, 76 MB in one that
// left none. A return is a whole collection: each waits ten times as long
// as the last took (at most a tenth of a core), and one due meanwhile
// comes at the first maintain after.
type freer struct {
	mu   sync.Mutex
	due  bool      // a big cut or cleanup since the last return
	next time.Time // when the next return may come
	os   func()    // debug.FreeOSMemory; something else in tests
}

const (
	// freeAtDeleted: deletions in one go, or bans cut, that make the
	// keeper return memory.
	freeAtDeleted = 10_000
	// freePace: a return waits this many times as long as the last took.
	freePace = 10
)

// cut notes a cut of entries bans.
func (f *freer) cut(entries int) {
	if entries >= freeAtDeleted {
		f.mu.Lock()
		f.due = true
		f.mu.Unlock()
	}
}

// after returns memory once out is published, if it deleted many
// per-ban states, or a big cut came, and none was returned lately.
func (f *freer) after(out []retain, now func() time.Time) {
	deleted := 0
	for _, r := range out {
		if len(r.payload) == 0 {
			deleted++
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.due = f.due || deleted >= freeAtDeleted
	began := now()
	if !f.due || began.Before(f.next) {
		return
	}
	if f.os != nil {
		f.os()
	} else {
		debug.FreeOSMemory()
	}
	end := now()
	f.due, f.next = false, end.Add(freePace*end.Sub(began))
}
