package sensor

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"
)

// DefaultRate is the packets per second the sensor reads at most (and the
// rate limit of the rule vallum installs): a scan of 50 ports fits in one
// second, and a flood costs at most this much work per second.
const DefaultRate = 1000

// Stats are the sensor's counters, for /metrics.
type Stats struct {
	Packets  atomic.Int64 // logged packets read and counted
	Bans     atomic.Int64 // scanners banned (or reported) by Ban
	Overload atomic.Int64 // packets or bans dropped: over the rate, a full ban queue, a full socket buffer
	Tracked  atomic.Int64 // sources in the table
}

// Options configure a Sensor.
type Options struct {
	Group    uint16 // the NFLOG group the firewall logs to
	NetNS    int    // fd of the network namespace to read in; 0: the current one
	Rate     int    // packets read per second at most; 0: DefaultRate
	Detector DetectorOptions
	// Ban publishes a scanner's ban: an IPv4 address, an IPv6 /64 (or the
	// Detector's Prefix6), or an IPv6 address whose prefix may not be
	// banned. It runs in a goroutine of its own, one ban at a time; bans
	// beyond a short queue are dropped and counted.
	Ban    func(ctx context.Context, p netip.Prefix) error
	Logger *slog.Logger
}

// Sensor reads the group and reports scanners.
type Sensor struct {
	o     Options
	det   *Detector
	stats *Stats
	log   *slog.Logger
	bans  chan netip.Prefix

	second time.Time // start of the current second of the rate cap
	inSec  int
}

// New returns a Sensor; Run starts it.
func New(o Options) *Sensor {
	if o.Rate <= 0 {
		o.Rate = DefaultRate
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Sensor{o: o, det: NewDetector(o.Detector), stats: &Stats{}, log: o.Logger, bans: make(chan netip.Prefix, 64)}
}

// Stats returns the live counters.
func (s *Sensor) Stats() *Stats { return s.stats }

// Run reads the group until ctx is done.
func (s *Sensor) Run(ctx context.Context) error {
	go s.banLoop(ctx)
	return s.read(ctx)
}

// packet handles one logged packet (its IP header on): counted, and the
// scanner it reveals queued for a ban. Over the per-second cap it is only
// counted as overload, before any parsing.
func (s *Sensor) packet(b []byte, now time.Time) {
	if now.Sub(s.second) >= time.Second {
		s.second, s.inSec = now, 0
	}
	if s.inSec >= s.o.Rate {
		s.stats.Overload.Add(1)
		return
	}
	s.inSec++
	src, port, ok := portOf(b)
	if !ok {
		return
	}
	s.stats.Packets.Add(1)
	scanner, scan := s.det.Seen(src, port, now) // IPv4-mapped: the IPv4 address
	s.stats.Tracked.Store(int64(s.det.Tracked()))
	if !scan {
		return
	}
	select {
	case s.bans <- scanner:
	default:
		s.stats.Overload.Add(1)
		s.log.Warn("port scan: ban queue full, not banned", "addr", scanner)
	}
}

// banLoop publishes the queued bans one at a time.
func (s *Sensor) banLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case a := <-s.bans:
			if err := s.o.Ban(ctx, a); err != nil {
				s.log.Warn("port scan: ban failed", "addr", a, "err", err)
				continue
			}
			s.stats.Bans.Add(1)
			s.log.Info("port scan: banned", "addr", a)
		}
	}
}

// portOf reads the source address and the TCP or UDP destination port of
// an IPv4 or IPv6 packet (both keep the destination port at offset 2). An
// IPv6 packet with extension headers before TCP or UDP is left out: the
// rule logs SYNs and new UDP flows, and scanners send plain ones.
func portOf(b []byte) (netip.Addr, Port, bool) {
	if len(b) < 1 {
		return netip.Addr{}, Port{}, false
	}
	switch b[0] >> 4 {
	case 4:
		ihl := int(b[0]&0x0f) * 4
		if len(b) < 20 || ihl < 20 || len(b) < ihl+4 || !transport(b[9]) {
			return netip.Addr{}, Port{}, false
		}
		return netip.AddrFrom4([4]byte(b[12:16])), Port{binary.BigEndian.Uint16(b[ihl+2:]), b[9] == udp}, true
	case 6:
		if len(b) < 44 || !transport(b[6]) {
			return netip.Addr{}, Port{}, false
		}
		return netip.AddrFrom16([16]byte(b[8:24])), Port{binary.BigEndian.Uint16(b[42:]), b[6] == udp}, true
	}
	return netip.Addr{}, Port{}, false
}

const tcp, udp = 6, 17

func transport(proto byte) bool { return proto == tcp || proto == udp }
