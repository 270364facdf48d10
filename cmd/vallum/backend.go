package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"

	"github.com/google/nftables"

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

// autoBackend picks ipset where an ipset of the lists already exists or
// the firewall is not nftables, and nft where it is (OpenWrt's fw4, or any
// native inet table such as Debian's nftables.conf or vallum's own) and no
// ipset of the lists exists. It logs what it chose and why.
func autoBackend(c config, log *slog.Logger) (backend, error) {
	lists, err := c.lists()
	if err != nil {
		return nil, err
	}
	ip, ipErr := ipset.New(ipset.Options{Logger: log})
	if ipErr == nil {
		for _, l := range lists {
			if _, err := ip.Info(context.Background(), l.Set4); err == nil {
				log.Info("backend auto: chose ipset", "why", "set "+l.Set4+" exists")
				return ip, nil
			}
		}
	}
	why, native := nftablesFirewall()
	if !native && ipErr == nil {
		log.Info("backend auto: chose ipset", "why", why)
		return ip, nil
	}
	if ipErr == nil {
		ip.Close()
	}
	log.Info("backend auto: chose nft", "why", why, "table", c.NftTable)
	return nft.New(nft.Options{Table: c.NftTable, Logger: log})
}

// nftablesFirewall reports whether this system filters with native
// nftables: OpenWrt's fw4, or a table of the inet family. iptables-nft's
// tables are ip and ip6 ones, and its users want ipsets.
func nftablesFirewall() (why string, native bool) {
	if _, err := os.Stat("/sbin/fw4"); err == nil {
		return "OpenWrt fw4", true
	}
	conn, err := nftables.New()
	if err != nil {
		return "no nftables: " + err.Error(), false
	}
	defer conn.CloseLasting()
	tables, err := conn.ListTables()
	if err != nil {
		return "cannot list nftables tables: " + err.Error(), false
	}
	for _, t := range tables {
		if t.Family == nftables.TableFamilyINet {
			return "nftables table inet " + t.Name + " exists", true
		}
	}
	return "no native nftables firewall (no inet table)", false
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
