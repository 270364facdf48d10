package policy

import "time"

// Limit caps one reporter's reports on a list: at most N in any period
// Per on average, and N at once (a token bucket of N refilled at N/Per).
// Reports past it are held: not applied, logged and counted. N below 0:
// no limit; 0: DefaultLimit (OrDefault).
type Limit struct {
	N   int
	Per time.Duration
}

// DefaultLimit is a reporter's limit on a list whose policy names none: a
// login that may report (a host) can ban with its reports, so one that is
// compromised or misconfigured is bounded even where nobody thought of it.
var DefaultLimit = Limit{N: 1000, Per: time.Hour}

// OrDefault returns l, or DefaultLimit when l is unset.
func (l Limit) OrDefault() Limit {
	if l.N == 0 {
		return DefaultLimit
	}
	return l
}

// Bucket is what a Limit remembers of one reporter. Its zero value is a
// reporter that has reported nothing.
type Bucket struct {
	Used float64   // reports counted and not yet refilled
	At   time.Time // when Used was last brought up to date
}

// Take counts one report at now and reports whether it is within the
// limit; a held report is not counted, so a reporter that slows down gets
// through again.
func (l Limit) Take(b Bucket, now time.Time) (Bucket, bool) {
	if l.N <= 0 || l.Per <= 0 {
		return b, true
	}
	if !b.At.IsZero() && now.After(b.At) {
		b.Used = max(0, b.Used-float64(now.Sub(b.At))*float64(l.N)/float64(l.Per))
	}
	if b.At.IsZero() || now.After(b.At) {
		b.At = now
	}
	if b.Used+1 > float64(l.N) {
		return b, false
	}
	b.Used++
	return b, true
}
