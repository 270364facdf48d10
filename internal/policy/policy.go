// Package policy decides what the keeper makes of a list's bans and
// reports: how long a ban lasts given the address's history across all
// hosts (escalation), when reports of distinct reporters make a global ban
// (quorum), and when a reporter has reported too much (limits). Every
// function is pure: it takes the clock and the old values and returns the
// new ones, so each decision is a table test. The keeper
// (internal/keeper/policy*.go) keeps the values and publishes the results.
package policy

import (
	"math"
	"time"

	"github.com/vallum/vallum/internal/wire"
)

// List is the policy of one list. Its zero value is today's behaviour: a
// ban lasts what its reporter asked, one report is a global ban, no limit.
type List struct {
	Escalate *Escalation // nil: no escalation
	Quorum   Quorum
	Limit    Limit
}

// Escalation makes an address's ban longer each time it is banned again
// while its history is remembered.
type Escalation struct {
	Steps []time.Duration // the ban time of the 1st, 2nd... ban
	// Past the steps, the n-th ban lasts Each × n (DisWall: an hour times
	// the number of attempts), or, when Factor > 1, the last step times
	// Factor for every ban past the steps.
	Each   time.Duration
	Factor float64
	Max    time.Duration // longest ban it makes; 0: the kernel's maximum
	// Remember is how long a history is kept after the address's last
	// ban: one banned again later starts from the first step.
	Remember time.Duration
}

// DefaultEscalation is DisWall's: 15 minutes the first time, then 30,
// then an hour times the number of bans, at most a week, history kept 30
// days.
var DefaultEscalation = Escalation{
	Steps: []time.Duration{15 * time.Minute, 30 * time.Minute},
	Each:  time.Hour, Max: 7 * 24 * time.Hour, Remember: 30 * 24 * time.Hour,
}

// History is what the keeper remembers of one address on one list.
type History struct {
	Count int       // bans counted
	Last  time.Time // the last one; zero: none
}

// Ban counts one more ban of an address with history h at now, asked for
// asked seconds (0: permanent), and returns the new history and the ban
// time: the longer of what was asked and what the history earns. What the
// reporter asked is a floor, never shortened; a permanent ban stays so.
func (e *Escalation) Ban(h History, now time.Time, asked wire.Timeout) (History, wire.Timeout) {
	if e == nil {
		return h, asked
	}
	if h.Count > 0 && now.Sub(h.Last) > e.Remember {
		h = History{} // forgotten
	}
	if h.Count < math.MaxInt32 { // a count that cannot wrap, on 32 bits too
		h.Count++
	}
	h.Last = now
	if asked == 0 {
		return h, 0
	}
	return h, max(asked, wire.ClampTimeout(e.time(h.Count)))
}

// Forgotten reports whether h is past its Remember at now.
func (e *Escalation) Forgotten(h History, now time.Time) bool {
	return e == nil || now.Sub(h.Last) > e.Remember
}

// time is the ban time the n-th ban earns, n >= 1.
func (e *Escalation) time(n int) time.Duration {
	limit := e.Max
	if limit <= 0 {
		limit = time.Duration(wire.MaxTimeout) * time.Second
	}
	var d time.Duration
	switch s := len(e.Steps); {
	case n <= s:
		d = e.Steps[n-1]
	case e.Factor > 1 && s > 0:
		f := float64(e.Steps[s-1])
		for i := s; i < n && f < float64(limit); i++ { // bounded by limit, no overflow
			f *= e.Factor
		}
		d = time.Duration(min(f, float64(limit)))
	case e.Each > 0:
		if int64(n) > int64(limit/e.Each) {
			return limit
		}
		d = e.Each * time.Duration(n)
	case s > 0:
		d = e.Steps[s-1]
	}
	return min(d, limit)
}
