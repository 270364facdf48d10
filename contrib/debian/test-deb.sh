#!/usr/bin/env bash
# Check a vallum .deb as a user gets it (CI runs this after build-deb.sh):
#
#   contrib/debian/test-deb.sh dist/vallum_VERSION_ARCH.deb
#
# 1. its contents (dpkg-deb -c): paths, modes, root ownership;
# 2. dpkg -i: the binary runs and says the package's version, the user
#    vallum exists and reads /etc/vallum, the default config passes
#    check-config, and the service is neither enabled nor started (an
#    admin's enablement then survives a remove and a reinstall);
# 3. the installed vallum bans an address into sets of this host, then
#    dpkg -r and dpkg --purge: the sets and the ban survive both, and the
#    package leaves no file behind.
#
# It changes this host only for its own run: it refuses to run where vallum
# is installed (package or /usr/bin/vallum), and on exit purges the package,
# stops its vallum, destroys its two sets (vdebtestPID, vdebtestPID6) and
# deletes the user vallum if it made it.
set -euo pipefail
deb=$(readlink -f "$1")
fail() { echo "test-deb: FAIL: $*" >&2; exit 1; }
say() { echo "test-deb: $*"; }

[ "$(id -u)" = 0 ] || { say "skipped: needs root"; exit 0; }
if dpkg-query -W -f='${Status}' vallum 2>/dev/null | grep -q installed || [ -e /usr/bin/vallum ] || [ -e /etc/vallum ]; then
	say "skipped: vallum is already installed on this host, and this test would remove it"
	exit 0
fi

# 1. Contents.
list=$(dpkg-deb -c "$deb")
for want in \
	'-rwxr-xr-x root/root .* ./usr/bin/vallum$' \
	'-rw-r--r-- root/root .* ./usr/lib/systemd/system/vallum.service$' \
	'-rw-r--r-- root/root .* ./usr/lib/systemd/system/vallum-broker.service$' \
	'-rw-r--r-- root/root .* ./usr/lib/sysusers.d/vallum.conf$' \
	'drwxr-x--- root/root .* ./etc/vallum/$' \
	'-rw-r----- root/root .* ./etc/vallum/vallum.yaml$' \
	'-rw-r--r-- root/root .* ./etc/fail2ban/action.d/vallum.conf$' \
	'-rw-r--r-- root/root .* ./usr/share/doc/vallum/README.md$' \
	'-rw-r--r-- root/root .* ./usr/share/doc/vallum/copyright$' \
	'-rw-r--r-- root/root .* ./usr/share/doc/vallum/examples/fail2ban/jail.d/vallum-sshd.local$'; do
	grep -Eq -- "$want" <<<"$list" || fail "dpkg-deb -c: no line matching $want"
done
if grep -v ' root/root ' <<<"$list"; then fail "files not owned by root/root (above)"; fi
version=$(dpkg-deb -f "$deb" Version)
say "contents ok ($(wc -l <<<"$list") entries, version $version)"

set4=vdebtest$$ set6=vdebtest$$6
work=$(mktemp -d)
pid=
had_user=$(getent passwd vallum || true)
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	dpkg --purge vallum >/dev/null 2>&1 || true
	ipset destroy "$set4" 2>/dev/null || true
	ipset destroy "$set6" 2>/dev/null || true
	# The package leaves its user in place, as Debian does; this test
	# removes the one it made, leaving the host as it found it.
	if [ -z "$had_user" ] && getent passwd vallum >/dev/null; then
		userdel vallum 2>/dev/null || true
		getent group vallum >/dev/null && groupdel vallum 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

# 2. Install.
dpkg -i "$deb" >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log"; fail "dpkg -i"; }
[ "$(/usr/bin/vallum -V)" = "vallum $version" ] || fail "vallum -V says '$(/usr/bin/vallum -V)', want 'vallum $version'"
getent passwd vallum >/dev/null || fail "no user vallum"
[ "$(stat -c '%U:%G %a' /etc/vallum)" = "root:vallum 750" ] || fail "/etc/vallum is $(stat -c '%U:%G %a' /etc/vallum)"
[ "$(stat -c '%U:%G %a' /etc/vallum/vallum.yaml)" = "root:vallum 640" ] || fail "vallum.yaml is $(stat -c '%U:%G %a' /etc/vallum/vallum.yaml)"
setpriv --reuid=vallum --regid=vallum --init-groups cat /etc/vallum/vallum.yaml >/dev/null ||
	fail "user vallum cannot read /etc/vallum/vallum.yaml"
