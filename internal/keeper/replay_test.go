package keeper

import (
	"testing"
	"time"

	"github.com/vallum/vallum/internal/wire"
)

// TestReplay: a hub killed before its cut restarts with its journal
// (broker/journal.go). The bans of the journaled bursts come back, with
// the expiry their burst gave them, except those a later message of the
// journal lifted (a del event, a deleted state, an allowlist entry, the
// del of a message taken live after the restart), those expired since,
// and those a later state on the broker says otherwise. A ban lifted,
// then banned again by a later burst, is banned.
func TestReplay(t *testing.T) {
	needChunks(t)
	s := newKeeper(t, nil, Options{Name: "hub", BurstLines: 256})
	s.k.cut(t)
	now := s.clk.now()
	later := wire.State{At: now.Add(-time.Second), Expires: now.Add(24 * time.Hour), Origin: "cli"}
	s.b.client("blacklist/ban/10.0.0.9", string(wire.EncodeState(later)), true)

	at := now.Add(-time.Minute)
	burst := "10.0.0.1 timeout 30\n" + burstMessage(nil, 2, 298, " timeout 3600") // 10.0.0.2 .. 10.0.1.43
	allow := wire.EncodeAllow(wire.Allow{At: at, Comment: "office"})
	msgs := []Replayed{
		{Topic: "blacklist/add", Payload: []byte(burst), At: at},
		{Topic: "blacklist/del", Payload: []byte("10.0.0.2\n10.0.0.200"), At: at.Add(time.Millisecond)},
		{Topic: "blacklist/ban/10.0.0.3", At: at.Add(2 * time.Millisecond)},
		{Topic: "vallum/allow/10.0.0.4", Payload: allow, At: at.Add(3 * time.Millisecond)},
		{Topic: "blacklist/add", Payload: []byte(burstMessage(nil, 200, 300, "")), At: at.Add(4 * time.Millisecond)},
		{Topic: "blacklist/add", Payload: []byte("10.9.9.9"), At: at.Add(5 * time.Millisecond)}, // no burst: its state was made
		{Topic: "blacklist/del", Payload: []byte("10.0.0.5"), At: now, Seen: true},
	}
	if n := s.k.Replay(msgs); n == 0 {
		t.Fatal("Replay took no ban")
	}
	if !s.k.Unflushed() {
		t.Error("Unflushed false after Replay: the bans wait for no cut")
	}
	s.k.Flush()
	got := s.b.states("blacklist")
	for _, gone := range []string{"10.0.0.1", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.2", "10.9.9.9"} {
		if st, ok := got["blacklist/ban/"+gone]; ok {
			t.Errorf("%s is banned again (%+v): lifted, expired or no burst", gone, st)
		}
	}
	for _, p := range []string{"10.0.0.6", "10.0.0.8", "10.0.1.43", "10.0.1.243"} {
		if _, ok := got["blacklist/ban/"+p]; !ok {
			t.Errorf("%s is not banned after the replay", p)
		}
	}
	if st := got["blacklist/ban/10.0.0.8"]; !st.Expires.Equal(at.Add(time.Hour).Truncate(time.Second)) || !st.At.Equal(at) {
		t.Errorf("10.0.0.8: %+v, want the burst's time and expiry (%v)", st, at.Add(time.Hour))
	}
	if st := got["blacklist/ban/10.0.0.200"]; !st.Expires.IsZero() {
		t.Errorf("10.0.0.200: %+v, want the later burst's permanent ban", st)
	}
	if st := got["blacklist/ban/10.0.0.9"]; !st.Expires.Equal(later.Expires.Truncate(time.Second)) {
		t.Errorf("10.0.0.9: %+v, want the later state's expiry %v", st, later.Expires)
	}
	// 10.0.0.1 to 10.0.1.243 (499), less 10.0.0.1 to 10.0.0.5.
	if want := 499 - 5; len(got) != want {
		t.Errorf("a host reads %d bans, want %d", len(got), want)
	}

	// Replayed again (a second kill before the journal was trimmed), the
	// same journal changes nothing.
	if n := s.k.Replay(msgs); n != 0 {
		t.Errorf("a second Replay took %d bans again, want 0", n)
	}
}
