#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# checkpatch.sh FILE... - run the kernel's checkpatch.pl --strict on FILEs.
#
# The script is taken from Debian's linux-source package of the newest
# suite (sid, through its cached build root), at test time, and cached in
# $BALLOON_CACHE/checkpatch/<package version>/; it is never committed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

suite=${CHECKPATCH_SUITE:-sid}
root=$("$here/mkroot.sh" "$suite")
ver=$(chroot "$root" apt-cache show --no-all-versions 'linux-source' 2>/dev/null |
	sed -n 's/^Depends: .*\(linux-source-[0-9.]*\).*/\1/p' | head -n1)
[ -n "$ver" ] || die "cannot find linux-source in $suite's package lists"
pkgver=$(chroot "$root" apt-cache show --no-all-versions "$ver" | sed -n 's/^Version: //p' | head -n1)
dir=$BALLOON_CACHE/checkpatch/$ver-$pkgver

if [ ! -x "$dir/scripts/checkpatch.pl" ]; then
	need_host_pkgs perl xz-utils
	log "checkpatch: fetching $ver $pkgver from $suite (once)"
	tmp=$(mktemp -d "$BALLOON_CACHE/checkpatch.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	mkdir -p "$root/tmp/balloon-cp"
	(cd "$root/tmp/balloon-cp" && rm -f ./*.deb && chroot "$root" sh -c "cd /tmp/balloon-cp && apt-get download -q $ver" >/dev/null) ||
		die "could not download $ver"
	mv "$root"/tmp/balloon-cp/*.deb "$tmp/src.deb"
	rmdir "$root/tmp/balloon-cp"
	dpkg-deb --fsys-tarfile "$tmp/src.deb" | tar -x -C "$tmp" --wildcards './usr/src/linux-source-*.tar.*'
	rm "$tmp/src.deb"
	tarball=$(ls "$tmp"/usr/src/linux-source-*.tar.*)
	top=$(basename "$tarball" | sed 's/\.tar\..*//')
	tar -x -C "$tmp" -f "$tarball" --wildcards \
		"$top/scripts/checkpatch.pl" "$top/scripts/spelling.txt" \
		"$top/scripts/const_structs.checkpatch"
	mkdir -p "$dir.new/scripts"
	cp "$tmp/$top/scripts/"* "$dir.new/scripts/"
	rm -rf "$dir"
	mv "$dir.new" "$dir"
	# the exec below ends the shell without running the EXIT trap
	rm -rf "$tmp"
	trap - EXIT
fi

# --no-tree: we are not a kernel tree; the spelling and const-struct lists
# sit beside the script, where checkpatch looks for them.
exec perl "$dir/scripts/checkpatch.pl" --strict --no-tree --terse --show-types \
	--ignore FILE_PATH_CHANGES -f "$@"
