package wire

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseTopic(t *testing.T) {
	tests := []struct {
		name, root, topic string
		want              Topic
		err               error
	}{
		{"bare root is add", "blacklist", "blacklist", Topic{Root: "blacklist", Kind: KindAdd}, nil},
		{"add", "blacklist", "blacklist/add", Topic{Root: "blacklist", Kind: KindAdd}, nil},
		{"del", "blacklist", "blacklist/del", Topic{Root: "blacklist", Kind: KindDel}, nil},
		{"prefixed root", "site1/blacklist", "site1/blacklist/del", Topic{Root: "site1/blacklist", Kind: KindDel}, nil},
		{"state v4", "bl", "bl/ban/203.0.113.7", Topic{Root: "bl", Kind: KindState, Prefix: netip.MustParsePrefix("203.0.113.7/32")}, nil},
		{"state cidr", "bl", "bl/ban/198.51.100.0/24", Topic{Root: "bl", Kind: KindState, Prefix: netip.MustParsePrefix("198.51.100.0/24")}, nil},
		{"state v6", "bl", "bl/ban/2001:db8::7", Topic{Root: "bl", Kind: KindState, Prefix: netip.MustParsePrefix("2001:db8::7/128")}, nil},
		{"unknown action", "bl", "bl/flush", Topic{}, ErrBadTopic},
		{"deeper level", "bl", "bl/add/x", Topic{}, ErrBadTopic},
		{"state garbage", "bl", "bl/ban/example.com", Topic{}, ErrBadTopic},
		{"other root", "bl", "blx/add", Topic{}, ErrBadTopic},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseTopic(tt.root, tt.topic)
			if !errors.Is(err, tt.err) {
				t.Fatalf("ParseTopic(%q, %q) error = %v, want %v", tt.root, tt.topic, err, tt.err)
			}
			if err == nil && got != tt.want {
				t.Errorf("ParseTopic(%q, %q) = %+v, want %+v", tt.root, tt.topic, got, tt.want)
			}
		})
	}
}

func TestValidRoot(t *testing.T) {
	for _, bad := range []string{"", "a/+", "#", "/a", "a/", "a//b", "$SYS", "bl/add", "x/ban", strings.Repeat("a", 201)} {
		if ValidRoot(bad) == nil {
			t.Errorf("ValidRoot(%q) = nil, want an error", bad)
		}
	}
	for _, good := range []string{"blacklist", "site1/blacklist", "a-b.c"} {
		if err := ValidRoot(good); err != nil {
			t.Errorf("ValidRoot(%q) = %v, want nil", good, err)
		}
	}
}

func TestParsePayload(t *testing.T) {
	p := netip.MustParsePrefix
	tests := []struct {
		name    string
		payload string
		want    []Line
		badLine []int
	}{
		{"single v4", "203.0.113.7", []Line{{p("203.0.113.7/32"), DefaultTimeout}}, nil},
		{"v6 with timeout", "2001:db8::7 timeout 600", []Line{{p("2001:db8::7/128"), 600}}, nil},
		{"several lines", "198.51.100.0/24\n203.0.113.9 timeout 3600\n", []Line{{p("198.51.100.0/24"), DefaultTimeout}, {p("203.0.113.9/32"), 3600}}, nil},
		{"blank lines and spaces", "\n  \r\n\t192.0.2.1  \r\n\n", []Line{{p("192.0.2.1/32"), DefaultTimeout}}, nil},
		{"timeout 0 permanent", "192.0.2.1 timeout 0", []Line{{p("192.0.2.1/32"), 0}}, nil},
		{"timeout clamped", "192.0.2.1 timeout 99999999999999999999999", []Line{{p("192.0.2.1/32"), MaxTimeout}}, nil},
		{"v4-mapped", "::ffff:192.0.2.1", []Line{{p("192.0.2.1/32"), DefaultTimeout}}, nil},
		{"v4-mapped prefix", "::ffff:192.0.2.0/120", []Line{{p("192.0.2.0/24"), DefaultTimeout}}, nil},
		{"host bits masked", "198.51.100.77/24", []Line{{p("198.51.100.0/24"), DefaultTimeout}}, nil},
		{"bad line refused alone", "192.0.2.1\nnot-an-ip\n192.0.2.2", []Line{{p("192.0.2.1/32"), DefaultTimeout}, {p("192.0.2.2/32"), DefaultTimeout}}, []int{2}},
		{"negative timeout", "192.0.2.1 timeout -5", nil, []int{1}},
		{"hex timeout", "192.0.2.1 timeout 0x10", nil, []int{1}},
		{"leading zeros", "010.0.0.1", nil, []int{1}},
		{"zone", "fe80::1%eth0", nil, []int{1}},
		{"port", "192.0.2.1:22", nil, []int{1}},
		{"bracketed v6 port", "[2001:db8::1]:22", nil, []int{1}},
		{"hostname", "example.com", nil, []int{1}},
		{"prefix too long", "192.0.2.0/33", nil, []int{1}},
		{"prefix leading zero", "192.0.2.0/024", nil, []int{1}},
		{"prefix sign", "192.0.2.0/+24", nil, []int{1}},
		{"trailing word", "192.0.2.1 timeout 5 extra", nil, []int{1}},
		{"nul byte", "192.0.2.1\x00", nil, []int{1}},
		{"binary", "\xff\xfe\x00\x01", nil, []int{1}},
		{"long line", strings.Repeat("1", 300), nil, []int{1}},
		{"wrong keyword", "192.0.2.1 ttl 5", nil, []int{1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, errs := ParsePayload([]byte(tt.payload))
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
				t.Errorf("ParsePayload(%q) lines (-want +got):\n%s", tt.payload, diff)
			}
			var bad []int
			for _, err := range errs {
				var le *LineError
				if !errors.As(err, &le) || !errors.Is(err, ErrBadPayload) {
					t.Errorf("ParsePayload(%q) error %v is not a LineError wrapping ErrBadPayload", tt.payload, err)
					continue
				}
				bad = append(bad, le.N)
			}
			if diff := cmp.Diff(tt.badLine, bad); diff != "" {
				t.Errorf("ParsePayload(%q) refused lines (-want +got):\n%s", tt.payload, diff)
			}
		})
	}
}

