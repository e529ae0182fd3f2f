#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# mkdeb.sh [OUTDIR] - build balloon-dkms_<ver>_all.deb (and the native
# source package: .dsc, .tar.xz, .changes, .buildinfo) into OUTDIR
# (default out/), from the release tarball so that only source files go in.
# Installs its build dependencies with apt-get when they are missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
top=$(cd "$here/.." && pwd)
out=$(mkdir -p "${1:-$top/out}" && cd "${1:-$top/out}" && pwd)

# dh_dkms lives in dh-dkms from Debian 12 on, in dkms itself before.
need_host_pkgs dpkg-dev debhelper
if apt-cache show dh-dkms >/dev/null 2>&1; then
	need_host_pkgs dh-dkms
else
	need_host_pkgs dkms
fi

tarball=$("$here/mkdist.sh" "$out")
name=$(basename "$tarball" .tar.gz)
ver=${name#balloon-dkms-}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -C "$work" -xzf "$tarball"
log "mkdeb: dpkg-buildpackage $name"
# -d: the Build-Depends are installed above; the implicit build-essential
# would only pull a C++ compiler into a build that compiles nothing.
if ! (cd "$work/$name" && dpkg-buildpackage -us -uc -d) >"$work/build.log" 2>&1; then
	tail -n 30 "$work/build.log" >&2
	die "dpkg-buildpackage failed"
fi
for f in "$work"/balloon-dkms_"$ver"*; do
	mv -f "$f" "$out/"
done
cp "$work/build.log" "$out/balloon-dkms_${ver}_build.log"
deb=$out/balloon-dkms_${ver}_all.deb
[ -f "$deb" ] || die "dpkg-buildpackage made no $deb"
log "mkdeb: $deb"
echo "$deb"
