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
# is refused at start with what to do. On mips and mipsle it also leaves
# out --kill-connections (internal/enforce: 49 KB) and the drop counters of
# /metrics: with them those builds are over 10 MB. The flag is then a
# warning at start: bans apply, connections are not cut. The scan sensor
# (--sensor: internal/sensor, go-nflog, its nft rule) is left out the same
# way.
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
failed=
for t in $TARGETS; do
	goarch=$t goarm= gomips= gcflags= ldround= tags=nethttpomithttp2
	case $t in
	amd64) ;;
	# arm64 is a router target too: no vallum import (131 KB there, over 10 MB).
	arm64) tags=nethttpomithttp2,vallum_noimport ;;
	armv7) goarch=arm goarm=7 tags=nethttpomithttp2,vallum_small ldround="-R 0x1000" ;;
	armv6) goarch=arm goarm=6 tags=nethttpomithttp2,vallum_small ldround="-R 0x1000" ;;
	mips | mipsle) gomips=softfloat gcflags=all=-l ldround="-R 0x1000" tags=nethttpomithttp2,vallum_small ;;
	*)
		echo "build-static.sh: unknown target $t" >&2
		exit 2
		;;
	esac
	out=$OUT/vallum-linux-$t
	rm -f "$out"
	# Keep going on failure: one report shows every target that breaks.
	if ! CGO_ENABLED=0 GOOS=linux GOARCH=$goarch GOARM=$goarm GOMIPS=$gomips \
		go build -trimpath -tags "$tags" -gcflags="$gcflags" -gcflags=runtime= -ldflags "-s -w $ldround -X main.version=$VERSION" -o "$out" "$PKG"; then
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
