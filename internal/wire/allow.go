package wire

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"
)

// AllowPrefix is where the fleet's shared allowlist lives: one retained
// message per allowed prefix on AllowPrefix + PREFIX, spelled as
// FormatPrefix spells it (one topic per prefix, so that one delete lifts
// it). An empty retained message deletes the entry. It lives under
// Namespace so that only an admin may write it: an allow entry lifts bans
// on every host.
const AllowPrefix = Namespace + "/allow/"

// AllowFilter matches every entry of the allowlist.
const AllowFilter = AllowPrefix + "#"

// AllowTopic is the retained topic of the allow entry p.
func AllowTopic(p netip.Prefix) string { return AllowPrefix + FormatPrefix(p) }

// ParseAllowTopic returns the prefix of an allowlist topic. Only the
// canonical spelling is accepted: an entry under another could not be
// deleted by `vallum allow del`, which deletes the canonical topic. The
// error is ErrBadTopic alone: the caller logs the topic.
func ParseAllowTopic(topic string) (netip.Prefix, error) {
	rest, ok := strings.CutPrefix(topic, AllowPrefix)
	p, err := ParsePrefix(rest)
	if !ok || err != nil || FormatPrefix(p) != rest {
		return netip.Prefix{}, ErrBadTopic
	}
	return p, nil
}

// Allow is one entry of the shared allowlist: the payload of its retained
// message.
type Allow struct {
	At      time.Time // when it was added, to the millisecond
	Comment string    // why, such as "office"
	Origin  string    // who added it, such as a host name
}

// maxAllowPayload bounds an allow payload, as maxStatePayload a state's.
const maxAllowPayload = 1024

type allowJSON struct {
	At      int64  `json:"at"` // Unix milliseconds
	Comment string `json:"comment,omitempty"`
	Origin  string `json:"origin,omitempty"`
}

// EncodeAllow returns the retained payload for a.
func EncodeAllow(a Allow) []byte {
	b, _ := json.Marshal(allowJSON{At: a.At.UnixMilli(), Comment: a.Comment, Origin: a.Origin}) // plain fields
	return b
}

// DecodeAllow parses an allow payload. The caller handles an empty payload
// (a deletion) first.
func DecodeAllow(b []byte) (Allow, error) {
	if len(b) > maxAllowPayload || !utf8.Valid(b) {
		return Allow{}, fmt.Errorf("%w: allow entry of %d bytes, not UTF-8 or over %d", ErrBadPayload, len(b), maxAllowPayload)
	}
	var j allowJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return Allow{}, fmt.Errorf("%w: allow entry: %v", ErrBadPayload, err)
	}
	if j.At <= 0 {
		return Allow{}, fmt.Errorf("%w: allow entry without a valid \"at\"", ErrBadPayload)
	}
	return Allow{At: time.UnixMilli(j.At), Comment: Clip(j.Comment), Origin: Clip(j.Origin)}, nil
}
