package policy

import (
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/vallum/vallum/internal/wire"
)

var t0 = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

func TestEscalationBan(t *testing.T) {
	d := DefaultEscalation
	fac := Escalation{Steps: []time.Duration{10 * time.Minute}, Factor: 2, Max: time.Hour, Remember: time.Hour}
	tests := []struct {
		name  string
		e     *Escalation
		h     History
		now   time.Time
		asked wire.Timeout
		want  History
		ban   wire.Timeout
	}{
		{"off: what was asked, no count", nil, History{}, t0, 600, History{}, 600},
		{"first ban: 15 min", &d, History{}, t0, 60, History{1, t0}, 900},
		{"second: 30 min", &d, History{1, t0}, t0.Add(time.Hour), 60, History{2, t0.Add(time.Hour)}, 1800},
		{"third: an hour times 3", &d, History{2, t0}, t0.Add(time.Hour), 60, History{3, t0.Add(time.Hour)}, 3 * 3600},
		{"tenth: 10 h", &d, History{9, t0}, t0, 60, History{10, t0}, 10 * 3600},
		{"capped at a week", &d, History{500, t0}, t0, 60, History{501, t0}, 7 * 86400},
		{"huge count does not overflow", &d, History{math.MaxInt32, t0}, t0, 60, History{math.MaxInt32, t0}, 7 * 86400},
		{"asked is the floor", &d, History{}, t0, 7200, History{1, t0}, 7200},
		{"permanent stays permanent", &d, History{3, t0}, t0, 0, History{4, t0}, 0},
		{"forgotten after remember: first step again", &d, History{5, t0}, t0.Add(31 * 24 * time.Hour), 60, History{1, t0.Add(31 * 24 * time.Hour)}, 900},
		{"remembered just inside", &d, History{1, t0}, t0.Add(30 * 24 * time.Hour), 60, History{2, t0.Add(30 * 24 * time.Hour)}, 1800},
		{"factor: 10, 20, 40", &fac, History{2, t0}, t0, 1, History{3, t0}, 2400},
		{"factor capped by max", &fac, History{20, t0}, t0, 1, History{21, t0}, 3600},
		{"no max: the kernel's", &Escalation{Each: 1000 * time.Hour, Remember: time.Hour}, History{}, t0, 1, History{1, t0}, wire.MaxTimeout},
		{"steps only: the last repeats", &Escalation{Steps: []time.Duration{time.Minute, 2 * time.Minute}, Remember: time.Hour}, History{4, t0}, t0, 1, History{5, t0}, 120},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, ban := tt.e.Ban(tt.h, tt.now, tt.asked)
			if h != tt.want || ban != tt.ban {
				t.Errorf("Ban(%+v, %v, %d) = %+v, %d; want %+v, %d", tt.h, tt.now, tt.asked, h, ban, tt.want, tt.ban)
			}
		})
	}
}

// Three bans in a row, each at its own time, as the keeper calls it.
func TestEscalationSequence(t *testing.T) {
	e := DefaultEscalation
	var h History
	var got []wire.Timeout
	for i := range 4 {
		var ban wire.Timeout
		h, ban = e.Ban(h, t0.Add(time.Duration(i)*time.Hour), 600)
		got = append(got, ban)
	}
	if want := []wire.Timeout{900, 1800, 3 * 3600, 4 * 3600}; !reflect.DeepEqual(got, want) {
		t.Fatalf("ban times %v, want %v", got, want)
	}
}

func rep(by string, sec int, timeout wire.Timeout) Report {
	return Report{By: by, At: t0.Add(time.Duration(sec) * time.Second), Timeout: timeout}
}

func TestQuorumAdd(t *testing.T) {
	q2 := Quorum{N: 2, Window: time.Hour}
	tests := []struct {
		name    string
		q       Quorum
		pending []Report
		r       Report
		kept    []string
		reached bool
		asked   wire.Timeout
	}{
		{"off: a report is a ban", Quorum{}, nil, rep("a", 0, 600), []string{"a"}, true, 600},
		{"one of two", q2, nil, rep("a", 0, 600), []string{"a"}, false, 0},
		{"two reporters", q2, []Report{rep("a", 0, 600)}, rep("b", 10, 300), []string{"a", "b"}, true, 300},
		{"one reporter twice is one", q2, []Report{rep("a", 0, 600)}, rep("a", 10, 600), []string{"a"}, false, 0},
		{"the other left the window", q2, []Report{rep("a", 0, 600)}, rep("b", 3600, 600), []string{"b"}, false, 0},
		{"just inside the window", q2, []Report{rep("a", 1, 600)}, rep("b", 3600, 600), []string{"a", "b"}, true, 600},
		{"permanent is the longest", q2, []Report{rep("a", 0, 0)}, rep("b", 1, 900), []string{"a", "b"}, true, 900},
		{"both permanent", q2, []Report{rep("a", 0, 0)}, rep("b", 1, 0), []string{"a", "b"}, true, 0},
		{"three of three", Quorum{N: 3, Window: time.Minute}, []Report{rep("a", 0, 60), rep("b", 20, 120)}, rep("c", 40, 30), []string{"a", "b", "c"}, true, 30},
		{"a report from the future does not count", q2, []Report{rep("a", 7300, 600)}, rep("b", 0, 600), []string{"b"}, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kept, reached, asked := tt.q.Add(tt.pending, tt.r)
			var by []string
			for _, k := range kept {
				by = append(by, k.By)
			}
			if !reflect.DeepEqual(by, tt.kept) || reached != tt.reached || asked != tt.asked {
				t.Errorf("Add = %v, %v, %d; want %v, %v, %d", by, reached, asked, tt.kept, tt.reached, tt.asked)
			}
		})
	}
}

