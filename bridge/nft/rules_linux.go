//go:build linux

package nft

import (
	"context"
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
// NAME_net companions). The chains are rewritten whole in one transaction,
// so running it twice leaves one copy of each rule. In a table vallum does
// not own (Options.Table "inet fw4") the chains are vallum_input and
// vallum_forward, so that the table's own chains are never touched.
func (b *Backend) EnsureRules(ctx context.Context, sets []bridge.SetSpec) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var lookups []*nftables.Set
	fams := map[*nftables.Set]bridge.Family{}
	for _, spec := range sets {
		t, err := b.resolve(spec.Name)
		if err != nil {
			return fmt.Errorf("nft rules: %w", err)
		}
		for _, s := range []*nftables.Set{t.addr, t.net} {
			if s != nil {
				lookups = append(lookups, s)
				fams[s] = t.family
			}
		}
	}
	prefix := ""
	if b.table.Name != "vallum" {
		prefix = "vallum_"
	}
	prio := nftables.ChainPriority(RulePriority)
	for _, hook := range []struct {
		name string
		num  *nftables.ChainHook
	}{{"input", nftables.ChainHookInput}, {"forward", nftables.ChainHookForward}} {
		c := b.conn.AddChain(&nftables.Chain{
			Name: prefix + hook.name, Table: b.table, Type: nftables.ChainTypeFilter,
			Hooknum: hook.num, Priority: &prio,
		})
		b.conn.FlushChain(c)
		for _, s := range lookups {
			b.conn.AddRule(&nftables.Rule{Table: b.table, Chain: c, Exprs: dropFrom(s, fams[s])})
		}
	}
	if err := b.conn.Flush(); err != nil {
		return fmt.Errorf("nft rules in table %s: %w", b.table.Name, err)
	}
	b.log.Info("drop rules in place", "table", b.table.Name, "sets", len(lookups))
	return nil
}

// dropFrom is `ip saddr @set drop` (or ip6): the nfproto check keeps an
// inet table's IPv4 rule from reading IPv6 headers and the other way round.
func dropFrom(s *nftables.Set, f bridge.Family) []expr.Any {
	proto, off, n := byte(unix.NFPROTO_IPV4), uint32(12), uint32(4)
	if f == bridge.IPv6 {
		proto, off, n = unix.NFPROTO_IPV6, 8, 16
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
		&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}
}
