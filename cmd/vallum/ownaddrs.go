package main

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/vallum/vallum/bridge"
)

// watchOwnAddrs keeps the guard's dynamic allowlist current: every address
// of this host's interfaces (followed live through netlink, so an address
// added after start is protected at once) and the broker's addresses.
func watchOwnAddrs(ctx context.Context, g *bridge.Guard, brokerHost string, log *slog.Logger) error {
	updates := make(chan netlink.AddrUpdate, 64)
	done := make(chan struct{})
	defer close(done)
	if err := netlink.AddrSubscribe(updates, done); err != nil {
		log.Warn("cannot follow interface addresses; checking every 10 s instead", "err", err)
		updates = nil
	}
	refreshOwnAddrs(g, brokerHost, log)
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
		case <-tick.C:
		}
		refreshOwnAddrs(g, brokerHost, log)
	}
}

// refreshOwnAddrs sets the guard's dynamic allowlist from scratch.
func refreshOwnAddrs(g *bridge.Guard, brokerHost string, log *slog.Logger) {
	var own []netip.Prefix
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
	if brokerHost != "" {
		ips, err := net.LookupIP(brokerHost) // the configured broker, never a payload
		if err != nil {
			log.Warn("cannot resolve the broker to allowlist it", "host", brokerHost, "err", err)
		}
		for _, ip := range ips {
			if a, ok := netip.AddrFromSlice(ip); ok {
				own = append(own, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			}
		}
	}
	g.SetDynamic(own)
}