func TestQuorumDoesNotShareItsInput(t *testing.T) {
	q := Quorum{N: 3, Window: time.Hour}
	pending := []Report{rep("a", 0, 1), rep("b", 1, 1)}
	q.Add(pending, rep("a", 2, 1))
	if pending[0].By != "a" || pending[1].By != "b" {
		t.Fatalf("Add changed its input: %v", pending)
	}
	if got := q.Ends(pending); !got.Equal(t0.Add(time.Hour)) {
		t.Fatalf("Ends = %v", got)
	}
}

func TestLimitTake(t *testing.T) {
	l := Limit{N: 3, Per: time.Hour}
	type step struct {
		sec int
		ok  bool
	}
	tests := []struct {
		name  string
		l     Limit
		steps []step
	}{
		{"no limit", Limit{}, []step{{0, true}, {0, true}, {0, true}, {0, true}}},
		{"three at once, the fourth held", l, []step{{0, true}, {0, true}, {0, true}, {0, false}, {1, false}}},
		{"one refilled after 20 min", l, []step{{0, true}, {0, true}, {0, true}, {1199, false}, {1200, true}, {1201, false}}},
		{"full again after the period", l, []step{{0, true}, {0, true}, {0, true}, {3600, true}, {3600, true}, {3600, true}, {3600, false}}},
		{"held reports are not counted", l, []step{{0, true}, {0, true}, {0, true}, {600, false}, {900, false}, {1200, true}}},
		{"a clock step back refills nothing", l, []step{{100, true}, {100, true}, {100, true}, {0, false}, {100, false}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b Bucket
			for i, s := range tt.steps {
				var ok bool
				b, ok = tt.l.Take(b, t0.Add(time.Duration(s.sec)*time.Second))
				if ok != s.ok {
					t.Fatalf("step %d (t+%ds): ok %v, want %v (bucket %+v)", i, s.sec, ok, s.ok, b)
				}
			}
		})
	}
}

func TestParse(t *testing.T) {
	got, err := Parse([]string{
		"blacklist:escalate=on",
		"blacklist:quorum=2,window=30m,limit=1000/1h",
		"site1/bl:steps=1m/2m,factor=3,max=1d,remember=7d",
	})
	if err != nil {
		t.Fatal(err)
	}
	bl := got["blacklist"]
	if bl.Escalate == nil || !reflect.DeepEqual(*bl.Escalate, DefaultEscalation) ||
		bl.Quorum != (Quorum{2, 30 * time.Minute}) || bl.Limit != (Limit{1000, time.Hour}) {
		t.Errorf("blacklist: %+v %+v", bl, bl.Escalate)
	}
	s := got["site1/bl"]
	want := Escalation{Steps: []time.Duration{time.Minute, 2 * time.Minute}, Each: time.Hour, Factor: 3, Max: 24 * time.Hour, Remember: 7 * 24 * time.Hour}
	if s.Escalate == nil || !reflect.DeepEqual(*s.Escalate, want) || s.Quorum.On() {
		t.Errorf("site1/bl: %+v %+v", s, s.Escalate)
	}
	off, err := Parse([]string{"bl:limit=off"})
	if err != nil || off["bl"].Limit.OrDefault().N >= 0 || (Limit{}).OrDefault() != DefaultLimit {
		t.Errorf("limit=off: %+v, %v; the unset limit is %+v", off, err, (Limit{}).OrDefault())
	}
	if DefaultEscalation.Steps[0] != 15*time.Minute {
		t.Error("Parse changed DefaultEscalation")
	}
	for _, bad := range []string{"blacklist", ":quorum=2", "bl:quorum=x", "bl:quorum=-1", "bl:limit=10", "bl:limit=10/0s",
		"bl:steps=", "bl:steps=1m/x", "bl:limit=0/1h", "bl:factor=0.5", "bl:escalate=yes", "bl:color=red", "bl:window=-1h", "bl:max=3x"} {
		if _, err := Parse([]string{bad}); err == nil {
			t.Errorf("Parse(%q): no error", bad)
		}
	}
}
