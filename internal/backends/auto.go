package backends

import (
	"context"
	"os"

	"github.com/google/nftables"

	"github.com/vallum/vallum/bridge"
	"github.com/vallum/vallum/bridge/ipset"
	"github.com/vallum/vallum/bridge/nft"
)

// system is what auto probes: each field a fact, so that choose, which
// decides, is a pure function and table-tested.
type system struct {
	ipset     bool   // the ipset netlink interface answers
	ipsetSet  string // a list's IPv4 set that exists as an ipset; "" none
	fw4       bool   // OpenWrt's fw4 is installed
	nftErr    error  // nftables cannot be asked
	listErr   error  // nftables tables cannot be listed
	inetTable string // the first table of the inet family; "" none
}

// choose picks ipset where an ipset of the lists already exists or the
// firewall is not nftables, and nft where it is (OpenWrt's fw4, or any
// native inet table such as Debian's nftables.conf or vallum's own) and no
// ipset of the lists exists. It says why.
func choose(s system) (name, why string) {
	if s.ipsetSet != "" {
		return "ipset", "set " + s.ipsetSet + " exists"
	}
	// Native nftables: OpenWrt's fw4, or a table of the inet family.
	// iptables-nft's tables are ip and ip6 ones, and its users want ipsets.
	native := false
	switch {
	case s.fw4:
		why, native = "OpenWrt fw4", true
	case s.nftErr != nil:
		why = "no nftables: " + s.nftErr.Error()
	case s.listErr != nil:
		why = "cannot list nftables tables: " + s.listErr.Error()
	case s.inetTable != "":
		why, native = "nftables table inet "+s.inetTable+" exists", true
	default:
		why = "no native nftables firewall (no inet table)"
	}
	if !native && s.ipset {
		return "ipset", why
	}
	return "nft", why
}

// openAuto probes, chooses and opens; it logs what it chose and why.
func openAuto(o Options) (bridge.Backend, error) {
	var s system
	ip, ipErr := ipset.New(ipset.Options{Logger: o.Logger})
	for i := 0; ipErr == nil && i < len(o.Lists) && s.ipsetSet == ""; i++ {
		if _, err := ip.Info(context.Background(), o.Lists[i].Set4); err == nil {
			s.ipsetSet = o.Lists[i].Set4 // the first list's IPv4 set that exists
		}
	}
	s.ipset = ipErr == nil
	if s.ipsetSet == "" { // else nftables need not be asked
		probeNftables(&s)
	}
	name, why := choose(s)
	if name == "ipset" {
		o.Logger.Info("backend auto: chose ipset", "why", why)
		return ip, nil
	}
	if ipErr == nil {
		ip.Close()
	}
	o.Logger.Info("backend auto: chose nft", "why", why, "table", o.NftTable)
	return nft.New(nft.Options{Table: o.NftTable, Logger: o.Logger})
}

func probeNftables(s *system) {
	if _, err := os.Stat("/sbin/fw4"); err == nil {
		s.fw4 = true
		return
	}
	conn, err := nftables.New()
	if err != nil {
		s.nftErr = err
		return
	}
	defer conn.CloseLasting()
	tables, err := conn.ListTables()
	if err != nil {
		s.listErr = err
		return
	}
	for _, t := range tables {
		if t.Family == nftables.TableFamilyINet {
			s.inetTable = t.Name
			return
		}
	}
}
