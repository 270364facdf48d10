#!/bin/sh
# vallum: drop rules for the ipset backend (iptables and ip6tables).
#
#   sh contrib/firewall/iptables.sh          # add the rules (idempotent)
#   sh contrib/firewall/iptables.sh -D       # remove them
#
# SETS names the sets (default "blacklist"; its IPv6 twin is "<name>6").
# vallum creates the sets at start; this script creates any that are missing
# the same way (hash:net with timeouts and comments), so the rules can be
# loaded first. Save the result with your distribution's tool (Debian:
# netfilter-persistent save, with ipset-persistent for the sets) and start
# vallum before the firewall (contrib/systemd/vallum.service does): a saved
# rule that names a missing set makes iptables-restore fail as a whole.
#
# Chains: INPUT (this host), FORWARD (a router), and DOCKER-USER when it
# exists: Docker sends published container ports through FORWARD after its
# own accept rules, and DOCKER-USER is the chain it guarantees to run first.
set -eu

IPTABLES=${IPTABLES:-iptables}
IP6TABLES=${IP6TABLES:-ip6tables}
IPSET=${IPSET:-ipset}
SETS=${SETS:-blacklist}
MAXELEM=${MAXELEM:-4194304}

action=-I
[ "${1:-}" = "-D" ] && action=-D

# rule TOOL CHAIN SET: insert (or delete) "-m set --match-set SET src -j DROP"
# at the top of CHAIN, once.
rule() {
	tool=$1 chain=$2 set=$3
	$tool -n -L "$chain" >/dev/null 2>&1 || return 0
	if $tool -C "$chain" -m set --match-set "$set" src -j DROP 2>/dev/null; then
		[ "$action" = -D ] && $tool -D "$chain" -m set --match-set "$set" src -j DROP
	else
		[ "$action" = -I ] && $tool -I "$chain" 1 -m set --match-set "$set" src -j DROP
	fi
	return 0
}

for s in $SETS; do
	if [ "$action" = -I ]; then
		$IPSET create -exist "$s" hash:net family inet timeout 0 maxelem "$MAXELEM" comment
		$IPSET create -exist "${s}6" hash:net family inet6 timeout 0 maxelem "$MAXELEM" comment
	fi
	for chain in INPUT FORWARD DOCKER-USER; do
		rule "$IPTABLES" "$chain" "$s"
		rule "$IP6TABLES" "$chain" "${s}6"
	done
done
