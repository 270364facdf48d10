package wire

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// RecordPrefix is where a list's keeper keeps its record: one retained
// message per list on RecordPrefix + ROOT. It lives under Namespace so that
// no reporter can forge it (reporters publish events and state only); hosts
// may read the record of their lists.
const RecordPrefix = Namespace + "/keeper/"

// RecordTopic is the keeper record topic of the list ROOT.
func RecordTopic(root string) string { return RecordPrefix + root }

// Record is what a list's keeper says about the list it keeps. Its epoch
// names one life of the list: a keeper writes it once and keeps it as long
// as it holds the list (two keepers of one list adopt the epoch they find).
// A broker that lost its retained messages has lost the record with them,
// so a host that finds no record, or another epoch than at its last sync,
// knows the state it reads is not the list it followed, and keeps its bans
// instead of taking the empty list as an unban of everything.
type Record struct {
	Epoch  string    // random, 16 hex digits
	Since  time.Time // when the epoch began, to the millisecond
	Keeper string    // who keeps the list, such as a host name
}

// maxRecordPayload bounds a record payload; a real one is under 150 bytes.
const maxRecordPayload = 512

type recordJSON struct {
	Epoch  string `json:"epoch"`
	Since  int64  `json:"since"` // Unix milliseconds
	Keeper string `json:"keeper,omitempty"`
}

// NewEpoch returns a fresh random epoch.
func NewEpoch() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails on Linux
	return hex.EncodeToString(b[:])
}

// EncodeRecord returns the retained payload for r.
func EncodeRecord(r Record) []byte {
	b, _ := json.Marshal(recordJSON{Epoch: r.Epoch, Since: r.Since.UnixMilli(), Keeper: r.Keeper})
	return b
}

// DecodeRecord parses a keeper record payload. An empty payload is no
// record (a deleted one); the caller handles it first.
func DecodeRecord(b []byte) (Record, error) {
	if len(b) > maxRecordPayload || !utf8.Valid(b) {
		return Record{}, fmt.Errorf("%w: keeper record of %d bytes, not UTF-8 or over %d", ErrBadPayload, len(b), maxRecordPayload)
	}
	var j recordJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return Record{}, fmt.Errorf("%w: keeper record: %v", ErrBadPayload, err)
	}
	if !ValidEpoch(j.Epoch) || j.Since <= 0 {
		return Record{}, fmt.Errorf("%w: keeper record without a valid \"epoch\" or \"since\"", ErrBadPayload)
	}
	return Record{Epoch: j.Epoch, Since: time.UnixMilli(j.Since), Keeper: Clip(j.Keeper)}, nil
}

// ValidEpoch reports whether s is 16 hex digits, or that in the v2
// spelling (EpochV2) (a loop: hex.DecodeString costs the router builds a
// kilobyte).
func ValidEpoch(s string) bool {
	s = strings.TrimPrefix(s, epochV2)
	if len(s) != 16 {
		return false
	}
	for _, c := range []byte(s) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}
