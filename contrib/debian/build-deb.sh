#!/usr/bin/env bash
# Build vallum's Debian package with dpkg-deb alone (no debhelper, no
# network once the Go modules are in the cache):
#
#   contrib/debian/build-deb.sh                 # for this machine's architecture, into dist/
#   ARCH=arm64 contrib/debian/build-deb.sh      # amd64, arm64, armhf, mips or mipsel
#   dpkg -i dist/vallum_*.deb
#
# The package holds the static binary of contrib/build-static.sh at
# /usr/bin/vallum, the systemd units, the sysusers file (user vallum), the
# default config /etc/vallum/vallum.yaml, the fail2ban actions in
# /etc/fail2ban/action.d, and the docs and examples (jails, firewall rules)
# in /usr/share/doc/vallum. Installing it never enables nor starts vallum:
# vallum changes the firewall, and the config wants its lists and broker
# first; then `systemctl enable --now vallum`. Removing it stops vallum,
# which never flushes a set: the kernel keeps dropping what the sets hold.
#
# Environment: ARCH (Debian architecture, default dpkg's), DEB_VERSION
# (default from git: the tag without its v, or 0~gitDATE.COMMIT), VERSION
# (vallum -V, default git describe), OUT (default dist).
set -euo pipefail
cd "$(dirname "$0")/../.."

ARCH=${ARCH:-$(dpkg --print-architecture)}
OUT=${OUT:-dist}
case $ARCH in
amd64 | arm64) target=$ARCH ;;
armhf) target=armv7 ;;
mips) target=mips ;;
mipsel) target=mipsle ;;
*)
	echo "build-deb.sh: no vallum build for the Debian architecture $ARCH" >&2
	exit 2
	;;
esac

# A Debian version starts with a digit and sorts upgrades right: v1.2.0-3-gabc
# becomes 1.2.0+3+gabc; an untagged tree 0~git20261130.2ffae0e34c31 (the
# commit's date first, so later commits sort higher).
if [ -z "${DEB_VERSION:-}" ]; then
	if desc=$(git describe --tags --match 'v[0-9]*' --dirty 2>/dev/null); then
		DEB_VERSION=${desc#v}
		DEB_VERSION=${DEB_VERSION//-/+}
	else
		DEB_VERSION=0~git$(git log -1 --format=%cd --date=format:%Y%m%d%H%M).$(git rev-parse --short=12 HEAD)
		git diff --quiet HEAD 2>/dev/null || DEB_VERSION=$DEB_VERSION+dirty
	fi
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
VERSION=${VERSION:-$DEB_VERSION} TARGETS=$target OUT=$work/bin contrib/build-static.sh >/dev/null

inst() { # inst MODE SRC DEST
	install -D -m "$1" "$2" "$root/$3"
}
inst 0755 "$work/bin/vallum-linux-$target" usr/bin/vallum
inst 0644 contrib/systemd/vallum.service usr/lib/systemd/system/vallum.service
inst 0644 contrib/systemd/vallum-broker.service usr/lib/systemd/system/vallum-broker.service
inst 0644 contrib/systemd/vallum.sysusers usr/lib/sysusers.d/vallum.conf
inst 0640 contrib/vallum.yaml etc/vallum/vallum.yaml
chmod 0750 "$root/etc/vallum"
inst 0644 fail2ban/action.d/vallum.conf etc/fail2ban/action.d/vallum.conf
inst 0644 fail2ban/action.d/vallum-mqtt.conf etc/fail2ban/action.d/vallum-mqtt.conf
inst 0644 fail2ban/action.d/vallum-report.conf etc/fail2ban/action.d/vallum-report.conf
doc=usr/share/doc/vallum
inst 0644 README.md $doc/README.md
inst 0644 broker/README.md $doc/README.broker.md
inst 0644 fail2ban/README.md $doc/README.fail2ban.md
inst 0644 contrib/debian/README.Debian $doc/README.Debian
inst 0644 contrib/debian/copyright $doc/copyright
for f in fail2ban/jail.d/*.local; do inst 0644 "$f" "$doc/examples/$f"; done
for f in contrib/firewall/*; do inst 0644 "$f" "$doc/examples/firewall/${f##*/}"; done

mkdir -p "$root/DEBIAN"
for s in postinst prerm postrm; do
	install -m 0755 "contrib/debian/$s" "$root/DEBIAN/$s"
done
cat >"$root/DEBIAN/conffiles" <<CONF
/etc/vallum/vallum.yaml
/etc/fail2ban/action.d/vallum.conf
/etc/fail2ban/action.d/vallum-mqtt.conf
/etc/fail2ban/action.d/vallum-report.conf
CONF
sed -e "s/@VERSION@/$DEB_VERSION/" -e "s/@ARCH@/$ARCH/" \
	-e "s/@SIZE@/$(du -sk --exclude=DEBIAN "$root" | cut -f1)/" contrib/debian/control >"$root/DEBIAN/control"
(cd "$root" && find . -type f ! -path './DEBIAN/*' ! -path './etc/*' -printf '%P\0' | sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"

mkdir -p "$OUT"
deb=$OUT/vallum_${DEB_VERSION}_$ARCH.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
