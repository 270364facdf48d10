#!/bin/sh
# Build static vallum binaries for the targets vallum runs on:
#
#   contrib/build-static.sh            # all targets, into dist/
#   TARGETS="amd64 mipsle" contrib/build-static.sh
#
# Output: dist/vallum-linux-ARCH for ARCH in amd64 arm64 armv7 mips mipsle,
# each size printed. Pure Go, no cgo: one file that runs on glibc, musl and
# OpenWrt alike. MIPS routers mostly lack an FPU, hence GOMIPS=softfloat.
# The Dockerfile runs the same `go build` line for its target.
#
# MIPS routers have the least flash and see a few bans a second, so their
# builds trade speed for size: -gcflags=all=-l turns inlining off, 1 MB of
# an 11 MB binary. Measured on amd64, parsing a one-line payload goes from
# 164 to 262 ns and the one-per-message rate drops about 5%: nothing next
# to a router's few bans a second.
#
# The same builds turn off three code-growing compiler features outside
# the runtime (-d=, 65 KB on mips in all, same semantics, a little more
# work at run time): open-coded defers (noopendefer, 8 KB: a defer costs a
# record again, tens of ns), stack buffers for small variable-sized makes
# (variablemakethreshold=0, 29 KB: such a make goes to the heap as before
# Go 1.25), and the size cutoff under which a package-level map literal is
# built in init even when nothing uses it (wrapglobalmapctl=2, 16 KB: the
# compiler then wraps every side-effect-free map literal as it already
# does the big ones, and the linker drops those nothing reads). On amd64,
# BenchmarkParsePayload and BenchmarkBridgeSingle (bridge) show no
# difference above the machine's noise, with the same allocations per
# operation. And they
# use Go's previous garbage collector (GOEXPERIMENT=nogreenteagc, 29 KB):
# Green Tea, the default since Go 1.26, pays off on many cores and large
# heaps, a router has one or two cores and a heap of a few MB; the
# previous collector is the one Go shipped until 1.25, kept as a
# supported opt-out.
#
# The runtime keeps its inlining (-gcflags=runtime=, 0 or 64 KB: sizes
# move by pages). Built with -l, the big-endian mips runtime crashed under
# qemu-mips-static, in its GC write barrier ("slice bounds out of range"
# in wbBufFlush1) and elsewhere: in 7 of 24 runs of the ipset unit tests
# (10 of 24 with only the runtime built with -l) and the daemon in 3 of 5
# runs of .ci/qemu-routers. With the runtime inlined: 0 of 24 and 0 of 6,
# as for mipsle with or without. Whether a real MIPS CPU would crash is
# not known; keeping the runtime as Go's own builders test it is cheap.
#
# -ldflags -R 0x1000 aligns the MIPS and 32-bit ARM builds' segments to
# 4 KB pages, not the linker's 64 KB default there, which pads the file by
# up to 64 KB between each of its three segments (about 100 KB in all:
# armv7 9,896,098 -> 9,789,602 bytes). 32-bit ARM Linux has only 4 KB
# pages, and OpenWrt's MIPS kernels use them; a MIPS kernel with 16 or
# 64 KB pages would refuse such a binary (build without the flag there).
# arm64 keeps 64 KB: its kernels may use 16 or 64 KB pages.
#
# -tags vallum_small (the 32-bit router targets) leaves argon2id out of the
# broker's password check: bcrypt only (23 KB, and argon2id's usual 64 MiB
# per login is too much for a router); a users file with an argon2id hash
# is refused at start with what to do. (-tags vallum_lean, which the
# OpenWrt SDK package adds on MIPS, where it cannot trim modules, also
# leaves out --kill-connections, the drop counters of /metrics and the
# scan sensor: 139 KB on mips. These builds have them.)
#
# The router builds (all but amd64) link trimmed copies of mochi-mqtt,
# gorilla/websocket, cast, cobra, yaml and viper (contrib/trim-modules.sh,
# -modfile): code they link but never run, mochi's test packets among it
# (344 KB on mips, 328 KB on arm64), and no regexp package (the modules'
# few expressions written out: 266 KB on mips, 246 KB on armv7, 197 KB on
# arm64) nor viper's TOML and dotenv codecs and conversion by default
# value (24 KB more on mips). The repository's go.mod is left alone (`go
# install` refuses a module with replace lines). The Dockerfile trims its
# 32-bit builds only: an image's size is no router's flash.
#
# -tags vallum_small (all three 32-bit targets) also leaves out the hub's
# web view (--web, internal/web: 0.14 to 0.16 MB), refused at start there;
# arm64 leaves it out alone with -tags vallum_noweb (with it arm64 was
# 10,027,170 bytes: its 64 KB segments grew by two). A router is a host,
# seldom the hub: the web view is for the hub built for amd64.
#
# -tags nethttpomithttp2 leaves out net/http's bundled HTTP/2 (about 330 KB
# on mipsle): nothing in vallum speaks HTTP/2 (metrics and WebSocket are
# HTTP/1.1).
#
# Environment: VERSION (default: git describe), TARGETS, OUT (default dist),
# PKG (default ./cmd/vallum). Targets build one after another, sharing the
# Go build cache, so a second run only relinks what changed.
set -eu

