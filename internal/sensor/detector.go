// Package sensor catches port scans: the firewall logs new TCP connections
// to ports nothing listens on to an NFLOG group, the sensor reads the group,
// and an address that touches more than N distinct such ports within T is
// handed to a ban function, once. Its memory is bounded whatever arrives: a
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
	allowed func(netip.Addr) bool
	rearm   time.Duration

	table map[netip.Addr]*list.Element // of *source
	lru   *list.List                   // front: most recently seen
	// Evicted counts sources dropped from a full table.
	Evicted int64
}

// source is one tracked address: the last ports it touched (at most
// ports+1, each once), and whether it was reported.
type source struct {
	addr   netip.Addr
	hits   []hit
	banned time.Time // zero: not reported
}

type hit struct {
	port uint16
	at   time.Time
}

// DetectorOptions configure a Detector; zero values take the defaults.
type DetectorOptions struct {
	Ports   int           // more than this many distinct ports within Window is a scan
	Window  time.Duration //
	Sources int           // tracked addresses at most
	Ignore  []uint16      // ports that never count
	// Allowed, when set, says whether an address may be banned at all; an
	// address it refuses is never tracked, so it costs no table room.
	Allowed func(netip.Addr) bool
	// Rearm is how long after a report the same address may be reported
	// again (its ban's timeout); 0: never while it stays tracked.
	Rearm time.Duration
}

// NewDetector returns a Detector with o's limits.
func NewDetector(o DetectorOptions) *Detector {
	d := &Detector{
		ports: o.Ports, window: o.Window, max: o.Sources, allowed: o.Allowed, rearm: o.Rearm,
		ignore: map[uint16]bool{}, table: map[netip.Addr]*list.Element{}, lru: list.New(),
	}
	if d.ports <= 0 {
		d.ports = DefaultPorts
	}
	d.ports = min(d.ports, MaxPorts)
	if d.window <= 0 {
		d.window = DefaultWindow
	}
	if d.max <= 0 {
		d.max = DefaultSources
	}
	for _, p := range o.Ignore {
		d.ignore[p] = true
	}
	return d
}

// Tracked is the number of addresses in the table.
func (d *Detector) Tracked() int { return len(d.table) }

// Seen records that src touched the closed port at now, and reports
// whether src has just become a scanner: true once per address (until its
// rearm time passes, or it is evicted and comes back).
func (d *Detector) Seen(src netip.Addr, port uint16, now time.Time) bool {
	src = src.Unmap()
	if d.ignore[port] || !src.IsValid() || d.allowed != nil && !d.allowed(src) {
		return false
	}
	s := d.source(src)
	if !s.banned.IsZero() {
		if d.rearm <= 0 || now.Sub(s.banned) < d.rearm {
			return false
		}
		s.banned, s.hits = time.Time{}, s.hits[:0]
	}
	s.touch(port, now, d.window)
	if len(s.hits) <= d.ports {
		return false
	}
	s.banned, s.hits = now, nil // a reported source keeps no ports
	return true
}

// source returns src's entry, made (evicting the least recently seen when
// the table is full) if it had none, and marks it most recently seen.
func (d *Detector) source(src netip.Addr) *source {
	if e, ok := d.table[src]; ok {
		d.lru.MoveToFront(e)
		return e.Value.(*source)
	}
	if len(d.table) >= d.max {
		old := d.lru.Back()
		d.lru.Remove(old)
		delete(d.table, old.Value.(*source).addr)
		d.Evicted++
	}
	s := &source{addr: src}
	d.table[src] = d.lru.PushFront(s)
	return s
}

// touch records port at now, forgetting the hits older than window; a
// port seen again only moves to now, so hits stay distinct.
func (s *source) touch(port uint16, now time.Time, window time.Duration) {
	kept := s.hits[:0]
	for _, h := range s.hits {
		if now.Sub(h.at) < window && h.port != port {
			kept = append(kept, h)
		}
	}
	s.hits = append(kept, hit{port, now})
}
