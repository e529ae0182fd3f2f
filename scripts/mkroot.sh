#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# mkroot.sh SUITE [PROFILE] - print the path of a cached Debian build root,
# building it first if it is missing or stale.
#
# PROFILE "build" (default): the suite's gcc, make, dkms, kmod, udev, sparse,
#   linux-image-amd64 and linux-headers-amd64.  The same root builds our
#   modules with the suite's compiler, installs our .deb with the suite's
#   apt and dkms, and boots as a VM.
# PROFILE "flavours": the build profile plus Debian's other amd64 kernel
#   flavours, linux-image/headers-cloud-amd64 and -rt-amd64, so the root
#   holds three kernels (generic, cloud, rt).  A root of its own: every
#   "build" root keeps exactly one kernel, the one root_kver picks.
# PROFILE "vmwhost" (sid only): QEMU and a C toolchain with glib, to build
#   and run the VMware host emulator plugin.
# PROFILE "libvirt": the suite's libvirt daemon with its QEMU driver, virsh
#   and the suite's QEMU, for tests/lib/libvirt.py, which runs libvirtd
#   chrooted in it (never installed on the host); sid's also has
#   qemu-system-arm (one more package of the same QEMU) for an arm64 domain.
#
# The cache lives in $BALLOON_CACHE/roots, keyed by suite, profile, package
# list and recipe version.  A root whose key differs, or that misses
# its completion stamp, kernel or headers, is stale and gets rebuilt.
# Two-step bootstrap: debootstrap without the kernel, divert
# update-initramfs (we never boot the distribution's initrd), then install
# kernel and headers with apt.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

suite=${1:?usage: mkroot.sh SUITE [build|flavours|vmwhost|libvirt]}
profile=${2:-build}

base_pkgs="apt,ca-certificates,procps,kmod,udev,initramfs-tools,gcc,make,libc6-dev"
case $profile in
build)
	extra_pkgs="dkms openssl sparse linux-image-amd64 linux-headers-amd64"
	;;
flavours)
	extra_pkgs="dkms openssl sparse linux-image-amd64 linux-headers-amd64"
	extra_pkgs="$extra_pkgs linux-image-cloud-amd64 linux-headers-cloud-amd64"
	extra_pkgs="$extra_pkgs linux-image-rt-amd64 linux-headers-rt-amd64"
	;;
vmwhost)
	extra_pkgs="qemu-system-x86 qemu-utils libglib2.0-dev pkg-config"
	;;
libvirt)
	extra_pkgs="libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86"
	if [ "$suite" = sid ]; then
		extra_pkgs="$extra_pkgs qemu-system-arm"
	fi
	;;
*)
	die "unknown root profile '$profile'"
	;;
esac

# Bump when the recipe below changes what ends up in a root.
recipe=2
key=$(echo "$suite $profile $base_pkgs $extra_pkgs recipe $recipe" | sha256sum | cut -c1-12)
name=$suite-$profile
dir=$BALLOON_CACHE/roots/$name-$key
stamp=$dir/.balloon-root

# flavour_kver ROOT FLAVOUR: the newest kernel release of that flavour
# (amd64, cloud-amd64, rt-amd64) with image and headers in ROOT.
flavour_kver() {
	local k
	for k in $(ls "$1/lib/modules" 2>/dev/null | sort -rV); do
		case $k in
		*-cloud-amd64) [ "$2" = cloud-amd64 ] || continue ;;
		*-rt-amd64) [ "$2" = rt-amd64 ] || continue ;;
		*-amd64) [ "$2" = amd64 ] || continue ;;
		*) continue ;;
		esac
		[ -e "$1/boot/vmlinuz-$k" ] && [ -e "$1/usr/src/linux-headers-$k/Makefile" ] &&
			{ echo "$k"; return; }
	done
	return 1
}

