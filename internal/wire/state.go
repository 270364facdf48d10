package wire

import (
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"
)

// State is one active ban as the broker keeps it: the payload of the
// retained message on ROOT/ban/PREFIX. An unban is an empty retained
// message on the same topic, which MQTT brokers treat as a deletion.
type State struct {
	// At is when the ban was made, in milliseconds. It is the ban's
	// version: of two states for one prefix the later one wins, so the
	// outcome never depends on the order a broker redelivers them in.
	At time.Time
	// Expires is when the ban ends; zero means never.
	Expires time.Time
	Reason  string // free text, such as the fail2ban jail
	Origin  string // who published it, such as a host name
	// Count is how many times the keeper's escalation has seen the
	// address banned (internal/policy); 0: no escalation made this state.
	// Hosts older than it ignore the field.
	Count int
}

// maxStatePayload bounds a state payload: JSON with a reason and origin of
// a few words each is under 300 bytes.
const maxStatePayload = 1024

type stateJSON struct {
	At      int64  `json:"at"`                // Unix milliseconds
	Expires int64  `json:"expires,omitempty"` // Unix seconds; absent: permanent
	Reason  string `json:"reason,omitempty"`
	Origin  string `json:"origin,omitempty"`
	Count   int    `json:"count,omitempty"`
}

// EncodeState returns the retained payload for s.
func EncodeState(s State) []byte {
	j := stateJSON{At: s.At.UnixMilli(), Reason: s.Reason, Origin: s.Origin, Count: s.Count}
	if !s.Expires.IsZero() {
		j.Expires = s.Expires.Unix()
	}
	b, _ := json.Marshal(j) // cannot fail: plain fields
	return b
}

// DecodeState parses a retained state payload. The caller handles an empty
// payload (a deletion) before calling it.
func DecodeState(b []byte) (State, error) {
	if len(b) > maxStatePayload {
		return State{}, fmt.Errorf("%w: state payload of %d bytes", ErrBadPayload, len(b))
	}
	if !utf8.Valid(b) {
		return State{}, fmt.Errorf("%w: state payload is not UTF-8", ErrBadPayload)
	}
	var j stateJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return State{}, fmt.Errorf("%w: state payload: %v", ErrBadPayload, err)
	}
	if j.At <= 0 || j.Expires < 0 || j.Count < 0 {
		return State{}, fmt.Errorf("%w: state payload without a valid \"at\" or \"expires\"", ErrBadPayload)
	}
	s := State{At: time.UnixMilli(j.At), Reason: Clip(j.Reason), Origin: Clip(j.Origin), Count: j.Count}
	if j.Expires > 0 {
		s.Expires = time.Unix(j.Expires, 0)
	}
	return s, nil
}

// Remaining returns the timeout to give the kernel at time now, and false
// when the ban has already expired.
func (s State) Remaining(now time.Time) (Timeout, bool) {
	if s.Expires.IsZero() {
		return 0, true
	}
	left := s.Expires.Sub(now)
	if left <= 0 {
		return 0, false
	}
	return ClampTimeout(left), true
}
