package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"

	"github.com/vallum/vallum/bridge"
	"github.com/vallum/vallum/bridge/ipset"
	"github.com/vallum/vallum/bridge/nft"
)

// backend is a bridge.Backend that the daemon can close.
type backend = bridge.Backend

// backends are the kernel backends by --backend name.
var backends = map[string]func(c config, log *slog.Logger) (backend, error){
	"ipset": func(c config, log *slog.Logger) (backend, error) {
		return ipset.New(ipset.Options{Logger: log})
	},
	"nft": func(c config, log *slog.Logger) (backend, error) {
		return nft.New(nft.Options{Table: c.NftTable, Logger: log})
	},
	"dryrun": func(c config, log *slog.Logger) (backend, error) {
		return &dryrun{log: log}, nil
	},
	"auto": autoBackend,
}

func backendNames() string {
	var n []string
	for k := range backends {
		n = append(n, k)
	}
	sort.Strings(n)
	return strings.Join(n, ", ")
}

func newBackend(c config, log *slog.Logger) (backend, error) {
	open, ok := backends[c.Backend]
	if !ok {
		return nil, fmt.Errorf("--backend %q: choose one of %s", c.Backend, backendNames())
	}
	be, err := open(c, log)
	if err != nil {
		return nil, fmt.Errorf("%s backend: %w", c.Backend, err)
	}
	return be, nil
}

// autoBackend picks ipset where vallum's ipsets already exist or the system
// has no nftables firewall, and nft where the firewall is nftables (OpenWrt
// fw4, a distribution's nftables service) and no ipset of the lists exists.
func autoBackend(c config, log *slog.Logger) (backend, error) {
	lists, err := c.lists()
	if err != nil {
		return nil, err
	}
	if ip, err := ipset.New(ipset.Options{Logger: log}); err == nil {
		for _, l := range lists {
			if _, err := ip.Info(context.Background(), l.Set4); err == nil {
				log.Info("backend auto: chose ipset", "why", "set "+l.Set4+" exists")
				return ip, nil
			}
		}
		if !nftablesFirewall() {
			log.Info("backend auto: chose ipset", "why", "no nftables firewall found")
			return ip, nil
		}
		ip.Close()
	}
	log.Info("backend auto: chose nft", "why", "the firewall is nftables and no ipset of the lists exists", "table", c.NftTable)
	return nft.New(nft.Options{Table: c.NftTable, Logger: log})
}

// nftablesFirewall reports whether this system's firewall is nftables.
func nftablesFirewall() bool {
	for _, p := range []string{"/sbin/fw4", "/usr/sbin/nft", "/etc/nftables.conf"} {
		if _, err := os.Stat(p); err == nil {
			if p != "/usr/sbin/nft" {
				return true
			}
			b, _ := os.ReadFile("/proc/net/ip_tables_names")
			return len(strings.TrimSpace(string(b))) == 0 // no legacy iptables tables in use
		}
	}
	return false
}

// dryrun logs every op instead of applying it: to see what vallum would
// do on a host before it may touch the firewall.
type dryrun struct{ log *slog.Logger }

func (d *dryrun) Ensure(_ context.Context, s bridge.SetSpec) (bridge.SetInfo, error) {
	d.log.Info("dryrun: ensure set", "set", s.Name, "family", s.Family.String(), "create", s.Create)
	return bridge.SetInfo{Name: s.Name, Family: s.Family, Type: "dryrun", Comments: true}, nil
}

func (d *dryrun) Apply(_ context.Context, set string, ops []bridge.Op) error {
	for _, op := range ops {
		d.log.Info("dryrun", "set", set, "op", op.Action.String(), "prefix", op.Prefix, "timeout", int64(op.Timeout))
	}
	return nil
}

func (d *dryrun) List(context.Context, string) ([]bridge.Entry, error) { return nil, nil }
func (d *dryrun) Info(_ context.Context, set string) (bridge.SetInfo, error) {
	return bridge.SetInfo{Name: set, Type: "dryrun"}, nil
}
func (d *dryrun) Close() error { return nil }
