package web

import (
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/vallum/vallum/internal/wire"
)

// List is one list's summary.
type List struct {
	Root    string  `json:"root"`
	Count   int     `json:"count"`
	PerHour []int   `json:"per_hour"` // bans made in each of the last 24 hours, oldest first
	Reasons []Count `json:"reasons"`  // the most frequent among the live bans
	Origins []Count `json:"origins"`
}

// Count is how many live bans have one reason or origin.
type Count struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
}

// Ban is one ban of a page.
type Ban struct {
	Prefix  string `json:"prefix"`
	At      int64  `json:"at"`                // Unix milliseconds
	Expires int64  `json:"expires,omitempty"` // Unix seconds; absent: never
	Reason  string `json:"reason,omitempty"`
	Origin  string `json:"origin,omitempty"`
	Count   int    `json:"count,omitempty"` // the keeper's escalation count: how many times it saw the address banned
}

// Page is a page of a list's bans, newest first.
type Page struct {
	List   string `json:"list"`
	Query  string `json:"query,omitempty"`
	Offset int    `json:"offset"`
	Total  int    `json:"total"` // bans that match
	Bans   []Ban  `json:"bans"`
}

// Host is a bridge's last status and when the hub received it.
type Host struct {
	ID string `json:"id"`
	wire.HostStatus
	Seen int64 `json:"seen"` // Unix seconds
}

// Event is one thing that happened, for the live stream.
type Event struct {
	Kind    string `json:"kind"` // ban, unban, expired, refused
	List    string `json:"list,omitempty"`
	Prefix  string `json:"prefix,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Origin  string `json:"origin,omitempty"`
	At      int64  `json:"at,omitempty"`
	Expires int64  `json:"expires,omitempty"`
	Msg     string `json:"msg,omitempty"`
	User    string `json:"user,omitempty"`
	Topic   string `json:"topic,omitempty"`
	Count   int    `json:"count,omitempty"` // a summary of this many (Prefix empty): a burst or a cut
}

// Event kinds.
const (
	EventBan     = "ban"
	EventUnban   = "unban"
	EventExpired = "expired"
	EventRefused = "refused"
	EventHost    = "host"
)

// Lists summarises every list.
func (x *Index) Lists() []List {
	now := time.Now().Unix() / 3600
	out := make([]List, 0, len(x.lists))
	roots := slices.Clone(x.roots)
	sort.Strings(roots)
	for _, root := range roots {
		l := x.lists[root]
		x.expire(l)
		l.mu.RLock()
		s := List{Root: root, Count: len(l.at), PerHour: make([]int, 24),
			Reasons: l.reasons.top(5), Origins: l.origins.top(5)}
		for h, n := range l.hours {
			if i := h - (now - 23); i >= 0 && i < 24 {
				s.PerHour[i] += n
			}
		}
		l.mu.RUnlock()
		out = append(out, s)
	}
	return out
}

// Bans returns a page of list's bans, newest first: those that match q
// (see matcher), from offset, at most limit. ok is false for an unknown
// list.
func (x *Index) Bans(list, q string, offset, limit int) (Page, bool) {
	l := x.lists[list]
	if l == nil {
		return Page{}, false
	}
	x.expire(l)
	pg := Page{List: list, Query: q, Offset: offset, Bans: []Ban{}}
	l.mu.RLock()
	defer l.mu.RUnlock()
	match := l.matcher(q)
	if match == nil {
		pg.Total = len(l.at)
		if offset > pg.Total/2 { // nearer the oldest end: walk from there
			pg.Bans = l.oldest(pg.Total-offset-limit, pg.Total-offset)
			return pg, true
		}
	}
	n := 0 // matches seen
	for i := len(l.slots) - 1; i >= 0; i-- {
		s := &l.slots[i]
		if !s.p.IsValid() || match != nil && !match(s) {
			continue
		}
		if n >= offset && len(pg.Bans) < limit {
			pg.Bans = append(pg.Bans, l.ban(s))
		}
		n++
		if match == nil && len(pg.Bans) == limit {
			break // the total is known without counting
		}
	}
	if match != nil {
		pg.Total = n
	}
	return pg, true
}

// oldest returns the live bans from the from-th oldest to the one before
// the to-th, newest first.
func (l *listIndex) oldest(from, to int) []Ban {
	from = max(from, 0)
	out := []Ban{}
	n := 0
	for i := range l.slots {
		s := &l.slots[i]
		if !s.p.IsValid() {
			continue
		}
		if n >= to {
			break
		}
		if n >= from {
			out = append(out, l.ban(s))
		}
		n++
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

func (l *listIndex) ban(s *slot) Ban {
	return Ban{Prefix: wire.FormatPrefix(s.p), At: s.at, Expires: s.exp,
		Reason: l.reasons.names[s.reason], Origin: l.origins.names[s.origin], Count: int(s.count)}
}

// matcher returns what q matches, nil for everything: an address or
// prefix matches the bans that overlap it (the bans covering an address,
// the bans inside a prefix); other text matches addresses that contain it
// (203.0.113.) and reasons and origins equal to it, ignoring case.
func (l *listIndex) matcher(q string) func(*slot) bool {
	q = strings.TrimSpace(q)
	if q == "" {
		return nil
	}
	if p, err := wire.ParsePrefix(q); err == nil {
		return func(s *slot) bool { return s.p.Overlaps(p) }
	}
	named := func(n *interned) map[uint16]bool {
		m := map[uint16]bool{}
		for id, name := range n.names {
			if name != "" && strings.EqualFold(name, q) {
				m[uint16(id)] = true
			}
		}
		return m
	}
	reasons, origins := named(&l.reasons), named(&l.origins)
	text := strings.ToLower(q)
	addrLike := strings.Trim(text, "0123456789abcdef.:/") == ""
	var buf []byte
	return func(s *slot) bool {
		if reasons[s.reason] || origins[s.origin] {
			return true
		}
		if !addrLike {
			return false
		}
		buf = s.p.Addr().AppendTo(buf[:0])
		return strings.Contains(string(buf), text)
	}
}

// Hosts returns every host that published a status, by client id.
func (x *Index) Hosts() []Host {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := make([]Host, 0, len(x.hosts))
	for _, h := range x.hosts {
		out = append(out, h)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// feedHost takes a host's status. One loaded at start was seen when the
// host sent it, as far as the hub can tell.
func (x *Index) feedHost(id string, payload []byte, live bool) {
	if id == "" || strings.Contains(id, "/") {
		return
	}
	x.mu.Lock()
	if len(payload) == 0 {
		delete(x.hosts, id)
		x.mu.Unlock()
		return
	}
	st, err := wire.DecodeHostStatus(payload)
	if err != nil {
		x.mu.Unlock()
		return
	}
	seen := x.now().Unix()
	if !live && st.At > 0 && st.At < seen {
		seen = st.At
	}
	x.hosts[id] = Host{ID: id, HostStatus: st, Seen: seen}
	x.mu.Unlock()
	x.live.send(Event{Kind: EventHost, Origin: id})
}
