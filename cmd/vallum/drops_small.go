//go:build vallum_small && (mips || mipsle)

package main

import (
	"context"

	"github.com/vallum/vallum/bridge"
	"github.com/vallum/vallum/bridge/nft"
	"github.com/vallum/vallum/internal/metrics"
)

// dropsOf reads nothing in the MIPS router builds: the drop counters
// cost about 8 KB of a binary that must stay under 10 MB, and the rules'
// counters can be read with `nft list table inet vallum`.
func dropsOf(*nft.Backend, []bridge.List, []bridge.SetSpec) func(context.Context) ([]metrics.Drop, error) {
	return nil
}
