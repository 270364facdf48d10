package bridge

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/vallum/vallum/internal/wire"
)

// These tests need no broker: decode, coalescing, the syncer, refusals and
// the goroutines the bridge owns, each on its own.

func newTestBridge(t *testing.T, log *slog.Logger) *Bridge {
	t.Helper()
	o := Options{Lists: []List{{Root: "bl"}}, Broker: "tcp://127.0.0.1:1", ClientID: "x", QoS: 1, Logger: log}
	b, err := New(o, newFake())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func op(a Action, p string, timeout wire.Timeout, comment string) Op {
	return Op{Action: a, Prefix: netip.MustParsePrefix(p), Timeout: timeout, Comment: comment}
}

// TestDecode: what each message turns into, and what is refused (counted
// by reason), as a bridge sees it from the wire.
func TestDecode(t *testing.T) {
	now := time.Now()
	state := func(expires time.Time) string { return string(wire.EncodeState(wire.State{At: now, Expires: expires})) }
	tests := []struct {
		name     string
		topic    string
		payload  string
		retained bool
		want     []setOp
		refused  string // reason counted; "" none
	}{
		{"bare root adds", "bl", "192.0.2.7", false, []setOp{{"bl", op(Add, "192.0.2.7/32", wire.DefaultTimeout, CommentEvent)}}, ""},
		{"add with timeout, v6 to the v6 set", "bl/add", "2001:db8::/64 timeout 60", false, []setOp{{"bl6", op(Add, "2001:db8::/64", 60, CommentEvent)}}, ""},
		{"del", "bl/del", "192.0.2.7", false, []setOp{{"bl", op(Del, "192.0.2.7/32", wire.DefaultTimeout, "")}}, ""},
		{"bad line among good", "bl", "192.0.2.7\nnot-an-ip", false, []setOp{{"bl", op(Add, "192.0.2.7/32", wire.DefaultTimeout, CommentEvent)}}, "bad_line"},
		{"allowlisted", "bl", "127.0.0.1", false, []setOp{}, "allowlisted"},
		{"too broad", "bl", "10.0.0.0/7", false, []setOp{}, "too_broad"},
		{"retained event", "bl/add", "192.0.2.7", true, nil, "retained_event"},
		{"unknown sub-topic", "bl/x", "192.0.2.7", false, nil, "bad_topic"},
		{"other list", "other", "192.0.2.7", false, nil, "bad_topic"},
		{"permanent state", "bl/ban/192.0.2.8", state(time.Time{}), true, []setOp{{"bl", op(Add, "192.0.2.8/32", 0, CommentState)}}, ""},
		{"expired state deletes", "bl/ban/192.0.2.8", state(now.Add(-time.Minute)), true, []setOp{{"bl", op(Del, "192.0.2.8/32", wire.DefaultTimeout, "")}}, ""},
		{"unban", "bl/ban/192.0.2.8", "", true, []setOp{{"bl", op(Del, "192.0.2.8/32", wire.DefaultTimeout, "")}}, ""},
		{"bad state", "bl/ban/192.0.2.8", "{", true, nil, "bad_state"},
		{"state of an allowlisted address", "bl/ban/127.0.0.1", state(time.Time{}), true, nil, "allowlisted"},
		{"too large", "bl", strings.Repeat("1", DefaultMaxPayload+1), false, nil, "payload_too_large"},
		// One spelling per ban: `vallum unban` lifts the canonical topic
		// only, so a ban under another spelling is never applied.
		{"state with /32", "bl/ban/192.0.2.8/32", state(time.Time{}), true, nil, "non_canonical"},
		{"state in upper case", "bl/ban/2001:DB8::8", state(time.Time{}), true, nil, "non_canonical"},
		{"state zero-padded", "bl/ban/2001:0db8::8", state(time.Time{}), true, nil, "non_canonical"},
		{"state v4-mapped", "bl/ban/::ffff:192.0.2.8", state(time.Time{}), true, nil, "non_canonical"},
		{"state with host bits", "bl/ban/192.0.2.8/24", state(time.Time{}), true, nil, "non_canonical"},
		{"state with /128", "bl/ban/2001:db8::8/128", state(time.Time{}), true, nil, "non_canonical"},
		{"unban with /32", "bl/ban/192.0.2.8/32", "", true, nil, "non_canonical"},
		{"canonical network", "bl/ban/192.0.2.0/24", state(time.Time{}), true, []setOp{{"bl", op(Add, "192.0.2.0/24", 0, CommentState)}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newTestBridge(t, slog.New(slog.DiscardHandler))
			it := b.dec.decode(tt.topic, []byte(tt.payload), tt.retained)
			if diff := cmp.Diff(tt.want, it.ops, cmp.AllowUnexported(setOp{}), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
				t.Errorf("ops (-want +got):\n%s", diff)
			}
			refused := b.stats.Snapshot().Refused
			if tt.refused == "" && len(refused) > 0 || tt.refused != "" && refused[tt.refused] != 1 {
				t.Errorf("refused = %v, want %q once", refused, tt.refused)
			}
		})
	}
}

// TestEventAfterStateIsIgnored: an event that follows the live state of
// the same prefix changes nothing: the state, applied already (an add
// marked as state, which a sync can remove later, or a del), decides; a
// NATS cluster delivers an unban's state before the ban's event.
func TestEventAfterStateIsIgnored(t *testing.T) {
	b := newTestBridge(t, slog.New(slog.DiscardHandler))
	st := wire.EncodeState(wire.State{At: time.Now(), Expires: time.Now().Add(time.Hour)})
	if it := b.dec.decode("bl/ban/192.0.2.9", st, false); len(it.ops) != 1 || it.ops[0].op.Comment != CommentState {
		t.Fatalf("state = %+v, want one add marked %q", it.ops, CommentState)
	}
	if it := b.dec.decode("bl", []byte("192.0.2.9 timeout 3600"), false); len(it.ops) != 0 {
		t.Errorf("event after its state = %+v, want nothing", it.ops)
	}
	b.dec.decode("bl/ban/192.0.2.10", nil, false) // an unban's state
	if it := b.dec.decode("bl/add", []byte("192.0.2.10"), false); len(it.ops) != 0 {
		t.Errorf("ban event after the unban's state = %+v, want nothing", it.ops)
	}
	if it := b.dec.decode("bl/add", []byte("192.0.2.11"), false); len(it.ops) != 1 || it.ops[0].op.Comment != CommentEvent {
		t.Errorf("event with no state = %+v, want one add marked %q", it.ops, CommentEvent)
	}
}

// TestCoalesce: the last op of each prefix, in the order prefixes came.
func TestCoalesce(t *testing.T) {
	a, b, c := "192.0.2.1/32", "192.0.2.2/32", "2001:db8::/64"
	tests := []struct {
		name     string
		in, want []Op
	}{
		{"empty", nil, nil},
		{"one", []Op{op(Add, a, 1, "")}, []Op{op(Add, a, 1, "")}},
		{"add then del", []Op{op(Add, a, 1, ""), op(Del, a, -1, "")}, []Op{op(Del, a, -1, "")}},
		{"del then add", []Op{op(Del, a, -1, ""), op(Add, a, 5, "")}, []Op{op(Add, a, 5, "")}},
		{"order of first sight", []Op{op(Add, b, 1, ""), op(Add, a, 1, ""), op(Add, c, 1, ""), op(Add, b, 9, "")},
			[]Op{op(Add, b, 9, ""), op(Add, a, 1, ""), op(Add, c, 1, "")}},
	}
	for _, tt := range tests {
		in := append([]Op(nil), tt.in...)
		if diff := cmp.Diff(tt.want, coalesce(in), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.name, diff)
		}
	}
}

