# SPDX-License-Identifier: GPL-2.0
# Shared shell helpers for balloon-dkms scripts.  Source it; it defines
# functions and a few variables and runs nothing else.

# Where slow things (build roots, kernels, QEMU) are cached.  Outside the
# repository, keyed by content, so a clean clone reuses them.
BALLOON_CACHE=${BALLOON_CACHE:-/var/cache/balloon-dkms}

# The Debian suites we support, with the kernel series each one ships.
BALLOON_SUITES=${BALLOON_SUITES:-"bullseye bookworm trixie sid"}

die() {
	echo "balloon-dkms: $*" >&2
	exit 1
}

log() {
	echo "[$(date +%H:%M:%S)] $*" >&2
}

# The Debian mirror: $MIRROR if set, else the first Debian archive URI in
# this machine's apt configuration (deb822 .sources or one-line .list).
debian_mirror() {
	if [ -n "${MIRROR:-}" ]; then
		echo "$MIRROR"
		return
	fi
	local f uri
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -r "$f" ] || continue
		uri=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) print $i }' "$f" |
		      grep -v -- '-security' | grep '/debian/\?$' | head -n1)
		[ -n "$uri" ] && { echo "${uri%/}"; return; }
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -r "$f" ] || continue
		uri=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) { print $i; break } }' "$f" |
		      grep -v -- '-security' | grep '/debian/\?$' | head -n1)
		[ -n "$uri" ] && { echo "${uri%/}"; return; }
	done
	die "no Debian mirror found in /etc/apt; set MIRROR=<uri>"
}

# apt-get install, only for what is missing (host side).
need_host_pkgs() {
	local p missing=
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
			missing="$missing $p"
	done
	[ -z "$missing" ] && return 0
	log "installing host packages:$missing"
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=600 --no-install-recommends $missing >/dev/null 2>&1; then
		apt-get update -q >/dev/null 2>&1 || true
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=600 --no-install-recommends $missing >/dev/null ||
			die "could not install host packages:$missing"
	fi
}

# Mount what a chroot needs for dkms/apt and unmount it again.
root_mount() {
	local r=$1
	mountpoint -q "$r/proc" || mount -t proc proc "$r/proc"
	mountpoint -q "$r/dev" || mount --bind /dev "$r/dev"
	mountpoint -q "$r/dev/pts" || mount -t devpts devpts "$r/dev/pts" 2>/dev/null || true
}

root_umount() {
	local r=$1 m
	for m in dev/pts dev proc; do
		mountpoint -q "$r/$m" && umount -l "$r/$m"
	done
	return 0
}

# Remove a root directory, but never through a mount point inside it (a
# bind-mounted /dev would take the host's with it).
rm_root() {
	local r=$1
	root_umount "$r"
	if grep -q " $(realpath -m "$r")/" /proc/self/mounts; then
		die "refusing to remove $r: something is still mounted below it"
	fi
	rm -rf "$r"
}

# The newest kernel release that has both an image and headers in a root.
root_kver() {
	local r=$1 k
	for k in $(ls "$r/lib/modules" 2>/dev/null | sort -rV); do
		[ -e "$r/boot/vmlinuz-$k" ] && [ -e "$r/usr/src/linux-headers-$k/Makefile" ] && { echo "$k"; return; }
	done
	return 1
}