cd "$(dirname "$0")/.."
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
TARGETS=${TARGETS:-amd64 arm64 armv7 mips mipsle}
OUT=${OUT:-dist}
PKG=${PKG:-./cmd/vallum}

mkdir -p "$OUT"
trim=$(mktemp -d)
trap 'rm -rf "$trim"' EXIT
trimmed=
failed=
for t in $TARGETS; do
	goarch=$t goarm= gomips= gcflags= ldround= tags=nethttpomithttp2 goexp=${GOEXPERIMENT:-} modfile=
	case $t in
	amd64) ;;
	*)
		# Once, for the first target that wants them.
		[ -n "$trimmed" ] || trimmed=$(contrib/trim-modules.sh "$trim")
		modfile=-modfile=$trimmed
		;;
	esac
	case $t in
	amd64) ;;
	# arm64 is a router target too: no vallum import (a hub imports feeds,
	# not a router). The MIPS builds have no web view either (151 KB there):
	# a MIPS hub keeps its lists as chunks instead.
	arm64) tags=nethttpomithttp2,vallum_noimport ;;
	# The 32-bit ARM builds keep their inlining (they had the room) but take
	# the MIPS builds' compiler features and collector (below): armv7 grew
	# past 10 MB with the keeper's burst path and the web view's chunk
	# reader (10,047,650 bytes).
	armv7 | armv6)
		goarch=arm goarm=${t#armv} tags=nethttpomithttp2,vallum_small ldround="-R 0x1000"
		gcflags="all=-d=noopendefer,variablemakethreshold=0,wrapglobalmapctl=2"
		goexp=nogreenteagc
		;;
	mips | mipsle)
		gomips=softfloat ldround="-R 0x1000" tags=nethttpomithttp2,vallum_small,vallum_noweb
		gcflags="all=-l -d=noopendefer,variablemakethreshold=0,wrapglobalmapctl=2"
		goexp=nogreenteagc
		;;
	*)
		echo "build-static.sh: unknown target $t" >&2
		exit 2
		;;
	esac
	out=$OUT/vallum-linux-$t
	rm -f "$out"
	# Keep going on failure: one report shows every target that breaks.
	if ! CGO_ENABLED=0 GOOS=linux GOARCH=$goarch GOARM=$goarm GOMIPS=$gomips GOEXPERIMENT=$goexp \
		go build $modfile -trimpath -tags "$tags" -gcflags="$gcflags" -gcflags=runtime= -ldflags "-s -w $ldround -X main.version=$VERSION" -o "$out" "$PKG"; then
		failed="$failed $t"
		continue
	fi
	size=$(wc -c <"$out")
	printf '%-28s %9d bytes  %5.1f MiB\n' "$out" "$size" "$(echo "$size" | awk '{print $1/1048576}')"
done
if [ -n "$failed" ]; then
	echo "build-static.sh: failed:$failed" >&2
	exit 1
fi
