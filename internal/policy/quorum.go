package policy

import (
	"time"

	"github.com/vallum/vallum/internal/wire"
)

// Quorum makes a global ban of N distinct reporters' reports of an
// address within Window. N of 0 or 1: every report is a ban at once.
type Quorum struct {
	N      int
	Window time.Duration
}

// DefaultWindow is a quorum's window when none is given.
const DefaultWindow = time.Hour

// Report is one reporter's report of an address.
type Report struct {
	By      string // the reporter: its login, as the report topic names it
	At      time.Time
	Timeout wire.Timeout // what it asked: 0 permanent
}

// On reports whether the quorum is in force: more than one report needed.
func (q Quorum) On() bool { return q.N > 1 }

// Add adds r to the pending reports of an address and returns those still
// within the window at r.At (one per reporter: a reporter's new report
// replaces its earlier one, so one reporter never makes a quorum alone).
// When they reach the quorum it returns reached and the ban time to ask:
// the shortest asked among them (0, permanent, is the longest), so that no
// single reporter decides how long everyone bans; escalation applies on top.
func (q Quorum) Add(pending []Report, r Report) (kept []Report, reached bool, asked wire.Timeout) {
	kept = q.Live(pending, r.At)
	out := kept[:0]
	for _, p := range kept {
		if p.By != r.By {
			out = append(out, p)
		}
	}
	kept = append(out, r)
	if len(kept) < max(q.N, 1) {
		return kept, false, 0
	}
	asked = kept[0].Timeout
	for _, p := range kept[1:] {
		if asked == 0 || p.Timeout != 0 && p.Timeout < asked {
			asked = p.Timeout
		}
	}
	return kept, true, asked
}

// Live returns the reports of pending still within the window at now, in
// a new slice.
func (q Quorum) Live(pending []Report, now time.Time) []Report {
	w := q.Window
	if w <= 0 {
		w = DefaultWindow
	}
	var kept []Report
	for _, p := range pending {
		if now.Sub(p.At) < w && !p.At.After(now.Add(w)) {
			kept = append(kept, p)
		}
	}
	return kept
}

// Ends returns when the earliest of pending leaves the window.
func (q Quorum) Ends(pending []Report) time.Time {
	w := q.Window
	if w <= 0 {
		w = DefaultWindow
	}
	var first time.Time
	for _, p := range pending {
		if first.IsZero() || p.At.Before(first) {
			first = p.At
		}
	}
	return first.Add(w)
}
