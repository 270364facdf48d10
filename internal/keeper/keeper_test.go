package keeper

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vallum/vallum/internal/datadir"
	"github.com/vallum/vallum/internal/quiet"
	"github.com/vallum/vallum/internal/wire"
)

func TestEventsBecomeState(t *testing.T) {
	s := newKeeper(t, nil, Options{})
	now := s.clk.now()
	s.b.client("blacklist/add", "192.0.2.1 timeout 60\n2001:db8::/64\nbogus\n0.0.0.0/0\n127.0.0.1\n192.0.2.3 timeout 0", false)
	s.b.client("blacklist", "198.51.100.7", false)
	got := s.b.states("blacklist")
	if len(got) != 4 {
		t.Fatalf("states after adds: %v, want 4 (bogus, 0/0 and loopback never become state)", got)
	}
	if st := got["blacklist/ban/192.0.2.1"]; st.Origin != Origin || !st.At.Equal(now) || !st.Expires.Equal(now.Add(time.Minute).Truncate(time.Second)) {
		t.Errorf("state of 192.0.2.1 = %+v, want origin keeper, at now, expiring in a minute", st)
	}
	if st := got["blacklist/ban/2001:db8::/64"]; !st.Expires.IsZero() {
		t.Errorf("2001:db8::/64 expires %v, want never", st.Expires)
	}
	// A repeated add writes nothing; a del clears, a del of nothing writes nothing.
	n := len(s.b.sent)
	s.b.client("blacklist/add", "192.0.2.1 timeout 60", false)
	s.b.client("blacklist/del", "192.0.2.200", false)
	if len(s.b.sent) != n {
		t.Errorf("a repeated add and a del of nothing published %v", s.b.sent[n:])
	}
	s.b.client("blacklist/del", "2001:db8::/64", false)
	if _, ok := s.b.states("blacklist")["blacklist/ban/2001:db8::/64"]; ok {
		t.Error("del left the state of 2001:db8::/64")
	}
}

// TestExpiry: an expired ban is cleared, on the broker and in the copy;
// a later state with a longer life is not cleared at the first expiry.
func TestExpiry(t *testing.T) {
	s := newKeeper(t, nil, Options{Copy: copyPath(t)})
	s.b.client("blacklist/add", "192.0.2.1 timeout 10\n192.0.2.2 timeout 10\n192.0.2.3", false)
	s.clk.add(5 * time.Second)
	s.b.client("blacklist/add", "192.0.2.2 timeout 60", false) // extended
	s.clk.add(6 * time.Second)
	s.k.expire()
	got := s.b.states("blacklist")
	if _, ok := got["blacklist/ban/192.0.2.1"]; ok || len(got) != 2 {
		t.Errorf("states 11 s later: %v, want 192.0.2.2 (extended) and 192.0.2.3 (permanent)", got)
	}
	if n := s.k.copy.kv.Len(); n != 3 { // 2 bans and the record
		t.Errorf("copy holds %d keys, want 3: an expired ban must leave it", n)
	}
}

