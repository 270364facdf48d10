//go:build vallum_lean

package bridge

import "net/netip"

// vallum_lean builds cut no connections (cmd/vallum warns about
// --kill-connections there and drops it, for size): no set asks for it.
func killSets(*Options) map[string]bool { return nil }

func addedOf([]Op, map[netip.Prefix]bool) []netip.Prefix { return nil }

// CheckKillLists checks nothing: cmd/vallum refuses the flag itself.
func CheckKillLists([]string, []List) error { return nil }
