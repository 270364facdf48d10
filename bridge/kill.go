//go:build !vallum_lean

package bridge

import (
	"fmt"
	"net/netip"
	"slices"
)

// killSets are the sets of the lists whose bans cut connections
// (Options.KillLists), when something cuts them (Options.Banned).
func killSets(o *Options) map[string]bool {
	kill := map[string]bool{}
	for _, l := range o.Lists {
		if o.Banned != nil && slices.Contains(o.KillLists, l.Root) {
			kill[l.Set4], kill[l.Set6] = true, true
		}
	}
	return kill
}

// addedOf are the prefixes ops added, failed left out.
func addedOf(ops []Op, failed map[netip.Prefix]bool) []netip.Prefix {
	var added []netip.Prefix
	for _, op := range ops {
		if op.Action == Add && !failed[op.Prefix] {
			added = append(added, op.Prefix)
		}
	}
	return added
}

// CheckKillLists says which of kill (Options.KillLists) is not the root of
// one of lists. (New does not check: a root that names no list cuts
// nothing; the daemon's configuration check refuses it.)
func CheckKillLists(kill []string, lists []List) error {
	roots := map[string]bool{}
	for _, l := range lists {
		roots[l.Root] = true
	}
	for _, k := range kill {
		if !roots[k] {
			return fmt.Errorf("--kill-connections %q: no such list: name a list topic's ROOT as given to -t", k)
		}
	}
	return nil
}
