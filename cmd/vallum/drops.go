//go:build !vallum_lean

package main

import (
	"context"

	"github.com/vallum/vallum/bridge"
	"github.com/vallum/vallum/bridge/nft"
	"github.com/vallum/vallum/internal/metrics"
)

// dropsOf reads, for the metrics, the counters of the drop rules in chains
// input and forward of the nft backend's table, by list and family: the
// rules of --nft-rules, or the same rules of the shipped nft files
// (contrib/firewall, the OpenWrt include). Where they are not, the metrics
// leave the series out. Other backends: nil.
func dropsOf(be backend, lists []bridge.List) func(context.Context) ([]metrics.Drop, error) {
	nb, ok := be.(*nft.Backend)
	if !ok {
		return nil
	}
	var specs []bridge.SetSpec
	for _, l := range lists {
		specs = append(specs, bridge.SetSpec{Name: l.Set4, Family: bridge.IPv4}, bridge.SetSpec{Name: l.Set6, Family: bridge.IPv6})
	}
	return func(ctx context.Context) ([]metrics.Drop, error) {
		got, err := nb.Dropped(ctx, specs)
		if err != nil {
			return nil, err
		}
		var ds []metrics.Drop
		for _, l := range lists {
			for _, s := range []struct{ set, fam string }{{l.Set4, "ipv4"}, {l.Set6, "ipv6"}} {
				c := got[s.set]
				ds = append(ds, metrics.Drop{List: l.Root, Family: s.fam, Packets: c.Packets, Bytes: c.Bytes})
			}
		}
		return ds, nil
	}
}
