//go:build vallum_lean

package main

import (
	"context"

	"github.com/vallum/vallum/bridge"
	"github.com/vallum/vallum/internal/metrics"
)

// dropsOf reads nothing in vallum_lean builds (kill_lean.go): the drop
// counters cost a page of a binary at its 10 MB limit, and the rules'
// counters can be read with `nft list table inet vallum`.
func dropsOf(backend, []bridge.List) func(context.Context) ([]metrics.Drop, error) {
	return nil
}