func TestStateRoundTrip(t *testing.T) {
	s := State{At: timeMs(1732233600123), Expires: timeMs(1732237200000), Reason: "sshd", Origin: "web1"}
	got, err := DecodeState(EncodeState(s))
	if err != nil || !got.At.Equal(s.At) || !got.Expires.Equal(s.Expires) || got.Reason != "sshd" || got.Origin != "web1" {
		t.Fatalf("DecodeState(EncodeState(%+v)) = %+v, %v", s, got, err)
	}
	for _, bad := range []string{"", "{", `{"at":0}`, `{"at":5,"expires":-1}`, "\xff", `[1]`, `{"at":"x"}`, strings.Repeat(" ", 2000)} {
		if _, err := DecodeState([]byte(bad)); !errors.Is(err, ErrBadPayload) {
			t.Errorf("DecodeState(%q) = %v, want ErrBadPayload", bad, err)
		}
	}
}

// The escalation's count travels in the state; a host that does not know
// a field (an older one, or this one reading a newer keeper's) ignores it.
func TestStateCount(t *testing.T) {
	s := State{At: timeMs(1732233600123), Count: 3}
	if got, err := DecodeState(EncodeState(s)); err != nil || got.Count != 3 {
		t.Fatalf("count round trip: %+v, %v", got, err)
	}
	if b := EncodeState(State{At: timeMs(1)}); strings.Contains(string(b), "count") {
		t.Fatalf("a state without escalation says count: %s", b)
	}
	got, err := DecodeState([]byte(`{"at":5,"count":2,"weight":7,"reports":["a"]}`))
	if err != nil || got.Count != 2 {
		t.Fatalf("unknown fields: %+v, %v", got, err)
	}
	if _, err := DecodeState([]byte(`{"at":5,"count":-1}`)); !errors.Is(err, ErrBadPayload) {
		t.Fatalf("negative count: %v", err)
	}
}

func TestStateRemaining(t *testing.T) {
	now := timeMs(1_000_000_000)
	tests := []struct {
		name    string
		expires int64 // ms; 0 permanent
		want    Timeout
		active  bool
	}{
		{"permanent", 0, 0, true},
		{"an hour left", 1_000_000_000 + 3_600_000, 3600, true},
		{"rounded up", 1_000_000_000 + 1_500, 2, true},
		{"expired", 1_000_000_000 - 1, 0, false},
		{"clamped", 1_000_000_000 + 10_000_000_000, MaxTimeout, true},
	}
	for _, tt := range tests {
		s := State{At: now}
		if tt.expires != 0 {
			s.Expires = timeMs(tt.expires)
		}
		got, active := s.Remaining(now)
		if got != tt.want || active != tt.active {
			t.Errorf("%s: Remaining = %d, %v, want %d, %v", tt.name, got, active, tt.want, tt.active)
		}
	}
}

