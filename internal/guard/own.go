package guard

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Watch keeps the guard's dynamic allowlist current: every address
// of this host's interfaces (followed live through netlink, so an address
// added after start is protected at once) and the addresses of every broker
// it may connect to.
func (g *Guard) Watch(ctx context.Context, brokerHosts []string, log *slog.Logger) error {
	updates, stop, err := addrChanges()
	if err != nil {
		log.Warn("cannot follow interface addresses; checking every 10 s instead", "err", err)
	}
	defer stop()
	brokerIPs := ResolveBrokers(brokerHosts, log)
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
			brokerIPs = ResolveBrokers(brokerHosts, log)
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

// ResolveBrokers returns the addresses of every broker, to allowlist them:
// a ban of a cluster's other node would cut the host off from its
// failover. It resolves the configured broker names, never a payload.
func ResolveBrokers(hosts []string, log *slog.Logger) []netip.Prefix {
	var p []netip.Prefix
	for _, host := range hosts {
		ips, err := net.LookupIP(host)
		if err != nil {
			log.Warn("cannot resolve the broker to allowlist it", "host", host, "err", err)
		}
		for _, ip := range ips {
			if a, ok := netip.AddrFromSlice(ip); ok {
				p = append(p, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			}
		}
	}
	return p
}

// addrChanges signals on its channel when an address is added to or
// removed from an interface, until stop; it closes the channel if netlink
// fails. Only the fact counts: Refresh lists them all again. (A
// bare netlink socket: vishvananda/netlink's AddrSubscribe would link its
// whole package for this.)
func addrChanges() (updates chan struct{}, stop func(), err error) {
	c, err := netlink.Dial(unix.NETLINK_ROUTE, &netlink.Config{
		Groups: unix.RTMGRP_IPV4_IFADDR | unix.RTMGRP_IPV6_IFADDR,
	})
	if err != nil {
		return nil, func() {}, err
	}
	updates = make(chan struct{}, 1)
	go func() {
		defer close(updates)
		for {
			_, err := c.Receive()
			if err != nil && !errors.Is(err, unix.ENOBUFS) { // closed by stop, or broken
				return
			}
			// ENOBUFS: the kernel dropped some; a change all the same.
			select {
			case updates <- struct{}{}:
			default: // one pending refresh covers this change too
			}
		}
	}()
	return updates, func() { c.Close() }, nil
}
