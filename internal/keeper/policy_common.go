package keeper

import (
	"strings"
	"time"

	"github.com/vallum/vallum/internal/policy"
	"github.com/vallum/vallum/internal/wire"
)

// What the keeper's policy (policy.go) shares with the router builds that
// leave it out (policy_small.go).

// Policy configures what the keeper makes of bans and reports
// (internal/policy): escalation, quorum and per-reporter limits, per list.
type Policy struct {
	Lists map[string]policy.List // by list root; a list not named has none
	// History is the file (an internal/store log) of the addresses'
	// escalation history, so that it survives a restart; "": memory only.
	History string
}

// Held is how many reports of one reporter on one list were held.
type Held struct {
	List, Reporter string
	Reports        int64
}

// stateFor is the state of a ban of timeout t made at now.
func stateFor(now time.Time, t wire.Timeout, h *policy.History) wire.State {
	st := wire.State{At: now, Origin: Origin}
	if t > 0 {
		st.Expires = now.Add(time.Duration(t) * time.Second)
	}
	if h != nil {
		st.Count = h.Count
	}
	return st
}

func isReport(root, topic string) bool {
	_, ok := wire.ParseReportTopic(root, topic)
	return ok
}

// isPending reports whether topic is a pending topic of root (not of a
// list under root).
func isPending(root, topic string) bool {
	rest, ok := strings.CutPrefix(topic, wire.PendingPrefix+root+"/")
	if !ok {
		return false
	}
	_, err := wire.ParsePrefix(rest)
	return err == nil
}
