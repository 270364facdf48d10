//go:build !(vallum_small && (mips || mipsle))

package keeper

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vallum/vallum/internal/policy"
	"github.com/vallum/vallum/internal/wire"
)

func withPolicy(l policy.List, history string) Options {
	return Options{Policy: Policy{Lists: map[string]policy.List{"blacklist": l}, History: history}}
}

func escalating() policy.List {
	e := policy.DefaultEscalation
	return policy.List{Escalate: &e}
}

// left returns how long the state of topic has left at now, and its count.
func (s *setup) left(t *testing.T, topic string) (time.Duration, int) {
	t.Helper()
	st, ok := s.b.states("blacklist")[topic]
	if !ok {
		t.Fatalf("no state on %s", topic)
	}
	if st.Expires.IsZero() {
		return 0, st.Count
	}
	return st.Expires.Sub(s.clk.now()).Round(time.Second), st.Count
}

// TestEscalationOfEvents: the same address banned again gets 15 min, then
// 30, then 3 h, whatever the reporter asked below that; the count is in
// the state. A list without a policy keeps the asked time.
func TestEscalationOfEvents(t *testing.T) {
	s := newKeeper(t, nil, withPolicy(escalating(), ""))
	const topic = "blacklist/ban/192.0.2.1"
	for i, want := range []time.Duration{15 * time.Minute, 30 * time.Minute, 3 * time.Hour} {
		s.b.client("blacklist/add", "192.0.2.1 timeout 60", false)
		if got, n := s.left(t, topic); got != want || n != i+1 {
			t.Fatalf("ban %d: %v left, count %d; want %v, count %d", i+1, got, n, want, i+1)
		}
		s.clk.add(time.Hour)
	}
	s.b.client("blacklist/add", "192.0.2.2 timeout 86400", false) // the floor wins
	if got, _ := s.left(t, "blacklist/ban/192.0.2.2"); got != 24*time.Hour {
		t.Errorf("asked 1 day: %v left", got)
	}
	s.b.client("blacklist/add", "192.0.2.3 timeout 0", false) // permanent stays
	if got, n := s.left(t, "blacklist/ban/192.0.2.3"); got != 0 || n != 1 {
		t.Errorf("permanent: %v left, count %d", got, n)
	}
	plain := newKeeper(t, nil, Options{})
	plain.b.client("blacklist/add", "192.0.2.1 timeout 60", false)
	plain.b.client("blacklist/add", "192.0.2.1 timeout 60", false)
	if got, n := plain.left(t, topic); got != time.Minute || n != 0 {
		t.Errorf("no policy: %v left, count %d; want 1m, no count", got, n)
	}
}

// TestEscalationOfClientState: `vallum ban` publishes state itself; the
// keeper publishes a longer one over it (later At, the client's reason and
// origin, the count), and the event that follows changes nothing.
func TestEscalationOfClientState(t *testing.T) {
	s := newKeeper(t, nil, withPolicy(escalating(), ""))
	const topic = "blacklist/ban/192.0.2.1"
	for i, want := range []time.Duration{15 * time.Minute, 30 * time.Minute, 3 * time.Hour} {
		now := s.clk.now()
		s.b.client(topic, state(now, now.Add(10*time.Minute), "sshd", "web1"), true)
		s.b.client("blacklist/add", "192.0.2.1 timeout 600", false)
		if st := s.b.states("blacklist")[topic]; st.Count != 0 {
			t.Fatalf("ban %d: escalated at once, before the client's state reached the hosts: %+v", i+1, st)
		}
		s.k.expire() // Run's next turn
		st := s.b.states("blacklist")[topic]
		if got, n := s.left(t, topic); got != want || n != i+1 || st.Reason != "sshd" || st.Origin != "web1" || !st.At.After(now) {
			t.Fatalf("ban %d: %v left, state %+v; want %v, count %d, reason and origin kept, later At", i+1, got, st, want, i+1)
		}
		s.clk.add(time.Hour)
	}
	// A ban lifted before Run's turn is not escalated back.
	now := s.clk.now()
	s.b.client("blacklist/ban/192.0.2.7", state(now, now.Add(time.Minute), "", "web1"), true)
	s.b.client("blacklist/ban/192.0.2.7", "", true)
	s.k.expire()
	if _, ok := s.b.states("blacklist")["blacklist/ban/192.0.2.7"]; ok {
		t.Error("a ban lifted at once came back escalated")
	}
	// Another keeper's escalated state (it has a count) is not counted again.
	n := len(s.b.sent)
	now = s.clk.now()
	s.b.client(topic, string(wire.EncodeState(wire.State{At: now, Expires: now.Add(time.Hour), Origin: "web2", Count: 9})), true)
	if len(s.b.sent) != n {
		t.Errorf("an escalated state made the keeper publish %v", s.b.sent[n:])
	}
}