func FuzzParsePayload(f *testing.F) {
	for _, s := range []string{"203.0.113.7", "2001:db8::7 timeout 600", "198.51.100.0/24\n203.0.113.9 timeout 3600", "::ffff:1.2.3.4/120", "\x00\xff", "1.2.3.4 timeout 99999999999999999999"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		lines, errs := ParsePayload(b)
		for _, l := range lines {
			if !l.Prefix.IsValid() || l.Prefix != l.Prefix.Masked() || l.Prefix.Addr().Is4In6() || l.Prefix.Addr().Zone() != "" {
				t.Fatalf("ParsePayload(%q) gave a prefix that is not normal: %v", b, l.Prefix)
			}
			if l.Timeout < DefaultTimeout || l.Timeout > MaxTimeout {
				t.Fatalf("ParsePayload(%q) gave timeout %d out of range", b, l.Timeout)
			}
			if back, err := ParsePrefix(FormatPrefix(l.Prefix)); err != nil || back != l.Prefix {
				t.Fatalf("FormatPrefix(%v) does not parse back: %v %v", l.Prefix, back, err)
			}
		}
		for _, err := range errs {
			if len(err.Error()) > 400 {
				t.Fatalf("error too long to log: %d bytes", len(err.Error()))
			}
		}
	})
}

func FuzzParseTopic(f *testing.F) {
	for _, s := range []string{"bl", "bl/add", "bl/del", "bl/ban/1.2.3.4", "bl/ban/2001:db8::/32", "bl/ban/", "bl/x/y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		got, err := ParseTopic("bl", topic)
		if err != nil {
			return
		}
		if got.Kind == KindState {
			if StateTopic("bl", got.Prefix) != topic && got.Prefix.IsValid() {
				// Normalised forms (v4-mapped, host bits) may differ; they must still parse back.
				if again, err := ParseTopic("bl", StateTopic("bl", got.Prefix)); err != nil || again != got {
					t.Fatalf("StateTopic(%v) does not parse back: %v %v", got.Prefix, again, err)
				}
			}
		} else if got.Kind != KindAdd && got.Kind != KindDel {
			t.Fatalf("ParseTopic(%q) kind %d", topic, got.Kind)
		}
	})
}

func timeMs(ms int64) time.Time { return time.UnixMilli(ms) }

func TestListTopics(t *testing.T) {
	if got, want := EventTopics("a/bl"), []string{"a/bl", "a/bl/add", "a/bl/del"}; !slices.Equal(got, want) {
		t.Errorf("EventTopics = %q, want %q", got, want)
	}
	for _, tc := range []struct {
		topic string
		event bool
	}{{"a/bl", true}, {"a/bl/add", true}, {"a/bl/del", true}, {"a/bl/ban/1.2.3.4", false}, {"a/blx", false}, {"a/bl/addx", false}, {"a", false}} {
		if got := IsEventTopic("a/bl", tc.topic); got != tc.event {
			t.Errorf("IsEventTopic(a/bl, %q) = %v, want %v", tc.topic, got, tc.event)
		}
		if _, err := ParseTopic("a/bl", tc.topic); tc.event && err != nil {
			t.Errorf("ParseTopic(a/bl, %q): %v, but it is an event topic", tc.topic, err)
		}
	}
	if got := StateFilter("bl"); got != "bl/ban/#" {
		t.Errorf("StateFilter = %q", got)
	}
	if got := StateTopic("bl", netip.MustParsePrefix("2001:db8::/32")); got != "bl/ban/2001:db8::/32" {
		t.Errorf("StateTopic = %q", got)
	}
	if got := MarkerTopic("h1"); got != "vallum/sync/h1" {
		t.Errorf("MarkerTopic = %q", got)
	}
}

func TestReportTopics(t *testing.T) {
	if got := ReportTopic("edge1", "site1/bl"); got != "vallum/report/edge1/site1/bl" {
		t.Fatalf("ReportTopic = %q", got)
	}
	for _, c := range []struct {
		root, topic, user string
		ok                bool
	}{
		{"bl", "vallum/report/edge1/bl", "edge1", true},
		{"site1/bl", "vallum/report/edge1/site1/bl", "edge1", true},
		{"bl", "vallum/report/edge1/site1/bl", "", false},
		{"bl", "vallum/report//bl", "", false},
		{"bl", "vallum/report/edge1", "", false},
		{"bl", "bl/add", "", false},
	} {
		user, ok := ParseReportTopic(c.root, c.topic)
		if ok != c.ok || ok && user != c.user {
			t.Errorf("ParseReportTopic(%q, %q) = %q, %v", c.root, c.topic, user, ok)
		}
	}
	p := Pending{Need: 2, Reports: []PendingReport{{By: "edge1", At: timeMs(1732233600123), Timeout: 600}}}
	got, err := DecodePending(EncodePending(p))
	if err != nil || got.Need != 2 || len(got.Reports) != 1 || got.Reports[0].By != "edge1" || !got.Reports[0].At.Equal(p.Reports[0].At) || got.Reports[0].Timeout != 600 {
		t.Fatalf("pending round trip: %+v, %v", got, err)
	}
	for _, bad := range []string{"{", `{"need":2,"reports":[{"by":"a/b","at":5}]}`, `{"reports":[{"by":"a","at":0}]}`} {
		if _, err := DecodePending([]byte(bad)); err == nil {
			t.Errorf("DecodePending(%q): no error", bad)
		}
	}
}
