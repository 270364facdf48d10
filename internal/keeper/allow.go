//go:build !(vallum_small && (mips || mipsle))

package keeper

import (
	"net/netip"

	"github.com/vallum/vallum/internal/wire"
)

// The fleet's shared allowlist (wire.AllowPrefix, written by admins only)
// is policy the keeper applies to its lists: no event or state an entry
// covers becomes state (its guard refuses them, as it refuses what
// --allow covers: events.go, state.go), and a new entry lifts the bans it
// covers on every host, by deleting their states as an unban does. Each is
// logged. The keeper reads the allowlist first (Filters), so that at start
// it refuses covered states as it reads them; a state read before the
// entry that covers it is lifted when the entry comes.

// allowFilters are the allowlist's filters in Filters(): first.
var allowFilters = []string{wire.AllowFilter}

// allowMessage takes one message of the allowlist, read before Settle or
// live.
func (k *Keeper) allowMessage(topic string, payload []byte) {
	p, err := wire.ParseAllowTopic(topic)
	var a wire.Allow
	if err == nil && len(payload) > 0 {
		a, err = wire.DecodeAllow(payload)
	}
	if err != nil {
		k.quiet.warn("bad_allow", "allow entry ignored", "topic", wire.Clip(topic), "err", err)
		return
	}
	k.mu.Lock()
	var out []retain
	if k.allowed == nil {
		k.allowed = map[netip.Prefix]bool{}
	}
	if len(payload) == 0 {
		delete(k.allowed, p)
	} else {
		k.allowed[p] = true
		out = k.liftLocked(p, a.Comment)
	}
	allow := make([]netip.Prefix, 0, len(k.allowed))
	for q := range k.allowed {
		allow = append(allow, q)
	}
	k.guard.SetShared(allow)
	k.mu.Unlock()
	k.publish(out)
}

// liftLocked deletes the states that the allow entry p covers. During a
// read of the retained messages, the deletions wait for Settle with the
// other fixes.
func (k *Keeper) liftLocked(p netip.Prefix, comment string) []retain {
	var out []retain
	for topic, e := range k.bans {
		t, err := wire.ParseTopic(k.lists[e.list].root, topic)
		if err != nil || !t.Prefix.Overlaps(p) {
			continue
		}
		k.unbanLocked(int(e.list), topic) // and the chunk holding it rewritten
		k.quiet.warn("allowlisted", "ban lifted everywhere: the shared allowlist covers it",
			"list", k.lists[e.list].root, "prefix", t.Prefix, "allow", p, "comment", comment)
		if k.reading {
			k.fixes = append(k.fixes, fix{list: int(e.list), topic: topic})
			continue
		}
		out = append(out, k.sentLocked(topic, nil))
	}
	return out
}
