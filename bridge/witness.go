package bridge

import (
	"context"
	"net/netip"

	"github.com/vallum/vallum/internal/wire"
)

// A reload can also leave a set in place but empty: `ipset flush`,
// `ipset destroy X; ipset create X ...` in one script, `nft flush set`,
// or fw4 restart re-creating table inet fw4 with its sets, all between two
// checks of the watcher, which finds the set there. So on each check the
// watcher also looks up one entry of each set that vallum owns, its
// witness, in the kernel: one hash lookup whatever the set's size. When
// the witness is gone though vallum still owns it, the set lost vallum's
// entries, and it is reconciled to the broker's state as after a SIGHUP.
// A person deleting that one entry by hand is taken for a reload too: the
// resync puts back the bans the broker holds, and nothing else changes.

// Prober is what a Backend offers when it can look one entry up cheaply.
// Backends without it (dryrun, fakes) are not checked for emptied sets.
type Prober interface {
	// Has reports whether the set holds the address p.
	Has(ctx context.Context, set string, p netip.Prefix) (bool, error)
}

// witnessesGone checks the witness of every set and reports whether one
// was missing.
func (a *applier) witnessesGone(ctx context.Context) bool {
	pr, ok := a.be.(Prober)
	if !ok {
		return false
	}
	gone := false
	for _, l := range a.opts.Lists {
		for _, set := range []string{l.Set4, l.Set6} {
			if a.witnessGone(ctx, pr, set) {
				gone = true
			}
		}
	}
	return gone
}

// witnessGone looks up set's witness. It runs under repairs.mu, which
// guards the chosen witnesses, and holds ownership.kernel across the
// lookup and the check of ownership that follows, so that a del or an
// expiry the worker applied meanwhile is not taken for a reload.
func (a *applier) witnessGone(ctx context.Context, pr Prober, set string) bool {
	r := &a.repairs
	w, ok := a.own.witness(set, r.chosen[set], unixNow())
	if !ok {
		delete(r.chosen, set)
		return false
	}
	if r.chosen == nil {
		r.chosen = map[string]netip.Prefix{}
	}
	r.chosen[set] = w
	a.own.kernel.Lock()
	defer a.own.kernel.Unlock()
	has, err := pr.Has(ctx, set, w)
	if err != nil || has || !a.own.stillOwned(set, w, unixNow()) {
		return false // an error: the check of the sets reports what is wrong
	}
	a.log.Warn("set lost vallum's entries (flushed or re-created by a firewall reload?): resyncing", "set", set, "missing", wire.FormatPrefix(w))
	a.stats.SetsEmptied.Add(1)
	// What vallum owns is now what the set holds, so that the next check
	// picks a witness that is there, and does not resync again before the
	// broker's state is back.
	entries, err := a.be.List(ctx, set)
	if err != nil {
		a.own.forget(set, w)
	} else {
		a.own.load(set, entries)
	}
	delete(r.chosen, set)
	return true
}
