#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# build.sh [-D...] - build the VMware balloon host plugin and print the path
# of the cached vmwbhost.so.
# build.sh --rogue - build vmwb-rogue (rogue.c, static, runs in the guest)
# and print its cached path.
#
# The plugin is compiled inside the sid "vmwhost" root (scripts/mkroot.sh),
# whose QEMU loads it, with -Wall -Wextra -Werror.  The result is cached in
# $BALLOON_CACHE/vmwhost/, keyed by the sources, the extra flags, the
# compiler and the QEMU version of the root.  Extra -D flags build test
# variants (tests/test_vmwhost.py uses them for the API-version check).
#
# QEMU pin: qemu.pin names the qemu-system-x86 version this plugin was
# validated with (plugin API 7).  The root's version is compared with it;
# a different version only warns here, because the plugin itself refuses
# any other plugin API at load time with a one-line message.  The .debs of
# the root's QEMU are kept in $BALLOON_CACHE/vmwhost/debs-<version>/.
#
# Environment: VMWB_ROOT overrides the root (default: mkroot.sh sid vmwhost).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
. "$top/scripts/lib.sh"

what=plugin
for f in "$@"; do
	case $f in
	-D*) ;;
	--rogue) what=rogue ;;
	*) die "build.sh: only -D flags or --rogue are accepted (got '$f')" ;;
	esac
done

root=${VMWB_ROOT:-$("$top/scripts/mkroot.sh" sid vmwhost)}
[ -x "$root/usr/bin/qemu-system-x86_64" ] || die "no qemu-system-x86_64 in $root"

qemu_ver=$(chroot "$root" dpkg-query -W -f='${Version}' qemu-system-x86)
gcc_ver=$(chroot "$root" gcc -dumpfullversion)
pin=$(awk '$1 == "qemu-system-x86" { print $2 }' "$here/qemu.pin")
if [ "$qemu_ver" != "$pin" ]; then
	log "vmwhost: the root has qemu-system-x86 $qemu_ver, the plugin was validated with $pin (qemu.pin); the plugin checks the API version at load"
fi

cache=$BALLOON_CACHE/vmwhost
mkdir -p "$cache"
echo "$qemu_ver" >"$cache/qemu-version"

# Keep the .debs of this exact QEMU, so that the root can be rebuilt with it.
debs=$cache/debs-${qemu_ver//:/%3a}
if [ ! -d "$debs" ]; then
	mkdir -p "$debs.tmp"
	for p in qemu-system-x86 qemu-system-common qemu-system-data \
		qemu-system-modules-opengl qemu-system-modules-spice qemu-utils seabios ipxe-qemu; do
		v=$(chroot "$root" dpkg-query -W -f='${Version}' "$p" 2>/dev/null) || continue
		a=$(chroot "$root" dpkg-query -W -f='${Architecture}' "$p")
		f=$BALLOON_CACHE/debs/sid/${p}_${v//:/%3a}_$a.deb
		[ -f "$f" ] && cp -p "$f" "$debs.tmp/"
	done
	mv "$debs.tmp" "$debs"
fi

if [ $what = rogue ]; then
	srcs="rogue.c" bin=vmwb-rogue
	cflags="-std=gnu11 -O2 -static -Wall -Wextra -Werror"
	cmd="gcc $cflags -o $bin rogue.c"
else
	srcs="vmwbhost.c qemu-plugin-api7.h" bin=vmwbhost.so
	cflags="-std=gnu11 -O2 -g -fPIC -shared -fvisibility=hidden -pthread -Wall -Wextra -Werror $*"
	cmd="gcc $cflags \$(pkg-config --cflags glib-2.0) -o $bin vmwbhost.c"
fi
key=$( { for s in $srcs; do cat "$here/$s"; done; echo "$cflags|$gcc_ver|$qemu_ver"; } |
	sha256sum | cut -c1-16)
out=$cache/${bin%.so}-$key${bin#"${bin%.so}"}
if [ -f "$out" ]; then
	echo "$out"
	exit 0
fi

tmp=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
for s in $srcs; do cp "$here/$s" "$tmp/"; done
if ! "$here/in-root.sh" "$root" "$tmp" sh -c "cd /mnt && $cmd" >"$tmp/build.log" 2>&1; then
	cat "$tmp/build.log" >&2
	die "building $bin failed"
fi
mv "$tmp/$bin" "$out.tmp"
mv "$out.tmp" "$out"
echo "$out"