// TestRunExpires: Run clears a ban when its time comes, on the real clock.
func TestRunExpires(t *testing.T) {
	b := newFakeBroker(true)
	k, err := New(Options{Roots: []string{"blacklist"}}, b)
	if err != nil {
		t.Fatal(err)
	}
	b.connect(t, k)
	runFor(t, k)
	b.client("blacklist/add", "192.0.2.1 timeout 1\n192.0.2.2 timeout 3600", false)
	deadline := time.Now().Add(5 * time.Second)
	for len(b.states("blacklist")) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("states 5 s after a 1 s ban: %v, want only 192.0.2.2", b.states("blacklist"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStatedRule: an event within statedFor of a client's state of its
// prefix is not turned into state; another keeper's state does not count.
func TestStatedRule(t *testing.T) {
	s := newKeeper(t, nil, Options{})
	now := s.clk.now()
	s.b.client("blacklist/ban/192.0.2.1", state(now, time.Time{}, "", "cli"), true)
	s.b.client("blacklist/ban/192.0.2.1", "", true) // vallum unban
	s.b.client("blacklist/add", "192.0.2.1\n192.0.2.2", false)
	got := s.b.states("blacklist")
	if _, ok := got["blacklist/ban/192.0.2.1"]; ok {
		t.Errorf("the late add of an unbanned address banned it again: %v", got)
	}
	if _, ok := got["blacklist/ban/192.0.2.2"]; !ok {
		t.Errorf("a legacy add with no state before it is not state: %v", got)
	}
	s.b.client("blacklist/ban/192.0.2.3", state(now, time.Time{}, "", "cli"), true)
	s.b.client("blacklist/del", "192.0.2.3", false)
	if _, ok := s.b.states("blacklist")["blacklist/ban/192.0.2.3"]; !ok {
		t.Error("the late del of an earlier unban lifted the ban made after it")
	}
	// Another keeper's state of an event: the del that follows still counts.
	s.b.client("blacklist/ban/192.0.2.4", state(now, time.Time{}, "", Origin), true)
	s.b.client("blacklist/del", "192.0.2.4", false)
	if _, ok := s.b.states("blacklist")["blacklist/ban/192.0.2.4"]; ok {
		t.Error("a del after another keeper's state was skipped")
	}
	// After statedFor, events count again.
	s.clk.add(statedFor + time.Second)
	s.b.client("blacklist/add", "192.0.2.1", false)
	if _, ok := s.b.states("blacklist")["blacklist/ban/192.0.2.1"]; !ok {
		t.Error("an add long after the unban did not ban")
	}
}

// TestOwnEchoes: over a network broker the keeper's publishes come back
// later, among others' messages: they are not taken for a client's
// state (a del right after an add still applies).
func TestOwnEchoes(t *testing.T) {
	b := newFakeBroker(false)
	s := newKeeper(t, b, Options{})
	b.client("blacklist/add", "192.0.2.1", false)
	b.deliver() // the add, then the keeper's state comes back
	b.client("blacklist/del", "192.0.2.1", false)
	b.deliver()
	if got := b.states("blacklist"); len(got) != 0 {
		t.Errorf("states after add and del: %v, want none", got)
	}
	if got := b.sentTo("blacklist/ban/192.0.2.1"); len(got) != 2 || got[1] != "" {
		t.Errorf("keeper published %q on the state topic, want the state then its deletion", got)
	}
	_ = s
}

// TestTwoKeepers: two keepers of one list turn the same events into the
// same list, an add and a del a moment apart included, and agree on one
// epoch: the smaller.
func TestTwoKeepers(t *testing.T) {
	b := newFakeBroker(false)
	k1 := newKeeper(t, b, Options{Name: "one"})
	k2, err := New(Options{Roots: []string{"blacklist"}, Name: "two", Now: k1.clk.now}, b)
	if err != nil {
		t.Fatal(err)
	}
	// Both keepers receive every message; k2 settles before it reads k1's record.
	k2.Settle()
	fan := func() {
		for {
			b.mu.Lock()
			q := b.queue
			b.queue = nil
			b.mu.Unlock()
			if len(q) == 0 {
				return
			}
			for _, m := range q {
				k1.k.Message(m.topic, []byte(m.payload))
				k2.Message(m.topic, []byte(m.payload))
			}
		}
	}
	fan()
	e1, e2 := k1.k.Epoch("blacklist"), k2.Epoch("blacklist")
	if e1 != e2 || e1 != min(e1, e2) || b.record(t, "blacklist").Epoch != e1 {
		t.Errorf("epochs %s and %s, record %s: want one, the smaller", e1, e2, b.record(t, "blacklist").Epoch)
	}
	for i := range 20 {
		a := fmt.Sprintf("192.0.2.%d", i)
		b.client("blacklist/add", a, false)
		if i%2 == 0 {
			if i%4 == 0 {
				fan() // each keeper sees the other's state before the del
			}
			b.client("blacklist/del", a, false)
		}
		if i%3 == 0 {
			fan()
		}
	}
	fan()
	got := b.states("blacklist")
	for i := range 20 {
		_, ok := got[fmt.Sprintf("blacklist/ban/192.0.2.%d", i)]
		if ok != (i%2 == 1) {
			t.Errorf("192.0.2.%d banned %v, want %v", i, ok, i%2 == 1)
		}
	}
}

// TestRecord: a keeper without a record or copy begins an epoch, keeps the
// states already on the broker, and the next keeper adopts the epoch; a
// deleted record is published again.
func TestRecord(t *testing.T) {
	b := newFakeBroker(true)
	b.retained["blacklist/ban/192.0.2.9"] = []byte(state(newClock().now(), newClock().now().Add(time.Minute), "", "cli"))
	s := newKeeper(t, b, Options{Name: "hub"})
	r := b.record(t, "blacklist")
	if r.Keeper != "hub" || !r.Since.Equal(s.clk.now()) || s.k.Epoch("blacklist") != r.Epoch {
		t.Errorf("record %+v, keeper epoch %s", r, s.k.Epoch("blacklist"))
	}
	s.clk.add(2 * time.Minute)
	s.k.expire()
	if len(b.states("blacklist")) != 0 {
		t.Error("the state on the broker before the keeper was not tracked: not expired")
	}
	_ = s.k.Close()
	n := len(b.sent)
	s2 := newKeeper(t, b, Options{Name: "other"})
	if s2.k.Epoch("blacklist") != r.Epoch || len(b.sent) != n {
		t.Errorf("second keeper: epoch %s, published %v; want %s adopted, nothing published", s2.k.Epoch("blacklist"), b.sent[n:], r.Epoch)
	}
	b.client(wire.RecordTopic("blacklist"), "", true)
	if b.record(t, "blacklist").Epoch != r.Epoch {
		t.Error("a deleted record was not published again")
	}
	b.client(wire.RecordTopic("blacklist"), "junk", true)
	if b.record(t, "blacklist").Epoch != r.Epoch {
		t.Error("a broken record was not replaced")
	}
	smaller := strings.Repeat("0", 16)
	b.client(wire.RecordTopic("blacklist"), string(wire.EncodeRecord(wire.Record{Epoch: smaller, Since: s.clk.now()})), true)
	if s2.k.Epoch("blacklist") != smaller {
		t.Error("a smaller epoch was not adopted")
	}
	b.client(wire.RecordTopic("blacklist"), string(wire.EncodeRecord(wire.Record{Epoch: "ffffffffffffffff", Since: s.clk.now()})), true)
	if b.record(t, "blacklist").Epoch != smaller {
		t.Error("a larger epoch replaced the smaller one")
	}
}

// TestRestoreFromCopy: a broker that lost the list (no record) gets back
// every unexpired ban of the keeper's copy, as it was, under the same
// epoch, and the loss is logged at ERROR.
func TestRestoreFromCopy(t *testing.T) {
	path := copyPath(t)
	b1 := newFakeBroker(true)
	s := newKeeper(t, b1, Options{Copy: path})
	now := s.clk.now()
	b1.client("blacklist/ban/203.0.113.5", state(now.Add(-time.Hour), now.Add(time.Hour), "sshd", "edge1"), true)
	b1.client("blacklist/add", "192.0.2.1\n192.0.2.2 timeout 30", false)
	epoch := s.k.Epoch("blacklist")
	want := b1.states("blacklist")
	_ = s.k.Close()

	b2 := newFakeBroker(true) // the broker restarted without persistence
	o := Options{Roots: []string{"blacklist"}, Copy: path, Now: func() time.Time { return now.Add(time.Minute) }, Logger: s.logs.logger()}
	k, err := New(o, b2)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	b2.connect(t, k)
	got := b2.states("blacklist")
	if len(got) != 2 || !reflect.DeepEqual(got["blacklist/ban/203.0.113.5"], want["blacklist/ban/203.0.113.5"]) ||
		!reflect.DeepEqual(got["blacklist/ban/192.0.2.1"], want["blacklist/ban/192.0.2.1"]) {
		t.Errorf("restored %v, want 203.0.113.5 and 192.0.2.1 as they were (192.0.2.2 expired)", got)
	}
	if raw := b2.rawStates("blacklist"); len(raw) != 0 && chunksBuilt {
		t.Errorf("restored as per-ban states %v, want chunks only (no legacy state)", raw)
	}
	if r := b2.record(t, "blacklist"); r.Epoch != epoch {
		t.Errorf("record after restore: epoch %s, want the same %s", r.Epoch, epoch)
	}
	if l := s.logs.lines("level=ERROR"); len(l) != 1 || !strings.Contains(l[0], "restored=2") || !strings.Contains(l[0], "list=blacklist") {
		t.Errorf("ERROR lines %q, want one naming the list and restored=2", l)
	}
}

// TestRecordPresentForgets: with the record on the broker, a ban the copy
// holds but the broker does not was lifted meanwhile: not restored, and
// it leaves the copy.
func TestRecordPresentForgets(t *testing.T) {
	path := copyPath(t)
	b := newFakeBroker(true)
	s := newKeeper(t, b, Options{Copy: path})
	b.client("blacklist/add", "192.0.2.1\n192.0.2.2", false)
	_ = s.k.Close()
	b.k = nil
	delete(b.retained, "blacklist/ban/192.0.2.1") // lifted while the keeper was away
	s2 := newKeeper(t, b, Options{Copy: path})
	if got := b.states("blacklist"); len(got) != 1 {
		t.Errorf("states %v, want only 192.0.2.2", got)
	}
	if _, ok := s2.k.copy.ban("blacklist/ban/192.0.2.1"); ok {
		t.Error("the lifted ban is still in the copy")
	}
}

// TestLostSession: the same keeper reads everything again after a lost
// session; without a copy, a broker that lost the list gets a new epoch
// (hosts keep their bans), and the loss is logged at ERROR.
func TestLostSession(t *testing.T) {
	b := newFakeBroker(true)
	s := newKeeper(t, b, Options{})
	b.client("blacklist/add", "192.0.2.1\n192.0.2.2", false)
	epoch := s.k.Epoch("blacklist")
	b.connect(t, s.k) // a lost session, nothing lost
	if s.k.Epoch("blacklist") != epoch || len(b.states("blacklist")) != 2 {
		t.Errorf("after a lost session: epoch %s (was %s), states %v", s.k.Epoch("blacklist"), epoch, b.states("blacklist"))
	}
	b.retained = map[string][]byte{} // the broker lost everything
	b.connect(t, s.k)
	if e := s.k.Epoch("blacklist"); e == epoch || b.record(t, "blacklist").Epoch != e {
		t.Errorf("epoch %s after the broker lost the list without a copy; want a new one published", e)
	}
	if l := s.logs.lines("level=ERROR"); len(l) != 1 || !strings.Contains(l[0], "lost=2") {
		t.Errorf("ERROR lines %q, want one with lost=2", l)
	}
}

// TestLimits: what the bridges refuse never becomes state: an event over
// the payload limit (refused whole, logged a bounded number of times), a
// prefix broader than the limit or covering an allowlisted address; and a
// client's state of one is cleared, whether read at start or live.
func TestLimits(t *testing.T) {
	b := newFakeBroker(true)
	now := newClock().now()
	b.retained["blacklist/ban/10.0.0.0/7"] = []byte(state(now, time.Time{}, "", "x"))
	b.retained["blacklist/ban/198.51.100.1"] = []byte(state(now, time.Time{}, "", "x"))
	lim := Limits{MaxPayload: 100, MinBitsV4: 16, Allow: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}}
	s := newKeeper(t, b, Options{Limits: lim})
	if got := b.states("blacklist"); len(got) != 0 {
		t.Errorf("refused states read at start are still there: %v", got)
	}
	big := strings.Repeat("192.0.2.1\n", 11) // 110 bytes
	for range 100 {
		b.client("blacklist/add", big, false)
	}
	b.client("blacklist/add", "10.1.0.0/15\n198.51.0.0/16\n198.51.100.7\n10.2.0.0/16", false)
	b.client("blacklist/ban/10.4.0.0/8", state(now, time.Time{}, "", "x"), true)
	b.client("blacklist/ban/198.51.100.9", state(now, time.Time{}, "", "x"), true)
	got := b.states("blacklist")
	if len(got) != 1 || got["blacklist/ban/10.2.0.0/16"].At.IsZero() {
		t.Errorf("states %v, want only 10.2.0.0/16", got)
	}
	if n := len(s.logs.lines("over the payload limit")); n < 1 || n > quiet.Burst {
		t.Errorf("%d lines for 100 oversize events, want 1 to %d", n, quiet.Burst)
	}
}

// TestCanonical: a state under another spelling of its prefix moves to
// the canonical topic (unless a later state is there) and the misspelt
// topic is cleared: one topic per ban, lifted by one unban.
func TestCanonical(t *testing.T) {
	b := newFakeBroker(true)
	now := newClock().now()
	b.retained["blacklist/ban/203.0.113.9/32"] = []byte(state(now, time.Time{}, "r", "o"))
	b.retained["blacklist/ban/2001:DB8::1"] = []byte(state(now, time.Time{}, "", ""))
	b.retained["blacklist/ban/2001:db8::2"] = []byte(state(now.Add(time.Second), time.Time{}, "later", ""))
	b.retained["blacklist/ban/2001:0db8::2"] = []byte(state(now, time.Time{}, "earlier", ""))
	s := newKeeper(t, b, Options{})
	b.client("blacklist/ban/::ffff:192.0.2.7", state(now, time.Time{}, "", ""), true)
	b.client("blacklist/ban/198.51.100.7/24", state(now, time.Time{}, "", ""), true)
	want := []string{"blacklist/ban/203.0.113.9", "blacklist/ban/2001:db8::1", "blacklist/ban/2001:db8::2",
		"blacklist/ban/192.0.2.7", "blacklist/ban/198.51.100.0/24"}
	got := b.states("blacklist")
	for _, topic := range want {
		if _, ok := got[topic]; !ok {
			t.Errorf("no state on %s", topic)
		}
	}
	if len(got) != len(want) || got["blacklist/ban/2001:db8::2"].Reason != "later" || got["blacklist/ban/203.0.113.9"].Reason != "r" {
		t.Errorf("states %v, want %v only, the later of two spellings kept", got, want)
	}
	b.client("blacklist/ban/203.0.113.9", "", true) // one unban (vallum unban: the state,
	b.client("blacklist/del", "203.0.113.9", false) // then the event)
	s.k.maintain()                                  // Run's: the chunk's rewrite
	if _, ok := b.states("blacklist")["blacklist/ban/203.0.113.9"]; ok {
		t.Error("one unban did not lift the ban")
	}
}

// TestCopyBounded: the copy holds the live list, not its history.
func TestCopyBounded(t *testing.T) {
	s := newKeeper(t, nil, Options{Copy: copyPath(t)})
	for i := range 1000 {
		s.b.client("blacklist/add", fmt.Sprintf("10.%d.%d.1 timeout 5", i/256, i%256), false)
	}
	s.b.client("blacklist/add", "192.0.2.1", false)
	s.b.client("blacklist/add", "192.0.2.2", false)
	s.b.client("blacklist/del", "192.0.2.2", false)
	s.clk.add(10 * time.Second)
	s.k.expire()
	if n := s.k.copy.kv.Len(); n != 2 {
		t.Errorf("copy holds %d keys after 1000 bans expired and one unban, want 2 (a ban, the record)", n)
	}
}

// TestCopyLocked: two keepers cannot share one copy.
func TestCopyLocked(t *testing.T) {
	path := copyPath(t)
	newKeeper(t, nil, Options{Copy: path})
	_, err := New(Options{Roots: []string{"blacklist"}, Copy: path}, newFakeBroker(true))
	var le *datadir.LockedError
	if !errors.As(err, &le) {
		t.Errorf("second keeper on one copy: %v, want a LockedError", err)
	}
}

// TestRecordBeforeSettle: a record that comes live before the keeper
// settled is what the broker holds: adopted, even when the keeper's copy
// has another epoch, not fought as another keeper's.
func TestRecordBeforeSettle(t *testing.T) {
	path := copyPath(t)
	s := newKeeper(t, nil, Options{Copy: path, LegacyState: true})
	old := s.k.Epoch("blacklist")
	_ = s.k.Close()
	b := newFakeBroker(true)
	k, err := New(Options{Roots: []string{"blacklist"}, Copy: path, LegacyState: true}, b)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	b.k = k
	theirs := "ffffffffffffffff"
	b.client(wire.RecordTopic("blacklist"), string(wire.EncodeRecord(wire.Record{Epoch: theirs, Since: time.Now()})), true)
	if err := k.Settle(); err != nil {
		t.Fatal(err)
	}
	if k.Epoch("blacklist") != theirs || b.record(t, "blacklist").Epoch != theirs {
		t.Errorf("epoch %s, record %s: want the broker's %s adopted over the copy's %s", k.Epoch("blacklist"), b.record(t, "blacklist").Epoch, theirs, old)
	}
}

// TestCopyDamaged: a damaged record in the copy costs that ban only; the
// keeper starts, says so, and restores the others.
func TestCopyDamaged(t *testing.T) {
	path := copyPath(t)
	s := newKeeper(t, nil, Options{Copy: path})
	s.b.client("blacklist/add", "192.0.2.1\n192.0.2.2\n192.0.2.3", false)
	_ = s.k.Close()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(raw, []byte("ban/blacklist/ban/192.0.2.2"))
	if i < 0 {
		t.Fatal("no record of 192.0.2.2 in the copy")
	}
	raw[i+len("ban/blacklist/ban/192.0.2.2")+3] ^= 0xff // in its value
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	s2 := newKeeper(t, newFakeBroker(true), Options{Copy: path}) // an empty broker: restore
	got := s2.b.states("blacklist")
	if _, damaged := got["blacklist/ban/192.0.2.2"]; len(got) != 2 || damaged {
		t.Errorf("restored %v, want 192.0.2.1 and 192.0.2.3", got)
	}
	if len(s2.logs.lines("keeper copy was damaged")) != 1 {
		t.Error("the damage was not logged")
	}
}

// TestExpiryHeap: the heap hands expiries back earliest first, after
// pushes in any order and a rebuild.
func TestExpiryHeap(t *testing.T) {
	var h expiryHeap
	for _, at := range []int64{5, 3, 9, 1, 7, 3, 8, 2, 6, 4, 0} {
		h.push(expiry{at: at})
	}
	for i := len(h)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
	var got []int64
	for len(h) > 0 {
		got = append(got, h.pop().at)
	}
	if fmt.Sprint(got) != "[0 1 2 3 3 4 5 6 7 8 9]" {
		t.Errorf("popped %v, want 0 to 9 in order", got)
	}
}

// TestLiveBeforeFirstRead: the hub serves clients before it loads its
// keeper, so a client's add can reach the keeper before its first read of
// the retained messages, and the keeper's states land while the read goes
// on: before it passed their topics, or after (seen 1 or 0 of the 2). The
// broker holds them, so the keeper keeps them: a repeated add writes
// nothing. (Forgotten at Settle, a ban's state was published again with
// only a new at: broker TestKeeperEvents, 1 run in 230.)
func TestLiveBeforeFirstRead(t *testing.T) {
	for _, seen := range []int{0, 1} {
		b := newFakeBroker(false)
		k, err := New(Options{Roots: []string{"blacklist"}}, b)
		if err != nil {
			t.Fatal(err)
		}
		b.k = k
		const bans = "192.0.2.1\n192.0.2.2"
		k.Message("blacklist/add", []byte(bans))
		for _, m := range b.sent[:seen] {
			k.Retained(m.topic, []byte(m.payload))
		}
		b.deliver() // the echoes, while the read goes on
		if err := k.Settle(); err != nil {
			t.Fatal(err)
		}
		b.deliver()
		n := len(b.sent)
		k.Message("blacklist/add", []byte(bans))
		if again := b.sent[n:]; len(again) != 0 {
			t.Errorf("the read saw %d of 2 states: the repeated add wrote %q", seen, again)
		}
	}
}
