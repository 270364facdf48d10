package wire

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"
)

// Reports. A reporter that may not ban on its own (a host, or any login on
// a list with a quorum) reports an address on ReportTopic(USER, ROOT), its
// own login name as the second level, with an event's payload (lines of
// `ADDRESS[/PREFIX] [timeout SECONDS]`, not retained). The broker lets a
// login publish only under its own name (the embedded broker's ACL;
// mosquitto's `pattern write vallum/report/%u/#`), so a reporter cannot
// report as another. The list's keeper decides what reports become
// (internal/policy) and keeps the reports still short of a quorum as
// retained messages on PendingTopic(ROOT, PREFIX), which `vallum list
// --pending` reads.
const (
	ReportPrefix  = Namespace + "/report/"
	PendingPrefix = Namespace + "/pending/"
)

// ReportTopic is where user reports to the keeper of list root.
func ReportTopic(user, root string) string { return ReportPrefix + user + "/" + root }

// ReportFilter matches every reporter's reports on list root.
func ReportFilter(root string) string { return ReportPrefix + "+/" + root }

// ParseReportTopic returns the reporter of a report topic of list root.
func ParseReportTopic(root, topic string) (string, bool) {
	rest, ok := strings.CutPrefix(topic, ReportPrefix)
	if !ok {
		return "", false
	}
	user, r, ok := strings.Cut(rest, "/")
	return user, ok && r == root && ValidReporter(user) == nil
}

// ValidReporter says why a login name cannot report, or nil: it is one
// topic level, so it holds no '/', no wildcard, and is not empty.
func ValidReporter(user string) error {
	if user == "" || len(user) > 128 || strings.ContainsAny(user, "/+#\x00") || !utf8.ValidString(user) {
		return fmt.Errorf("%w: login %q cannot report: a name of 1 to 128 bytes without / + # is needed", ErrBadTopic, Clip(user))
	}
	return nil
}

// PendingTopic is the retained topic of the reports of p on list root that
// have not made a ban yet.
func PendingTopic(root string, p netip.Prefix) string {
	return PendingPrefix + root + "/" + FormatPrefix(p)
}

// PendingFilter matches the pending reports of list root (and of lists
// under it: a reader checks the prefix parses).
func PendingFilter(root string) string { return PendingPrefix + root + "/#" }

// Pending is the payload of a PendingTopic: the reports within the
// quorum's window and how many distinct reporters make a ban.
type Pending struct {
	Need    int
	Reports []PendingReport
}

// PendingReport is one reporter's report.
type PendingReport struct {
	By      string    `json:"by"`
	At      time.Time `json:"-"`
	Timeout Timeout   `json:"timeout"` // 0: permanent
	AtMs    int64     `json:"at"`      // At in Unix milliseconds
}

type pendingJSON struct {
	Need    int             `json:"need"`
	Reports []PendingReport `json:"reports"`
}

// maxPendingPayload bounds a pending payload: a quorum past 100 reporters
// is not one this format is for.
const maxPendingPayload = 16 << 10

// EncodePending returns the retained payload for p.
func EncodePending(p Pending) []byte {
	j := pendingJSON{Need: p.Need, Reports: make([]PendingReport, len(p.Reports))}
	for i, r := range p.Reports {
		r.AtMs = r.At.UnixMilli()
		j.Reports[i] = r
	}
	b, _ := json.Marshal(j) // cannot fail: plain fields
	return b
}

// DecodePending parses a pending payload; an empty one is none.
func DecodePending(b []byte) (Pending, error) {
	if len(b) > maxPendingPayload || !utf8.Valid(b) {
		return Pending{}, fmt.Errorf("%w: pending payload of %d bytes, not UTF-8 or over %d", ErrBadPayload, len(b), maxPendingPayload)
	}
	var j pendingJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return Pending{}, fmt.Errorf("%w: pending payload: %v", ErrBadPayload, err)
	}
	p := Pending{Need: j.Need}
	for _, r := range j.Reports {
		if r.AtMs <= 0 || r.Timeout < 0 || ValidReporter(r.By) != nil {
			return Pending{}, fmt.Errorf("%w: pending payload: a report without a valid by, at or timeout", ErrBadPayload)
		}
		r.At = time.UnixMilli(r.AtMs)
		p.Reports = append(p.Reports, r)
	}
	return p, nil
}