// TestEscalationHistorySurvivesRestart: the history is in its file; a new
// keeper on it gives the third ban its 3 h, and forgets what is past
// remember.
func TestEscalationHistorySurvivesRestart(t *testing.T) {
	hist := filepath.Join(t.TempDir(), "history.log")
	b := newFakeBroker(true)
	s := newKeeper(t, b, withPolicy(escalating(), hist))
	s.b.client("blacklist/add", "192.0.2.1 timeout 60\n192.0.2.9 timeout 60", false)
	s.clk.add(time.Hour)
	s.b.client("blacklist/add", "192.0.2.1 timeout 60", false)
	if err := s.k.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := newKeeper(t, b, withPolicy(escalating(), hist))
	s2.clk.add(2 * time.Hour) // its clock starts where the first one's did
	s2.b.client("blacklist/add", "192.0.2.1 timeout 60", false)
	if got, n := s2.left(t, "blacklist/ban/192.0.2.1"); got != 3*time.Hour || n != 3 {
		t.Fatalf("third ban after a restart: %v left, count %d; want 3h, 3", got, n)
	}
	_ = s2.k.Close()
	s3 := newKeeper(t, b, withPolicy(escalating(), hist))
	s3.clk.add(31 * 24 * time.Hour)
	s3.b.client("blacklist/add", "192.0.2.9 timeout 60", false)
	if got, n := s3.left(t, "blacklist/ban/192.0.2.9"); got != 15*time.Minute || n != 1 {
		t.Fatalf("a month later: %v left, count %d; want the first step again", got, n)
	}
}

func reportOf(by string) string { return wire.ReportTopic(by, "blacklist") }

// TestQuorum: one reporter's reports stay pending (retained, with their
// origins); a second reporter's makes the ban and clears them; reports
// that leave the window are dropped.
func TestQuorum(t *testing.T) {
	s := newKeeper(t, nil, withPolicy(policy.List{Quorum: policy.Quorum{N: 2, Window: 10 * time.Minute}}, ""))
	const topic = "blacklist/ban/192.0.2.1"
	pending := wire.PendingTopic("blacklist", netip.MustParsePrefix("192.0.2.1"+"/32"))
	s.b.client(reportOf("edge1"), "192.0.2.1 timeout 600", false)
	s.b.client(reportOf("edge1"), "192.0.2.1 timeout 600", false) // the same reporter again
	if _, ok := s.b.states("blacklist")[topic]; ok {
		t.Fatal("one reporter made a ban")
	}
	p, err := wire.DecodePending(s.b.retained[pending])
	if err != nil || p.Need != 2 || len(p.Reports) != 1 || p.Reports[0].By != "edge1" || p.Reports[0].Timeout != 600 {
		t.Fatalf("pending: %+v, %v", p, err)
	}
	s.clk.add(time.Minute)
	s.b.client(reportOf("edge2"), "192.0.2.1 timeout 300", false)
	st, ok := s.b.states("blacklist")[topic]
	if !ok || st.Expires.Sub(s.clk.now()) != 5*time.Minute || st.Reason != "quorum: edge1 edge2" || st.Origin != Origin {
		t.Fatalf("after the second reporter: %+v, %v; want a 5 min ban by quorum", st, ok)
	}
	if _, ok := s.b.retained[pending]; ok {
		t.Error("pending reports left after the ban")
	}
	// Window: edge1's report is gone 10 min later, edge2's alone bans nothing.
	s.b.client(reportOf("edge1"), "192.0.2.2", false)
	s.clk.add(10 * time.Minute)
	s.k.expire()
	if _, ok := s.b.retained[wire.PendingTopic("blacklist", netip.MustParsePrefix("192.0.2.2"+"/32"))]; ok {
		t.Fatal("a report past its window is still pending")
	}
	s.b.client(reportOf("edge2"), "192.0.2.2", false)
	if _, ok := s.b.states("blacklist")["blacklist/ban/192.0.2.2"]; ok {
		t.Fatal("reports 10 min apart made a ban with a 10 min window")
	}
}

// TestQuorumSurvivesRestart: a new keeper reads the pending reports back.
func TestQuorumSurvivesRestart(t *testing.T) {
	o := withPolicy(policy.List{Quorum: policy.Quorum{N: 2, Window: time.Hour}}, "")
	b := newFakeBroker(true)
	s := newKeeper(t, b, o)
	s.b.client(reportOf("edge1"), "192.0.2.1 timeout 600", false)
	_ = s.k.Close()
	s2 := newKeeper(t, b, o)
	s2.b.client(reportOf("edge2"), "192.0.2.1 timeout 600", false)
	if _, ok := s2.b.states("blacklist")["blacklist/ban/192.0.2.1"]; !ok {
		t.Fatal("the pending report was lost in the restart")
	}
}

