//go:build linux

package nft

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/vallum/vallum/bridge"
)

// RulePriority is the priority of the drop chains: before the filter chains
// of fw4 and of distributions (priority 0), and so before their
// "ct state established accept", so that a ban also cuts open connections.
const RulePriority = -10

// EnsureRules makes, in the backend's table, the base chains input and
// forward that drop packets whose source is in one of the sets (and their
// NAME_net companions); on forward, packets to the members of the sets
// named by DropTo are dropped too. The chains are rewritten whole in one
// transaction, so running it twice leaves one copy of each rule. In a table
// vallum does not own (Options.Table "inet fw4") the chains are
// vallum_input and vallum_forward, so that the table's own chains are
// never touched.
func (b *Backend) EnsureRules(ctx context.Context, sets []bridge.SetSpec) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	lookups, err := b.ruleSets(sets)
	if err != nil {
		return err
	}
	prio := nftables.ChainPriority(RulePriority)
	for _, hook := range []struct {
		name string
		num  *nftables.ChainHook
	}{{"input", nftables.ChainHookInput}, {"forward", nftables.ChainHookForward}} {
		c := b.conn.AddChain(&nftables.Chain{
			Name: b.chainPrefix() + hook.name, Table: b.table, Type: nftables.ChainTypeFilter,
			Hooknum: hook.num, Priority: &prio,
		})
		b.conn.FlushChain(c)
		for _, l := range lookups {
			b.conn.AddRule(&nftables.Rule{Table: b.table, Chain: c, Exprs: drop(l.set, l.family, false)})
			if hook.name == "forward" && b.dropTo[l.list] {
				b.conn.AddRule(&nftables.Rule{Table: b.table, Chain: c, Exprs: drop(l.set, l.family, true)})
			}
		}
		if sensorBuilt && hook.name == "input" {
			b.addSensorRules(c)
		}
	}
	if err := b.conn.Flush(); err != nil {
		return fmt.Errorf("nft rules in table %s: %w", b.table.Name, err)
	}
	b.log.Info("drop rules in place", "table", b.table.Name, "sets", len(lookups))
	return nil
}

// DropTo makes EnsureRules drop, on forward, packets to the members of the
// named sets as well as from them. For a router that cuts the connections
// of banned addresses: when their conntrack entries are deleted, a server
// inside still retransmits to the banned address, each packet making a new
// entry, and answers of the banned address would match it as ESTABLISHED
// in a firewall that accepts those first; dropped here, before fw4 and
// iptables (priority -10), the packet makes none.
func (b *Backend) DropTo(sets ...string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dropTo == nil {
		b.dropTo = map[string]bool{}
	}
	for _, s := range sets {
		b.dropTo[s] = true
	}
}

// RulesInPlace reports whether both drop chains exist and hold the rules
// EnsureRules makes for each of the sets (and companions). It reads the
// two chains only, so it can run every second.
func (b *Backend) RulesInPlace(ctx context.Context, sets []bridge.SetSpec) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	lookups, err := b.ruleSets(sets)
	if errors.Is(err, bridge.ErrNoSet) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	for _, hook := range []string{"input", "forward"} {
		rules, err := b.conn.GetRules(b.table, &nftables.Chain{Name: b.chainPrefix() + hook, Table: b.table})
		if errors.Is(err, unix.ENOENT) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("nft rules of chain %s: %w", b.chainPrefix()+hook, err)
		}
		want := map[string]int{}
		for _, l := range lookups {
			want[l.set.Name]++
			if hook == "forward" && b.dropTo[l.list] {
				want[l.set.Name]++
			}
		}
		for _, r := range rules {
			for _, e := range r.Exprs {
				if l, ok := e.(*expr.Lookup); ok {
					want[l.SetName]--
				}
			}
		}
		for _, n := range want {
			if n > 0 {
				return false, nil
			}
		}
	}
	return true, nil
}

// Counter is what vallum's drop rules of one set dropped.
type Counter struct{ Packets, Bytes uint64 }

// Dropped reads the counters of the drop rules EnsureRules made, summed
// by set of sets (NAME and NAME_net together), both chains and both
// directions. It reads the two chains only, never a set: cheap enough for
// every scrape. A rule put back after a firewall reload starts again at 0.
func (b *Backend) Dropped(ctx context.Context, sets []bridge.SetSpec) (map[string]Counter, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	lookups, err := b.ruleSets(sets)
	if err != nil {
		return nil, err
	}
	list := map[string]string{}
	for _, l := range lookups {
		list[l.set.Name] = l.list
	}
	out := map[string]Counter{}
	for _, hook := range []string{"input", "forward"} {
		rules, err := b.conn.GetRules(b.table, &nftables.Chain{Name: b.chainPrefix() + hook, Table: b.table})
		if err != nil {
			return nil, fmt.Errorf("nft rules of chain %s: %w", b.chainPrefix()+hook, err)
		}
		for _, r := range rules {
			var name string
			for _, e := range r.Exprs {
				switch e := e.(type) {
				case *expr.Lookup:
					name = list[e.SetName]
				case *expr.Counter:
					if name != "" {
						c := out[name]
						c.Packets += e.Packets
						c.Bytes += e.Bytes
						out[name] = c
					}
				}
			}
		}
	}
	return out, nil
}

// lookup is one kernel set a drop rule looks up, and the list set it
// belongs to (NAME for NAME and NAME_net).
type lookup struct {
	set    *nftables.Set
	family bridge.Family
	list   string
	_      [0]func() // not comparable: no equality function in the router builds
}

// ruleSets returns the kernel sets the drop rules look up.
func (b *Backend) ruleSets(sets []bridge.SetSpec) ([]lookup, error) {
	var lookups []lookup
	for _, spec := range sets {
		t, err := b.resolve(spec.Name)
		if err != nil {
			return nil, fmt.Errorf("nft rules: %w", err)
		}
		for _, s := range []*nftables.Set{t.addr, t.net} {
			if s != nil {
				lookups = append(lookups, lookup{set: s, family: t.family, list: spec.Name})
			}
		}
	}
	return lookups, nil
}

// chainPrefix keeps vallum's chains apart from a table it does not own.
func (b *Backend) chainPrefix() string {
	if b.table.Name != "vallum" {
		return "vallum_"
	}
	return ""
}

// drop is `ip saddr @set counter drop` (or ip6, or daddr when to is set): the
// nfproto check keeps an inet table's IPv4 rule from reading IPv6 headers
// and the other way round.
func drop(s *nftables.Set, f bridge.Family, to bool) []expr.Any {
	proto, off, n := byte(unix.NFPROTO_IPV4), uint32(12), uint32(4)
	if f == bridge.IPv6 {
		proto, off, n = unix.NFPROTO_IPV6, 8, 16
	}
	if to { // the destination follows the source in both headers
		off += n
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
		&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID},
		&expr.Counter{}, // read by Dropped
		&expr.Verdict{Kind: expr.VerdictDrop},
	}
}
