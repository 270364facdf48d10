// Package sensor catches port scans: the firewall logs new TCP connections
// and new UDP flows to ports nothing listens on to an NFLOG group, the
// sensor reads the group, and a source that touches more than N distinct
// such ports within T is handed to a ban function, once. A source is an
// IPv4 address or an IPv6 /64 (Prefix6): a scanner that rotates the low 64
// bits of its address, as any host of a /64 can, is still one source. Its memory is bounded whatever arrives: a
// fixed table of tracked sources (the least recently seen is evicted), a
// fixed number of ports per source, and a per-second cap of packets read.
package sensor

import (
	"container/list"
	"net/netip"
	"time"
)

// Defaults of a Detector's options.
const (
	DefaultPorts   = 10
	DefaultWindow  = time.Minute
	DefaultSources = 65536
	// DefaultPrefix6 is the IPv6 prefix counted as one source: the /64
	// that a host's SLAAC and privacy addresses share.
	DefaultPrefix6 = 64
	// MaxPorts bounds --sensor-ports, and so what one source costs.
	MaxPorts = 1024
)

// Detector counts, per source address, the distinct closed ports it
// touched within the window. It is not safe for concurrent use: the
// sensor's reader is its only caller.
type Detector struct {
	ports   int
	window  time.Duration
	max     int
	ignore  map[uint16]bool
	allowed func(netip.Prefix) bool
	rearm   time.Duration
	prefix6 int

	table map[netip.Prefix]*list.Element // of *source
	lru   *list.List                     // front: most recently seen
	// Evicted counts sources dropped from a full table.
	Evicted int64
}

// source is one tracked address or /64: the last ports it touched (at
// most ports+1, each once), and whether it was reported.
type source struct {
	key    netip.Prefix
	hits   []hit
	banned time.Time // zero: not reported
}

type hit struct {
	port Port
	at   time.Time
}

// Port is a closed port a packet was sent to. TCP 53 and UDP 53 are two
// ports: a scanner that tries both touched both.
type Port struct {
	Num uint16
	UDP bool
}

// TCP is TCP port n.
func TCP(n uint16) Port { return Port{Num: n} }

// DetectorOptions configure a Detector; zero values take the defaults.
type DetectorOptions struct {
	Ports   int           // more than this many distinct ports within Window is a scan
	Window  time.Duration //
	Sources int           // tracked addresses at most
	Ignore  []uint16      // ports that never count
	// Allowed, when set, says whether a source may be banned at all; a
	// source it refuses is never tracked, so it costs no table room. An
	// IPv6 /64 it refuses (one of its addresses is allowlisted, or the
	// guard allows nothing that broad) is counted per address instead.
	Allowed func(netip.Prefix) bool
	// Rearm is how long after a report the same address may be reported
	// again (its ban's timeout); 0: never while it stays tracked.
	Rearm time.Duration
	// Prefix6 is the IPv6 prefix length counted (and banned) as one
	// source, 1-128; 0: DefaultPrefix6.
	Prefix6 int
}

// NewDetector returns a Detector with o's limits.
func NewDetector(o DetectorOptions) *Detector {
	d := &Detector{
		ports: o.Ports, window: o.Window, max: o.Sources, allowed: o.Allowed, rearm: o.Rearm, prefix6: o.Prefix6,
		ignore: map[uint16]bool{}, table: map[netip.Prefix]*list.Element{}, lru: list.New(),
	}
	if d.ports <= 0 {
		d.ports = DefaultPorts
	}
	d.ports = min(d.ports, MaxPorts)
	if d.window <= 0 {
		d.window = DefaultWindow
	}
	if d.prefix6 <= 0 || d.prefix6 > 128 {
		d.prefix6 = DefaultPrefix6
	}
	if d.max <= 0 {
		d.max = DefaultSources
	}
	for _, p := range o.Ignore {
		d.ignore[p] = true
	}
	return d
}

// Tracked is the number of sources in the table.
func (d *Detector) Tracked() int { return len(d.table) }

// Seen records that src touched the closed port at now, and returns the
// source (src's address, or its /64) when it has just become a scanner:
// once per source (until its rearm time passes, or it is evicted and
// comes back).
func (d *Detector) Seen(src netip.Addr, port Port, now time.Time) (netip.Prefix, bool) {
	if d.ignore[port.Num] {
		return netip.Prefix{}, false
	}
	key, ok := d.keyOf(src)
	if !ok {
		return netip.Prefix{}, false
	}
	s := d.source(key)
	if !s.banned.IsZero() {
		if d.rearm <= 0 || now.Sub(s.banned) < d.rearm {
			return netip.Prefix{}, false
		}
		s.banned, s.hits = time.Time{}, s.hits[:0]
	}
	s.touch(port, now, d.window)
	if len(s.hits) <= d.ports {
		return netip.Prefix{}, false
	}
	s.banned, s.hits = now, nil // a reported source keeps no ports
	return key, true
}

// keyOf is the source src counts for: its IPv4 address, or its IPv6
// prefix, or its IPv6 address when the prefix may not be banned; false
// when src may not be banned at all.
func (d *Detector) keyOf(src netip.Addr) (netip.Prefix, bool) {
	src = src.Unmap()
	if !src.IsValid() {
		return netip.Prefix{}, false
	}
	ok := func(p netip.Prefix) bool { return d.allowed == nil || d.allowed(p) }
	if src.Is6() && d.prefix6 < 128 {
		if p, _ := src.Prefix(d.prefix6); ok(p) {
			return p, true
		}
	}
	p := netip.PrefixFrom(src, src.BitLen())
	return p, ok(p)
}

// source returns src's entry, made (evicting the least recently seen when
// the table is full) if it had none, and marks it most recently seen.
func (d *Detector) source(key netip.Prefix) *source {
	if e, ok := d.table[key]; ok {
		d.lru.MoveToFront(e)
		return e.Value.(*source)
	}
	if len(d.table) >= d.max {
		old := d.lru.Back()
		d.lru.Remove(old)
		delete(d.table, old.Value.(*source).key)
		d.Evicted++
	}
	s := &source{key: key}
	d.table[key] = d.lru.PushFront(s)
	return s
}

// touch records port at now, forgetting the hits older than window; a
// port seen again only moves to now, so hits stay distinct.
func (s *source) touch(port Port, now time.Time, window time.Duration) {
	kept := s.hits[:0]
	for _, h := range s.hits {
		if now.Sub(h.at) < window && h.port != port {
			kept = append(kept, h)
		}
	}
	s.hits = append(kept, hit{port, now})
}
