#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# mkroot-arm64.sh SUITE - print the path of a cached Debian arm64 root,
# building it first if it is missing or stale.
#
# The root holds the suite's arm64 kernels with their headers (sid: the
# 4 KiB page linux-image-arm64 and the 16 KiB page linux-image-arm64-16k),
# gcc, make, dkms, kmod, sparse and busybox-static (no udev and no
# ca-certificates: their setup is minutes of emulated work, and nothing
# here needs them).  Its binaries run on
# this amd64 host through qemu-user (qemu-user-static + binfmt-support,
# set up here idempotently, with the F flag so a chroot needs no copy of
# the emulator).  The same root builds our module with the suite's arm64
# compiler, installs our .deb with its apt and dkms, and boots as a VM.
# Host packages it sets up: qemu-user-static, binfmt-support (binfmt_misc
# mounted and qemu-aarch64 enabled) and qemu-system-arm.
#
# Cache: $BALLOON_CACHE/roots/SUITE-arm64-KEY, keyed by suite, package list
# and recipe version, with the stamp/lock/stale rules of mkroot.sh.  Its
# downloaded packages go to $BALLOON_CACHE/debs/SUITE-arm64 (own lock).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

suite=${1:?usage: mkroot-arm64.sh SUITE}

base_pkgs="apt,procps,kmod,initramfs-tools,gcc,make,libc6-dev"
case $suite in
sid)
	flavours="arm64 arm64-16k"
	;;
*)
	flavours="arm64"
	;;
esac
extra_pkgs="dkms openssl sparse busybox-static"
for f in $flavours; do
	extra_pkgs="$extra_pkgs linux-image-$f linux-headers-$f"
done

# Bump when the recipe below changes what ends up in a root.
recipe=3
key=$(echo "$suite arm64 $base_pkgs $extra_pkgs recipe $recipe" | sha256sum | cut -c1-12)
name=$suite-arm64
dir=$BALLOON_CACHE/roots/$name-$key
stamp=$dir/.balloon-root
debs=$BALLOON_CACHE/debs/$suite-arm64

# Every flavour needs a kernel with an image and headers.
root_ok() {
	local f k ok
	[ -f "$stamp" ] || return 1
	grep -qx "key $key" "$stamp" || return 1
	for f in $flavours; do
		ok=
		for k in "$dir"/lib/modules/*; do
			k=${k##*/}
			[ "${k##*-}" = "${f##*-}" ] || continue
			[ -e "$dir/boot/vmlinuz-$k" ] &&
				[ -e "$dir/usr/src/linux-headers-$k/Makefile" ] && ok=1
		done
		[ -n "$ok" ] || return 1
	done
}

# qemu-aarch64 through binfmt_misc, flags F (fix binary: works in chroots),
# and qemu-system-aarch64 (qemu-system-arm), which boots the root's kernels.
setup_binfmt() {
	need_host_pkgs qemu-user-static binfmt-support qemu-system-arm
	mountpoint -q /proc/sys/fs/binfmt_misc ||
		mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
	if ! grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null; then
		update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || update-binfmts --enable >/dev/null 2>&1 || true
	fi
	grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null ||
		die "qemu-aarch64 binfmt handler not enabled"
	grep -q '^flags:.*F' /proc/sys/fs/binfmt_misc/qemu-aarch64 ||
		die "qemu-aarch64 binfmt handler lacks the F flag"
}

mkdir -p "$BALLOON_CACHE/roots" "$debs"
exec 9>"$BALLOON_CACHE/roots/.$name.lock"
flock 9

if root_ok; then
	# the root is ready, but its binaries still need the handler (a fresh boot)
	setup_binfmt
	echo "$dir"
	exit 0
fi

for old in "$BALLOON_CACHE/roots/$name"-*; do
	[ -d "$old" ] || continue
	log "mkroot-arm64: removing stale root $old"
	rm_root "$old"
done