/usr/bin/vallum check-config --config /etc/vallum/vallum.yaml >"$work/check.log" 2>&1 || { cat "$work/check.log"; fail "check-config refuses the packaged config"; }
for u in vallum.service vallum-broker.service; do
	[ "$(systemctl is-enabled $u 2>&1)" = disabled ] || fail "$u is $(systemctl is-enabled $u 2>&1) after dpkg -i, want disabled"
done
if [ -d /run/systemd/system ]; then
	! systemctl is-active --quiet vallum.service || fail "dpkg -i started vallum.service"
	systemd-analyze verify /usr/lib/systemd/system/vallum.service || fail "systemd-analyze verify"
else
	say "no systemd running here: the check that dpkg -i started nothing is skipped"
fi
# An admin's enablement survives a remove and a reinstall (as debhelper's).
systemctl enable --quiet vallum.service 2>/dev/null
dpkg -r vallum >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log"; fail "dpkg -r"; }
dpkg -i "$deb" >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log"; fail "dpkg -i after dpkg -r"; }
[ "$(systemctl is-enabled vallum.service 2>&1)" = enabled ] || fail "vallum.service enabled, removed, reinstalled: $(systemctl is-enabled vallum.service 2>&1), want enabled"
[ "$(systemctl is-enabled vallum-broker.service 2>&1)" = disabled ] || fail "vallum-broker.service reinstalled: $(systemctl is-enabled vallum-broker.service 2>&1), want disabled"
if [ -d /run/systemd/system ]; then
	! systemctl is-active --quiet vallum.service || fail "the reinstall started vallum.service"
fi
say "installed ok; not enabled at first, enabled again after a reinstall"

# 3. A ban made by the installed vallum survives remove and purge.
/usr/bin/vallum --config /dev/null -t "$set4" --listen 127.0.0.1:0 --data-dir "$work/data" >"$work/vallum.log" 2>&1 &
pid=$!
port=
for _ in $(seq 100); do
	port=$(sed -n 's|.*"embedded broker listening" addrs=tcp://127.0.0.1:\([0-9]*\).*|\1|p' "$work/vallum.log")
	[ -n "$port" ] && break
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.1
done
[ -n "$port" ] || { cat "$work/vallum.log"; fail "the installed vallum did not start its broker"; }
/usr/bin/vallum --config /dev/null -p "$port" ban "$set4" 192.0.2.7 --reason test-deb
/usr/bin/vallum --config /dev/null -p "$port" ban "$set4" 2001:db8::7 --reason test-deb
for _ in $(seq 100); do
	ipset test "$set4" 192.0.2.7 2>/dev/null && ipset test "$set6" 2001:db8::7 2>/dev/null && break
	sleep 0.1
done
ipset test "$set4" 192.0.2.7 2>/dev/null || { cat "$work/vallum.log"; fail "the ban did not reach $set4"; }
dpkg -r vallum >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log"; fail "dpkg -r"; }
dpkg --purge vallum >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log"; fail "dpkg --purge"; }
kill "$pid" && wait "$pid" 2>/dev/null || true
pid=
ipset test "$set4" 192.0.2.7 2>/dev/null || fail "the purge flushed or destroyed $set4"
ipset test "$set6" 2001:db8::7 2>/dev/null || fail "the purge flushed or destroyed $set6"
for f in /usr/bin/vallum /etc/vallum /var/lib/vallum /usr/lib/systemd/system/vallum.service /etc/fail2ban/action.d/vallum.conf \
	/etc/systemd/system/vallum.service /etc/systemd/system/multi-user.target.wants/vallum.service; do
	[ ! -e "$f" ] && [ ! -L "$f" ] || fail "$f is left after the purge"
done
if ls /var/lib/systemd/deb-systemd-helper-*/ 2>/dev/null | grep -q vallum; then fail "deb-systemd-helper state left after the purge"; fi
say "removed and purged ok: the sets kept the ban"