// TestSyncer: the window opens at the current A and closes at the current
// B; a marker of another sync, forged or replayed, changes nothing, and
// only what the window saw is reported.
func TestSyncer(t *testing.T) {
	var s syncer
	p1, p2 := netip.MustParsePrefix("192.0.2.1/32"), netip.MustParsePrefix("192.0.2.2/32")
	old, _, _, _, oldAbandon := s.begin([]string{"bl"})
	tag, aSeen, bSeen, _, _ := s.begin([]string{"bl"})
	select {
	case <-oldAbandon:
	default:
		t.Error("a new sync did not abandon the old one")
	}
	s.record("bl", p1, 1, true, true) // before A: not in the window
	for _, forged := range []string{"B" + tag, "A" + old, "A", "A" + tag + "x", ""} {
		if s.marker(forged) != nil {
			t.Errorf("marker(%q) closed a window", forged)
		}
	}
	select {
	case <-aSeen:
		t.Fatal("a forged marker opened the window")
	default:
	}
	if s.marker("A"+tag) != nil {
		t.Fatal("A returned a result")
	}
	<-aSeen
	s.record("bl", p2, 1, true, true)
	s.record("bl", p1, 1, true, true)
	s.record("bl", p1, 2, false, true) // unbanned within the window
	if s.marker("B"+old) != nil {
		t.Fatal("the old sync's B closed the window")
	}
	res := s.marker("B" + tag)
	if res == nil {
		t.Fatal("B did not close the window")
	}
	<-bSeen
	if w := res.present["bl"]; w.len() != 1 || !w.has(p2) || w.has(p1) {
		t.Errorf("window holds %d bans (%s: %v, %s: %v), want %s alone", w.len(), p1, w.has(p1), p2, w.has(p2), p2)
	}
	if s.marker("B"+tag) != nil {
		t.Error("a replayed B closed a window again")
	}
}

// TestRefusalsCountedLogsBounded: every refusal is counted; the log gets
// one line per reason and key, and at most a burst of refuseRate lines.
func TestRefusalsCountedLogsBounded(t *testing.T) {
	var buf bytes.Buffer
	stats := &Stats{}
	r := newRefusals(slog.New(slog.NewTextHandler(&buf, nil)), stats)
	for range 5 {
		r.refuse("bad_line", "same")
	}
	for i := range 1000 {
		r.refuse("bad_topic", strings.Repeat("k", i%500+1))
	}
	if got := stats.Snapshot().Refused; got["bad_line"] != 5 || got["bad_topic"] != 1000 {
		t.Errorf("counted %v, want 5 bad_line and 1000 bad_topic", got)
	}
	if n := strings.Count(buf.String(), "reason=bad_line"); n != 1 {
		t.Errorf("bad_line logged %d times, want once", n)
	}
	if n := strings.Count(buf.String(), "\n"); n > refuseRate+2 {
		t.Errorf("%d log lines for 1,005 refusals at once, want at most about %d", n, refuseRate)
	}
}

// TestSpawnOwned: a goroutine the bridge starts is waited for at the stop,
// and none starts once the bridge is stopping.
func TestSpawnOwned(t *testing.T) {
	b := newTestBridge(t, slog.New(slog.DiscardHandler))
	var ended, late atomic.Bool
	b.stop.spawn(func() {
		<-b.stop.ctx.Done()
		ended.Store(true)
	})
	b.stop.halt()
	b.stop.spawn(func() { late.Store(true) })
	b.stop.tasks.Wait()
	if !ended.Load() {
		t.Error("Wait returned before the spawned goroutine ended")
	}
	if late.Load() {
		t.Error("a goroutine started after the stop")
	}
}
