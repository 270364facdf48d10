package broker

import (
	"strings"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/vallum/vallum/internal/wire"
)

// hostIndex is the hub's view of its hosts, from their retained statuses
// (wire.HostTopic, bridge/presence.go), kept whether or not the web view
// runs: the hub's /metrics counts them. One small entry per host, and at
// most maxHosts of them: a client id is a host's choice, and a user with
// the host role could otherwise grow the hub's memory with every id it
// makes up (the ACL lets it write its own status only, but any id is its
// own).
type hostIndex struct {
	roots []string
	now   func() time.Time

	mu     sync.Mutex
	hosts  map[string]hostEntry // by client id
	over   int64                // statuses of new hosts not tracked: maxHosts reached
	maxLen int
}

// hostEntry is what the metrics need of one host's last status: about 150
// bytes with its map slot and id.
type hostEntry struct {
	seen           int64   // Unix seconds: when the hub got it (at start: when sent)
	online, synced bool    // wire.HostStatus
	entries        []int32 // per list of the index (roots), -1: the host has no such list
}

// maxHosts bounds the hosts the hub tracks: 100,000 entries are about
// 15 MB.
const maxHosts = 100_000

// staleAfter is how old an online host's last status may be before the
// hub counts it out of sync: a connected bridge repeats its status every
// minute (bridge.DefaultPresenceEvery), so three are missed.
const staleAfter = 3 * time.Minute

// hostsSubID is the inline subscription id of the hosts' statuses (the
// keeper's are 1 to the number of its filters).
const hostsSubID = 1 << 20

func newHostIndex(roots []string) *hostIndex {
	return &hostIndex{roots: roots, now: time.Now, hosts: map[string]hostEntry{}, maxLen: maxHosts}
}

// feed takes one status message: an empty payload forgets the host, a
// status that does not parse is ignored (the ACL refuses those from
// hosts). live is false for the retained ones loaded at start.
func (x *hostIndex) feed(topic string, payload []byte, live bool) {
	id, ok := strings.CutPrefix(topic, wire.HostPrefix)
	if !ok || id == "" || strings.Contains(id, "/") {
		return
	}
	if len(payload) == 0 {
		x.mu.Lock()
		delete(x.hosts, id)
		x.mu.Unlock()
		return
	}
	st, err := wire.DecodeHostStatus(payload)
	if err != nil {
		return
	}
	e := hostEntry{seen: x.now().Unix(), online: st.Online, synced: st.Synced}
	if !live && st.At > 0 && st.At < e.seen {
		e.seen = st.At // as old as it says, not as the hub's start
	}
	e.entries = make([]int32, len(x.roots))
	for i, r := range x.roots {
		n, ok := st.Entries[r]
		e.entries[i] = int32(min(n, 1<<31-1))
		if !ok {
			e.entries[i] = -1
		}
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if _, known := x.hosts[id]; !known && len(x.hosts) >= x.maxLen {
		x.over++
		return
	}
	x.hosts[id] = e
}

// HostsStats is the hub's view of its hosts, for metrics.
type HostsStats struct {
	Online, Offline int64
	// OutOfSync counts the online hosts whose last status says not
	// synced, or is older than three minutes (three missed statuses).
	OutOfSync int64
	// Untracked counts the statuses of new hosts ignored because the hub
	// already tracked 100,000.
	Untracked int64
	// Lists is, per list the keeper keeps, the fewest and most entries
	// an online host holds in its sets. (Not the keeper's own count: it
	// keeps one map of every list's bans, and counting one list there
	// is a walk over all of them under its lock.)
	Lists []ListHosts
}

// ListHosts compares one list's hosts: a host far below the others
// lacks bans.
type ListHosts struct {
	List string
	// Hosts is how many online hosts report the list; Min and Max are
	// the fewest and most entries among them (0 without one).
	Hosts, Min, Max int64
}

// stats counts the hosts now.
func (x *hostIndex) stats() HostsStats {
	now := x.now().Unix()
	s := HostsStats{Lists: make([]ListHosts, len(x.roots))}
	for i, r := range x.roots {
		s.Lists[i].List = r
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	s.Untracked = x.over
	for _, e := range x.hosts {
		if !e.online {
			s.Offline++
			continue
		}
		s.Online++
		if !e.synced || now-e.seen > int64(staleAfter/time.Second) {
			s.OutOfSync++
		}
		for i, n := range e.entries {
			if n >= 0 {
				s.Lists[i].add(int64(n))
			}
		}
	}
	return s
}

func (l *ListHosts) add(n int64) {
	if l.Hosts == 0 || n < l.Min {
		l.Min = n
	}
	l.Max = max(l.Max, n)
	l.Hosts++
}

// startHosts subscribes the hosts' index, and the web view's when it
// runs, to the hosts' statuses. The router builds have no statuses.
func (b *Broker) startHosts() error {
	b.hosts = newHostIndex(b.roots)
	return b.srv.Subscribe(wire.HostFilter, hostsSubID, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		b.feedHost(pk.TopicName, pk.Payload, true)
	})
}

func (b *Broker) feedHost(topic string, payload []byte, live bool) {
	b.hosts.feed(topic, payload, live)
	if b.web != nil {
		b.web.Feed(topic, payload, live)
	}
}

// loadHosts feeds the retained statuses, before the web view settles.
func (b *Broker) loadHosts() {
	for _, pk := range b.srv.Topics.Messages(wire.HostFilter) {
		b.feedHost(pk.TopicName, pk.Payload, false)
	}
}

// Hosts returns the hub's view of its hosts; ok is false in the builds
// without hosts' statuses (the router builds).
func (b *Broker) Hosts() (HostsStats, bool) {
	if !webBuilt || b.hosts == nil {
		return HostsStats{}, false
	}
	return b.hosts.stats(), true
}
