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
# Each rule goes first in its chain, before an "ESTABLISHED accept": there a
# ban cuts the connections the address already has too.
#
# DST=1 (routers running vallum --kill-connections) also drops, on FORWARD
# and DOCKER-USER, packets to the members: when vallum deletes the
# conntrack entries of a banned address, a server inside still retransmits
# to it, each packet making a new entry that the banned address's packets
# would then match as ESTABLISHED. It keeps hosts inside from reaching
# banned addresses too.
set -eu

IPTABLES=${IPTABLES:-iptables}
IP6TABLES=${IP6TABLES:-ip6tables}
IPSET=${IPSET:-ipset}
SETS=${SETS:-blacklist}
DST=${DST:-0}
MAXELEM=${MAXELEM:-4194304}

action=-I
[ "${1:-}" = "-D" ] && action=-D

# rule TOOL CHAIN SET [DIR]: insert (or delete) "-m set --match-set SET DIR
# -j DROP" (DIR src by default) at the top of CHAIN, once.
rule() {
	tool=$1 chain=$2 set=$3 dir=${4:-src}
	$tool -n -L "$chain" >/dev/null 2>&1 || return 0
	if $tool -C "$chain" -m set --match-set "$set" "$dir" -j DROP 2>/dev/null; then
		[ "$action" = -D ] && $tool -D "$chain" -m set --match-set "$set" "$dir" -j DROP
	else
		[ "$action" = -I ] && $tool -I "$chain" 1 -m set --match-set "$set" "$dir" -j DROP
	fi
	return 0
}

for s in $SETS; do
	if [ "$action" = -I ]; then
		$IPSET create -exist "$s" hash:net family inet timeout 0 maxelem "$MAXELEM" comment
		$IPSET create -exist "${s}6" hash:net family inet6 timeout 0 maxelem "$MAXELEM" comment
	fi
	for chain in INPUT FORWARD DOCKER-USER; do
		if [ "$DST" = 1 ] && [ "$chain" != INPUT ]; then
			rule "$IPTABLES" "$chain" "$s" dst
			rule "$IP6TABLES" "$chain" "${s}6" dst
		fi
		rule "$IPTABLES" "$chain" "$s"
		rule "$IP6TABLES" "$chain" "${s}6"
	done
done
