package wire

import (
	"encoding/json"
	"fmt"
)

// HostPrefix is where each bridge keeps its retained status:
// HostPrefix + CLIENT_ID. A host writes only its own (the broker's ACL,
// mosquitto's `pattern write vallum/hosts/%c`); admins and the hub read
// them all. The will of the bridge's connection is the same status with
// Online false, so the broker marks a host that vanished.
const HostPrefix = Namespace + "/hosts/"

// HostFilter subscribes to every host's status.
const HostFilter = HostPrefix + "+"

// HostTopic is the status topic of one client.
func HostTopic(clientID string) string { return HostPrefix + clientID }

// MaxHostStatus bounds a status payload: a few hundred bytes for a host
// with a handful of lists.
const MaxHostStatus = 4096

// HostStatus is a bridge's status, as JSON on its status topic.
type HostStatus struct {
	Online  bool   `json:"online"`
	Version string `json:"version,omitempty"`
	Backend string `json:"backend,omitempty"`
	// Synced: subscribed and synced to the state on the current connection.
	Synced bool `json:"synced"`
	// LastSync is when the last sync ended, Unix seconds; 0: none yet.
	LastSync int64    `json:"last_sync,omitempty"`
	Lists    []string `json:"lists,omitempty"`
	// Entries is, per list root, how many entries vallum holds in the
	// host's sets of that list (its own: not those added by hand).
	Entries map[string]int `json:"entries,omitempty"`
	// At is when the bridge published this status, Unix seconds (the will
	// carries the time of the connection).
	At int64 `json:"at,omitempty"`
}

// EncodeHostStatus returns the payload of s.
func EncodeHostStatus(s HostStatus) []byte {
	b, _ := json.Marshal(s) // cannot fail: plain fields
	return b
}

// DecodeHostStatus parses a status payload.
func DecodeHostStatus(b []byte) (HostStatus, error) {
	var s HostStatus
	if len(b) > MaxHostStatus {
		return s, fmt.Errorf("%w: host status of %d bytes", ErrBadPayload, len(b))
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("%w: host status: %v", ErrBadPayload, err)
	}
	s.Version, s.Backend = Clip(s.Version), Clip(s.Backend)
	return s, nil
}