root_ok() {
	[ -f "$stamp" ] || return 1
	grep -qx "key $key" "$stamp" || return 1
	if [ "$profile" = build ]; then
		root_kver "$dir" >/dev/null || return 1
	elif [ "$profile" = flavours ]; then
		local f
		for f in amd64 cloud-amd64 rt-amd64; do
			flavour_kver "$dir" "$f" >/dev/null || return 1
		done
	elif [ "$profile" = libvirt ]; then
		[ -x "$dir/usr/bin/qemu-system-x86_64" ] && [ -x "$dir/usr/sbin/libvirtd" ] &&
			[ -x "$dir/usr/bin/virsh" ] || return 1
		if [ "$suite" = sid ]; then
			[ -x "$dir/usr/bin/qemu-system-aarch64" ] || return 1
		fi
	else
		[ -x "$dir/usr/bin/qemu-system-x86_64" ] || return 1
	fi
}

mkdir -p "$BALLOON_CACHE/roots" "$BALLOON_CACHE/debs/$suite"
exec 9>"$BALLOON_CACHE/roots/.$name.lock"
flock 9

if root_ok; then
	echo "$dir"
	exit 0
fi

for old in "$BALLOON_CACHE/roots/$name"-*; do
	[ -d "$old" ] || continue
	log "mkroot: removing stale root $old"
	rm_root "$old"
done

need_host_pkgs debootstrap
mirror=$(debian_mirror)
log "mkroot: building $name from $mirror (a few minutes)"
t0=$(date +%s)
tmp=$dir.tmp
rm_root "$tmp"
mkdir -p "$tmp"
# Two roots of one suite share its package cache: one debootstrap at a
# time writes there (two at once corrupt each other's downloads).
exec 8>"$BALLOON_CACHE/debs/.$suite.lock"
flock 8
if ! debootstrap --variant=minbase --include="$base_pkgs" \
	--cache-dir="$BALLOON_CACHE/debs/$suite" \
	"$suite" "$tmp" "$mirror" >"$tmp.log" 2>&1; then
	tail -n 20 "$tmp.log" >&2
	die "debootstrap $suite failed (log: $tmp.log)"
fi
flock -u 8

chroot "$tmp" dpkg-divert --local --rename --add /usr/sbin/update-initramfs >/dev/null
ln -sf /bin/true "$tmp/usr/sbin/update-initramfs"
# The bookworm root also gets backports, for the kernel upgrade test.
if [ "$suite" = bookworm ]; then
	echo "deb $mirror bookworm-backports main" >"$tmp/etc/apt/sources.list.d/backports.list"
fi
# The mirror may be a snapshot whose Release files have expired.
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\nAcquire::Check-Valid-Until "false";\n' \
	>"$tmp/etc/apt/apt.conf.d/90balloon"

root_mount "$tmp"
trap 'root_umount "$tmp"' EXIT
cp "$BALLOON_CACHE/debs/$suite"/*.deb "$tmp/var/cache/apt/archives/" 2>/dev/null || true
if ! chroot "$tmp" sh -c "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $extra_pkgs" \
	>>"$tmp.log" 2>&1; then
	tail -n 20 "$tmp.log" >&2
	die "installing $extra_pkgs into $suite failed (log: $tmp.log)"
fi
flock 8
cp -n "$tmp"/var/cache/apt/archives/*.deb "$BALLOON_CACHE/debs/$suite/" 2>/dev/null || true
flock -u 8
chroot "$tmp" apt-get clean
root_umount "$tmp"
trap - EXIT

{
	echo "key $key"
	echo "suite $suite"
	echo "profile $profile"
	echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	chroot "$tmp" dpkg-query -W -f='pkg ${Package} ${Version}\n' \
		'linux-image-*' 'linux-headers-*' gcc dkms 'qemu-system-x86' \
		'libvirt-daemon' 2>/dev/null || true
} >"$tmp/.balloon-root"
mv "$tmp" "$dir"
mv "$tmp.log" "$dir.log"
log "mkroot: $name ready in $(( $(date +%s) - t0 )) s"
echo "$dir"
