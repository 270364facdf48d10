//go:build !(vallum_small && (mips || mipsle))

package keeper

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/vallum/vallum/internal/wire"
)

func allowEntry(at time.Time, comment string) string {
	return string(wire.EncodeAllow(wire.Allow{At: at, Comment: comment, Origin: "admin"}))
}

func stateTopics(b *fakeBroker, root string) []string {
	return slices.Sorted(maps.Keys(b.states(root)))
}

// An allow entry lifts the bans it covers everywhere (their states are
// deleted, in the copy too), and no later event or state it covers
// becomes state; once deleted, bans are kept again.
func TestAllowLiftsAndRefuses(t *testing.T) {
	s := newKeeper(t, nil, Options{Roots: []string{"blacklist", "other"}, Copy: copyPath(t)})
	now := s.clk.now()
	exp := now.Add(time.Hour)
	s.b.client("blacklist/add", "198.51.100.7\n198.51.100.0/28\n203.0.113.1\n2001:db8::1", false)
	s.b.client("blacklist/ban/192.0.2.0/23", state(now, exp, "ssh", "host1"), true)
	s.b.client("other/add", "198.51.100.8", false)

	s.b.client("vallum/allow/198.51.100.0/24", allowEntry(now, "office"), true)
	s.b.client("vallum/allow/192.0.2.77", allowEntry(now, "partner"), true) // inside a banned /23
	s.b.client("vallum/allow/2001:db8::/32", allowEntry(now, "v6"), true)
	if got, want := stateTopics(s.b, "blacklist"), []string{"blacklist/ban/203.0.113.1"}; !slices.Equal(got, want) {
		t.Errorf("states after the allow entries: %v, want %v", got, want)
	}
	if got := stateTopics(s.b, "other"); len(got) != 0 {
		t.Errorf("states of list other: %v, want none (lifted on every list)", got)
	}
	if n := len(s.logs.lines("ban lifted everywhere")); n != 5 {
		t.Errorf("%d lift lines logged, want 5:\n%s", n, s.logs.lines("allow"))
	}

	s.b.client("blacklist/add", "198.51.100.20\n203.0.113.2", false)
	s.b.client("blacklist/ban/198.51.100.21", state(now, exp, "ssh", "host1"), true)
	if got, want := stateTopics(s.b, "blacklist"), []string{"blacklist/ban/203.0.113.1", "blacklist/ban/203.0.113.2"}; !slices.Equal(got, want) {
		t.Errorf("states after covered bans: %v, want %v", got, want)
	}
	if len(s.logs.lines("event line not made state")) != 1 || len(s.logs.lines("state refused, clearing it")) != 1 {
		t.Errorf("covered event and state not logged as refused:\n%s", s.logs.lines("shared allowlist"))
	}

	s.b.client("vallum/allow/198.51.100.0/24", "", true)
	s.b.client("blacklist/add", "198.51.100.20", false)
	if _, ok := s.b.states("blacklist")["blacklist/ban/198.51.100.20"]; !ok {
		t.Error("a ban of an address no longer allowlisted did not become state")
	}

	// The copy lost the lifted bans too: a keeper restoring the list from
	// it brings none back.
	if err := s.k.Close(); err != nil {
		t.Fatal(err)
	}
	b := newFakeBroker(true)
	r := newKeeper(t, b, Options{Roots: []string{"blacklist", "other"}, Copy: s.o.Copy})
	if got := stateTopics(r.b, "blacklist"); !slices.Equal(got, []string{"blacklist/ban/198.51.100.20", "blacklist/ban/203.0.113.1", "blacklist/ban/203.0.113.2"}) {
		t.Errorf("list restored from the copy: %v", got)
	}
}

// At start, the states the broker holds that an allow entry covers are
// deleted at Settle, whatever order the retained messages come in (the
// fake broker hands them over in map order).
func TestAllowAtStart(t *testing.T) {
	for i := range 20 {
		b := newFakeBroker(true)
		now := time.Now()
		for _, p := range []string{"198.51.100.1", "198.51.100.2", "198.51.100.0/25", "203.0.113.1"} {
			b.store("blacklist/ban/"+p, []byte(state(now, time.Time{}, "", "host1")))
		}
		b.store("vallum/allow/198.51.100.0/24", []byte(allowEntry(now, "office")))
		s := newKeeper(t, b, Options{})
		if got := stateTopics(s.b, "blacklist"); !slices.Equal(got, []string{"blacklist/ban/203.0.113.1"}) {
			t.Fatalf("start %d: states after Settle: %v, want the uncovered one only", i, got)
		}
	}
}

// Bad entries change nothing.
func TestAllowBadEntries(t *testing.T) {
	s := newKeeper(t, nil, Options{})
	now := s.clk.now()
	s.b.client("blacklist/add", "198.51.100.7\n198.51.100.8", false)
	s.b.client("vallum/allow/198.51.100.7/32", allowEntry(now, "x"), true)
	s.b.client("vallum/allow/198.51.100.8", "{}", true)
	if got := stateTopics(s.b, "blacklist"); len(got) != 2 {
		t.Errorf("states after bad allow entries: %v, want both bans", got)
	}
	if n := len(s.logs.lines("allow entry ignored")); n != 2 {
		t.Errorf("%d bad entries logged, want 2", n)
	}
}