// TestReporterLimit: past its limit a reporter's reports are held: no
// state, an ERROR line, a count; another reporter is not held.
func TestReporterLimit(t *testing.T) {
	s := newKeeper(t, nil, withPolicy(policy.List{Limit: policy.Limit{N: 2, Per: time.Hour}}, ""))
	s.b.client(reportOf("bad"), "192.0.2.1\n192.0.2.2\n192.0.2.3", false)
	s.b.client(reportOf("bad"), "192.0.2.4", false)
	s.b.client(reportOf("good"), "192.0.2.5", false)
	got := s.b.states("blacklist")
	for _, a := range []string{"192.0.2.1", "192.0.2.2", "192.0.2.5"} {
		if _, ok := got["blacklist/ban/"+a]; !ok {
			t.Errorf("%s not banned", a)
		}
	}
	for _, a := range []string{"192.0.2.3", "192.0.2.4"} {
		if _, ok := got["blacklist/ban/"+a]; ok {
			t.Errorf("%s banned past the reporter's limit", a)
		}
	}
	if h := s.k.Held(); len(h) != 1 || h[0] != (Held{"blacklist", "bad", 2}) {
		t.Errorf("Held() = %+v", h)
	}
	if l := s.logs.lines("level=ERROR msg=\"reporter over its limit"); len(l) != 2 {
		t.Errorf("ERROR lines: %q", l)
	}
	s.clk.add(30 * time.Minute) // one refilled
	s.b.client(reportOf("bad"), "192.0.2.6", false)
	if _, ok := s.b.states("blacklist")["blacklist/ban/192.0.2.6"]; !ok {
		t.Error("a reporter that slowed down is still held")
	}
}

// TestReportTopics: a report topic that names no reporter, or another
// list, is no report; a report of a refused prefix is no ban.
func TestReportTopics(t *testing.T) {
	s := newKeeper(t, nil, Options{})
	s.b.client("vallum/report/blacklist", "192.0.2.1", false)
	s.b.client("vallum/report/a/other", "192.0.2.1", false)
	s.b.client(reportOf("edge1"), "127.0.0.1\n0.0.0.0/0", false)
	if got := s.b.states("blacklist"); len(got) != 0 {
		t.Fatalf("states: %v", got)
	}
	s.b.client(reportOf("edge1"), "192.0.2.1 timeout 60", false)
	if st := s.b.states("blacklist")["blacklist/ban/192.0.2.1"]; st.Reason != "report: edge1" {
		t.Fatalf("a report without a policy: %+v, want a ban at once", st)
	}
}

func TestPolicyForAListNotKept(t *testing.T) {
	o := Options{Roots: []string{"blacklist"}, Policy: Policy{Lists: map[string]policy.List{"other": {}}}}
	if _, err := New(o, newFakeBroker(true)); err == nil {
		t.Fatal("no error")
	}
}

// TestDefaultReporterLimit: a list whose policy names no limit holds a
// reporter past policy.DefaultLimit; limit=off holds none.
func TestDefaultReporterLimit(t *testing.T) {
	flood := func(s *setup) {
		var b strings.Builder
		for i := range policy.DefaultLimit.N + 5 {
			fmt.Fprintf(&b, "10.%d.%d.1\n", i/250, i%250)
		}
		s.b.client(reportOf("h1"), b.String(), false)
	}
	s := newKeeper(t, nil, Options{})
	flood(s)
	if n := len(s.b.states("blacklist")); n != policy.DefaultLimit.N {
		t.Errorf("no policy: %d bans, want the default limit %d", n, policy.DefaultLimit.N)
	}
	if h := s.k.Held(); len(h) != 1 || h[0].Reports != 5 {
		t.Errorf("Held() = %+v", h)
	}
	off := newKeeper(t, nil, withPolicy(policy.List{Limit: policy.Limit{N: -1}}, ""))
	flood(off)
	if n := len(off.b.states("blacklist")); n != policy.DefaultLimit.N+5 {
		t.Errorf("limit=off: %d bans, want all %d", n, policy.DefaultLimit.N+5)
	}
}

// TestEscalationCountInChunks: the count an escalation gave a ban is in the
// chunk once a cut folded its per-ban state away (vallum list and the web
// view read it there), and stays there through a restarted keeper that
// reads the list back from the chunks and cuts again.
func TestEscalationCountInChunks(t *testing.T) {
	needChunks(t)
	b := newFakeBroker(true)
	o := withPolicy(escalating(), filepath.Join(t.TempDir(), "history.log"))
	o.Name = "hub"
	s := newKeeper(t, b, o)
	const topic = "blacklist/ban/192.0.2.1"
	for range 2 {
		b.client("blacklist/add", "192.0.2.1 timeout 60", false)
		s.clk.add(time.Minute)
	}
	b.client("blacklist/add", "192.0.2.2 timeout 600", false)
	s.clk.add(statedFor + time.Second)
	s.k.cut(t)
	s.clk.add(statedFor + time.Second)
	s.k.maintain()
	check := func(when string) {
		t.Helper()
		if n := len(b.rawStates("blacklist")); n != 0 {
			t.Fatalf("%s: %d per-ban states left; want the list in chunks alone", when, n)
		}
		got := b.states("blacklist")
		if got[topic].Count != 2 || got["blacklist/ban/192.0.2.2"].Count != 1 {
			t.Errorf("%s: counts %d and %d read from the chunks, want 2 and 1", when, got[topic].Count, got["blacklist/ban/192.0.2.2"].Count)
		}
	}
	check("after the cut")
	_ = s.k.Close()

	s2 := newKeeper(t, b, o)
	s2.clk.add(2*time.Minute + 2*statedFor)
	s2.k.cut(t)
	check("cut again by a restarted keeper")
}
