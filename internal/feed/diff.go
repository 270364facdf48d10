package feed

import (
	"iter"
	"net/netip"
	"time"

	"github.com/vallum/vallum/internal/wire"
)

// Plan is what an import publishes: the bans to make and, with sync, the
// feed's own earlier bans to lift.
type Plan struct {
	Add, Del []netip.Prefix
	Kept     int // feed entries already banned, left as they are
}

// Diff compares a feed with the list's current bans (as `vallum list`
// reads them), read once from cur. An entry is banned unless the list
// already bans it: a ban of another origin is left alone (it has its own
// expiry and reason), and the feed's own ban (origin) only when it would
// end before half of ttl from now, or the feed is now permanent (ttl 0)
// and the ban is not, so that importing a feed every hour refreshes its
// bans without republishing every one of them. With sync, the feed's own
// bans whose prefix left the feed are lifted; nothing of another origin
// ever is. It holds one map entry per feed entry, nothing per ban.
func Diff(prefixes []netip.Prefix, cur iter.Seq2[netip.Prefix, wire.State], origin string, ttl wire.Timeout, sync bool, now time.Time) Plan {
	var pl Plan
	kept := make(map[netip.Prefix]bool, len(prefixes)) // in the feed -> banned well enough already
	for _, p := range prefixes {
		kept[p] = false
	}
	for p, st := range cur {
		if _, in := kept[p]; !in {
			if sync && st.Origin == origin {
				pl.Del = append(pl.Del, p)
			}
			continue
		}
		if _, active := st.Remaining(now); active && (st.Origin != origin || !stale(st, ttl, now)) {
			kept[p] = true
		}
	}
	for _, p := range prefixes {
		if kept[p] {
			pl.Kept++
		} else {
			pl.Add = append(pl.Add, p)
		}
	}
	return pl
}

// stale reports whether the feed's own ban st needs publishing again for a
// ban of ttl.
func stale(st wire.State, ttl wire.Timeout, now time.Time) bool {
	if st.Expires.IsZero() {
		return false // permanent: nothing to refresh
	}
	if ttl <= 0 {
		return true // the feed is permanent now
	}
	return st.Expires.Before(now.Add(time.Duration(ttl) * time.Second / 2))
}
