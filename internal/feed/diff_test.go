package feed

import (
	"maps"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/vallum/vallum/internal/wire"
)

func TestDiff(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	const me = "import:feed"
	st := func(origin string, left time.Duration) wire.State {
		s := wire.State{At: now.Add(-time.Hour), Origin: origin}
		if left != 0 {
			s.Expires = now.Add(left)
		}
		return s
	}
	cur := map[netip.Prefix]wire.State{
		netip.MustParsePrefix("1.1.1.1/32"):    st(me, 0),                   // ours, permanent
		netip.MustParsePrefix("2.2.2.2/32"):    st(me, 20*time.Hour),        // ours, fresh for a day's ttl
		netip.MustParsePrefix("3.3.3.3/32"):    st(me, time.Hour),           // ours, stale for a day's ttl
		netip.MustParsePrefix("4.4.4.4/32"):    st("fail2ban", time.Minute), // another's, short
		netip.MustParsePrefix("5.5.5.0/24"):    st(me, 0),                   // ours, left the feed
		netip.MustParsePrefix("6.6.6.6/32"):    st("sshd-host", 0),          // another's, not in the feed
		netip.MustParsePrefix("7.7.7.7/32"):    st(me, -time.Minute),        // ours, expired
		netip.MustParsePrefix("2001:db8::/32"): st("import:other", 0),       // another feed's
	}
	feed := prefixes("1.1.1.1/32", "2.2.2.2/32", "3.3.3.3/32", "4.4.4.4/32", "7.7.7.7/32", "8.8.8.8/32", "2001:db8::/32")
	for _, tc := range []struct {
		name     string
		ttl      wire.Timeout
		sync     bool
		add, del []string
		kept     int
	}{
		{"a day, no sync", 86400, false, []string{"3.3.3.3/32", "7.7.7.7/32", "8.8.8.8/32"}, nil, 4},
		{"a day, sync", 86400, true, []string{"3.3.3.3/32", "7.7.7.7/32", "8.8.8.8/32"}, []string{"5.5.5.0/24"}, 4},
		{"permanent now", 0, false, []string{"2.2.2.2/32", "3.3.3.3/32", "7.7.7.7/32", "8.8.8.8/32"}, nil, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pl := Diff(feed, maps.All(cur), me, tc.ttl, tc.sync, now)
			if d := cmp.Diff(tc.add, strs(pl.Add)); d != "" {
				t.Errorf("add (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tc.del, strs(pl.Del)); d != "" {
				t.Errorf("del (-want +got):\n%s", d)
			}
			if pl.Kept != tc.kept {
				t.Errorf("kept %d, want %d", pl.Kept, tc.kept)
			}
		})
	}
}

// TestDiffSameFeedTwice: importing what was just imported changes nothing.
func TestDiffSameFeedTwice(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	feed := prefixes("1.1.1.1/32", "10.0.0.0/8", "2001:db8::/48")
	cur := map[netip.Prefix]wire.State{}
	for _, p := range Diff(feed, maps.All(cur), "import:x", 3600, true, now).Add {
		cur[p] = wire.State{At: now, Expires: now.Add(time.Hour), Origin: "import:x"}
	}
	if pl := Diff(feed, maps.All(cur), "import:x", 3600, true, now.Add(time.Minute)); len(pl.Add)+len(pl.Del) != 0 || pl.Kept != 3 {
		t.Fatalf("second import of the same feed: %+v, want nothing to publish", pl)
	}
}

func strs(ps []netip.Prefix) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.String())
	}
	slices.Sort(out)
	return out
}
