//go:build !(vallum_small && (mips || mipsle))

package main

import (
	"context"

	"github.com/vallum/vallum/bridge"
	"github.com/vallum/vallum/bridge/nft"
	"github.com/vallum/vallum/internal/metrics"
)

// dropsOf reads the counters of nb's drop rules by list and family.
func dropsOf(nb *nft.Backend, lists []bridge.List, specs []bridge.SetSpec) func(context.Context) ([]metrics.Drop, error) {
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
