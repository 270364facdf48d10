package guard

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
)

// Watch keeps the guard's dynamic allowlist current: every address
// of this host's interfaces (followed live through netlink, so an address
// added after start is protected at once) and the broker's addresses.
func (g *Guard) Watch(ctx context.Context, brokerHost string, log *slog.Logger) error {
	updates := make(chan netlink.AddrUpdate, 64)
	done := make(chan struct{})
	defer close(done)
	if err := netlink.AddrSubscribe(updates, done); err != nil {
		log.Warn("cannot follow interface addresses; checking every 10 s instead", "err", err)
		updates = nil
	}
	brokerIPs := ResolveBroker(brokerHost, log)
	g.Refresh(brokerIPs, log)
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-updates:
			if !ok {
				updates = nil
				continue
			}
		case <-tick.C: // DNS answers change too, but need not be asked more often
			brokerIPs = ResolveBroker(brokerHost, log)
		}
		g.Refresh(brokerIPs, log)
	}
}

// Refresh sets the guard's dynamic allowlist from scratch: the
// interface addresses and the broker's.
func (g *Guard) Refresh(brokerIPs []netip.Prefix, log *slog.Logger) {
	own := append([]netip.Prefix(nil), brokerIPs...)
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		log.Warn("cannot list interface addresses", "err", err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				own = append(own, netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen()))
			}
		}
	}
	g.SetDynamic(own)
}

// ResolveBroker returns the broker's addresses, to allowlist them. It
// resolves the configured broker name, never a payload.
func ResolveBroker(host string, log *slog.Logger) []netip.Prefix {
	if host == "" {
		return nil
	}
	ips, err := net.LookupIP(host)
	if err != nil {
		log.Warn("cannot resolve the broker to allowlist it", "host", host, "err", err)
	}
	var p []netip.Prefix
	for _, ip := range ips {
		if a, ok := netip.AddrFromSlice(ip); ok {
			p = append(p, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
		}
	}
	return p
}
