//go:build vallum_small && (mips || mipsle)

package main

import "github.com/vallum/vallum/bridge"

// checkRules is not in the MIPS router builds: reading the rules runs
// iptables-save and nft, and starting a process links 65 KB there (os and
// syscall), more than those builds have left under 10 MB. doctor says so
// and what to look at instead.
func checkRules(string, []bridge.List) []finding {
	return []finding{{true, "firewall rules: not checked by the MIPS build (size); look for the sets in `nft list ruleset` or `iptables-save`", ""}}
}
