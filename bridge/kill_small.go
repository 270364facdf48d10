//go:build vallum_small && (mips || mipsle)

package bridge

import "net/netip"

// The MIPS router builds cut no connections (cmd/vallum refuses
// --kill-connections there, for size): no set asks for it.
func killSets(*Options) map[string]bool { return nil }

func addedOf([]Op, map[netip.Prefix]bool) []netip.Prefix { return nil }

// CheckKillLists checks nothing: cmd/vallum refuses the flag itself.
func CheckKillLists([]string, []List) error { return nil }
