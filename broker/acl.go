package broker

import (
	"strings"

	"github.com/vallum/vallum/internal/wire"
)

// A host's bridge sends sync markers to itself on one topic,
// wire.MarkerTopic(CLIENT_ID). A host reads and writes only its own, so no
// other login can learn its client id from it or end its sync window.

// access is what one kind of client may do. It denies whatever no rule
// allows: unlike mochi's ledger, nothing is allowed by default.
type access struct {
	admin, host, reporter bool
	lists                 []string // roots the roles apply to; nil: every topic
	publish, subscribe    []string // extra topic filters
}

func roleAccess(role string, lists []string) access {
	return access{
		admin:    role == RoleAdmin,
		host:     role == RoleHost,
		reporter: role == RoleReporter,
		lists:    lists,
	}
}

// canPublish reports whether a, as client id, may publish on topic. Only
// an admin (and the keeper inside the broker) writes a keeper record, a
// manifest or a chunk: a forged record would tell every host that its
// list was lost, or hide a loss, and a forged chunk bans or unbans
// anything; no extra filter of the users file grants them.
func (a access) canPublish(topic, id string) bool {
	if a.admin {
		return true
	}
	if keeperOnly(topic) {
		return false
	}
	if anyCovers(a.publish, topic) {
		return true
	}
	if a.host && topic == wire.MarkerTopic(id) {
		return true
	}
	if !a.reporter || strings.HasPrefix(topic, "$") {
		return false
	}
	if a.lists == nil { // every topic may be a list root
		return !covers(wire.Namespace+"/#", topic)
	}
	for _, r := range a.lists {
		if wire.IsEventTopic(r, topic) || covers(wire.StateFilter(r), topic) && topic != r+"/"+wire.LevelState {
			return true
		}
	}
	return false
}

// canSubscribe reports whether a, as client id, may subscribe to filter;
// mochi asks the same for every message it delivers, with the topic as the
// filter.
func (a access) canSubscribe(filter, id string) bool {
	if a.admin || anyCovers(a.subscribe, filter) {
		return true
	}
	if strings.HasPrefix(filter, "$") {
		return false
	}
	if a.host && filter == wire.MarkerTopic(id) {
		return true
	}
	if a.lists == nil {
		// Every topic may be a list, but none under vallum/ but the
		// keeper's records, manifests and chunks: the sync markers of
		// other hosts are there.
		return a.host && !mayReachVallum(filter) || a.reporter && statesOnly(filter) ||
			(a.host || a.reporter) && keeperOnly(filter)
	}
	for _, r := range a.lists {
		if a.host && covers(r+"/#", filter) || a.reporter && covers(wire.StateFilter(r), filter) ||
			(a.host || a.reporter) && readsList(r, filter) {
			return true
		}
	}
	return false
}

// keeperOnly reports whether every topic filter f matches is one only a
// list's keeper writes: a record, a manifest or a chunk.
func keeperOnly(f string) bool {
	return covers(wire.RecordPrefix+"#", f) || covers(wire.ManifestPrefix+"#", f) || covers(wire.ChunkPrefix+"#", f)
}

// readsList reports whether filter f reads only what the keeper of list r
// writes: its record, its manifest, its chunks. Chunks by their two levels
// after ROOT (wire.ChunksFilter): vallum/list/ROOT/# would reach the
// chunks of a list whose root begins with ROOT/.
func readsList(r, f string) bool {
	return f == wire.RecordTopic(r) || f == wire.ManifestTopic(r) || covers(wire.ChunksFilter(r), f)
}

// statesOnly reports whether filter reaches only ban state topics of some
// list: a level "ban" with at least one level after it.
func statesOnly(filter string) bool {
	lv := strings.Split(filter, "/")
	for i := 1; i < len(lv)-1; i++ {
		if lv[i] == wire.LevelState {
			return !strings.Contains(strings.Join(lv[:i], "/"), "#")
		}
	}
	return false
}

// mayReachVallum reports whether filter may match a topic under vallum/.
func mayReachVallum(filter string) bool {
	first, _, _ := strings.Cut(filter, "/")
	return first == "#" || first == "+" || first == wire.Namespace
}

func anyCovers(allowed []string, f string) bool {
	for _, a := range allowed {
		if covers(a, f) {
			return true
		}
	}
	return false
}

// covers reports whether every topic that f matches is matched by the
// filter allowed. f may be a topic or a filter: a wildcard in f is covered
// only by a wildcard in allowed.
func covers(allowed, f string) bool {
	a, b := strings.Split(allowed, "/"), strings.Split(f, "/")
	for i, lv := range a {
		if lv == "#" {
			return true
		}
		if i >= len(b) {
			return false
		}
		if lv == "+" {
			if b[i] == "#" {
				return false
			}
			continue
		}
		if lv != b[i] {
			return false
		}
	}
	return len(a) == len(b)
}

func validFilter(f string) bool {
	if f == "" {
		return false
	}
	lv := strings.Split(f, "/")
	for i, l := range lv {
		if (l == "#" && i != len(lv)-1) || (l != "#" && l != "+" && strings.ContainsAny(l, "#+")) {
			return false
		}
	}
	return true
}
