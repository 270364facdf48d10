package wire

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// An event message may begin with a meta line, `#vallum {"reason":...,
// "origin":...}`: the reason and origin of every ban of the message, for
// the keeper to keep in the list (`vallum import` marks its feed's bans so,
// without a retained state per ban). Bridges skip the line (ParsePayload);
// a bridge older than it refuses that one line alone, as any line it cannot
// read, and applies the others.
const metaPrefix = "#vallum "

// maxMeta bounds a meta line: a reason and an origin of 64 bytes each,
// escaped, fit many times over.
const maxMeta = 1024

// Meta is what a meta line says of the bans of its message.
type Meta struct {
	Reason string `json:"reason,omitempty"`
	Origin string `json:"origin,omitempty"`
}

// MetaLine returns the meta line for m, with its newline.
func MetaLine(m Meta) string {
	b, _ := json.Marshal(Meta{Reason: Clip(m.Reason), Origin: Clip(m.Origin)}) // cannot fail: strings
	return metaPrefix + string(b) + "\n"
}

// ParseMeta reads the meta line that begins payload, if any; ok false
// when there is none or it does not parse (the bans are then the keeper's
// own, as without one).
func ParseMeta(payload []byte) (Meta, bool) {
	line, _, _ := bytes.Cut(payload, []byte{'\n'})
	line = bytes.TrimSpace(line)
	rest, found := bytes.CutPrefix(line, []byte(metaPrefix))
	if !found || len(line) > maxMeta || !utf8.Valid(rest) {
		return Meta{}, false
	}
	var m Meta
	if json.Unmarshal(rest, &m) != nil {
		return Meta{}, false
	}
	return Meta{Reason: Clip(m.Reason), Origin: Clip(m.Origin)}, true
}

// isMeta reports whether a trimmed payload line is a meta line.
func isMeta(text []byte) bool { return bytes.HasPrefix(text, []byte(metaPrefix)) }