need_host_pkgs debootstrap
setup_binfmt
mirror=$(debian_mirror)
log "mkroot-arm64: building $name from $mirror (ten minutes or more, emulated)"
t0=$(date +%s)
tmp=$dir.tmp
rm_root "$tmp"
mkdir -p "$tmp"
exec 8>"$BALLOON_CACHE/debs/.$suite-arm64.lock"
flock 8
if ! debootstrap --arch=arm64 --variant=minbase --include="$base_pkgs" \
	--cache-dir="$debs" \
	"$suite" "$tmp" "$mirror" >"$tmp.log" 2>&1; then
	tail -n 20 "$tmp.log" >&2
	die "debootstrap $suite arm64 failed (log: $tmp.log)"
fi
flock -u 8

chroot "$tmp" dpkg-divert --local --rename --add /usr/sbin/update-initramfs >/dev/null
ln -sf /bin/true "$tmp/usr/sbin/update-initramfs"
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\nAcquire::Check-Valid-Until "false";\n' \
	>"$tmp/etc/apt/apt.conf.d/90balloon"

root_mount "$tmp"
trap 'root_umount "$tmp"' EXIT
cp "$debs"/*.deb "$tmp/var/cache/apt/archives/" 2>/dev/null || true
# Native tools, before the kernels come in.  Two of the root's tools
# weigh most under qemu-user: cc1, over a minute for each compat probe
# (half an hour per kernel), and depmod, two minutes per kernel for every
# install and removal.  kmod is Multi-Arch: foreign, so its amd64 build
# from the same archive replaces the arm64 one as Debian allows (depmod
# reads modules of any architecture; libkmod opens liblzma and libzstd
# only when it meets a compressed module, so they are named here).
# For the compiler proper, Debian builds the same gcc release for amd64
# as a cross compiler (cpp-N-aarch64-linux-gnu from the gcc-N-cross
# source; only the Debian revision may lag).  Its cc1 goes in beside the
# root's (amd64 libraries from the same archive through multiarch), and a
# dpkg diversion puts a small dispatcher at cc1's path: kernel code
# (compiled -nostdinc, and the kernel Makefile's compiler checks,
# -D __KERNEL__) goes to the native cc1, everything else to the root's
# own, whose built-in header paths are this root's.
# The shells and text tools every dkms and Kbuild step starts by the
# hundred (each costs 70 to 100 ms of qemu-user start-up): bash, dash,
# sed, grep, findutils and mawk are Multi-Arch: foreign, so their amd64
# builds replace the arm64 ones as for kmod.  make is Multi-Arch: allowed
# (dkms needs the arm64 package installed), so its amd64 binary goes to
# /usr/bin/make behind a local diversion, like cc1.  coreutils stays
# arm64: its uname tells dkms and Kbuild that this machine is aarch64.
# The gcc driver, as, ld, dkms's own code paths through coreutils, apt,
# dpkg and the kernel's build tools stay the root's arm64 binaries.
if ! chroot "$tmp" sh -eu -c '
	# cc1 is under /usr/libexec from trixie on, /usr/lib before
	gccdir=/usr/libexec/gcc/aarch64-linux-gnu
	[ -d "$gccdir" ] || gccdir=/usr/lib/gcc/aarch64-linux-gnu
	v=$(ls "$gccdir" | sort -n | tail -n 1)
	pkg=cpp-$v-aarch64-linux-gnu
	dpkg --add-architecture amd64
	apt-get update -q
	cd /tmp
	apt-get download -q "$pkg:amd64"
	deb=$(ls ${pkg}_*_amd64.deb)
	libs=$(dpkg-deb -f "$deb" Depends | tr "," "\n" | sed "s/^ *//; s/[ (].*//" |
		grep -E "^(lib|zlib)" | grep -v "^libgcc-[0-9]" | sed "s/\$/:amd64/")
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q $libs kmod:amd64 liblzma5:amd64 libzstd1:amd64
	mkdir -p /tmp/cross /usr/local/libexec/balloon-cross
	dpkg-deb --fsys-tarfile "$deb" | tar -x -C /tmp/cross --wildcards "*/cc1"
	install -m 0755 "$(find /tmp/cross -name cc1 -path "*gcc-cross*")" \
		/usr/local/libexec/balloon-cross/cc1
	rm -rf /tmp/cross "$deb"
	/usr/local/libexec/balloon-cross/cc1 -quiet -version /dev/null -o /dev/null >/tmp/v 2>&1
	head -n 1 /tmp/v
	c=$gccdir/$v/cc1
	dpkg-divert --local --rename --add "$c"
	printf "%s\n" "#!/bin/sh" \
		"# balloon-dkms test root: kernel code to the native cross cc1" \
		"case \" \$* \" in *\" -nostdinc \"* | *\" __KERNEL__ \"*)" \
		"	exec /usr/local/libexec/balloon-cross/cc1 \"\$@\" ;;" "esac" \
		"exec $c.distrib \"\$@\"" >"$c"
	chmod 0755 "$c"
	mkdir /tmp/native
	cd /tmp/native
	apt-get download -q make:amd64 bash:amd64 dash:amd64 sed:amd64 grep:amd64 \
		findutils:amd64 mawk:amd64
	libs=$(for d in ./*.deb; do dpkg-deb -f "$d" Pre-Depends; dpkg-deb -f "$d" Depends; done |
		tr ",|" "\n\n" | sed "s/^ *//; s/[ (:].*//" | grep -E "^lib" | sort -u | sed "s/\$/:amd64/")
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q $libs
	dpkg-deb -x make_*_amd64.deb x
	rm make_*_amd64.deb
	dpkg -i ./*_amd64.deb
	dpkg-divert --local --rename --add /usr/bin/make
	install -m 0755 x/usr/bin/make /usr/bin/make
	cd /tmp
	rm -rf /tmp/native
	make --version | head -n 1
' >>"$tmp.log" 2>&1; then
	tail -n 20 "$tmp.log" >&2
	die "setting up native cc1, kmod, shells and make in $suite arm64 failed (log: $tmp.log)"
fi
log "mkroot-arm64: $name native tools in after $(( $(date +%s) - t0 )) s; kernels next"
if ! chroot "$tmp" sh -c "DEBIAN_FRONTEND=noninteractive apt-get install -y -q $extra_pkgs" \
	>>"$tmp.log" 2>&1; then
	tail -n 20 "$tmp.log" >&2
	die "installing $extra_pkgs into $suite arm64 failed (log: $tmp.log)"
fi
flock 8
cp -n "$tmp"/var/cache/apt/archives/*.deb "$debs/" 2>/dev/null || true
flock -u 8
chroot "$tmp" apt-get clean
root_umount "$tmp"
trap - EXIT

{
	echo "key $key"
	echo "suite $suite"
	echo "profile arm64"
	echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	chroot "$tmp" dpkg-query -W -f='pkg ${Package} ${Version}\n' \
		'linux-image-*' 'linux-headers-*' gcc dkms 'cpp-*-aarch64-linux-gnu' 2>/dev/null || true
	echo "native cc1 $(chroot "$tmp" /usr/local/libexec/balloon-cross/cc1 -quiet -version /dev/null \
		-o /dev/null 2>&1 | head -n 1)"
	chroot "$tmp" dpkg-query -W -f='native ${Package}:${Architecture} ${Version}\n' \
		kmod bash dash sed grep findutils mawk 2>/dev/null || true
	echo "native make $(chroot "$tmp" make --version | head -n 1)"
} >"$tmp/.balloon-root"
mv "$tmp" "$dir"
mv "$tmp.log" "$dir.log"
log "mkroot-arm64: $name ready in $(( $(date +%s) - t0 )) s"
echo "$dir"
